//! Embedded inference: a plan built once for a model, a batch size and an input size, after
//! which [`InferencePlan::forward`] allocates nothing.
//!
//! # What the plan does differently from the training code's eval forward
//!
//! Each rewrite is exact in real arithmetic, is switched by a field of [`PlanOptions`], and is
//! tested against [`crate::DenseNet::forward`] in [`crate::Mode::Eval`] (`tests/infer.rs`):
//!
//! - **BN folding** (`fold_norm0`, `fold_norm2`): a batch norm that *follows* a convolution is
//!   an affine map per output channel, `s·(W·x) + t = (s·W)·x + t`, so it becomes part of the
//!   convolution's weight and a bias. That is `norm0` after the stem's `conv0`, and each
//!   bottleneck's `norm2` after `conv1`. (A batch norm *before* a convolution does not fold
//!   exactly where the convolution pads, and `norm1` is followed by a ReLU anyway.)
//! - **Pooling before the transition convolution** (`pool_before_transition_conv`): a
//!   transition is BN-ReLU-Conv1×1-AvgPool2×2. The 1×1 convolution and the average pool are both
//!   linear and act on different axes (channels vs. space), so they commute:
//!   BN-ReLU-AvgPool-Conv1×1 gives the same result with the convolution run on a quarter of the
//!   pixels (4× fewer FLOPs). BN and ReLU must stay before the pool (the ReLU is not linear);
//!   the three run as one pass.
//! - **BN + ReLU fused into packing** (`fuse_bn_relu_into_packing`): every convolution's input
//!   is `relu(bn(x))`; instead of writing that to a scratch buffer the GEMM's operand packing
//!   applies it per channel while copying ([`densenet_kernels::ChannelAffine`] as `pre`). After
//!   folding `norm2`, the map before each 3×3 convolution is a bare ReLU (scale 1, shift 0).
//!
//! The weights are not copied: the plan takes the model's parameter vector (or a copy of it, from
//! a borrowed model), folds batch norms into it in place, and every convolution reads its weight
//! from there, row-major (the GEMM broadcasts from weight rows; packing them once measured no
//! faster and would double the weights' memory). The Winograd 3×3s transform theirs from there
//! at each call (`winograd_3x3`).
//!
//! # Memory
//!
//! Every activation lives in one arena (`Vec<f32>`), laid out by liveness (`arena.rs`): each
//! dense block's feature buffer, the block's bottleneck output, the transition scratch, the
//! stem's output (one band of its rows, `stem_in_bands`), the head, and each step's packing
//! scratch (the kernels crate's `Workspace`, borrowed over the step's arena range: sized when
//! the plan is built, for any tier, it never grows). Buffers never live at the same time share
//! memory.

mod arena;
mod build;
pub mod npy;
pub(crate) mod ops;
pub mod preprocess;
mod strips;

use std::time::{Duration, Instant};

use densenet_kernels::gemm;
use densenet_kernels::pool::{avgpool2d_forward, maxpool2d_forward, maxpool2d_forward_rows};
use densenet_kernels::{Isa, Pool2dGeom, Workspace};

use crate::config::DenseNetConfig;
use crate::error::{Error, Result};
use crate::model::DenseNet;
use build::{Buffers, Conv, Layer, Transition};
use ops::{
    affine_forward, affine_relu_avgpool2, affine_relu_global_avgpool, pointwise_forward,
    pointwise_scratch_len, relu_inplace, Affine,
};

