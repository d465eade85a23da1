//! The training workspace: every activation, saved statistic, gradient buffer and scratch the
//! forward and backward passes use, allocated once for a (configuration, batch, height, width).
//!
//! Notation: `N` batch, `M_b = N·H_b·W_b` values per channel in block `b`, `k` growth rate,
//! `k0_b` block input channels, `L_b` layers, `C_b = k0_b + L_b·k` block output channels, `B`
//! the bottleneck width `bn_size·k` (`k` for plain DenseNet).
//!
//! What is kept (memory-efficient mode) — linear in depth:
//! - per block: the feature buffer `[C_b, M_b]` and its gradient buffer (same shape); batch
//!   mean and inverse std of each of its `C_b` channels, computed once when the channel is
//!   written and shared by every batch norm that reads it (later layers' `norm1`, the
//!   transition's `norm`, `norm5`);
//! - per bottleneck layer: its 1×1 conv output `[B, M_b]` and `norm2`'s batch statistics `[B]`.
//!
//! What the non-memory-efficient mode adds — quadratic in depth: each layer's
//! `relu(norm1(prefix))` `[k0 + l·k, M_b]` and `relu(norm2(·))` `[B, M_b]`, and each
//! transition's `relu(norm(·))` `[C_b, M_b]`, stored in forward as a framework would.
//!
//! [`MemoryPlan::RecomputeBottleneck`] goes one step further: the 1×1 conv output is not kept
//! either (one shared `[B, M_b]` buffer per block instead of `L_b`), and backward recomputes it
//! from the prefix with the same fused conv, at the cost of one extra 1×1 conv per layer. Only
//! `norm2`'s batch statistics are kept, so the recompute never updates running statistics.
//! [`MemoryPlan::Budget`] chooses per layer: the layers with the widest inputs keep their
//! output, as many as the budget allows, the rest share one recomputed buffer per block.
//!
//! Storage that only one part of a pass needs is lent to another in every plan:
//! - a block's gradient buffer is only used in backward, from its transition's backward on, when
//!   the next block's bottleneck outputs are no longer needed: it lives in their storage, sized
//!   for the larger of the two (the last block's gradient buffer, which `norm5`'s backward
//!   writes while every bottleneck output is still to be read, has storage of its own);
//! - the ImageNet stem's two maps (`relu(norm0(conv0))` and, in backward, its gradient) live in
//!   the first block's bottleneck storage: the stem's forward runs before any layer writes it,
//!   its backward after every layer has read it.
//!
//! In backward each block also keeps two `f64` per channel, the deferred mean terms of the
//! batch norms read by 1×1 convs (`bn_slope`, `bn_offset`; see `block::layer_backward`).
//!
//! Scratch, shared by all layers: `a` (the gradient of a whole block's `relu(norm(·))`, for the
//! last block's `norm5` and plain layers), `b` (the widest bottleneck or pooled transition
//! input), `c` (the widest bottleneck),
//! `drop` (`k·M_b`), the
//! per-channel `scale`/`shift` of the current fused BN+ReLU, and the kernels' [`Workspace`].

use densenet_kernels::{FeatureBuffer, Workspace};

use crate::config::{DenseNetConfig, Stem};
use crate::error::{Error, Result};

/// What training keeps for backward and what it recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryPlan {
    /// Keep every BN+ReLU output, as a framework does: memory quadratic in depth.
    StoreAll,
    /// Recompute BN+ReLU of the prefix in backward (Pleiss et al.); keep each bottleneck
    /// output. Memory linear in depth.
    RecomputeNorm,
    /// Also recompute each bottleneck conv output in backward: the least memory (still linear),
    /// one extra 1×1 conv per layer.
    RecomputeBottleneck,
    /// [`MemoryPlan::RecomputeNorm`] for as many layers as fit in a workspace of at most this
    /// many bytes ([`TrainWorkspace::bytes`] before the first step), recomputing the bottleneck
    /// output of the rest. A layer's output costs the same bytes in every layer of a block and
    /// its recompute costs in proportion to the layer's input channels, so the layers with the
    /// narrowest inputs are recomputed first. Refused (with the least that would do) when even
    /// [`MemoryPlan::RecomputeBottleneck`] does not fit. Same results as the other plans.
    Budget(usize),
}

