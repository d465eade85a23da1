//! The portable micro-kernel: `wide::f32x8` vectors (two SSE registers on baseline x86-64, two
//! NEON registers on Arm), no `unsafe`.
//!
//! Tile 6×8: six accumulators of 8 lanes (12 of the 16 SSE registers), one `B` vector and one
//! broadcast per step.
//!
//! Measured on x86-64 without `-C target-cpu` (SSE2, no FMA: `mul_add` is a multiply then an
//! add), one thread, GFLOP per CPU-second: 1×1 256→128 @28: 39 GFLOP/s; 3×3 128→32 @28: 31;
//! 1×1 1024→128 @7: 34; 3×3 128→32 @7: 25. It is the fallback, and the Arm (NEON) tier.

use super::{ASliver, BSliver};
use wide::f32x8;

/// Rows per micro-tile.
pub const MR: usize = 6;
/// Columns per micro-tile.
pub const NR: usize = 8;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "portable_gemm_f32_6x8";

/// `C[MR, NR] (+)= Σ_k A[·, k] ⊗ B[k, ..NR]`, `C[r, j] = c[r·ldc + j]`, with `B` packed
/// (`B[k, ..] = b[k·NR..][..NR]`) or read in place from its rows.
#[inline]
pub(crate) fn kernel(
    kc: usize,
    a: ASliver<'_>,
    b: BSliver<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(super::c_span(MR, ldc, NR).is_some_and(|n| n <= c.len()));
    let b_row = |k: usize| -> f32x8 {
        let lanes = match b {
            BSliver::Packed(b) => &b[k * NR..(k + 1) * NR],
            BSliver::Rows { data, starts } => &data[starts.starts()[k]..][..NR],
        };
        f32x8::from(<[f32; NR]>::try_from(lanes).expect("NR lanes"))
    };
    let mut acc = [f32x8::ZERO; MR];
    match a {
        ASliver::Packed(a) => {
            for (k, a_k) in a[..kc * MR].chunks_exact(MR).enumerate() {
                let b_vec = b_row(k);
                for (acc_r, &a_r) in acc.iter_mut().zip(a_k) {
                    *acc_r = f32x8::splat(a_r).mul_add(b_vec, *acc_r);
                }
            }
        }
        ASliver::Rows(data, starts) => {
            let rows: [&[f32]; MR] = std::array::from_fn(|r| &data[starts[r]..starts[r] + kc]);
            for k in 0..kc {
                let b_vec = b_row(k);
                for (acc_r, row) in acc.iter_mut().zip(&rows) {
                    *acc_r = f32x8::splat(row[k]).mul_add(b_vec, *acc_r);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let row = &mut c[r * ldc..r * ldc + NR];
        let sums = acc_r.to_array();
        if accumulate {
            row.iter_mut().zip(sums).for_each(|(c, s)| *c += s);
        } else {
            row.copy_from_slice(&sums);
        }
    }
}
