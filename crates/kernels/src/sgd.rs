//! The SGD update, elementwise over a parameter tensor.
//!
//! The arithmetic is the reference's, operation for operation (no fused multiply-add), so every
//! tier and every thread split produce the reference's bits. Large tensors are cut into fixed
//! chunks run as rayon tasks.

use rayon::prelude::*;

use crate::dispatch::active_isa;
use crate::simd::{flat_chunk, on_tier};

pub use crate::reference::SgdConfig;

/// One SGD step over a parameter tensor, exactly as PyTorch's `torch.optim.SGD` defines it:
///
/// ```text
/// g ← grad + weight_decay·θ
/// b ← g                                   on the first step
/// b ← momentum·b + (1 − dampening)·g      afterwards
/// g ← g + momentum·b   (Nesterov)   or   g ← b
/// θ ← θ − lr·g
/// ```
/// With `momentum = 0` the buffer is not touched.
///
/// # Shapes
/// - `param`, `momentum_buf`: updated; `grad`: read; all of one length.
pub fn sgd_step(
    param: &mut [f32],
    momentum_buf: &mut [f32],
    grad: &[f32],
    cfg: &SgdConfig,
    first_step: bool,
) {
    assert_eq!(param.len(), grad.len());
    assert_eq!(param.len(), momentum_buf.len());
    let isa = active_isa();
    let cfg = *cfg;
    let chunk = flat_chunk(param.len());
    let one = |(p, (b, g)): (&mut [f32], (&mut [f32], &[f32]))| {
        on_tier(
            isa,
            #[inline(always)]
            || sgd_body(p, b, g, &cfg, first_step),
        );
    };
    if param.len() <= chunk {
        one((param, (momentum_buf, grad)));
    } else {
        param
            .par_chunks_mut(chunk)
            .zip(
                momentum_buf
                    .par_chunks_mut(chunk)
                    .zip(grad.par_chunks(chunk)),
            )
            .for_each(one);
    }
}

#[inline(always)]
fn sgd_body(param: &mut [f32], buf: &mut [f32], grad: &[f32], cfg: &SgdConfig, first: bool) {
    let (lr, wd, mom, damp) = (cfg.lr, cfg.weight_decay, cfg.momentum, 1.0 - cfg.dampening);
    if mom == 0.0 {
        for (p, &g) in param.iter_mut().zip(grad) {
            let d = g + wd * *p;
            *p -= lr * d;
        }
        return;
    }
    for ((p, b), &g) in param.iter_mut().zip(buf.iter_mut()).zip(grad) {
        let d = g + wd * *p;
        *b = if first { d } else { mom * *b + damp * d };
        let step = if cfg.nesterov { d + mom * *b } else { *b };
        *p -= lr * step;
    }
}