impl MemoryPlan {
    /// `RecomputeNorm` when `memory_efficient`, else `StoreAll`.
    pub fn from_memory_efficient(memory_efficient: bool) -> Self {
        if memory_efficient {
            MemoryPlan::RecomputeNorm
        } else {
            MemoryPlan::StoreAll
        }
    }
}

/// One dense block's state.
#[derive(Debug)]
pub(crate) struct BlockState {
    /// `[C_b, N, H_b, W_b]`: the block input at channels `[0, k0)` then each layer's `k`.
    pub feats: FeatureBuffer,
    /// Gradient of the loss w.r.t. `feats`, same layout; accumulated in backward. Every block
    /// but the last borrows the next block's bottleneck storage for it during backward
    /// ([`lend_gradient_buffer`]) and holds no storage (capacity 0) otherwise.
    pub grads: FeatureBuffer,
    /// `[C_b]` batch mean and inverse std of each channel of `feats` (training).
    pub mean: Vec<f32>,
    /// `[C_b]` the matching inverse standard deviations.
    pub invstd: Vec<f32>,
    /// `[C_b]` the batch norms' deferred mean terms of each channel's gradient in backward
    /// (`kernels::batchnorm::batchnorm_deferred_terms`): every 1×1 conv reading the channel
    /// through its batch norm adds to them, and they are added to `grads` once, when the
    /// channel's gradient is complete (zero between backward passes).
    pub bn_slope: Vec<f64>,
    /// `[C_b]` the constant part of the deferred terms.
    pub bn_offset: Vec<f64>,
    /// The bottleneck layers' 1×1 conv outputs `[B, M_b]` each (none for plain DenseNet): one
    /// for each layer that keeps its output, and one more shared by all layers that recompute
    /// theirs in backward. At least [`BlockState::lends`] floats long: the previous block's
    /// gradient buffer (or the ImageNet stem's two maps, for the first block) borrows it.
    pub bottleneck: Vec<f32>,
    /// Floats of `bottleneck` that something else borrows at other times: the previous block's
    /// gradient buffer `[C_{b-1}, M_{b-1}]`, or for the first block the ImageNet stem's two maps.
    pub lends: usize,
    /// `[L_b]` where each layer's output starts in `bottleneck` (the shared one for recomputed
    /// layers).
    pub z_at: Vec<usize>,
    /// `[L_b]` whether backward recomputes the layer's bottleneck output.
    pub recompute_z: Vec<bool>,
    /// `[L_b, B]` `norm2` batch statistics.
    pub mean2: Vec<f32>,
    /// `[L_b, B]` the matching inverse standard deviations.
    pub invstd2: Vec<f32>,
    /// Non-memory-efficient mode only: per layer `relu(norm1(prefix))`.
    pub stored_a1: Vec<Vec<f32>>,
    /// Non-memory-efficient mode only: per bottleneck layer `relu(norm2(z))`.
    pub stored_h2: Vec<Vec<f32>>,
    /// Channels entering the block.
    pub k0: usize,
    /// Dense layers in the block.
    pub layers: usize,
    /// Feature-map height.
    pub h: usize,
    /// Feature-map width.
    pub w: usize,
}

impl BlockState {
    /// Floats per channel, `M_b = N·H_b·W_b`.
    pub fn m(&self) -> usize {
        self.feats.per_channel()
    }

    /// Clears the deferred batch-norm terms (zero after every complete backward pass; cleared
    /// at the start of one too, in case the last was interrupted).
    pub fn clear_deferred(&mut self) {
        self.bn_slope.fill(0.0);
        self.bn_offset.fill(0.0);
    }

    /// Where layer `l`'s bottleneck output (`bk` channels) lives in `bottleneck`.
    pub fn z_range(&self, l: usize, bk: usize) -> std::ops::Range<usize> {
        let at = self.z_at[l];
        at..at + bk * self.m()
    }

