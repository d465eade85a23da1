//! The AVX-512 micro-kernel.
//!
//! Tile 8×32: sixteen `zmm` accumulators, two `B` vectors per depth step and eight broadcasts
//! (16 FMAs per 2 full loads + 8 broadcast loads). Eight rows divide DenseNet's output widths
//! (32 = growth, 128 = 4·growth) exactly; 32 columns waste little on 56², 28² and 14² maps.
//!
//! Measured (DenseNet-121 batch-1 forward, one thread, GFLOP per CPU-second on a shared Zen 5
//! core, see docs/performance.md): 1×1 convolutions 156–219 (93–123% of the 176 GFLOP/s
//! nominal peak), 3×3 128→32 106–150, average of the 16 bottleneck and growth shapes 174 (99%).
//! 1×1 256→128 @28: 219 vs 105 for the AVX2 kernel and 39 for the portable one.

use super::ASliver;
use std::arch::x86_64::*;

/// Rows per micro-tile.
pub const MR: usize = 8;
/// Columns per micro-tile.
pub const NR: usize = 32;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "avx512_gemm_f32_8x32";

/// `C[MR, NR] (+)= Σ_k A[·, k] ⊗ b[k·NR..][..NR]`, `C[r, j] = c[r·ldc + j]`.
///
/// # Panics
/// If a buffer is too short for `kc` or the tile, or the CPU lacks the tier's features.
#[inline]
pub(crate) fn kernel(
    kc: usize,
    a: ASliver<'_>,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(b.len() >= kc * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    assert!(is_x86_feature_detected!("avx512f"));
    let (packed, rows) = match a {
        ASliver::Packed(a) => {
            assert!(a.len() >= kc * MR);
            (a.as_ptr(), [std::ptr::null(); MR])
        }
        ASliver::Rows(data, starts) => {
            assert!(starts[..MR].iter().all(|&s| s + kc <= data.len()));
            let rows = std::array::from_fn(|r| data.as_ptr().wrapping_add(starts[r]));
            (std::ptr::null(), rows)
        }
    };
    // SAFETY: the asserts bound every read of `A` (kc·MR packed floats, or kc floats from each
    // row start), of `b` (kc·NR) and every access to `c` ((MR−1)·ldc + NR), and the CPU has
    // the features.
    unsafe {
        if packed.is_null() {
            kernel_8x32::<false>(
                kc,
                packed,
                rows,
                b.as_ptr(),
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        } else {
            kernel_8x32::<true>(
                kc,
                packed,
                rows,
                b.as_ptr(),
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        }
    }
}

/// With `PACKED`, `A[r, k] = a[k·MR + r]`; otherwise `A[r, k] = rows[r][k]`.
///
/// # Safety
/// `a` (packed) or each `rows[r]` holds the `kc` values of `A` so addressed, `b` holds `kc·NR` floats, `c` holds
/// `(MR−1)·ldc + NR`; the CPU has the enabled features.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_8x32<const PACKED: bool>(
    kc: usize,
    a: *const f32,
    rows: [*const f32; MR],
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so the NR floats at b + k·NR are in bounds, and so is A[r, k] for
        // every r < MR in either layout.
        unsafe {
            let b0 = _mm512_loadu_ps(b.add(k * NR));
            let b1 = _mm512_loadu_ps(b.add(k * NR + 16));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rk = if PACKED {
                    *a.add(k * MR + r)
                } else {
                    *rows[r].add(k)
                };
                let a_r = _mm512_set1_ps(a_rk);
                acc_r[0] = _mm512_fmadd_ps(a_r, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(a_r, b1, acc_r[1]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: r < MR, so row r's NR floats at c + r·ldc are within (MR−1)·ldc + NR.
        unsafe {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if accumulate {
                v0 = _mm512_add_ps(_mm512_loadu_ps(row), v0);
                v1 = _mm512_add_ps(_mm512_loadu_ps(row.add(16)), v1);
            }
            _mm512_storeu_ps(row, v0);
            _mm512_storeu_ps(row.add(16), v1);
        }
    }
}
