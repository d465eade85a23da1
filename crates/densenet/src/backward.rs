//! Hand-written backpropagation through the whole network, in exact reverse of the forward
//! pass: loss, classifier, global pool, `norm5`, then each block's layers from last to first
//! with the transition before it, then the stem.
//!
//! Each block's gradient buffer has the layout of its feature buffer. It is never cleared: the
//! batch norm that reads the whole block (the transition after it, or the head's `norm5`)
//! writes the gradient of every channel first, overwriting the last step's values, then layer
//! `L−1` down to `0` each read their slot's gradient and accumulate into their prefix.
//!
//! Batch norms read by a 1×1 conv (each bottleneck layer's `norm1`, the transition's `norm`)
//! leave their mean terms deferred in the block's `bn_slope`/`bn_offset` (they are affine in
//! the input and add up across readers of a channel); a layer adds them to its slot's gradient
//! first thing (`block::complete_gradient`), and the block's input channels get theirs after its
//! last layer, before the transition or stem before it reads them. See `block::layer_backward`.
//!
//! Parameter gradients accumulate into [`ParamStore`](crate::ParamStore)'s gradients; zero them
//! first for a fresh step.

use densenet_kernels::batchnorm::batchnorm_relu_backward_to;
use densenet_kernels::conv2d::conv2d_backward_weight;
use densenet_kernels::linear::{linear_backward_input, linear_backward_weight};
use densenet_kernels::loss::softmax_cross_entropy_backward;
use densenet_kernels::pool::{global_avgpool_backward, maxpool2d_backward};
use densenet_kernels::{BatchNormGeom, ChannelAffine, Pool2dGeom};

use crate::block::{
    apply_affine, bn_affine, complete_gradient, conv_geom, dropout_seed, layer_backward,
    transition_backward, two_mut, Mode, PassCtx,
};
use crate::error::{Error, Result};
use crate::model::DenseNet;
use crate::plan::{lend_gradient_buffer, TrainWorkspace};

impl DenseNet {
    /// Backward pass of the last [`DenseNet::forward_train`]: accumulates the gradient of the
    /// loss w.r.t. every trainable parameter. Running statistics are not touched.
    pub fn backward(&mut self, ws: &mut TrainWorkspace) -> Result<()> {
        crate::on_pool(|| self.backward_on_pool(ws))
    }

