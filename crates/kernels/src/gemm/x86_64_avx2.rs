//! The AVX2+FMA micro-kernel.
//!
//! Tile 6×16: twelve `ymm` accumulators, two `B` vectors and one broadcast per depth step
//! (15 of the 16 `ymm` registers), 12 FMAs per 2 loads + 6 broadcasts.
//!
//! Measured (one thread, GFLOP per CPU-second on a shared Zen 5 core, see docs/performance.md):
//! 1×1 256→128 @28: 105 GFLOP/s (portable: 39); 3×3 128→32 @28: 70 (portable: 31); 1×1
//! 1024→128 @7: 80; 3×3 128→32 @7: 57. The AVX2 peak is half AVX-512's on this core.

use super::{ASliver, BSliver};
use std::arch::x86_64::*;

/// Rows per micro-tile.
pub const MR: usize = 6;
/// Columns per micro-tile.
pub const NR: usize = 16;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "avx2fma_gemm_f32_6x16";

/// `C[MR, NR] (+)= Σ_k A[·, k] ⊗ B[k, ..NR]`, `C[r, j] = c[r·ldc + j]`, with `B` packed
/// (`B[k, ..] = b[k·NR..][..NR]`) or read in place from its rows.
///
/// # Panics
/// If a buffer is too short for `kc` or the tile, or the CPU lacks the tier's features.
#[inline]
pub(crate) fn kernel(
    kc: usize,
    a: ASliver<'_>,
    b: BSliver<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (b_ptr, b_starts) = b.checked(kc, NR);
    assert!(super::c_span(MR, ldc, NR).is_some_and(|n| n <= c.len()));
    assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    let (packed, rows) = match a {
        ASliver::Packed(a) => {
            assert!(a.len() >= kc * MR);
            (a.as_ptr(), [std::ptr::null(); MR])
        }
        ASliver::Rows(data, starts) => {
            assert!(starts[..MR]
                .iter()
                .all(|&s| s.checked_add(kc).is_some_and(|end| end <= data.len())));
            let rows = std::array::from_fn(|r| data.as_ptr().wrapping_add(starts[r]));
            (std::ptr::null(), rows)
        }
    };
    // SAFETY: the asserts (and `BSliver::checked`) bound every read of `A` (kc·MR packed
    // floats, or kc floats from each row start), of `B` (kc·NR packed floats, or NR floats from
    // each of kc row starts) and every access to `c` ((MR−1)·ldc + NR), and the CPU has the
    // features.
    unsafe {
        let c = c.as_mut_ptr();
        match (packed.is_null(), b_starts.is_null()) {
            (true, true) => {
                kernel_6x16::<false, true>(kc, packed, rows, b_ptr, b_starts, c, ldc, accumulate)
            }
            (true, false) => {
                kernel_6x16::<false, false>(kc, packed, rows, b_ptr, b_starts, c, ldc, accumulate)
            }
            (false, true) => {
                kernel_6x16::<true, true>(kc, packed, rows, b_ptr, b_starts, c, ldc, accumulate)
            }
            (false, false) => {
                kernel_6x16::<true, false>(kc, packed, rows, b_ptr, b_starts, c, ldc, accumulate)
            }
        }
    }
}

/// With `A_PACKED`, `A[r, k] = a[k·MR + r]`, otherwise `A[r, k] = rows[r][k]`; with `B_PACKED`,
/// `B[k, t] = b[k·NR + t]`, otherwise `B[k, t] = b[b_starts[k] + t]`.
///
/// # Safety
/// `a` (packed) or each `rows[r]` holds the `kc` values of `A` so addressed; `b` holds the
/// `kc·NR` values of `B` so addressed (with `b_starts` holding `kc` offsets); `c` holds
/// `(MR−1)·ldc + NR`; the CPU has the enabled features.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16<const A_PACKED: bool, const B_PACKED: bool>(
    kc: usize,
    a: *const f32,
    rows: [*const f32; MR],
    b: *const f32,
    b_starts: *const usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so B[k, ..NR] and A[r, k] for every r < MR are in bounds in either
        // layout.
        unsafe {
            let b_k = if B_PACKED {
                b.add(k * NR)
            } else {
                b.add(*b_starts.add(k))
            };
            let b0 = _mm256_loadu_ps(b_k);
            let b1 = _mm256_loadu_ps(b_k.add(8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rk = if A_PACKED {
                    *a.add(k * MR + r)
                } else {
                    *rows[r].add(k)
                };
                let a_r = _mm256_set1_ps(a_rk);
                acc_r[0] = _mm256_fmadd_ps(a_r, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(a_r, b1, acc_r[1]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: r < MR, so row r's NR floats at c + r·ldc are within (MR−1)·ldc + NR.
        unsafe {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if accumulate {
                v0 = _mm256_add_ps(_mm256_loadu_ps(row), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(row.add(8)), v1);
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
        }
    }
}
