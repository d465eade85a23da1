//! Dense layers and transitions, forward and backward, over a block's
//! [`FeatureBuffer`](densenet_kernels::FeatureBuffer).
//!
//! A dense layer `l` of a block reads the prefix `[0, c)` of the block's buffer, `c = k0 + l·k`,
//! and writes its `k` channels to the slot `[c, c + k)`:
//!
//! ```text
//! bottleneck (BC):  z = conv1_1x1(relu(norm1(prefix)))      kept, [B, M]
//!                   slot = drop(conv2_3x3(relu(norm2(z))))
//! plain:            slot = drop(conv1_3x3(relu(norm1(prefix))))
//! ```
//!
//! `relu(norm(·))` is never materialised in memory-efficient mode: it is the `pre` map
//! ([`ChannelAffine`]) the convolution applies to its input while reading it, forward and in the
//! weight gradient. `norm1`'s batch statistics are those of the prefix channels, computed once
//! when each channel was written (`channel_statistics`); the layer only derives its scale and
//! shift from them (`scale = γ·invstd`, `shift = β − μ·scale`). Backward recomputes the same map
//! from the same saved statistics and never touches the running statistics (gpleiss #73).

use densenet_kernels::batchnorm::{
    batchnorm_add_deferred, batchnorm_deferred_terms, batchnorm_relu_avgpool2_backward,
    batchnorm_relu_backward, batchnorm_relu_backward_to, batchnorm_statistics,
    batchnorm_update_running, BnReluSaved,
};
use densenet_kernels::conv2d::{
    conv2d_backward_input_to, conv2d_backward_input_winograd, conv2d_backward_weight,
    conv2d_forward, conv2d_forward_winograd, pointwise_bn_relu_backward, winograd_variant,
    winograd_variant_backward_input,
};
use densenet_kernels::elementwise::{affine_run, dropout_backward, dropout_forward};
use densenet_kernels::gemm;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, ChannelAffine, Conv2dGeom, Workspace};

use crate::infer::ops::affine_relu_avgpool2;
use crate::params::{BnP, ConvP, LayerP, Slot, TransitionP};
use crate::plan::{BlockState, Scratch};

/// Whether batch norms use batch statistics (training) or running statistics (evaluation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated; dropout is active.
    Train,
    /// Running statistics; dropout is the identity.
    Eval,
}

/// Two disjoint mutable tensors of one vector; `a` must lie before `b`.
pub(crate) fn two_mut(v: &mut [f32], a: Slot, b: Slot) -> (&mut [f32], &mut [f32]) {
    debug_assert!(a.off + a.len <= b.off);
    let (lo, hi) = v.split_at_mut(b.off);
    (&mut lo[a.off..a.off + a.len], &mut hi[..b.len])
}

/// Three disjoint mutable tensors of one vector, in increasing order of offset.
pub(crate) fn three_mut(v: &mut [f32], [a, b, c]: [Slot; 3]) -> [&mut [f32]; 3] {
    assert!(
        a.off + a.len <= b.off && b.off + b.len <= c.off,
        "three_mut: slots out of order"
    );
    let (ab, rest) = v.split_at_mut(c.off);
    let (x, y) = two_mut(ab, a, b);
    [x, y, &mut rest[..c.len]]
}

/// Batch statistics of freshly written channels, saved for every batch norm that will read them.
pub(crate) fn channel_statistics(
    mean: &mut [f32],
    invstd: &mut [f32],
    channels: &[f32],
    m: usize,
    bn: &BatchNormConfig,
) {
    let g = BatchNormGeom {
        channels: mean.len(),
        per_channel: m,
    };
    batchnorm_statistics(mean, invstd, channels, bn.eps, &g);
}