    /// Lays out `bottleneck` for the layers that `keep` their output (`bk` channels each) and
    /// one shared output for the others, and allocates it (at least [`BlockState::lends`]).
    fn place_bottlenecks(&mut self, keep: &[bool], bk: usize) {
        let len = bk * self.m();
        let kept = keep.iter().filter(|&&k| k).count();
        let shared_at = kept * len;
        let mut next = 0;
        self.z_at = keep
            .iter()
            .map(|&k| {
                if k {
                    next += len;
                    next - len
                } else {
                    shared_at
                }
            })
            .collect();
        self.recompute_z = keep.iter().map(|&k| !k && bk > 0).collect();
        self.bottleneck = vec![0.0; bottleneck_floats(keep, len, self.lends)];
    }
}

/// Gives block `b` (not the last) its gradient buffer, in block `b + 1`'s bottleneck storage:
/// backward calls it after block `b + 1`'s layers, the last readers of that storage, and before
/// the transition between the two writes the buffer. Does nothing if the block has one.
pub(crate) fn lend_gradient_buffer(blocks: &mut [BlockState], b: usize) {
    let (before, after) = blocks.split_at_mut(b + 1);
    let (blk, next) = (&mut before[b], &mut after[0]);
    if blk.grads.capacity() == 0 {
        let storage = std::mem::take(&mut next.bottleneck);
        blk.grads = FeatureBuffer::over(storage, blk.feats.capacity(), blk.m());
    }
}

/// Floats of a block's bottleneck storage: one output of `len` floats per kept layer, one shared
/// by the rest, and at least the `lends` floats that something else borrows.
fn bottleneck_floats(keep: &[bool], len: usize, lends: usize) -> usize {
    let kept = keep.iter().filter(|&&k| k).count();
    ((kept + usize::from(kept < keep.len())) * len).max(lends)
}

/// The shape of a block as [`keep_within`] sees it.
#[derive(Clone, Copy, Debug)]
struct BlockShape {
    /// Floats per channel, `M_b`.
    m: usize,
    layers: usize,
    /// Input channels of the first layer, `k0_b`.
    k0: usize,
    growth: usize,
    /// Floats of the bottleneck storage lent to something else ([`BlockState::lends`]).
    lends: usize,
}

/// Which bottleneck layers keep their output under a budget of `free` bytes for all blocks'
/// bottleneck storage: the widest inputs first (the costliest to recompute), each kept while
/// the blocks' storage still fits.
fn keep_within(blocks: &[BlockShape], bk: usize, free: usize) -> Vec<Vec<bool>> {
    let mut keep: Vec<Vec<bool>> = blocks.iter().map(|b| vec![false; b.layers]).collect();
    let bytes = |keep: &[Vec<bool>]| -> usize {
        blocks
            .iter()
            .zip(keep)
            .map(|(b, k)| bottleneck_floats(k, bk * b.m, b.lends) * 4)
            .sum()
    };
    let mut order: Vec<(usize, usize, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, b)| (0..b.layers).map(move |l| (b.k0 + l * b.growth, i, l)))
        .collect();
    // Widest input first; ties in block and layer order, so the choice is reproducible.
    order.sort_by_key(|&(c, b, l)| (std::cmp::Reverse(c), b, l));
    for (_, b, l) in order {
        keep[b][l] = true;
        if bytes(&keep) > free {
            keep[b][l] = false;
        }
    }
    keep
}

/// Scratch shared by every layer.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    pub drop: Vec<f32>,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    /// `norm2`'s map, kept apart from `norm1`'s so both can be live in backward.
    pub scale2: Vec<f32>,
    pub shift2: Vec<f32>,
    /// `[C]` the two sums of a batch norm + ReLU backward (`Σ g`, `Σ g·(x − μ)`).
    pub sum_dy: Vec<f64>,
    pub sum_dy_xmu: Vec<f64>,
    pub kernels: Workspace<'static>,
}

