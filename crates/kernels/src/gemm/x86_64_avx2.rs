//! The AVX2+FMA micro-kernel.
//!
//! Tile 6×16: twelve `ymm` accumulators, two `B` vectors and one broadcast per depth step
//! (15 of the 16 `ymm` registers), 12 FMAs per 2 loads + 6 broadcasts.

use std::arch::x86_64::*;

/// Rows per micro-tile.
pub const MR: usize = 6;
/// Columns per micro-tile.
pub const NR: usize = 16;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "avx2fma_gemm_f32_6x16";

/// `C[MR, NR] (+)= Σ_k a[k·MR..][..MR] ⊗ b[k·NR..][..NR]`, `C[r, j] = c[r·ldc + j]`.
///
/// # Panics
/// If a buffer is too short for `kc` or the tile, or the CPU lacks AVX2 and FMA.
#[inline]
pub fn kernel(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    // SAFETY: the asserts above bound every read of `a` (kc·MR floats), `b` (kc·NR) and every
    // read/write of `c` ((MR−1)·ldc + NR), and the CPU has the features the kernel enables.
    unsafe { kernel_6x16(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) }
}

/// # Safety
/// `a` holds `kc·MR` floats, `b` holds `kc·NR`, `c` holds `(MR−1)·ldc + NR`; AVX2 and FMA are
/// available.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc, so the NR floats at b + k·NR and the MR at a + k·MR are in bounds.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(k * NR));
            let b1 = _mm256_loadu_ps(b.add(k * NR + 8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_r = _mm256_broadcast_ss(&*a.add(k * MR + r));
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
