//! Sixteen `f32` lanes as one type per tier, for the reductions LLVM does not vectorise well on
//! its own (sums carried across loop iterations).
//!
//! [`Lanes`] is sixteen independent `f32` lanes: one `__m512` (AVX-512), two `__m256` (AVX2), or
//! a plain array (portable, which LLVM turns into SSE2). Each lane performs the same IEEE
//! operations in the same order on every tier, so a body generic over [`Lanes`] gives the same
//! bits on every tier. A body is a [`LanesBody`]; [`with_lanes`] runs it with the tier's type
//! from inside a `#[target_feature]` function, so the intrinsics inline into code compiled for
//! that tier.

use super::LANES;
use crate::dispatch::{detected_isa, Isa};

/// Sixteen `f32` lanes and the lane-wise operations the reductions need.
pub trait Lanes: Copy {
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// Lanes from sixteen consecutive values.
    fn load(x: &[f32; LANES]) -> Self;
    /// Lanes to an array.
    fn to_array(self) -> [f32; LANES];
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `self + a·b`: one fused multiply-add (a single rounding) on AVX2 and AVX-512. The
    /// portable lanes multiply, then add (two roundings: a fused multiply-add is a library call
    /// on the baseline x86-64 target), so bodies that need every tier to agree bit for bit do
    /// not use it.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `self` where `gate > 0`, else `0` (a NaN gate gives `0`), lane by lane.
    fn where_positive(self, gate: Self) -> Self;
}

/// A loop body generic over the lane type, run by [`with_lanes`].
pub trait LanesBody {
    type Output;
    fn run<L: Lanes>(self) -> Self::Output;
}

/// Runs `body` with the lane type and target features of `isa` (capped by the probed tier).
#[inline(always)]
pub fn with_lanes<B: LanesBody>(isa: Isa, body: B) -> B::Output {
    let isa = isa.min(detected_isa());
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` is capped by `detected_isa()`, so the CPU has AVX-512F.
        Isa::Avx512 => unsafe { x86::run_avx512(body) },
        // SAFETY: as above, the CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { x86::run_avx2(body) },
        Isa::Portable => body.run::<Portable>(),
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        body.run::<Portable>()
    }
}

/// The portable lanes: a plain array, vectorised by LLVM for the baseline target.
#[derive(Clone, Copy)]
pub struct Portable([f32; LANES]);

impl Lanes for Portable {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Portable([v; LANES])
    }
    #[inline(always)]
    fn load(x: &[f32; LANES]) -> Self {
        Portable(*x)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        self.0
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + o.0[l]))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] - o.0[l]))
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * o.0[l]))
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + a.0[l] * b.0[l]))
    }
    #[inline(always)]
    fn where_positive(self, gate: Self) -> Self {
        Portable(std::array::from_fn(|l| {
            if gate.0[l] > 0.0 {
                self.0[l]
            } else {
                0.0
            }
        }))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, LanesBody, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn run_avx512<B: LanesBody>(body: B) -> B::Output {
        body.run::<Avx512>()
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn run_avx2<B: LanesBody>(body: B) -> B::Output {
        body.run::<Avx2>()
    }

    /// One AVX-512 register. Values of this type are only created inside `run_avx512`, which
    /// runs only on CPUs with AVX-512F: that is the invariant every `SAFETY` below relies on.
    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    impl Lanes for Avx512 {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY: AVX-512F is present (see the type's invariant).
            Avx512(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        fn load(x: &[f32; LANES]) -> Self {
            // SAFETY: AVX-512F is present; `x` holds exactly 16 floats, read unaligned.
            Avx512(unsafe { _mm512_loadu_ps(x.as_ptr()) })
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut out = [0.0f32; LANES];
            // SAFETY: AVX-512F is present; `out` holds exactly 16 floats, written unaligned.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), self.0) };
            out
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present.
            Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present.
            Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            // SAFETY: AVX-512F is present.
            Avx512(unsafe { _mm512_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F is present.
            Avx512(unsafe { _mm512_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        fn where_positive(self, gate: Self) -> Self {
            // SAFETY: AVX-512F is present. `_CMP_GT_OQ` is false for NaN, as `gate > 0.0`.
            Avx512(unsafe {
                let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(gate.0, _mm512_setzero_ps());
                _mm512_maskz_mov_ps(keep, self.0)
            })
        }
    }

    /// Two AVX registers. Values of this type are only created inside `run_avx2`, which runs
    /// only on CPUs with AVX2 and FMA: that is the invariant every `SAFETY` below relies on.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256, __m256);

    impl Lanes for Avx2 {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY: AVX is present (see the type's invariant).
            let x = unsafe { _mm256_set1_ps(v) };
            Avx2(x, x)
        }
        #[inline(always)]
        fn load(x: &[f32; LANES]) -> Self {
            // SAFETY: AVX is present; `x` holds 16 floats, so both 8-float unaligned reads are
            // inside it.
            unsafe {
                Avx2(
                    _mm256_loadu_ps(x.as_ptr()),
                    _mm256_loadu_ps(x.as_ptr().add(8)),
                )
            }
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut out = [0.0f32; LANES];
            // SAFETY: AVX is present; both 8-float unaligned writes are inside `out`.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), self.0);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), self.1);
            }
            out
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX is present.
            unsafe { Avx2(_mm256_add_ps(self.0, o.0), _mm256_add_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX is present.
            unsafe { Avx2(_mm256_sub_ps(self.0, o.0), _mm256_sub_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            // SAFETY: AVX is present.
            unsafe { Avx2(_mm256_mul_ps(self.0, o.0), _mm256_mul_ps(self.1, o.1)) }
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            // SAFETY: FMA is present (see the type's invariant).
            unsafe {
                Avx2(
                    _mm256_fmadd_ps(a.0, b.0, self.0),
                    _mm256_fmadd_ps(a.1, b.1, self.1),
                )
            }
        }
        #[inline(always)]
        fn where_positive(self, gate: Self) -> Self {
            // SAFETY: AVX is present. `_CMP_GT_OQ` is false for NaN, as `gate > 0.0`.
            unsafe {
                let zero = _mm256_setzero_ps();
                Avx2(
                    _mm256_and_ps(self.0, _mm256_cmp_ps::<_CMP_GT_OQ>(gate.0, zero)),
                    _mm256_and_ps(self.1, _mm256_cmp_ps::<_CMP_GT_OQ>(gate.1, zero)),
                )
            }
        }
    }
}