/// Fills `scale`/`shift` (`[C]`) with batch norm `p` as a per-channel affine map: from the batch
/// statistics `mean`/`invstd` in training (updating the running statistics once, here), from the
/// running statistics in evaluation. `update_running` is false when recomputing in backward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_affine(
    scale: &mut [f32],
    shift: &mut [f32],
    p: &BnP,
    params: &[f32],
    buffers: &mut [f32],
    mean: &[f32],
    invstd: &[f32],
    m: usize,
    mode: Mode,
    update_running: bool,
    bn: &BatchNormConfig,
) {
    let (gamma, beta) = (p.gamma.of(params), p.beta.of(params));
    match mode {
        Mode::Train => {
            if update_running {
                let (rm, rv) = two_mut(buffers, p.running_mean, p.running_var);
                let g = BatchNormGeom {
                    channels: p.channels,
                    per_channel: m,
                };
                batchnorm_update_running(rm, rv, mean, invstd, bn, &g);
            }
            affine_from_stats(scale, shift, gamma, beta, mean, invstd);
        }
        Mode::Eval => {
            let (rm, rv) = (p.running_mean.of(buffers), p.running_var.of(buffers));
            for c in 0..p.channels {
                let is = (1.0 / (f64::from(rv[c]) + f64::from(bn.eps)).sqrt()) as f32;
                scale[c] = gamma[c] * is;
                shift[c] = beta[c] - rm[c] * scale[c];
            }
        }
    }
}

/// Batch norm as a per-channel affine map from batch statistics, in `f32`:
/// `scale = γ·invstd`, `shift = β − μ·scale` (the forward's map; backward rebuilds it bit for bit).
fn affine_from_stats(
    scale: &mut [f32],
    shift: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
) {
    for c in 0..scale.len() {
        scale[c] = gamma[c] * invstd[c];
        shift[c] = beta[c] - mean[c] * scale[c];
    }
}

/// `out[c, ·] = max(0, scale[c]·inp[c, ·] + shift[c])`, exactly as a conv's `pre` map computes it.
pub(crate) fn apply_affine(out: &mut [f32], inp: &[f32], pre: &ChannelAffine<'_>, m: usize) {
    for (c, (o, x)) in out.chunks_mut(m).zip(inp.chunks(m)).enumerate() {
        affine_run(o, x, pre.scale[c], pre.shift[c], pre.relu);
    }
}

pub(crate) fn conv_geom(p: &ConvP, batch: usize, h: usize, w: usize) -> Conv2dGeom {
    Conv2dGeom::square(batch, p.ic, p.oc, h, w, p.kernel, p.stride, p.pad)
}

/// The dropout seed of layer `l` (0-based) of block `b` (0-based) at training step `step`
/// (1 for the first training forward pass of a workspace), from the model seed. Public so that
/// an independent implementation (the twin test) can draw the same masks.
pub fn dropout_seed(seed: u64, step: u64, b: usize, l: usize) -> u64 {
    let mut rng = crate::init::Rng::new(
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((b as u64) << 40 | l as u64),
    );
    rng.next_u64()
}

/// Settings every layer of a pass shares.
pub(crate) struct PassCtx<'a> {
    pub mode: Mode,
    pub memory_efficient: bool,
    pub drop_rate: f32,
    pub growth: usize,
    pub bn: &'a BatchNormConfig,
    /// Whether the 3×3 convolutions' forward and input gradient run by Winograd where that is
    /// the faster ([`conv_forward`], [`conv_backward_input`]).
    pub winograd: bool,
}

/// A dense layer's convolution forward, without bias: by Winograd
/// ([`conv2d_forward_winograd`]) where `ctx` allows it and [`winograd_variant`] finds it the
/// faster (the 3×3s on maps of 14 and more, on AVX-512 and AVX2), else direct.
fn conv_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    kernels: &mut Workspace,
    ctx: &PassCtx<'_>,
) {
    match ctx.winograd.then(|| winograd_variant(g)).flatten() {
        Some(variant) => conv2d_forward_winograd(out, inp, weight, pre, g, variant, kernels),
        None => conv2d_forward(out, inp, weight, None, pre, g, kernels),
    }
}

/// A dense layer's convolution's input gradient, written: by Winograd
/// ([`conv2d_backward_input_winograd`]) where `ctx` allows it and
/// [`winograd_variant_backward_input`] finds it the faster (densenet121's 3×3s on maps of 28 and
/// more), else direct.
fn conv_backward_input(
    d_in: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    g: &Conv2dGeom,
    kernels: &mut Workspace,
    ctx: &PassCtx<'_>,
) {
    match ctx
        .winograd
        .then(|| winograd_variant_backward_input(g))
        .flatten()
    {
        Some(variant) => conv2d_backward_input_winograd(d_in, d_out, weight, g, variant, kernels),
        None => conv2d_backward_input_to(d_in, d_out, weight, g, kernels, false),
    }
}