/// Which rewrites an [`InferencePlan`] applies (see the module doc). [`Default`] turns all on;
/// [`PlanOptions::plain`] turns all off, which computes what the training code's eval forward
/// does, in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fold the stem's `norm0` into `conv0` (weights and a bias).
    pub fold_norm0: bool,
    /// Fold each bottleneck's `norm2` into its `conv1`.
    pub fold_norm2: bool,
    /// Run transitions as BN-ReLU-AvgPool-Conv1×1.
    pub pool_before_transition_conv: bool,
    /// Apply BN + ReLU while packing each convolution's input instead of into a scratch buffer.
    pub fuse_bn_relu_into_packing: bool,
    /// Run the bottleneck dense layers by strips (see `infer/strips.rs`): at batch 1 each layer
    /// as one task per strip of image rows doing the whole layer; at larger batches each block
    /// as one task per image doing every layer. The schedule is chosen when the plan is built,
    /// for the pool it is built in: a plan built on one thread runs one strip per image (run on
    /// more threads it stays on one core for the dense layers); maps under 16 rows at batch 1 on
    /// several threads run as one whole-image strip per layer, its products shared by output
    /// channels. Same bits either way (with the direct 3×3s: Winograd's sums are others; see
    /// `winograd_3x3`). Needs `fuse_bn_relu_into_packing`.
    pub dense_layers_by_strips: bool,
    /// Run the dense layers' 3×3 convolutions as Winograd F(2×2, 3×3)
    /// (`densenet_kernels::winograd`: 2.25× fewer multiply-adds) in the blocks whose maps are
    /// large enough for it to be faster (at least 14 rows and columns, and 16 rows at batch 1),
    /// F(4×4, 3×3) (4× fewer) on maps of 48×48 and more whose sides are multiples of 4 (see
    /// `strips::uses_winograd`). Other sums than the direct convolution's: the logits differ
    /// from the training code's eval forward by about 1e-6 of their largest. Needs
    /// `dense_layers_by_strips`.
    pub winograd_3x3: bool,
    /// Run the ImageNet stem (convolution, batch norm, ReLU, max pooling) a band of 8 pooled
    /// rows at a time, each band's convolution output pooled while it is in cache: the stem's
    /// whole output map (3.06 MiB per image at 224×224) is never stored and its convolution's
    /// scratch is one band's. The same bits. Where it saves memory: maps of more than one band
    /// (inputs of more than 32 rows).
    pub stem_in_bands: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fold_norm0: true,
            fold_norm2: true,
            pool_before_transition_conv: true,
            fuse_bn_relu_into_packing: true,
            dense_layers_by_strips: true,
            winograd_3x3: true,
            stem_in_bands: true,
        }
    }
}

impl PlanOptions {
    /// No rewrite at all.
    pub fn plain() -> Self {
        PlanOptions {
            fold_norm0: false,
            fold_norm2: false,
            pool_before_transition_conv: false,
            fuse_bn_relu_into_packing: false,
            dense_layers_by_strips: false,
            winograd_3x3: false,
            stem_in_bands: false,
        }
    }
}

/// A model prepared for evaluation-mode inference on batches of a fixed size (see the module
/// doc). Input is NCHW `f32`, `[N, C, H, W]`; output is logits `[N, classes]`.
#[derive(Debug)]
pub struct InferencePlan {
    config: DenseNetConfig,
    batch: usize,
    h: usize,
    w: usize,
    opts: PlanOptions,
    isa: Isa,
    /// Each block's spatial size.
    sizes: Vec<(usize, usize)>,
    /// The stem convolution's output size (ImageNet stem only).
    stem_hw: Option<(usize, usize)>,
    /// The ImageNet stem's bands, when it runs by bands.
    stem_bands: Option<build::StemBands>,
    conv0: Conv,
    /// `norm0` when present and not folded.
    norm0: Option<Affine>,
    layers: Vec<Vec<Layer>>,
    transitions: Vec<Transition>,
    norm5: Affine,
    /// The model's parameters, batch norms folded in place: every weight of the plan.
    weights: Vec<f32>,
    /// `[classes, C]`: `weights[classifier]`.
    classifier: std::ops::Range<usize>,
    /// `[classes]`: `weights[classifier_b]`.
    classifier_b: std::ops::Range<usize>,
    arena: Vec<f32>,
    ranges: Vec<std::ops::Range<usize>>,
    peak_floats: usize,
    bufs: Buffers,
    /// How each dense block runs, chosen when the plan is built for the pool it is built in
    /// (see `strips::schedule`).
    schedules: Vec<strips::BlockSchedule>,
    /// Whether each dense block runs its 3×3s as Winograd (where the tier's transforms are
    /// vectorised).
    winograd: Vec<Option<densenet_kernels::winograd::Variant>>,
}

/// Wall time of each stage of one [`InferencePlan::forward_timed`] pass.
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    /// `(stage name, time)` in forward order: `stem`, `denseblock1`, `transition1`, ...,
    /// `head`.
    pub stages: Vec<(String, Duration)>,
}

impl InferencePlan {
    /// Prepares `model` (its current weights and running statistics) for batches of `batch`
    /// images of `h×w`, applying the rewrites `opts` selects. Fails with [`Error::Shape`] if the
    /// input size is too small for the network or the batch is empty.
    pub fn new(
        model: &DenseNet,
        batch: usize,
        h: usize,
        w: usize,
        opts: PlanOptions,
    ) -> Result<Self> {
        let weights = model.store.params().to_vec();
        let mut plan = build::build(model, weights, batch, h, w, opts)?;
        build::warm_up(&mut plan)?;
        Ok(plan)
    }