/// All buffers of one training (or evaluation) pass at a fixed batch size and input size.
#[derive(Debug)]
pub struct TrainWorkspace {
    pub(crate) batch: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) memory_efficient: bool,
    pub(crate) plan: MemoryPlan,
    /// Whether the 3×3 convolutions' forward and input gradient run by Winograd where that is
    /// the faster.
    pub(crate) winograd_3x3: bool,
    /// `[IC, N, H, W]` the input, channel-major.
    pub(crate) input: Vec<f32>,
    /// ImageNet stem: conv0 output `[C0, N, H1, W1]` with norm0's batch statistics `[C0]`
    /// (`relu(norm0(·))`, the max pool's input, lives in the first block's bottleneck storage and
    /// is rebuilt in backward; see [`BlockState::lends`]).
    pub(crate) stem_conv: Vec<f32>,
    pub(crate) stem_mean: Vec<f32>,
    pub(crate) stem_invstd: Vec<f32>,
    pub(crate) stem_hw: (usize, usize),
    pub(crate) blocks: Vec<BlockState>,
    /// Non-memory-efficient mode only: per transition `relu(norm(block output))`.
    pub(crate) stored_trans: Vec<Vec<f32>>,
    /// `[N, C_final]` globally pooled features; `[N, classes]` logits and softmax.
    pub(crate) pooled: Vec<f32>,
    pub(crate) logits: Vec<f32>,
    pub(crate) probs: Vec<f32>,
    pub(crate) d_logits: Vec<f32>,
    pub(crate) d_pooled: Vec<f32>,
    pub(crate) labels: Vec<usize>,
    pub(crate) scratch: Scratch,
    /// Set by a training forward pass with labels; backward needs it.
    pub(crate) ready_for_backward: bool,
    /// Seeds dropout masks; advanced once per training forward pass.
    pub(crate) step: u64,
}

impl TrainWorkspace {
    /// Sizes every buffer for `cfg` at `batch` images of `h×w`, with
    /// [`MemoryPlan::from_memory_efficient`].
    pub fn new(
        cfg: &DenseNetConfig,
        batch: usize,
        h: usize,
        w: usize,
        memory_efficient: bool,
    ) -> Result<Self> {
        Self::with_plan(
            cfg,
            batch,
            h,
            w,
            MemoryPlan::from_memory_efficient(memory_efficient),
        )
    }