/// Dense layer `l` forward: writes the layer's slot (and, in training, the slot's channel
/// statistics and its own saved tensors).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_forward(
    p: &LayerP,
    l: usize,
    blk: &mut BlockState,
    params: &[f32],
    buffers: &mut [f32],
    s: &mut Scratch,
    ctx: &PassCtx<'_>,
    drop_seed: u64,
) {
    let (k, m, h, w) = (ctx.growth, blk.m(), blk.h, blk.w);
    let batch = m / (h * w);
    let c = blk.k0 + l * k;
    let zr = blk.z_range(l, p.bottleneck.map_or(0, |(n2, _)| n2.channels));
    let train = ctx.mode == Mode::Train;
    let dropping = train && ctx.drop_rate > 0.0;
    let Scratch {
        scale,
        shift,
        kernels,
        drop,
        ..
    } = s;
    bn_affine(
        &mut scale[..c],
        &mut shift[..c],
        &p.norm1,
        params,
        buffers,
        &blk.mean[..c],
        &blk.invstd[..c],
        m,
        ctx.mode,
        true,
        ctx.bn,
    );
    let (prefix, slot) = blk.feats.prefix_and_slot(c, k);
    let pre1 = ChannelAffine {
        scale: &scale[..c],
        shift: &shift[..c],
        relu: true,
    };
    let out: &mut [f32] = if dropping {
        &mut drop[..k * m]
    } else {
        &mut *slot
    };
    let g1 = conv_geom(&p.conv1, batch, h, w);
    let w1 = p.conv1.weight.of(params);
    // The first conv's input: fused (memory-efficient) or materialised and kept.
    let (inp1, pre1) = if ctx.memory_efficient {
        (prefix, Some(pre1))
    } else {
        apply_affine(&mut blk.stored_a1[l], prefix, &pre1, m);
        (&blk.stored_a1[l][..], None)
    };
    match &p.bottleneck {
        None => conv_forward(out, inp1, w1, pre1, &g1, kernels, ctx),
        Some((norm2, conv2)) => {
            let bk = norm2.channels;
            let z = &mut blk.bottleneck[zr];
            conv_forward(z, inp1, w1, pre1, &g1, kernels, ctx);
            let (mean2, invstd2) = (
                &mut blk.mean2[l * bk..(l + 1) * bk],
                &mut blk.invstd2[l * bk..(l + 1) * bk],
            );
            if train {
                channel_statistics(mean2, invstd2, z, m, ctx.bn);
            }
            bn_affine(
                &mut scale[..bk],
                &mut shift[..bk],
                norm2,
                params,
                buffers,
                mean2,
                invstd2,
                m,
                ctx.mode,
                true,
                ctx.bn,
            );
            let pre2 = ChannelAffine {
                scale: &scale[..bk],
                shift: &shift[..bk],
                relu: true,
            };
            let g2 = conv_geom(conv2, batch, h, w);
            let w2 = conv2.weight.of(params);
            if ctx.memory_efficient {
                conv_forward(out, z, w2, Some(pre2), &g2, kernels, ctx);
            } else {
                apply_affine(&mut blk.stored_h2[l], z, &pre2, m);
                conv_forward(out, &blk.stored_h2[l], w2, None, &g2, kernels, ctx);
            }
        }
    }
    if dropping {
        dropout_forward(slot, &drop[..k * m], ctx.drop_rate, drop_seed);
    }
    if train {
        channel_statistics(
            &mut blk.mean[c..c + k],
            &mut blk.invstd[c..c + k],
            blk.feats.slot(c, k),
            m,
            ctx.bn,
        );
    }
}

/// Adds the deferred batch-norm terms (see [`BlockState::bn_slope`]) of channels
/// `[c0, c0 + n)` of a block to their gradient, which must be complete: every reader of those
/// channels has run its backward.
pub(crate) fn complete_gradient(blk: &mut BlockState, c0: usize, n: usize) {
    let m = blk.m();
    let range = c0..c0 + n;
    batchnorm_add_deferred(
        &mut blk.grads.as_mut_slice()[c0 * m..(c0 + n) * m],
        &blk.feats.as_slice()[c0 * m..(c0 + n) * m],
        &blk.mean[range.clone()],
        &mut blk.bn_slope[range.clone()],
        &mut blk.bn_offset[range],
        &BatchNormGeom {
            channels: n,
            per_channel: m,
        },
    );
}

