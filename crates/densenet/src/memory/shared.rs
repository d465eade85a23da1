//! One dense block run standalone with the network's own layer code ([`crate::block`]) over a
//! preallocated [`FeatureBuffer`] and its gradient buffer.
//!
//! Nothing here re-implements a layer: [`SharedBlock`] owns the same `BlockState` and scratch
//! that [`TrainWorkspace`](crate::TrainWorkspace) holds for each block, and calls the same
//! `layer_forward` / `layer_backward`, with `memory_efficient` choosing between storing
//! `relu(norm(·))` per layer ([`Strategy::Shared`](super::Strategy::Shared)) and recomputing it
//! in backward ([`Strategy::Efficient`](super::Strategy::Efficient)).
//!
//! In the network a transition writes the block input straight into the buffer's first `k0`
//! channels and the next stage accumulates straight into the gradient buffer. Standalone, the
//! runner copies the caller's input and output gradient in instead; those two copies
//! (`k0·M` and `(k0 + L·k)·M` floats) are what its [`CopyCounts`] report.

use densenet_kernels::{BatchNormConfig, FeatureBuffer, Workspace};

use super::{BlockParams, BlockShape, CopyCounts};
use crate::block::{channel_statistics, layer_backward, layer_forward, Mode, PassCtx};
use crate::plan::{BlockState, Scratch};

/// A dense block over a preallocated feature buffer.
#[derive(Debug)]
pub struct SharedBlock {
    shape: BlockShape,
    memory_efficient: bool,
    blk: BlockState,
    scratch: Scratch,
    copies: CopyCounts,
    forwarded: bool,
}

impl SharedBlock {
    /// Allocates everything the block's training pass needs, sized as
    /// [`TrainWorkspace`](crate::TrainWorkspace) sizes one block: feature and gradient buffers
    /// `[k0 + L·k, M]`, per-channel statistics, bottleneck outputs `[L, B, M]`, and, unless
    /// `memory_efficient`, each layer's stored `relu(norm1(prefix))` and `relu(norm2(·))`.
    pub fn new(shape: BlockShape, memory_efficient: bool) -> Self {
        let m = shape.per_channel();
        let (k0, k, layers) = (shape.k0, shape.growth, shape.layers);
        let cout = shape.out_channels();
        let bneck = shape.bn_size.map_or(0, |b| b * k);
        let (stored_a1, stored_h2) = if memory_efficient {
            (Vec::new(), Vec::new())
        } else {
            (
                (0..layers).map(|l| vec![0.0; (k0 + l * k) * m]).collect(),
                (0..if bneck > 0 { layers } else { 0 })
                    .map(|_| vec![0.0; bneck * m])
                    .collect(),
            )
        };
        let blk = BlockState {
            feats: FeatureBuffer::new(cout, m),
            grads: FeatureBuffer::new(cout, m),
            mean: vec![0.0; cout],
            invstd: vec![0.0; cout],
            bottleneck: vec![0.0; layers * bneck * m],
            shared_bottleneck: false,
            mean2: vec![0.0; layers * bneck],
            invstd2: vec![0.0; layers * bneck],
            stored_a1,
            stored_h2,
            k0,
            layers,
            h: shape.h,
            w: shape.w,
        };
        let wide = bneck.max(k);
        let scratch = Scratch {
            a: vec![0.0; cout * m],
            b: vec![0.0; wide * m],
            c: vec![0.0; wide * m],
            // Dropout is off in these blocks, so its scratch is never touched.
            drop: Vec::new(),
            scale: vec![0.0; cout.max(bneck)],
            shift: vec![0.0; cout.max(bneck)],
            scale2: vec![0.0; bneck],
            shift2: vec![0.0; bneck],
            kernels: Workspace::new(),
        };
        SharedBlock {
            shape,
            memory_efficient,
            blk,
            scratch,
            copies: CopyCounts::default(),
            forwarded: false,
        }
    }

    /// Bytes copied since creation.
    pub fn copies(&self) -> CopyCounts {
        self.copies
    }

    /// Whether `relu(norm(·))` is recomputed in backward.
    pub fn memory_efficient(&self) -> bool {
        self.memory_efficient
    }

    fn ctx<'a>(&self, bn: &'a BatchNormConfig) -> PassCtx<'a> {
        PassCtx {
            mode: Mode::Train,
            memory_efficient: self.memory_efficient,
            drop_rate: 0.0,
            growth: self.shape.growth,
            bn,
            recompute_bottleneck: false,
        }
    }

    /// Training-mode forward; returns the block output: the whole buffer `[k0 + L·k, M]`.
    ///
    /// # Panics
    /// If `input` is not `[k0, N, H, W]` or `params` belongs to another shape.
    pub fn forward(&mut self, params: &mut BlockParams, input: &[f32]) -> &[f32] {
        let s = self.shape;
        assert_eq!(params.shape, s, "shared block: parameters of another shape");
        let m = s.per_channel();
        assert_eq!(input.len(), s.k0 * m, "shared block: input length");
        self.blk.feats.prefix_mut(s.k0).copy_from_slice(input);
        self.copies.forward_bytes += std::mem::size_of_val(input) as u64;
        let bn = params.bn;
        channel_statistics(
            &mut self.blk.mean[..s.k0],
            &mut self.blk.invstd[..s.k0],
            self.blk.feats.prefix(s.k0),
            m,
            &bn,
        );
        let ctx = self.ctx(&bn);
        let (p, _, buffers) = params.store.split_mut();
        for (l, lp) in params.layers.iter().enumerate() {
            layer_forward(lp, l, &mut self.blk, p, buffers, &mut self.scratch, &ctx, 0);
        }
        self.forwarded = true;
        self.blk.feats.as_slice()
    }

    /// Backward of the last forward; zeroes and fills `params`' gradients, returns the input
    /// gradient (the gradient buffer's first `k0` channels).
    ///
    /// # Panics
    /// If no forward pass preceded it or `d_out` is not `[k0 + L·k, N, H, W]`.
    pub fn backward(&mut self, params: &mut BlockParams, d_out: &[f32]) -> &[f32] {
        assert!(self.forwarded, "shared block: backward before forward");
        self.forwarded = false;
        self.blk.grads.as_mut_slice().copy_from_slice(d_out);
        self.copies.backward_bytes += std::mem::size_of_val(d_out) as u64;
        params.store.zero_grads();
        let bn = params.bn;
        let ctx = self.ctx(&bn);
        let (p, grads, buffers) = params.store.split_mut();
        for (l, lp) in params.layers.iter().enumerate().rev() {
            layer_backward(
                lp,
                l,
                &mut self.blk,
                p,
                grads,
                buffers,
                &mut self.scratch,
                &ctx,
                0,
            );
        }
        self.blk.grads.prefix(self.shape.k0)
    }
}