    /// Sizes every buffer for `cfg` at `batch` images of `h×w` under `plan`.
    pub fn with_plan(
        cfg: &DenseNetConfig,
        batch: usize,
        h: usize,
        w: usize,
        plan: MemoryPlan,
    ) -> Result<Self> {
        let memory_efficient = plan != MemoryPlan::StoreAll;
        cfg.validate()?;
        if batch == 0 {
            return Err(Error::Shape("batch size must be at least 1".into()));
        }
        let sizes = cfg.block_sizes(h, w)?;
        check_workspace_size(cfg, batch, h, w)?;
        let k = cfg.growth_rate;
        let bneck = cfg.bottleneck_channels();
        let c0 = cfg.init_features;
        let stem_hw = match cfg.stem {
            Stem::ImageNet => ((h - 1) / 2 + 1, (w - 1) / 2 + 1),
            Stem::Cifar => (h, w),
        };
        let stem_len = match cfg.stem {
            Stem::ImageNet => c0 * batch * stem_hw.0 * stem_hw.1,
            Stem::Cifar => 0,
        };
        // The stem's maps live in the first block's bottleneck storage (`BlockState::lends`).
        let (mut a_len, mut b_len, mut c_len) = (0, 0, 0);
        let (mut drop_len, mut widest) = (0, c0);
        let mut blocks: Vec<BlockState> = Vec::with_capacity(sizes.len());
        let mut stored_trans = Vec::new();
        for (b, &(bh, bw)) in sizes.iter().enumerate() {
            let m = batch * bh * bw;
            let k0 = cfg.block_in_channels(b);
            let layers = cfg.block_config[b];
            let cout = cfg.block_out_channels(b);
            let has_bottleneck = cfg.bn_size.is_some();
            // Scratch `a` holds the gradient of `relu(norm(·))` of a whole block where it is
            // materialised: before the head's global pool, and for plain layers' 3×3 convs.
            // Bottleneck layers and transitions never store it (`pointwise_bn` kernel).
            if !has_bottleneck || b + 1 == sizes.len() {
                a_len = a_len.max(cout * m);
            }
            b_len = b_len.max(bneck * m).max(k * m);
            c_len = c_len.max(bneck * m);
            if b + 1 < sizes.len() {
                // The transition pools first: `b` holds the pooled map and `c` (aligned, one
                // cache line of slack) its gradient, `cout` channels at a quarter of the size.
                let pooled = cout * batch * (bh / 2) * (bw / 2);
                b_len = b_len.max(pooled);
                c_len = c_len.max(pooled + 16);
                if !memory_efficient {
                    stored_trans.push(vec![0.0; cout * m]);
                }
            }
            drop_len = drop_len.max(k * m);
            widest = widest.max(cout).max(bneck);
            let per_layer = if has_bottleneck { bneck } else { 0 };
            let (stored_a1, stored_h2) = if memory_efficient {
                (Vec::new(), Vec::new())
            } else {
                (
                    (0..layers).map(|l| vec![0.0; (k0 + l * k) * m]).collect(),
                    if has_bottleneck {
                        (0..layers).map(|_| vec![0.0; bneck * m]).collect()
                    } else {
                        Vec::new()
                    },
                )
            };
            // Every gradient buffer but the last borrows the next block's bottleneck storage.
            let last = b + 1 == sizes.len();
            let lends = match blocks.last() {
                None => 2 * stem_len,
                Some(prev) => prev.feats.capacity() * prev.m(),
            };
            blocks.push(BlockState {
                feats: FeatureBuffer::new(cout, m),
                grads: FeatureBuffer::new(if last { cout } else { 0 }, m),
                mean: vec![0.0; cout],
                invstd: vec![0.0; cout],
                bn_slope: vec![0.0; cout],
                bn_offset: vec![0.0; cout],
                bottleneck: Vec::new(),
                lends,
                z_at: Vec::new(),
                recompute_z: Vec::new(),
                mean2: vec![0.0; layers * per_layer],
                invstd2: vec![0.0; layers * per_layer],
                stored_a1,
                stored_h2,
                k0,
                layers,
                h: bh,
                w: bw,
            });
        }
        let cf = cfg.final_channels();
        let classes = cfg.num_classes;
        let mut ws = TrainWorkspace {
            batch,
            h,
            w,
            memory_efficient,
            plan,
            winograd_3x3: true,
            input: vec![0.0; cfg.in_channels * batch * h * w],
            stem_conv: vec![0.0; stem_len],
            stem_mean: vec![0.0; c0],
            stem_invstd: vec![0.0; c0],
            stem_hw,
            blocks,
            stored_trans,
            pooled: vec![0.0; batch * cf],
            logits: vec![0.0; batch * classes],
            probs: vec![0.0; batch * classes],
            d_logits: vec![0.0; batch * classes],
            d_pooled: vec![0.0; batch * cf],
            labels: Vec::with_capacity(batch),
            scratch: Scratch {
                // One cache line of slack: the input-gradient GEMMs align their output into it
                // (`gemm::align64`), which their streaming stores need.
                a: vec![0.0; a_len + 16],
                b: vec![0.0; b_len],
                c: vec![0.0; c_len],
                drop: vec![0.0; drop_len],
                scale: vec![0.0; widest],
                shift: vec![0.0; widest],
                scale2: vec![0.0; bneck],
                shift2: vec![0.0; bneck],
                sum_dy: vec![0.0; widest],
                sum_dy_xmu: vec![0.0; widest],
                kernels: Workspace::new(),
            },
            ready_for_backward: false,
            step: 0,
        };
        ws.place_bottlenecks(cfg)?;
        Ok(ws)
    }