/// Batch norm `p` with the statistics it normalised with, for its backward pass.
fn saved_bn<'a>(p: &BnP, params: &'a [f32], mean: &'a [f32], invstd: &'a [f32]) -> BnReluSaved<'a> {
    BnReluSaved {
        gamma: p.gamma.of(params),
        beta: p.beta.of(params),
        mean,
        invstd,
    }
}

/// Dense layer `l` backward: reads the gradient of its slot, accumulates its parameter
/// gradients and the gradient of its prefix. Layers must run in reverse order, so that a slot's
/// gradient is complete (every later reader has added to it) when its writer runs.
///
/// A bottleneck layer leaves `norm1`'s mean terms of its prefix's gradient deferred in
/// `blk.bn_slope`/`bn_offset` (one pass over the prefix instead of four); the layer that wrote
/// a channel adds them first thing, and the block's input channels get theirs from
/// [`complete_gradient`] after the block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_backward(
    p: &LayerP,
    l: usize,
    blk: &mut BlockState,
    params: &[f32],
    grads: &mut [f32],
    buffers: &mut [f32],
    s: &mut Scratch,
    ctx: &PassCtx<'_>,
    drop_seed: u64,
) {
    let (k, m, h, w) = (ctx.growth, blk.m(), blk.h, blk.w);
    let batch = m / (h * w);
    let c = blk.k0 + l * k;
    let zr = blk.z_range(l, p.bottleneck.map_or(0, |(n2, _)| n2.channels));
    let Scratch {
        a,
        b,
        c: sc,
        drop,
        scale,
        shift,
        scale2,
        shift2,
        sum_dy,
        sum_dy_xmu,
        kernels,
    } = s;
    complete_gradient(blk, c, k);
    let (d_prefix, d_slot) = blk.grads.prefix_mut_and_slot(c, k);
    let d_out: &[f32] = if ctx.drop_rate > 0.0 {
        let d = &mut drop[..k * m];
        d.fill(0.0);
        dropout_backward(d, d_slot, ctx.drop_rate, drop_seed);
        d
    } else {
        d_slot
    };
    let prefix = blk.feats.prefix(c);
    let g1 = conv_geom(&p.conv1, batch, h, w);
    // norm1's map, from the statistics saved in forward; running statistics untouched.
    bn_affine(
        &mut scale[..c],
        &mut shift[..c],
        &p.norm1,
        params,
        buffers,
        &blk.mean[..c],
        &blk.invstd[..c],
        m,
        Mode::Train,
        false,
        ctx.bn,
    );
    let pre1 = ChannelAffine {
        scale: &scale[..c],
        shift: &shift[..c],
        relu: true,
    };
    // Gradient w.r.t. the first conv's output: the slot's own for plain layers, back through
    // conv2 and norm2 for bottleneck layers.
    let d_conv1_out: &[f32] = match &p.bottleneck {
        None => d_out,
        Some((norm2, conv2)) => {
            let bk = norm2.channels;
            if blk.recompute_z[l] {
                let w1 = p.conv1.weight.of(params);
                let z = &mut blk.bottleneck[zr.clone()];
                conv2d_forward(z, prefix, w1, None, Some(pre1), &g1, kernels);
            }
            let z = &blk.bottleneck[zr];
            let (mean2, invstd2) = (
                &blk.mean2[l * bk..(l + 1) * bk],
                &blk.invstd2[l * bk..(l + 1) * bk],
            );
            bn_affine(
                &mut scale2[..bk],
                &mut shift2[..bk],
                norm2,
                params,
                buffers,
                mean2,
                invstd2,
                m,
                Mode::Train,
                false,
                ctx.bn,
            );
            let g2 = conv_geom(conv2, batch, h, w);
            let w2 = conv2.weight.of(params);
            let pre2 = ChannelAffine {
                scale: &scale2[..bk],
                shift: &shift2[..bk],
                relu: true,
            };
            let dw2 = conv2.weight.of_mut(grads);
            if ctx.memory_efficient {
                conv2d_backward_weight(dw2, None, d_out, z, Some(pre2), &g2, kernels);
            } else {
                conv2d_backward_weight(dw2, None, d_out, &blk.stored_h2[l], None, &g2, kernels);
            }
            let d_h = &mut b[..bk * m];
            conv_backward_input(d_h, d_out, w2, &g2, kernels, ctx);
            let d_z = &mut sc[..bk * m];
            let (dg, db) = two_mut(grads, norm2.gamma, norm2.beta);
            batchnorm_relu_backward_to(
                d_z,
                dg,
                db,
                d_h,
                z,
                norm2.gamma.of(params),
                norm2.beta.of(params),
                mean2,
                invstd2,
                &BatchNormGeom {
                    channels: bk,
                    per_channel: m,
                },
                false,
            );
            d_z
        }
    };
    let w1 = p.conv1.weight.of(params);
    let bn1 = saved_bn(&p.norm1, params, &blk.mean[..c], &blk.invstd[..c]);
    if p.bottleneck.is_some() {
        // conv1's weight gradient, its input gradient and norm1 + ReLU's backward in one pass
        // over the prefix, norm1's mean terms deferred.
        let [dg, db, dw1] = three_mut(grads, [p.norm1.gamma, p.norm1.beta, p.conv1.weight]);
        let (s_dy, s_dyx) = (&mut sum_dy[..c], &mut sum_dy_xmu[..c]);
        pointwise_bn_relu_backward(
            d_prefix,
            dw1,
            s_dy,
            s_dyx,
            d_conv1_out,
            w1,
            prefix,
            bn1,
            &g1,
            kernels,
            true,
        );
        batchnorm_deferred_terms(
            dg,
            db,
            &mut blk.bn_slope[..c],
            &mut blk.bn_offset[..c],
            s_dy,
            s_dyx,
            bn1,
            m,
        );
    } else {
        // A plain layer's conv is a 3×3: its input gradient is stored, then norm1 + ReLU's
        // backward runs whole.
        let dw1 = p.conv1.weight.of_mut(grads);
        if ctx.memory_efficient {
            conv2d_backward_weight(dw1, None, d_conv1_out, prefix, Some(pre1), &g1, kernels);
        } else {
            let a1 = &blk.stored_a1[l];
            conv2d_backward_weight(dw1, None, d_conv1_out, a1, None, &g1, kernels);
        }
        let (dg, db) = two_mut(grads, p.norm1.gamma, p.norm1.beta);
        let d_a = &mut gemm::align64(a)[..c * m];
        conv_backward_input(d_a, d_conv1_out, w1, &g1, kernels, ctx);
        batchnorm_relu_backward(
            d_prefix,
            dg,
            db,
            d_a,
            prefix,
            bn1.gamma,
            bn1.beta,
            bn1.mean,
            bn1.invstd,
            &BatchNormGeom {
                channels: c,
                per_channel: m,
            },
        );
    }
}