    fn backward_on_pool(&mut self, ws: &mut TrainWorkspace) -> Result<()> {
        if !ws.ready_for_backward {
            return Err(Error::Shape(
                "backward needs a training forward pass with labels (forward_train) first".into(),
            ));
        }
        ws.ready_for_backward = false;
        let n = ws.batch;
        let bn = self.bn;
        let ctx = PassCtx {
            mode: Mode::Train,
            memory_efficient: ws.memory_efficient,
            drop_rate: self.config().drop_rate,
            growth: self.config().growth_rate,
            bn: &bn,
            winograd: ws.winograd_3x3,
        };
        let seed = self.seed();
        let arch = &self.arch;
        let (params, grads, buffers) = self.store.split_mut();
        let params: &[f32] = params;
        let s = &mut ws.scratch;

        // Loss and classifier.
        ws.d_logits.fill(0.0);
        softmax_cross_entropy_backward(&mut ws.d_logits, &ws.probs, &ws.labels, 1.0);
        let cls = &arch.classifier;
        let (dw, db) = two_mut(grads, cls.weight, cls.bias);
        linear_backward_weight(dw, Some(db), &ws.d_logits, &ws.pooled, n);
        ws.d_pooled.fill(0.0);
        linear_backward_input(&mut ws.d_pooled, &ws.d_logits, cls.weight.of(params), n);

        // Global pool and norm5 + ReLU into the last block's gradient buffer.
        // Each block's gradient buffer is first written whole by the batch norm after it
        // (norm5, or its transition's), overwriting the previous step's values, so no buffer
        // is cleared; the dense layers then add into it.
        let nb = ws.blocks.len();
        for blk in &mut ws.blocks {
            blk.clear_deferred();
        }
        {
            let last = &mut ws.blocks[nb - 1];
            let cf = arch.norm5.channels;
            let m = last.m();
            let d_a = &mut s.a[..cf * m];
            d_a.fill(0.0);
            global_avgpool_backward(d_a, &ws.d_pooled, cf, n, last.h * last.w);
            let norm5 = &arch.norm5;
            let (dg, db) = two_mut(grads, norm5.gamma, norm5.beta);
            batchnorm_relu_backward_to(
                last.grads.as_mut_slice(),
                dg,
                db,
                d_a,
                last.feats.as_slice(),
                norm5.gamma.of(params),
                norm5.beta.of(params),
                &last.mean[..cf],
                &last.invstd[..cf],
                &BatchNormGeom {
                    channels: cf,
                    per_channel: m,
                },
                false,
            );
        }

        // Blocks in reverse, each preceded (in backward order) by the transition after it.
        for bi in (0..nb).rev() {
            if let Some(tp) = arch.transitions.get(bi) {
                // The block's gradient buffer goes in the next block's bottleneck storage,
                // whose last reader, that block's backward, is done.
                lend_gradient_buffer(&mut ws.blocks, bi);
                let (done, rest) = ws.blocks.split_at_mut(bi + 1);
                transition_backward(tp, &mut done[bi], &rest[0], params, grads, s);
            }
            let blk = &mut ws.blocks[bi];
            for (l, layer) in arch.blocks[bi].iter().enumerate().rev() {
                let dseed = dropout_seed(seed, ws.step, bi, l);
                layer_backward(layer, l, blk, params, grads, buffers, s, &ctx, dseed);
            }
            // Every layer has read the block's input channels: their gradient is complete but
            // for the batch norms' deferred terms, which the transition before (or the stem)
            // needs added.
            let k0 = blk.k0;
            complete_gradient(blk, 0, k0);
        }

        // Stem: only the weight gradients (the input needs none).
        let first = &mut ws.blocks[0];
        let c0 = arch.conv0.oc;
        let g0 = conv_geom(&arch.conv0, n, ws.h, ws.w);
        match &arch.norm0 {
            None => conv2d_backward_weight(
                arch.conv0.weight.of_mut(grads),
                None,
                first.grads.prefix(c0),
                &ws.input,
                None,
                &g0,
                &mut s.kernels,
            ),
            Some(norm0) => {
                let (sh, sw) = ws.stem_hw;
                let m0 = n * sh * sw;
                // The pool's input, relu(norm0(conv0)), is not kept: rebuilt from the saved
                // conv output and statistics (running statistics untouched).
                bn_affine(
                    &mut s.scale[..c0],
                    &mut s.shift[..c0],
                    norm0,
                    params,
                    buffers,
                    &ws.stem_mean,
                    &ws.stem_invstd,
                    m0,
                    Mode::Train,
                    false,
                    &bn,
                );
                // Both maps in the first block's bottleneck storage, whose layers are done.
                let (act, d_act) = first.bottleneck[..2 * c0 * m0].split_at_mut(c0 * m0);
                let pre = ChannelAffine {
                    scale: &s.scale[..c0],
                    shift: &s.shift[..c0],
                    relu: true,
                };
                apply_affine(act, &ws.stem_conv, &pre, m0);
                d_act.fill(0.0);
                maxpool2d_backward(
                    d_act,
                    first.grads.prefix(c0),
                    act,
                    &Pool2dGeom {
                        planes: c0 * n,
                        in_h: sh,
                        in_w: sw,
                        kernel: 3,
                        stride: 2,
                        pad: 1,
                    },
                );
                // The pool's input is read: its gradient takes its place.
                let d_conv = act;
                let (dg, db) = two_mut(grads, norm0.gamma, norm0.beta);
                batchnorm_relu_backward_to(
                    d_conv,
                    dg,
                    db,
                    d_act,
                    &ws.stem_conv,
                    norm0.gamma.of(params),
                    norm0.beta.of(params),
                    &ws.stem_mean,
                    &ws.stem_invstd,
                    &BatchNormGeom {
                        channels: c0,
                        per_channel: m0,
                    },
                    false,
                );
                conv2d_backward_weight(
                    arch.conv0.weight.of_mut(grads),
                    None,
                    d_conv,
                    &ws.input,
                    None,
                    &g0,
                    &mut s.kernels,
                );
            }
        }
        ws.reclaim_gradient_buffers();
        Ok(())
    }
}