    /// Decides which bottleneck layers keep their output under the plan and allocates the
    /// blocks' bottleneck storage (the last buffers of the workspace, so that a budget can be
    /// checked against everything else first).
    fn place_bottlenecks(&mut self, cfg: &DenseNetConfig) -> Result<()> {
        // Plain layers have no bottleneck output to keep.
        let bk = if cfg.bn_size.is_some() {
            cfg.bottleneck_channels()
        } else {
            0
        };
        let shape: Vec<BlockShape> = self
            .blocks
            .iter()
            .map(|b| BlockShape {
                m: b.m(),
                layers: b.layers,
                k0: b.k0,
                growth: cfg.growth_rate,
                lends: b.lends,
            })
            .collect();
        let all = |v: bool| -> Vec<Vec<bool>> { shape.iter().map(|s| vec![v; s.layers]).collect() };
        let keep = match self.plan {
            MemoryPlan::StoreAll | MemoryPlan::RecomputeNorm => all(true),
            MemoryPlan::RecomputeBottleneck => all(false),
            MemoryPlan::Budget(limit) => {
                let fixed = self.bytes();
                let least: usize = shape
                    .iter()
                    .map(|b| bottleneck_floats(&vec![false; b.layers], bk * b.m, b.lends) * 4)
                    .sum();
                if fixed + least > limit {
                    let needed = fixed + least;
                    return Err(Error::Config(format!(
                        "a training workspace for this model, batch and size needs at least \
                         {needed} bytes ({} MB, rounded up) even recomputing every bottleneck; \
                         the budget is {limit} bytes",
                        needed.div_ceil(1_000_000),
                    )));
                }
                keep_within(&shape, bk, limit - fixed)
            }
        };
        for (blk, keep) in self.blocks.iter_mut().zip(&keep) {
            blk.place_bottlenecks(keep, bk);
        }
        Ok(())
    }

    /// Gives the bottleneck storage lent by [`lend_gradient_buffer`] back
    /// (the end of backward, and the start of every forward pass, in case a backward pass was
    /// interrupted). Blocks that hold none are left as they are.
    pub(crate) fn reclaim_gradient_buffers(&mut self) {
        for b in 1..self.blocks.len() {
            let (before, after) = self.blocks.split_at_mut(b);
            let (blk, next) = (&mut before[b - 1], &mut after[0]);
            if blk.grads.capacity() > 0 {
                let m = blk.m();
                let lent = std::mem::replace(&mut blk.grads, FeatureBuffer::new(0, m));
                next.bottleneck = lent.into_storage();
            }
        }
    }