/// Transition forward: `next[0, C') = conv1x1(avgpool2x2(relu(norm(block))))` (PyTorch pools
/// after the conv; the two commute, and pooling first does a quarter of the multiply-adds),
/// then, in training, the statistics of those channels. `stored` (non-memory-efficient mode)
/// receives `relu(norm(block))`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transition_forward(
    p: &TransitionP,
    blk: &BlockState,
    next: &mut BlockState,
    stored: Option<&mut Vec<f32>>,
    params: &[f32],
    buffers: &mut [f32],
    s: &mut Scratch,
    ctx: &PassCtx<'_>,
) {
    let (m, h, w) = (blk.m(), blk.h, blk.w);
    let batch = m / (h * w);
    let (cin, cout) = (p.conv.ic, p.conv.oc);
    bn_affine(
        &mut s.scale[..cin],
        &mut s.shift[..cin],
        &p.norm,
        params,
        buffers,
        &blk.mean[..cin],
        &blk.invstd[..cin],
        m,
        ctx.mode,
        true,
        ctx.bn,
    );
    let pre = ChannelAffine {
        scale: &s.scale[..cin],
        shift: &s.shift[..cin],
        relu: true,
    };
    // Pool first, then the 1×1 (they commute: 4× fewer multiply-adds), as the inference plan
    // does; `p = avgpool2×2(relu(norm(block)))` lives in scratch `b`.
    let (oh, ow) = (h / 2, w / 2);
    let pooled = &mut s.b[..cin * batch * oh * ow];
    if let Some(a) = stored {
        // The stored map is what `StoreAll` keeps (the memory study's baseline); the pooling
        // maps the block itself, to the same bits.
        apply_affine(a, blk.feats.as_slice(), &pre, m);
    }
    affine_relu_avgpool2(pooled, blk.feats.as_slice(), &pre, batch, h, w);
    let g = conv_geom(&p.conv, batch, oh, ow);
    let wt = p.conv.weight.of(params);
    conv2d_forward(
        next.feats.prefix_mut(cout),
        pooled,
        wt,
        None,
        None,
        &g,
        &mut s.kernels,
    );
    if ctx.mode == Mode::Train {
        let nm = next.m();
        channel_statistics(
            &mut next.mean[..cout],
            &mut next.invstd[..cout],
            next.feats.prefix(cout),
            nm,
            ctx.bn,
        );
    }
}