    /// [`InferencePlan::new`], consuming the model: the plan takes over the model's parameter
    /// vector instead of copying it, and the rest of the model is dropped before the plan's
    /// first pass, so the weights exist once (the lowest peak resident memory, for programs
    /// that only infer).
    pub fn from_model(
        mut model: DenseNet,
        batch: usize,
        h: usize,
        w: usize,
        opts: PlanOptions,
    ) -> Result<Self> {
        let weights = model.store.take_params();
        let mut plan = build::build(&model, weights, batch, h, w, opts)?;
        drop(model);
        build::warm_up(&mut plan)?;
        Ok(plan)
    }

    /// Images per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Input `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// The rewrites this plan applies.
    pub fn options(&self) -> PlanOptions {
        self.opts
    }

    /// The configuration of the model the plan was built from.
    pub fn config(&self) -> &DenseNetConfig {
        &self.config
    }

    /// The CPU tier active when the plan was built. The kernels read the active tier on each
    /// call, so `dispatch::with_max_isa` around `forward` applies to it too.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Floats of one input batch: `N·C·H·W`.
    pub fn input_len(&self) -> usize {
        self.batch * self.config.in_channels * self.h * self.w
    }

    /// Bytes of the activation arena.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 4
    }

    /// The lower bound on [`InferencePlan::arena_bytes`]: the largest total size of buffers
    /// live at one step.
    pub fn peak_live_bytes(&self) -> usize {
        self.peak_floats * 4
    }

    /// Bytes of packing scratch (the plan's own and the kernels'): the largest step's, which
    /// lives in the arena, in memory other steps use for their buffers.
    pub fn scratch_bytes(&self) -> usize {
        let ranges = self.bufs.kernels.iter().flatten();
        ranges.map(|&i| self.ranges[i].len() * 4).max().unwrap_or(0)
    }

    /// Bytes the arena's buffers add up to: what it would take if no two shared memory.
    pub fn unshared_bytes(&self) -> usize {
        self.ranges.iter().map(|r| r.len() * 4).sum()
    }

    /// The arena range of step `step`'s kernel scratch (empty if it needs none).
    fn kernels_range(&self, step: usize) -> std::ops::Range<usize> {
        self.bufs.kernels[step].map_or(0..0, |i| self.ranges[i].clone())
    }

    /// Bytes of the prepared weights (folded, packed), biases and batch-norm maps.
    pub fn weight_bytes(&self) -> usize {
        let aff = |a: &Affine| a.scale.len() + a.shift.len();
        let mut floats = self.weights.len() + self.conv0.own_floats();
        floats += self.norm0.as_ref().map_or(0, aff);
        for l in self.layers.iter().flatten() {
            floats += aff(&l.norm1) + l.conv1.own_floats();
            if let Some((a, c)) = &l.bottleneck {
                floats += aff(a) + c.own_floats();
            }
        }
        for t in &self.transitions {
            floats += aff(&t.norm) + t.conv.own_floats();
        }
        floats += aff(&self.norm5);
        floats * 4
    }

    /// Stage names in forward order, as [`StageTimes`] reports them.
    pub fn stage_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        for b in 0..self.sizes.len() {
            names.push(format!("denseblock{}", b + 1));
            if b < self.transitions.len() {
                names.push(format!("transition{}", b + 1));
            }
        }
        names.push("head".into());
        names
    }

    /// Logits `[N, classes]` for the NCHW batch `input` (`[N, C, H, W]`). Allocates nothing.
    pub fn forward(&mut self, input: &[f32]) -> Result<&[f32]> {
        crate::on_pool(|| self.run(input, None))?;
        Ok(&self.arena[self.ranges[self.bufs.logits].clone()])
    }

    /// [`InferencePlan::forward`], also timing each stage (this allocates the names).
    pub fn forward_timed(&mut self, input: &[f32], times: &mut StageTimes) -> Result<&[f32]> {
        times.stages.clear();
        crate::on_pool(|| self.run(input, Some(times)))?;
        Ok(&self.arena[self.ranges[self.bufs.logits].clone()])
    }

    fn run(&mut self, input: &[f32], mut times: Option<&mut StageTimes>) -> Result<()> {
        if input.len() != self.input_len() {
            return Err(Error::Shape(format!(
                "input has {} values; the plan expects N={} images of {} channels of {}x{} \
                 ({} values, NCHW)",
                input.len(),
                self.batch,
                self.config.in_channels,
                self.h,
                self.w,
                self.input_len()
            )));
        }
        if let Some(i) = input.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "value {} at index {i} (NCHW) is not finite",
                input[i]
            )));
        }
        let mut clock = Instant::now();
        // The stage name is only formatted when timing, so the untimed pass allocates nothing.
        let mut lap = |name: &dyn Fn() -> String, times: &mut Option<&mut StageTimes>| {
            if let Some(t) = times.as_deref_mut() {
                let now = Instant::now();
                t.stages.push((name(), now - clock));
                clock = now;
            }
        };
        self.stem(input);
        lap(&|| "stem".into(), &mut times);
        for b in 0..self.sizes.len() {
            self.block(b);
            lap(&|| format!("denseblock{}", b + 1), &mut times);
            if b < self.transitions.len() {
                self.transition(b);
                lap(&|| format!("transition{}", b + 1), &mut times);
            }
        }
        self.head();
        lap(&|| "head".into(), &mut times);
        Ok(())
    }

    fn stem(&mut self, input: &[f32]) {
        let n = self.batch;
        let c0 = self.config.init_features;
        let (h, w) = (self.h, self.w);
        let (bh, bw) = self.sizes[0];
        let r = &self.ranges;
        let b = &self.bufs;
        let stem_range = b.stem.map_or(0..0, |i| r[i].clone());
        let input_range = b.input.map_or(0..0, |i| r[i].clone());
        let k_range = self.kernels_range(0);
        let [copy, feats, stem, kernels] = arena::parts(
            &mut self.arena,
            [&input_range, &r[b.feats[0]], &stem_range, &k_range],
        );
        let mut kernels = Workspace::borrowing(kernels);
        let (weights, ws) = (&self.weights[..], &mut kernels);
        let first = &mut feats[..c0 * n * bh * bw];
        // `norm0` (or, folded, its ReLU) in place on stem output rows. ReLU commutes with max
        // pooling, but applying it first keeps the unfolded path identical to the training
        // code.
        let norm0 = |out: &mut [f32]| match &self.norm0 {
            Some(norm0) => affine_inplace(out, &norm0.prefix(c0, true), out.len() / c0),
            None => relu_inplace(out),
        };
        if let Some(bands) = self.stem_bands {
            let pool = bands.pool(c0 * n);
            for pooled in bands.bands() {
                let rows = bands.conv_rows(&pooled);
                let (band_in, g) = bands.gather(&self.conv0, copy, input, n, (h, w), &rows);
                let band_out = &mut stem[..c0 * n * rows.len() * bands.sw];
                self.conv0
                    .run_geom(weights, band_out, band_in, None, &g, ws);
                norm0(band_out);
                maxpool2d_forward_rows(first, band_out, &pool, pooled);
            }
            return;
        }
        let inp: &[f32] = if b.input.is_some() {
            nchw_to_cnhw(copy, input, n, h * w);
            copy
        } else {
            input
        };
        match self.stem_hw {
            None => self.conv0.run(weights, first, inp, None, n, h, w, ws),
            Some((sh, sw)) => {
                self.conv0.run(weights, stem, inp, None, n, h, w, ws);
                norm0(stem);
                maxpool2d_forward(first, stem, &build::stem_pool(c0 * n, sh, sw));
            }
        }
    }

    fn block(&mut self, b: usize) {
        let n = self.batch;
        let (h, w) = self.sizes[b];
        let m = n * h * w;
        let k = self.config.growth_rate;
        let k0 = self.config.block_in_channels(b);
        let fuse = self.opts.fuse_bn_relu_into_packing;
        let schedule = self.schedules[b];
        let r = &self.ranges;
        let bf = &self.bufs;
        let opt = |i: Option<usize>| i.map_or(0..0, |i| r[i].clone());
        let (z_range, map_range) = (opt(bf.bottleneck[b]), opt(bf.mapped[b]));
        let strips_range = opt(bf.strips[b]);
        let k_range = self.kernels_range(2 * b + 1);
        let [feats, z, mapped, strip_scratch, kernels] = arena::parts(
            &mut self.arena,
            [
                &r[bf.feats[b]],
                &z_range,
                &map_range,
                &strips_range,
                &k_range,
            ],
        );
        let mut kernels = Workspace::borrowing(kernels);
        let (weights, ws) = (&self.weights[..], &mut kernels);
        let layers = &self.layers[b];
        if schedule == strips::BlockSchedule::Images {
            // Image by image: each image through every layer while its prefix is in cache.
            let bk = layers
                .first()
                .and_then(|l| l.bottleneck.as_ref())
                .map_or(0, |(_, c2)| c2.ic);
            let block = strips::ImageBlock {
                batch: n,
                h,
                w,
                k0,
                k,
                bk,
                layers: layers.len(),
                winograd: self.winograd[b],
            };
            let layer_weights = |l: usize| {
                let layer = &layers[l];
                let c = k0 + l * k;
                let (pre2, conv2) = layer
                    .bottleneck
                    .as_ref()
                    .expect("checked above: every layer has a bottleneck");
                (
                    (
                        &weights[layer.conv1.weight.clone()],
                        layer.conv1.bias.as_deref(),
                        layer.norm1.prefix(c, true),
                    ),
                    (&weights[conv2.weight.clone()], pre2.prefix(conv2.ic, true)),
                )
            };
            let (head, tail) = feats.split_at_mut(k0 * m);
            let tail = &mut tail[..layers.len() * k * m];
            let isa = densenet_kernels::active_isa();
            block.run(isa, head, tail, &layer_weights, strip_scratch);
            return;
        }
        for (l, layer) in layers.iter().enumerate() {
            let c = k0 + l * k;
            let (prefix, rest) = feats.split_at_mut(c * m);
            let slot = &mut rest[..k * m];
            let pre1 = layer.norm1.prefix(c, true);
            let by_strips = match schedule {
                strips::BlockSchedule::Strips { rows } => Some(rows),
                strips::BlockSchedule::Channels => Some(h),
                _ => None,
            };
            if let (Some(rows), Some((pre2, conv2))) = (by_strips, &layer.bottleneck) {
                // The tier is read on each call, as the kernels do.
                let isa = densenet_kernels::active_isa();
                let strips = strips::StripLayer {
                    batch: n,
                    h,
                    w,
                    c,
                    bk: conv2.ic,
                    k,
                    rows,
                    winograd: self.winograd[b],
                };
                let conv1 = (
                    &weights[layer.conv1.weight.clone()],
                    layer.conv1.bias.as_deref(),
                    pre1,
                );
                let conv2 = (&weights[conv2.weight.clone()], pre2.prefix(conv2.ic, true));
                if schedule == strips::BlockSchedule::Channels {
                    strips.run_by_channels(isa, slot, prefix, conv1, conv2, strip_scratch);
                } else {
                    strips.run(isa, slot, prefix, conv1, conv2, strip_scratch);
                }
                continue;
            }
            let out1: &mut [f32] = match &layer.bottleneck {
                Some((_, c2)) => &mut z[..c2.ic * m],
                None => slot,
            };
            if fuse {
                layer
                    .conv1
                    .run(weights, out1, prefix, Some(pre1), n, h, w, ws);
            } else {
                let a = &mut mapped[..c * m];
                affine_forward(a, prefix, &pre1, m);
                layer.conv1.run(weights, out1, a, None, n, h, w, ws);
            }
            if let Some((pre2, conv2)) = &layer.bottleneck {
                let bk = conv2.ic;
                let slot = &mut rest[..k * m];
                let z = &z[..bk * m];
                let pre2 = pre2.prefix(bk, true);
                if fuse {
                    conv2.run(weights, slot, z, Some(pre2), n, h, w, ws);
                } else {
                    let a = &mut mapped[..bk * m];
                    affine_forward(a, z, &pre2, m);
                    conv2.run(weights, slot, a, None, n, h, w, ws);
                }
            }
        }
    }

    fn transition(&mut self, b: usize) {
        let n = self.batch;
        let (h, w) = self.sizes[b];
        let (oh, ow) = self.sizes[b + 1];
        let c = self.config.block_out_channels(b);
        let t = &self.transitions[b];
        let oc = t.conv.oc;
        let r = &self.ranges;
        let bf = &self.bufs;
        let map_range = bf.trans_mapped[b].map_or(0..0, |i| r[i].clone());
        let k_range = self.kernels_range(2 * b + 2);
        let [feats, next, scratch, mapped, kernels] = arena::parts(
            &mut self.arena,
            [
                &r[bf.feats[b]],
                &r[bf.feats[b + 1]],
                &r[bf.trans[b]],
                &map_range,
                &k_range,
            ],
        );
        let next = &mut next[..oc * n * oh * ow];
        let pre = t.norm.prefix(c, true);
        let mut kernels = Workspace::borrowing(kernels);
        let (weights, ws) = (&self.weights[..], &mut kernels);
        if self.opts.pool_before_transition_conv {
            let pooled = &mut scratch[..c * n * oh * ow];
            affine_relu_avgpool2(pooled, feats, &pre, n, h, w);
            t.conv.run(weights, next, pooled, None, n, oh, ow, ws);
            return;
        }
        let conv_out = &mut scratch[..oc * n * h * w];
        if self.opts.fuse_bn_relu_into_packing {
            t.conv.run(weights, conv_out, feats, Some(pre), n, h, w, ws);
        } else {
            affine_forward(mapped, feats, &pre, n * h * w);
            t.conv.run(weights, conv_out, mapped, None, n, h, w, ws);
        }
        let g = Pool2dGeom {
            planes: oc * n,
            in_h: h,
            in_w: w,
            kernel: 2,
            stride: 2,
            pad: 0,
        };
        avgpool2d_forward(next, conv_out, &g);
    }

    fn head(&mut self) {
        let n = self.batch;
        let (h, w) = *self.sizes.last().expect("validated: at least one block");
        let cf = self.config.final_channels();
        let r = &self.ranges;
        let bf = &self.bufs;
        let last = bf.feats[bf.feats.len() - 1];
        let k_range = self.kernels_range(2 * self.sizes.len());
        let [feats, pooled, logits_t, logits, kernels] = arena::parts(
            &mut self.arena,
            [
                &r[last],
                &r[bf.pooled],
                &r[bf.logits_t],
                &r[bf.logits],
                &k_range,
            ],
        );
        affine_relu_global_avgpool(pooled, feats, &self.norm5.prefix(cf, true), n, h * w);
        let classes = self.config.num_classes;
        let isa = densenet_kernels::active_isa();
        let weight = &self.weights[self.classifier.clone()];
        let bias = &self.weights[self.classifier_b.clone()];
        if n == 1 {
            // One image: `classes` dot products of a weight row with the pooled features, as
            // the training code's `linear_forward` computes them. As a 1×1 convolution over one
            // column the product filled one of each 32-column panel: 32× the multiply-adds,
            // 0.76 ms of a densenet121 pass on one thread.
            logits.copy_from_slice(bias);
            let (image_row, weight_row) = (|_: usize| 0, |o: usize| o * cf);
            let image = gemm::Rows {
                data: pooled,
                count: 1,
                start: &image_row,
            };
            let rows = gemm::BRows::InPlace(gemm::Rows {
                data: weight,
                count: classes,
                start: &weight_row,
            });
            // The whole step scratch: sized in the pool the plan was built in, it holds at least
            // one task's slot, and in a larger pool `gemm_abt` runs fewer tasks at once (asking
            // the run pool's `gemm_abt_scratch_len` could ask for more than was sized).
            let scratch = kernels;
            let parallel = gemm::worth_parallel(classes * cf);
            gemm::gemm_abt(isa, logits, classes, image, &rows, cf, scratch, parallel);
            return;
        }
        // logitsᵀ[classes, N] = W[classes, C] · pooled[C, N] + b: a 1×1 convolution over N
        // columns (`linear_forward` allocates its scratch on every call).
        let bias = Some(bias);
        pointwise_forward(
            logits_t,
            pooled,
            weight,
            [classes, cf],
            isa,
            bias,
            None,
            n,
            &mut kernels[..pointwise_scratch_len(cf, n, isa)],
        );
        for (o, row) in logits_t.chunks_exact(n).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                logits[i * classes + o] = v;
            }
        }
    }
}

/// In place: `x[c, ·] = pre(x[c, ·])`.
fn affine_inplace(x: &mut [f32], pre: &densenet_kernels::ChannelAffine<'_>, m: usize) {
    for (c, run) in x.chunks_mut(m).enumerate() {
        for v in run {
            *v = pre.apply(c, *v);
        }
    }
}

/// `[N, C, HW]` (NCHW) to `[C, N, HW]` (CNHW).
fn nchw_to_cnhw(out: &mut [f32], inp: &[f32], n: usize, hw: usize) {
    let c = inp.len() / (n * hw);
    for ni in 0..n {
        for ci in 0..c {
            out[(ci * n + ni) * hw..(ci * n + ni + 1) * hw]
                .copy_from_slice(&inp[(ni * c + ci) * hw..(ni * c + ci + 1) * hw]);
        }
    }
}