    /// Batch size the workspace was sized for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Input `(height, width)` the workspace was sized for.
    pub fn input_size(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// Whether batch-norm outputs are recomputed in backward instead of stored.
    pub fn memory_efficient(&self) -> bool {
        self.memory_efficient
    }

    /// The memory plan.
    pub fn plan(&self) -> MemoryPlan {
        self.plan
    }

    /// Whether the dense layers' 3×3 convolutions run by Winograd's minimal filtering where it
    /// is the faster: the forward on maps of 14×14 and more, the input gradient on maps of 28×28
    /// and more with at least 32 output channels, on AVX-512 or AVX2 (see
    /// `densenet_kernels::conv2d::winograd_variant` and `winograd_variant_backward_input`). On
    /// by default; the results differ from the direct convolutions' by roundings (see
    /// `densenet_kernels::winograd`). The weight gradients are direct either way.
    pub fn winograd_3x3(&self) -> bool {
        self.winograd_3x3
    }

    /// Turns Winograd's 3×3 convolutions on or off ([`TrainWorkspace::winograd_3x3`]).
    pub fn set_winograd_3x3(&mut self, on: bool) {
        self.winograd_3x3 = on;
    }

    /// Training forward passes run so far (each seeds its dropout masks from it).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Sets the training step counter, to resume a run with the dropout masks it would have
    /// drawn.
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    /// Bytes held by every buffer (the kernels' scratch included, at its current size: it grows
    /// to its final size during the first pass).
    pub fn bytes(&self) -> usize {
        let f = |v: &Vec<f32>| v.len() * 4;
        let f64s = |v: &Vec<f64>| v.len() * 8;
        let mut total = f(&self.input)
            + f(&self.stem_conv)
            + f(&self.stem_mean)
            + f(&self.stem_invstd)
            + f(&self.pooled)
            + f(&self.logits)
            + f(&self.probs)
            + f(&self.d_logits)
            + f(&self.d_pooled)
            + self.labels.capacity() * std::mem::size_of::<usize>();
        total += self.stored_trans.iter().map(f).sum::<usize>();
        for b in &self.blocks {
            total += b.feats.bytes()
                + b.grads.bytes()
                + f(&b.mean)
                + f(&b.invstd)
                + f64s(&b.bn_slope)
                + f64s(&b.bn_offset)
                + f(&b.bottleneck)
                + f(&b.mean2)
                + f(&b.invstd2)
                + b.stored_a1.iter().map(f).sum::<usize>()
                + b.stored_h2.iter().map(f).sum::<usize>();
        }
        let s = &self.scratch;
        total
            + f(&s.a)
            + f(&s.b)
            + f(&s.c)
            + f(&s.drop)
            + f(&s.scale)
            + f(&s.shift)
            + f(&s.scale2)
            + f(&s.shift2)
            + f64s(&s.sum_dy)
            + f64s(&s.sum_dy_xmu)
            + s.kernels.bytes()
    }

    /// The logits `[N, classes]` (row-major, one row per image) of the last forward pass.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

/// The most bytes a [`TrainWorkspace`] may take: 1 TiB. Anything larger is a typo in a batch
/// size or image size, refused before the first allocation rather than left to abort the process.
pub const MAX_WORKSPACE_BYTES: u64 = 1 << 40;

/// Refuses a workspace whose size overflows or exceeds [`MAX_WORKSPACE_BYTES`], from an upper
/// bound that treats every stage as full resolution and stores everything (both memory modes).
fn check_workspace_size(cfg: &DenseNetConfig, batch: usize, h: usize, w: usize) -> Result<()> {
    let bound = || -> Option<u64> {
        let pixels = (batch as u64)
            .checked_mul(h as u64)?
            .checked_mul(w as u64)?;
        let bneck = cfg.bottleneck_channels() as u64;
        let mut per_pixel = (cfg.in_channels as u64).checked_add(2 * cfg.init_features as u64)?;
        for b in 0..cfg.block_config.len() {
            let (cout, layers) = (cfg.block_out_channels(b) as u64, cfg.block_config[b] as u64);
            // features, gradients, scratch and stored layer inputs and bottlenecks.
            let block = cout.checked_mul(layers.checked_add(4)?)?;
            let block = block.checked_add(bneck.checked_mul(layers.checked_add(3)?)?)?;
            per_pixel = per_pixel.checked_add(block)?;
        }
        pixels.checked_mul(per_pixel)?.checked_mul(4)
    };
    match bound() {
        Some(bytes) if bytes <= MAX_WORKSPACE_BYTES => Ok(()),
        _ => Err(Error::Shape(format!(
            "a workspace for batch {batch} at {h}x{w} would need more than {} GiB",
            MAX_WORKSPACE_BYTES >> 30
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: usize, layers: usize, k0: usize, growth: usize, lends: usize) -> BlockShape {
        BlockShape {
            m,
            layers,
            k0,
            growth,
            lends,
        }
    }

    /// Layers keep their outputs widest input first, as long as the storage (kept outputs plus
    /// one shared for the rest) fits.
    #[test]
    fn budget_keeps_the_widest_inputs() {
        // One block of 4 layers, inputs 2, 4, 6, 8 channels wide; outputs of 1 channel × 4 floats
        // = 16 bytes each.
        let blocks = [shape(4, 4, 2, 2, 0)];
        let keep = |free| keep_within(&blocks, 1, free);
        assert_eq!(keep(16), vec![vec![false; 4]]);
        assert_eq!(keep(32), vec![vec![false, false, false, true]]);
        assert_eq!(keep(48), vec![vec![false, false, true, true]]);
        // Three kept and the shared one, or all four kept and none shared: 64 bytes either way.
        assert_eq!(keep(64), vec![vec![true; 4]]);
        assert_eq!(keep(63), vec![vec![false, false, true, true]]);
        // Two blocks: the second (inputs 10, 12; 2 floats per output) wins the first bytes.
        let two = [shape(4, 2, 2, 2, 0), shape(2, 2, 10, 2, 0)];
        assert_eq!(
            keep_within(&two, 1, 16 + 8 + 8),
            vec![vec![false, false], vec![true, true]]
        );
    }

    /// Storage lent to something else is paid for anyway: outputs that fit in it are kept free.
    #[test]
    fn budget_keeps_what_fits_in_lent_storage_for_free() {
        // Lent storage of 12 floats holds three outputs of 4: the shared one and two kept (the
        // widest); 48 bytes is what the shared output alone would take with it.
        let blocks = [shape(4, 4, 2, 2, 12)];
        assert_eq!(
            keep_within(&blocks, 1, 48),
            vec![vec![false, false, true, true]]
        );
        assert_eq!(keep_within(&blocks, 1, 64), vec![vec![true; 4]]);
        assert_eq!(bottleneck_floats(&[false; 4], 4, 12), 12);
        assert_eq!(bottleneck_floats(&[true; 4], 4, 12), 16);
    }

    /// Gradient buffers but the last hold no storage outside backward; the next block's
    /// bottleneck storage is sized for the larger of its outputs and the gradient buffer, the
    /// first block's for the stem's two maps, and a training step gives every lent storage
    /// back, to the same bytes.
    #[test]
    fn gradient_buffers_and_stem_maps_borrow_bottleneck_storage() {
        let cfg: DenseNetConfig = "bc:k=4,blocks=2-3-2,classes=3,stem=imagenet"
            .parse()
            .unwrap();
        let mut model = crate::DenseNet::new(cfg.clone(), 3).unwrap();
        let (n, h, w) = (2, 32, 32);
        for plan in [
            MemoryPlan::RecomputeNorm,
            MemoryPlan::RecomputeBottleneck,
            MemoryPlan::StoreAll,
        ] {
            let mut ws = model.workspace_with_plan(n, h, w, plan).unwrap();
            let bk = cfg.bottleneck_channels();
            let stem_len = cfg.init_features * n * 16 * 16;
            let layout = |ws: &TrainWorkspace| -> Vec<(usize, usize)> {
                ws.blocks
                    .iter()
                    .map(|b| (b.grads.capacity(), b.bottleneck.len()))
                    .collect()
            };
            let before = layout(&ws);
            for (i, b) in ws.blocks.iter().enumerate() {
                let last = i + 1 == ws.blocks.len();
                assert_eq!(
                    b.grads.capacity(),
                    if last { b.feats.capacity() } else { 0 }
                );
                let kept = b.recompute_z.iter().filter(|&&r| !r).count();
                let outputs = (kept + usize::from(kept < b.layers)) * bk * b.m();
                let lends = match i {
                    0 => 2 * stem_len,
                    _ => ws.blocks[i - 1].feats.capacity() * ws.blocks[i - 1].m(),
                };
                assert_eq!(b.lends, lends, "{plan:?} block {i}");
                assert_eq!(b.bottleneck.len(), outputs.max(lends), "{plan:?} block {i}");
            }
            // The stem's maps are not in the shared scratch.
            let s = &ws.scratch;
            assert!(s.a.len() < stem_len && s.b.len() < stem_len, "{plan:?}");
            // Only the kernels' scratch grows in a step.
            let fixed = |ws: &TrainWorkspace| ws.bytes() - ws.scratch.kernels.bytes();
            let bytes = fixed(&ws);
            let x = vec![0.5; n * 3 * h * w];
            model.forward_train(&mut ws, &x, &[0, 2]).unwrap();
            model.backward(&mut ws).unwrap();
            assert_eq!(layout(&ws), before, "{plan:?}");
            assert_eq!(fixed(&ws), bytes, "{plan:?}");
        }
    }
}