/// Transition backward: from the gradient of the next block's first `C'` channels, accumulates
/// the transition's parameter gradients and writes the gradient of the whole block buffer
/// (norm's mean terms deferred, see [`complete_gradient`]). The pooled map is rebuilt from the
/// block and the saved statistics in every memory plan; a stored `relu(norm(block))` is not
/// read.
pub(crate) fn transition_backward(
    p: &TransitionP,
    blk: &mut BlockState,
    next: &BlockState,
    params: &[f32],
    grads: &mut [f32],
    s: &mut Scratch,
) {
    let (m, h, w) = (blk.m(), blk.h, blk.w);
    let batch = m / (h * w);
    let (cin, cout) = (p.conv.ic, p.conv.oc);
    let (oh, ow) = (h / 2, w / 2);
    let mq = batch * oh * ow;
    // The gradient of the conv's output is the next block's first channels (pooled size).
    let d_t = next.grads.prefix(cout);
    // `p = avgpool2×2(relu(norm(block)))` again, from the saved statistics.
    let (scale, shift) = (&mut s.scale[..cin], &mut s.shift[..cin]);
    let (gamma, beta) = (p.norm.gamma.of(params), p.norm.beta.of(params));
    affine_from_stats(
        scale,
        shift,
        gamma,
        beta,
        &blk.mean[..cin],
        &blk.invstd[..cin],
    );
    let pre = ChannelAffine {
        scale,
        shift,
        relu: true,
    };
    let pooled = &mut s.b[..cin * mq];
    affine_relu_avgpool2(pooled, blk.feats.as_slice(), &pre, batch, h, w);
    let g = conv_geom(&p.conv, batch, oh, ow);
    let [dg, db, dw] = three_mut(grads, [p.norm.gamma, p.norm.beta, p.conv.weight]);
    conv2d_backward_weight(dw, None, d_t, pooled, None, &g, &mut s.kernels);
    let d_pooled = &mut gemm::align64(&mut s.c)[..cin * mq];
    let w_conv = p.conv.weight.of(params);
    conv2d_backward_input_to(d_pooled, d_t, w_conv, &g, &mut s.kernels, false);
    // The block's gradient buffer is written here first in a backward pass (overwriting the
    // last step's values), norm's mean terms deferred; its dense layers then add into it.
    let bn = saved_bn(&p.norm, params, &blk.mean[..cin], &blk.invstd[..cin]);
    let (s_dy, s_dyx) = (&mut s.sum_dy[..cin], &mut s.sum_dy_xmu[..cin]);
    batchnorm_relu_avgpool2_backward(
        blk.grads.as_mut_slice(),
        s_dy,
        s_dyx,
        d_pooled,
        blk.feats.as_slice(),
        bn,
        [batch, h, w],
        false,
    );
    batchnorm_deferred_terms(
        dg,
        db,
        &mut blk.bn_slope,
        &mut blk.bn_offset,
        s_dy,
        s_dyx,
        bn,
        m,
    );
}
