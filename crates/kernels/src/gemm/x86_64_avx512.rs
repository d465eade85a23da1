//! The AVX-512 micro-kernel.
//!
//! Tile 8×32: sixteen `zmm` accumulators, two `B` vectors per depth step and eight broadcasts
//! (16 FMAs per 2 full loads + 8 broadcast loads). Eight rows divide DenseNet's output widths
//! (32 = growth, 128 = 4·growth) exactly; 32 columns waste little on 56², 28² and 14² maps.

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
    match a {
        ASliver::Packed(a) => {
            assert!(a.len() >= kc * MR);
            // SAFETY: the asserts bound every read of `a` (kc·MR floats, packed), `b` (kc·NR)
            // and every access to `c` ((MR−1)·ldc + NR), and the CPU has the features.
            unsafe {
                kernel_8x32::<true>(
                    kc,
                    a.as_ptr(),
                    0,
                    b.as_ptr(),
                    c.as_mut_ptr(),
                    ldc,
                    accumulate,
                )
            }
        }
        ASliver::RowMajor(a, ld) => {
            assert!(kc == 0 || a.len() >= (MR - 1) * ld + kc);
            // SAFETY: as above, with `a` read as MR rows of kc floats, ld apart.
            unsafe {
                kernel_8x32::<false>(
                    kc,
                    a.as_ptr(),
                    ld,
                    b.as_ptr(),
                    c.as_mut_ptr(),
                    ldc,
                    accumulate,
                )
            }
        }
    }
}

/// With `PACKED`, `A[r, k] = a[k·MR + r]`; otherwise `A[r, k] = a[r·ld + k]`.
///
/// # Safety
/// `a` holds the `MR × kc` values so addressed, `b` holds `kc·NR` floats, `c` holds
/// `(MR−1)·ldc + NR`; the CPU has the enabled features.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_8x32<const PACKED: bool>(
    kc: usize,
    a: *const f32,
    ld: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let row_ptr: [*const f32; MR] = std::array::from_fn(|r| a.wrapping_add(r * ld));
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
                    *row_ptr[r].add(k)
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
