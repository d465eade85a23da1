//! The AVX-512 micro-kernel.
//!
//! Tile 8×32: sixteen `zmm` accumulators, two `B` vectors per depth step and eight broadcasts
//! (16 FMAs per 2 full loads + 8 broadcast loads). Eight rows divide DenseNet's output widths
//! (32 = growth, 128 = 4·growth) exactly; 32 columns waste little on 56², 28² and 14² maps.

use std::arch::x86_64::*;

/// Rows per micro-tile.
pub const MR: usize = 8;
/// Columns per micro-tile.
pub const NR: usize = 32;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "avx512_gemm_f32_8x32";

/// `C[MR, NR] (+)= Σ_k a[k·MR..][..MR] ⊗ b[k·NR..][..NR]`, `C[r, j] = c[r·ldc + j]`.
///
/// # Panics
/// If a buffer is too short for `kc` or the tile, or the CPU lacks AVX-512F.
#[inline]
pub fn kernel(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: the asserts above bound every read of `a` (kc·MR floats), `b` (kc·NR) and every
    // read/write of `c` ((MR−1)·ldc + NR), and the CPU has AVX-512F.
    unsafe { kernel_8x32(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) }
}

/// # Safety
/// `a` holds `kc·MR` floats, `b` holds `kc·NR`, `c` holds `(MR−1)·ldc + NR`; AVX-512F is
/// available.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_8x32(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so the NR floats at b + k·NR and the MR at a + k·MR are in bounds.
        unsafe {
            let b0 = _mm512_loadu_ps(b.add(k * NR));
            let b1 = _mm512_loadu_ps(b.add(k * NR + 16));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_r = _mm512_set1_ps(*a.add(k * MR + r));
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
