//! ReLU, dropout and gradient accumulation: flat loops over any tensor.
//!
//! Large tensors are cut into fixed-size chunks (a function of the length only, never of the
//! thread count) run as rayon tasks; every element's result depends on that element alone, so
//! any split gives the same bits. Loop bodies are compiled per SIMD tier by
//! `simd::on_tier`.

use rayon::prelude::*;

use crate::dispatch::active_isa;
pub use crate::reference::dropout_keep;
use crate::simd::{flat_chunk, on_tier};

/// Runs `body(offset, out_chunk, in_chunk)` over matching chunks of `out` and `inp`, where
/// `offset` is the chunk's first index in the whole tensor.
fn for_chunks2(out: &mut [f32], inp: &[f32], body: impl Fn(usize, &mut [f32], &[f32]) + Sync) {
    assert_eq!(out.len(), inp.len(), "tensors of unequal lengths");
    let chunk = flat_chunk(out.len());
    if out.len() <= chunk {
        body(0, out, inp);
    } else {
        out.par_chunks_mut(chunk)
            .zip(inp.par_chunks(chunk))
            .enumerate()
            .for_each(|(i, (o, x))| body(i * chunk, o, x));
    }
}

/// As [`for_chunks2`] with a second input.
fn for_chunks3(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    body: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) {
    assert_eq!(out.len(), a.len(), "tensors of unequal lengths");
    assert_eq!(out.len(), b.len(), "tensors of unequal lengths");
    let chunk = flat_chunk(out.len());
    if out.len() <= chunk {
        body(out, a, b);
    } else {
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (a, b))| body(o, a, b));
    }
}

/// ReLU forward: `out = max(0, x)` (NaN gives 0, as the reference).
///
/// # Shapes
/// - `out`, `inp`: any, equal lengths; `out` written.
pub fn relu_forward(out: &mut [f32], inp: &[f32]) {
    let isa = active_isa();
    for_chunks2(out, inp, |_, o, x| {
        on_tier(
            isa,
            #[inline(always)]
            || relu_body(o, x),
        )
    });
}

#[inline(always)]
fn relu_body(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = if x > 0.0 { x } else { 0.0 };
    }
}

/// ReLU in place: `x = max(0, x)`.
///
/// # Shapes
/// - `x`: any; updated.
pub fn relu_inplace(x: &mut [f32]) {
    let isa = active_isa();
    let chunk = flat_chunk(x.len());
    let body = |c: &mut [f32]| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for v in c.iter_mut() {
                    *v = if *v > 0.0 { *v } else { 0.0 };
                }
            },
        )
    };
    if x.len() <= chunk {
        body(x);
    } else {
        x.par_chunks_mut(chunk).for_each(body);
    }
}

/// ReLU backward (accumulates): `d_in += dy · [x > 0]`.
///
/// # Shapes
/// - `d_inp` accumulated; `d_out`, `inp` read; all of one length.
pub fn relu_backward(d_inp: &mut [f32], d_out: &[f32], inp: &[f32]) {
    let isa = active_isa();
    for_chunks3(d_inp, d_out, inp, |d, dy, x| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for ((d, &dy), &x) in d.iter_mut().zip(dy).zip(x) {
                    *d += if x > 0.0 { dy } else { 0.0 };
                }
            },
        )
    });
}

/// Gradient accumulation: `acc += x`.
///
/// # Shapes
/// - `acc` accumulated; `x` read; equal lengths.
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    let isa = active_isa();
    for_chunks2(acc, x, |_, a, x| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for (a, &x) in a.iter_mut().zip(x) {
                    *a += x;
                }
            },
        )
    });
}

/// `1/(1 − p)`, the inverted-dropout scale, `0` for `p = 1` (everything dropped).
fn dropout_scale(p: f32) -> f32 {
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout probability {p} outside [0, 1]"
    );
    if p < 1.0 {
        1.0 / (1.0 - p)
    } else {
        0.0
    }
}

/// The 24-bit draw behind [`dropout_keep`] for element `index`: SplitMix64 of `seed` and
/// `index`, top 24 bits. The same arithmetic as the reference, kept integer-only so that it
/// vectorises (the reference's `u64 → f32` conversion does not without AVX-512DQ).
#[inline(always)]
fn dropout_draw(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z >> 40
}

