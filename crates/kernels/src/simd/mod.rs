//! Shared helpers of the non-convolution kernels: running one loop body compiled for a chosen
//! SIMD tier, lane-parallel sums, and the fixed work split used with rayon.
//!
//! # One body, three tiers
//!
//! The elementwise and per-channel kernels are memory-bound. Their streaming loops (normalise,
//! ReLU, dropout, SGD, pooling rows) are written once as plain `#[inline(always)]` loops, which
//! LLVM vectorises; [`on_tier`] calls such a body from inside a thin `#[target_feature]`
//! function, so the same source compiles to SSE2 (portable), AVX2+FMA or AVX-512 code. The
//! closures handed to it are marked `#[inline(always)]`: a closure LLVM declines to inline keeps
//! the baseline target and silently loses the tier.
//!
//! Reductions (sums carried across iterations) are where LLVM's own vectorisation falls short,
//! so they are written over [`lanes::Lanes`], sixteen `f32` lanes that are one `__m512`, two
//! `__m256` or a plain array depending on the tier (measured on the BN backward at 256×56×56:
//! the autovectorised version ran the AVX-512 tier on 4-wide SSE registers).
//!
//! Bodies never call `mul_add` (it would be a library call without FMA) and LLVM does not
//! contract `a·b + c`, and every tier keeps the same sixteen lanes, so every tier performs the
//! same roundings in the same order: the tiers agree bit for bit (the tests check it).
//!
//! # Sums
//!
//! Sums run over [`LANES`] partial sums in `f32` for blocks of [`BLOCK`] values, and each
//! block's partials are then added into an `f64` total. Within a block a partial sum adds at most
//! `BLOCK / LANES` terms, so the `f32` rounding error stays that small, and the `f64` total
//! does not grow it with the tensor size.

pub mod lanes;

use crate::dispatch::Isa;
use lanes::{Lanes, LanesBody};

/// Width of the lane arrays the bodies are written over: one AVX-512 vector, two AVX2 vectors,
/// four SSE vectors. Fixed for every tier so that every tier sums in the same order.
pub const LANES: usize = 16;

/// Values per `f32` partial-sum block before the partials go into the `f64` total.
pub const BLOCK: usize = 1024;

/// Tensors smaller than this (in floats, 512 KiB) run on the calling thread: below it, waking
/// rayon workers costs more than the loop. Measured on the 2-core test machine under load:
/// at `1 << 15`, DenseNet-121's 1024×7×7 BN and global pooling (50 k floats) ran slower on two
/// threads than the single-threaded reference.
pub const PAR_MIN_LEN: usize = 1 << 17;

/// Runs `body` compiled for `isa`: the body and everything it inlines get the tier's target
/// features. Pass an `#[inline(always)] || ...` closure calling `#[inline(always)]` functions,
/// or the features do not reach the loops.
#[inline(always)]
pub fn on_tier<R>(isa: Isa, body: impl FnOnce() -> R) -> R {
    // Capping by the probed tier makes a wrong `isa` a slow call rather than an illegal
    // instruction; it is one load of an initialised `OnceLock`.
    let isa = isa.min(crate::dispatch::detected_isa());
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` was capped by `detected_isa()`, the tier the CPU was probed to support,
        // so the AVX-512F instructions exist.
        Isa::Avx512 => unsafe { x86::avx512(body) },
        // SAFETY: as above, the probe found AVX2 and FMA.
        Isa::Avx2 => unsafe { x86::avx2(body) },
        Isa::Portable => body(),
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        body()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
        body()
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
        body()
    }
}

/// Sum of the lanes of a partial-sum array, in a fixed order, in `f64`.
#[inline(always)]
pub fn lanes_to_f64(acc: &[f32; LANES]) -> f64 {
    acc.iter().map(|&v| f64::from(v)).sum()
}

/// Calls `step` on every [`LANES`]-wide group of `x` in order, the last short group padded with
/// `pad`. Every lane index inside `step` is static, which lets LLVM keep lane arrays in vector
/// registers.
#[inline(always)]
pub fn for_lane_groups(x: &[f32], pad: f32, mut step: impl FnMut(&[f32; LANES])) {
    let mut chunks = x.chunks_exact(LANES);
    for ch in &mut chunks {
        step(ch.try_into().expect("LANES-long chunk"));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut g = [pad; LANES];
        g[..rest.len()].copy_from_slice(rest);
        step(&g);
    }
}

/// [`for_lane_groups`] over two slices of one length in step, padded with `pad_a`, `pad_b`.
#[inline(always)]
pub fn for_lane_groups2(
    a: &[f32],
    b: &[f32],
    (pad_a, pad_b): (f32, f32),
    mut step: impl FnMut(&[f32; LANES], &[f32; LANES]),
) {
    assert_eq!(a.len(), b.len());
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        step(
            x.try_into().expect("LANES-long chunk"),
            y.try_into().expect("LANES-long chunk"),
        );
    }
    let (ra, rb) = (ca.remainder(), cb.remainder());
    if !ra.is_empty() {
        let mut ga = [pad_a; LANES];
        let mut gb = [pad_b; LANES];
        ga[..ra.len()].copy_from_slice(ra);
        gb[..rb.len()].copy_from_slice(rb);
        step(&ga, &gb);
    }
}

/// Mean and biased variance of `x` (non-empty), in `f64`, from one pass over shifted values:
/// with `K = x[0]` and `d = x − K`, `mean = K + Σd/M` and `var = Σd²/M − (Σd/M)²`. The shift
/// keeps the sums the size of the spread, not of the mean, so a channel of values near 1000 ± 1
/// keeps its variance digits. Run it with [`lanes::with_lanes`].
pub struct MeanVar<'a>(pub &'a [f32]);

impl LanesBody for MeanVar<'_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run<L: Lanes>(self) -> (f64, f64) {
        let x = self.0;
        let k = x[0];
        let kv = L::splat(k);
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for block in x.chunks(BLOCK) {
            let (mut a1, mut a2) = (L::splat(0.0), L::splat(0.0));
            // Padding with `k` makes the padded lanes' `d` zero.
            for_lane_groups(
                block,
                k,
                #[inline(always)]
                |v| {
                    let d = L::load(v).sub(kv);
                    a1 = a1.add(d);
                    a2 = a2.add(d.mul(d));
                },
            );
            s1 += lanes_to_f64(&a1.to_array());
            s2 += lanes_to_f64(&a2.to_array());
        }
        let m = x.len() as f64;
        let mean_d = s1 / m;
        (f64::from(k) + mean_d, (s2 / m - mean_d * mean_d).max(0.0))
    }
}

/// Chunk length for splitting a flat elementwise loop of `len` floats across threads: a fixed
/// function of `len`, never of the thread count, so any pool size draws the same chunks.
pub fn flat_chunk(len: usize) -> usize {
    const CHUNK: usize = 1 << 16;
    if len < PAR_MIN_LEN {
        len.max(1)
    } else {
        CHUNK
    }
}

/// How many channels of `per_channel` values one rayon task should take, so that a task holds
/// at least a few thousand values (a fixed function of the shape, not of the thread count).
pub fn channels_per_task(per_channel: usize) -> usize {
    (4096 / per_channel.max(1)).max(1)
}
