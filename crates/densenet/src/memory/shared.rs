//! One dense block run standalone with the network's own layer code ([`crate::block`]) over a
//! preallocated [`FeatureBuffer`](densenet_kernels::FeatureBuffer) and its gradient buffer.
//!
//! Nothing here re-implements a layer: [`SharedBlock`] owns the [`TrainWorkspace`] of a
//! one-block network (so its block state and scratch are sized by the network's own planner),
//! and calls the same
//! `layer_forward` / `layer_backward`, with `memory_efficient` choosing between storing
//! `relu(norm(·))` per layer ([`Strategy::Shared`](super::Strategy::Shared)) and recomputing it
//! in backward ([`Strategy::Efficient`](super::Strategy::Efficient)).
//!
//! In the network a transition writes the block input straight into the buffer's first `k0`
//! channels and the next stage accumulates straight into the gradient buffer. Standalone, the
//! runner copies the caller's input and output gradient in instead; those two copies
//! (`k0·M` and `(k0 + L·k)·M` floats) are what its [`CopyCounts`] report.

use densenet_kernels::BatchNormConfig;

use super::{BlockParams, BlockShape, CopyCounts};
use crate::block::{
    channel_statistics, complete_gradient, layer_backward, layer_forward, Mode, PassCtx,
};
use crate::error::Result;
use crate::plan::{MemoryPlan, TrainWorkspace};

/// A dense block over a preallocated feature buffer.
#[derive(Debug)]
pub struct SharedBlock {
    shape: BlockShape,
    memory_efficient: bool,
    ws: TrainWorkspace,
    copies: CopyCounts,
    forwarded: bool,
}

impl SharedBlock {
    /// Allocates everything the block's training pass needs, through [`TrainWorkspace`]:
    /// feature and gradient buffers `[k0 + L·k, M]`, per-channel statistics, bottleneck
    /// outputs `[L, B, M]`, scratch, and, unless `memory_efficient`, each layer's stored
    /// `relu(norm1(prefix))` and `relu(norm2(·))`.
    pub fn new(shape: BlockShape, memory_efficient: bool) -> Result<Self> {
        shape.validate()?;
        let plan = MemoryPlan::from_memory_efficient(memory_efficient);
        // A one-block network's workspace: the block's buffers and the shared scratch exactly
        // as the network allocates them (plus a few N·C-sized head vectors the block never uses).
        let ws = TrainWorkspace::with_plan(&shape.config(), shape.batch, shape.h, shape.w, plan)?;
        Ok(SharedBlock {
            shape,
            memory_efficient,
            ws,
            copies: CopyCounts::default(),
            forwarded: false,
        })
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
            // The study compares this block's outputs with the other layouts' bit for bit:
            // every one runs the direct convolutions.
            winograd: false,
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
        self.ws.blocks[0]
            .feats
            .prefix_mut(s.k0)
            .copy_from_slice(input);
        self.copies.forward_bytes += std::mem::size_of_val(input) as u64;
        let bn = params.bn;
        let blk = &mut self.ws.blocks[0];
        channel_statistics(
            &mut blk.mean[..s.k0],
            &mut blk.invstd[..s.k0],
            blk.feats.prefix(s.k0),
            m,
            &bn,
        );
        let ctx = self.ctx(&bn);
        let (p, _, buffers) = params.store.split_mut();
        for (l, lp) in params.layers.iter().enumerate() {
            layer_forward(
                lp,
                l,
                &mut self.ws.blocks[0],
                p,
                buffers,
                &mut self.ws.scratch,
                &ctx,
                0,
            );
        }
        self.forwarded = true;
        self.ws.blocks[0].feats.as_slice()
    }

    /// Backward of the last forward; zeroes and fills `params`' gradients, returns the input
    /// gradient (the gradient buffer's first `k0` channels).
    ///
    /// # Panics
    /// If no forward pass preceded it or `d_out` is not `[k0 + L·k, N, H, W]`.
    pub fn backward(&mut self, params: &mut BlockParams, d_out: &[f32]) -> &[f32] {
        assert!(self.forwarded, "shared block: backward before forward");
        self.forwarded = false;
        self.ws.blocks[0]
            .grads
            .as_mut_slice()
            .copy_from_slice(d_out);
        self.copies.backward_bytes += std::mem::size_of_val(d_out) as u64;
        params.store.zero_grads();
        self.ws.blocks[0].clear_deferred();
        let bn = params.bn;
        let ctx = self.ctx(&bn);
        let (p, grads, buffers) = params.store.split_mut();
        for (l, lp) in params.layers.iter().enumerate().rev() {
            layer_backward(
                lp,
                l,
                &mut self.ws.blocks[0],
                p,
                grads,
                buffers,
                &mut self.ws.scratch,
                &ctx,
                0,
            );
        }
        // The layers leave their batch norms' mean terms of the input channels deferred.
        complete_gradient(&mut self.ws.blocks[0], 0, self.shape.k0);
        self.ws.blocks[0].grads.prefix(self.shape.k0)
    }
}