/// The smallest 24-bit draw that [`dropout_keep`] keeps: it keeps `u = draw/2²⁴` when `u >= p`,
/// and both `draw/2²⁴` and `p·2²⁴` are exact in `f32`, so `u >= p` exactly when
/// `draw >= ⌈p·2²⁴⌉`.
fn dropout_threshold(p: f32) -> u64 {
    (f64::from(p) * f64::from(1u32 << 24)).ceil() as u64
}

/// Dropout forward in training mode: `out_i = x_i / (1 − p)` where [`dropout_keep`] keeps
/// element `i`, else 0 (inverted dropout, as PyTorch). `p = 0` copies; `p = 1` zeroes.
///
/// The mask is a pure function of `(seed, i)` with `i` the index in the whole tensor, so it is
/// the same for any thread split and [`dropout_backward`] regenerates it without storage.
///
/// # Shapes
/// - `out`, `inp`: any, equal lengths.
pub fn dropout_forward(out: &mut [f32], inp: &[f32], p: f32, seed: u64) {
    let (scale, threshold) = (dropout_scale(p), dropout_threshold(p));
    let isa = active_isa();
    for_chunks2(out, inp, |offset, o, x| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for (i, (o, &x)) in o.iter_mut().zip(x).enumerate() {
                    let keep = dropout_draw(seed, (offset + i) as u64) >= threshold;
                    *o = if keep { x * scale } else { 0.0 };
                }
            },
        )
    });
}

/// Dropout backward (accumulates): `d_in_i += dy_i / (1 − p)` where element `i` was kept, the
/// mask regenerated from `(seed, i)` exactly as [`dropout_forward`] drew it.
///
/// # Shapes
/// - `d_inp` accumulated, `d_out` read; equal lengths.
pub fn dropout_backward(d_inp: &mut [f32], d_out: &[f32], p: f32, seed: u64) {
    let (scale, threshold) = (dropout_scale(p), dropout_threshold(p));
    let isa = active_isa();
    for_chunks2(d_inp, d_out, |offset, d, dy| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for (i, (d, &dy)) in d.iter_mut().zip(dy).enumerate() {
                    let keep = dropout_draw(seed, (offset + i) as u64) >= threshold;
                    *d += if keep { dy * scale } else { 0.0 };
                }
            },
        )
    });
}

/// `max(0, y)` as a compare and select, `0` for a NaN as `f32::max(y, 0.0)` gives. LLVM
/// vectorises loops over this form; over `y.max(0.0)` (IEEE `maxNum`) it left the convolutions'
/// packing loops scalar.
#[inline(always)]
pub fn relu_value(y: f32) -> f32 {
    if y > 0.0 {
        y
    } else {
        0.0
    }
}

/// One channel's run through a per-channel map: `dst[i] = max(0, scale·src[i] + shift)`, or
/// without the max when `relu` is false. Multiply, then add: without FMA in the baseline target
/// a fused multiply-add is a library call per value, and every caller (the convolutions'
/// packing, the inference plan) must give the same bits.
///
/// Works in groups of 16 values copied into a local array, so LLVM sees no possible overlap of
/// `dst` and `src` and emits vector code: the plain element loop stayed scalar inside the packing
/// loops (a 1×1 forward spent 30% of its time packing; 8–15% faster since). The group is mapped
/// by a loop over the array, not by `[f32; 16]::map`: that is a call into the standard library,
/// which the compiler did not inline into the SIMD tiers' code, so every group ran in baseline
/// SSE through a call (2% of a DenseNet-BC-100 training step).
///
/// # Shapes
/// `dst`, `src`: the same length.
#[inline(always)]
pub fn affine_run(dst: &mut [f32], src: &[f32], scale: f32, shift: f32, relu: bool) {
    assert_eq!(dst.len(), src.len(), "affine_run: lengths differ");
    let map = |x: f32| {
        let y = scale * x + shift;
        if relu {
            relu_value(y)
        } else {
            y
        }
    };
    let mut d_groups = dst.chunks_exact_mut(16);
    let mut s_groups = src.chunks_exact(16);
    for (d, s) in (&mut d_groups).zip(&mut s_groups) {
        let s: [f32; 16] = s.try_into().expect("16 values");
        let mut mapped = [0.0f32; 16];
        for (m, &x) in mapped.iter_mut().zip(&s) {
            *m = map(x);
        }
        d.copy_from_slice(&mapped);
    }
    for (d, &x) in d_groups
        .into_remainder()
        .iter_mut()
        .zip(s_groups.remainder())
    {
        *d = map(x);
    }
}
