//! Building an [`InferencePlan`]: weights pre-transformed (BN folding) in place in the model's
//! own parameter vector, and the arena laid out by buffer liveness.

use densenet_kernels::conv2d::{conv2d_forward, conv2d_forward_workspace_len};
use densenet_kernels::gemm;
use densenet_kernels::pool::maxpool2d_input_rows;
use std::ops::Range;

use densenet_kernels::{Conv2dGeom, Isa, Pool2dGeom, Workspace};

use super::arena::{self, Request};
use super::ops::{pointwise_forward, pointwise_scratch_len, Affine};
use super::strips::{schedule, uses_winograd, BlockSchedule, ImageBlock, StripLayer};
use super::{InferencePlan, PlanOptions};
use crate::config::Stem;
use crate::error::{Error, Result};
use crate::model::DenseNet;
use crate::params::{BnP, ConvP};

/// A convolution ready for inference: where its (possibly BN-folded) weight lives in the plan's
/// weight vector, and its bias.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    /// `[OC, IC, KH, KW]`: `weights[weight]` of the plan.
    pub weight: Range<usize>,
    /// `[OC]`: the folded batch norm's shift.
    pub bias: Option<Vec<f32>>,
    pub ic: usize,
    pub oc: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    /// The convolution `p` of the parameter vector `weights`, with the batch norm that follows it
    /// folded in (`fold`): its weight rows are scaled in place.
    fn new(p: &ConvP, weights: &mut [f32], fold: Option<&Affine>) -> Conv {
        let weight = p.weight.off..p.weight.off + p.weight.len;
        let bias = fold.map(|bn| {
            // BN(conv(x))[oc] = scale[oc]·(W·x)[oc] + shift[oc] = ((scale[oc]·W)·x)[oc] + shift[oc].
            let w = &mut weights[weight.clone()];
            let per_oc = w.len() / p.oc;
            for (row, &s) in w.chunks_exact_mut(per_oc).zip(&bn.scale) {
                row.iter_mut().for_each(|w| *w *= s);
            }
            bn.shift.clone()
        });
        Conv {
            weight,
            bias,
            ic: p.ic,
            oc: p.oc,
            kernel: p.kernel,
            stride: p.stride,
            pad: p.pad,
        }
    }

    /// A 1×1, stride-1, unpadded convolution: a plain product, run by the plan itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.pad == 0
    }

    /// Floats of kernel scratch [`Conv::run`] needs on `batch` maps of `h×w`, on any tier: the
    /// plan's packing buffer for a 1×1, the kernels crate's workspace otherwise.
    pub fn scratch_len(&self, batch: usize, h: usize, w: usize) -> usize {
        if self.is_pointwise() {
            on_any_tier(|isa| pointwise_scratch_len(self.ic, batch * h * w, isa))
        } else {
            conv2d_forward_workspace_len(&self.geom(batch, h, w))
        }
    }

    pub fn geom(&self, batch: usize, h: usize, w: usize) -> Conv2dGeom {
        Conv2dGeom::square(
            batch,
            self.ic,
            self.oc,
            h,
            w,
            self.kernel,
            self.stride,
            self.pad,
        )
    }

    /// `out = conv(pre(inp)) (+ bias)` on a batch of `h×w` maps (CNHW), the weight read from
    /// the plan's `weights`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        weights: &[f32],
        out: &mut [f32],
        inp: &[f32],
        pre: Option<densenet_kernels::ChannelAffine<'_>>,
        batch: usize,
        h: usize,
        w: usize,
        ws: &mut Workspace,
    ) {
        if !self.is_pointwise() {
            let g = self.geom(batch, h, w);
            return self.run_geom(weights, out, inp, pre, &g, ws);
        }
        // The tier is read on each call, as `conv2d_forward` does for the other convolutions.
        let isa = densenet_kernels::active_isa();
        let m = batch * h * w;
        let pack_b = ws.get(pointwise_scratch_len(self.ic, m, isa));
        pointwise_forward(
            out,
            inp,
            &weights[self.weight.clone()],
            [self.oc, self.ic],
            isa,
            self.bias.as_deref(),
            pre,
            m,
            pack_b,
        );
    }

    /// `out = conv(pre(inp)) (+ bias)` for the geometry `g` (the convolution's own channels
    /// and kernel, any input size and padding), by the kernels crate.
    pub fn run_geom(
        &self,
        weights: &[f32],
        out: &mut [f32],
        inp: &[f32],
        pre: Option<densenet_kernels::ChannelAffine<'_>>,
        g: &Conv2dGeom,
        ws: &mut Workspace,
    ) {
        debug_assert!(g.in_channels == self.ic && g.out_channels == self.oc);
        let weight = &weights[self.weight.clone()];
        conv2d_forward(out, inp, weight, self.bias.as_deref(), pre, g, ws);
    }

    /// Floats held outside the weight vector (the bias).
    pub fn own_floats(&self) -> usize {
        self.bias.as_ref().map_or(0, Vec::len)
    }
}

/// Pooled rows per band of the ImageNet stem run by bands (`PlanOptions::stem_in_bands`): 16
/// (or 17) rows of the 7×7 convolution's output per band, about half a MiB at 112 columns of
/// 64 channels, which the max pooling reads back from the cache; each band's convolution has
/// 4 column tasks of 512 columns (its scratch 0.6 MiB instead of the whole map's 1.49 MiB).
const STEM_BAND_ROWS: usize = 8;

/// The most floats `len` asks for on any tier: a plan built on one tier may run capped to
/// another, whose tiles (and packed buffers) differ.
fn on_any_tier(len: impl Fn(Isa) -> usize) -> usize {
    Isa::ALL.into_iter().map(len).max().unwrap_or(0)
}

/// The ImageNet stem's 3×3/s2/p1 max pooling of `planes` planes of `sh × sw`.
pub(crate) fn stem_pool(planes: usize, sh: usize, sw: usize) -> Pool2dGeom {
    Pool2dGeom {
        planes,
        in_h: sh,
        in_w: sw,
        kernel: 3,
        stride: 2,
        pad: 1,
    }
}

/// The ImageNet stem (7×7/s2 convolution, batch norm, ReLU, 3×3/s2 max pooling) run a band of
/// pooled rows at a time: each band's convolution output rows are those its pooling windows
/// read (a window row shared with the band above is computed by both), and its input rows
/// those the convolution's windows read, zero rows standing for the padding above and below.
/// Every value is the same sum, in the same order, as in the whole map, so the results are the
/// same bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StemBands {
    /// The convolution's output size.
    pub sh: usize,
    pub sw: usize,
    /// Pooled rows (block 1's map height).
    pub ph: usize,
}

impl StemBands {
    pub fn new(sh: usize, sw: usize, ph: usize) -> Self {
        StemBands { sh, sw, ph }
    }

    /// The stem's max pooling over `planes` planes.
    pub fn pool(&self, planes: usize) -> Pool2dGeom {
        stem_pool(planes, self.sh, self.sw)
    }

    /// The bands: pooled rows of each.
    pub fn bands(&self) -> impl Iterator<Item = Range<usize>> {
        let ph = self.ph;
        (0..ph)
            .step_by(STEM_BAND_ROWS)
            .map(move |p0| p0..(p0 + STEM_BAND_ROWS).min(ph))
    }

    /// The convolution output rows band `pooled` needs.
    pub fn conv_rows(&self, pooled: &Range<usize>) -> Range<usize> {
        maxpool2d_input_rows(&self.pool(1), pooled)
    }

    /// The input rows (of the unpadded input; negative and past-the-end ones are padding) that
    /// convolution output rows `rows` read: 7 rows from `2·y − 3` for each output row `y`.
    pub fn input_rows(rows: &Range<usize>) -> (isize, usize) {
        (2 * rows.start as isize - 3, 2 * rows.len() + 5)
    }

    /// The stem convolution `conv0` on a band of `rows` output rows of `batch` images `w`
    /// wide: its input rows (zero rows standing for the padding), no vertical padding.
    pub fn conv_geom(conv0: &Conv, batch: usize, rows: &Range<usize>, w: usize) -> Conv2dGeom {
        let (_, in_rows) = Self::input_rows(rows);
        Conv2dGeom {
            in_h: in_rows,
            pad_h: 0,
            ..conv0.geom(batch, in_rows, w)
        }
    }

    /// The input band of convolution output rows `rows`, gathered into `dst` from the NCHW
    /// `input` of `batch` images of `h × w`: CNHW rows from `2·rows.start − 3` on, zero rows
    /// standing for the padding above and below. Returns the band and the convolution's
    /// geometry over it.
    pub fn gather<'d>(
        &self,
        conv0: &Conv,
        dst: &'d mut [f32],
        input: &[f32],
        batch: usize,
        (h, w): (usize, usize),
        rows: &Range<usize>,
    ) -> (&'d [f32], Conv2dGeom) {
        let g = Self::conv_geom(conv0, batch, rows, w);
        debug_assert_eq!((g.out_h(), g.out_w()), (rows.len(), self.sw));
        let (y0, in_rows) = Self::input_rows(rows);
        let band = &mut dst[..g.input_len()];
        for (i, dst_row) in band.chunks_exact_mut(w).enumerate() {
            // Row `i` of the band: plane (channel, image), then input row `y`.
            let (plane, y) = (i / in_rows, y0 + (i % in_rows) as isize);
            let (c, img) = (plane / batch, plane % batch);
            match usize::try_from(y).ok().filter(|&y| y < h) {
                Some(y) => {
                    dst_row.copy_from_slice(&input[((img * g.in_channels + c) * h + y) * w..][..w])
                }
                None => dst_row.fill(0.0),
            }
        }
        (band, g)
    }

    /// The most convolution output rows a band needs.
    pub fn max_rows(&self) -> usize {
        self.bands()
            .map(|b| self.conv_rows(&b).len())
            .max()
            .unwrap_or(0)
    }

    /// The most input rows a band needs.
    pub fn max_input_rows(&self) -> usize {
        2 * self.max_rows() + 5
    }
}

/// Batch norm `p` in eval form, exactly as the training code's eval forward derives it:
/// `scale = γ/√(var + eps)` (the root in `f64`), `shift = β − mean·scale`.
fn bn_eval(p: &BnP, params: &[f32], buffers: &[f32], eps: f32) -> Affine {
    let (gamma, beta) = (p.gamma.of(params), p.beta.of(params));
    let (rm, rv) = (p.running_mean.of(buffers), p.running_var.of(buffers));
    let mut a = Affine::identity(p.channels);
    for c in 0..p.channels {
        let is = (1.0 / (f64::from(rv[c]) + f64::from(eps)).sqrt()) as f32;
        a.scale[c] = gamma[c] * is;
        a.shift[c] = beta[c] - rm[c] * a.scale[c];
    }
    a
}

/// One dense layer, ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    /// `norm1` as the map applied to the block prefix before `conv1` (with ReLU).
    pub norm1: Affine,
    pub conv1: Conv,
    /// With a bottleneck: the map before `conv2` (with ReLU) — `norm2`, or the identity once
    /// `norm2` is folded into `conv1` — and `conv2`.
    pub bottleneck: Option<(Affine, Conv)>,
}

/// One transition, ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Transition {
    pub norm: Affine,
    pub conv: Conv,
}

/// Arena buffer indices (into the layout's ranges); `None` where a buffer does not exist.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buffers {
    /// The input's CNHW copy: for a stem run whole at batch 2 and more (at batch 1 NCHW is
    /// CNHW and the stem reads the caller's input in place); for a stem run by bands, one band
    /// of input rows, zero rows for the padding included (see [`StemBands`]).
    pub input: Option<usize>,
    /// The ImageNet stem convolution's output: the whole map, or one band of its rows.
    pub stem: Option<usize>,
    /// The kernels' scratch of each step (stem, blocks and transitions, head), where it runs
    /// convolutions of the kernels crate or the plan's own 1×1 products.
    pub kernels: Vec<Option<usize>>,
    pub feats: Vec<usize>,
    pub bottleneck: Vec<Option<usize>>,
    /// The strips' scratch of each block run by strips.
    pub strips: Vec<Option<usize>>,
    pub mapped: Vec<Option<usize>>,
    pub trans: Vec<usize>,
    pub trans_mapped: Vec<Option<usize>>,
    pub pooled: usize,
    pub logits_t: usize,
    pub logits: usize,
}

/// Builds the plan from `model`'s configuration, layout and running statistics, and `weights`:
/// a copy of (or the very vector of) its parameters, which the plan keeps, folding batch norms
/// into it in place, so the weights exist once.
pub(crate) fn build(
    model: &DenseNet,
    mut weights: Vec<f32>,
    batch: usize,
    h: usize,
    w: usize,
    opts: PlanOptions,
) -> Result<InferencePlan> {
    let cfg = model.config().clone();
    if batch == 0 {
        return Err(Error::Shape(
            "an inference plan needs a batch of at least 1".into(),
        ));
    }
    let sizes = cfg.block_sizes(h, w)?;
    let isa = densenet_kernels::active_isa();
    let arch = &model.arch;
    let buffers = model.store.buffers();
    let eps = model.bn.eps;

    // Stem.
    let norm0 = arch
        .norm0
        .as_ref()
        .map(|p| bn_eval(p, &weights, buffers, eps));
    let fold0 = opts.fold_norm0 && norm0.is_some();
    let conv0 = Conv::new(&arch.conv0, &mut weights, norm0.as_ref().filter(|_| fold0));
    let norm0 = if fold0 { None } else { norm0 };
    let stem_hw = match cfg.stem {
        Stem::ImageNet => Some(((h + 6 - 7) / 2 + 1, (w + 6 - 7) / 2 + 1)),
        Stem::Cifar => None,
    };

    // Blocks and transitions.
    let mut layers = Vec::with_capacity(arch.blocks.len());
    for block in &arch.blocks {
        let mut out = Vec::with_capacity(block.len());
        for lp in block {
            let norm1 = bn_eval(&lp.norm1, &weights, buffers, eps);
            let layer = match &lp.bottleneck {
                None => Layer {
                    norm1,
                    conv1: Conv::new(&lp.conv1, &mut weights, None),
                    bottleneck: None,
                },
                Some((n2, c2)) => {
                    let norm2 = bn_eval(n2, &weights, buffers, eps);
                    let (conv1, pre2) = if opts.fold_norm2 {
                        let conv1 = Conv::new(&lp.conv1, &mut weights, Some(&norm2));
                        (conv1, Affine::identity(n2.channels))
                    } else {
                        (Conv::new(&lp.conv1, &mut weights, None), norm2)
                    };
                    Layer {
                        norm1,
                        conv1,
                        bottleneck: Some((pre2, Conv::new(c2, &mut weights, None))),
                    }
                }
            };
            out.push(layer);
        }
        layers.push(out);
    }
    let mut transitions = Vec::with_capacity(arch.transitions.len());
    for t in &arch.transitions {
        let norm = bn_eval(&t.norm, &weights, buffers, eps);
        let conv = Conv::new(&t.conv, &mut weights, None);
        transitions.push(Transition { norm, conv });
    }
    let norm5 = bn_eval(&arch.norm5, &weights, buffers, eps);
    let classifier =
        arch.classifier.weight.off..arch.classifier.weight.off + arch.classifier.weight.len;
    let classifier_b =
        arch.classifier.bias.off..arch.classifier.bias.off + arch.classifier.bias.len;

    // Buffers and their liveness: step 0 is the stem, 2b+1 block b, 2b+2 transition b, 2B the
    // head (B blocks).
    let nb = sizes.len();
    let mut reqs = Vec::new();
    let mut req = |len: usize, first: usize, last: usize| {
        reqs.push(Request { len, first, last });
        reqs.len() - 1
    };
    // The stem's two buffers, whole or by bands: by bands where that takes less memory (not
    // for maps of one band, or of barely more).
    let (c_in, c0) = (cfg.in_channels, cfg.init_features);
    let whole_stem = stem_hw.map(|(sh, sw)| {
        let copy = if batch > 1 { c_in * batch * h * w } else { 0 };
        (copy, c0 * batch * sh * sw)
    });
    let banded = |bands: &StemBands| {
        (
            c_in * batch * bands.max_input_rows() * w,
            c0 * batch * bands.max_rows() * bands.sw,
        )
    };
    let stem_bands = stem_hw
        .filter(|_| opts.stem_in_bands)
        .map(|(sh, sw)| StemBands::new(sh, sw, sizes[0].0))
        .filter(|bands| {
            let (copy, out) = banded(bands);
            whole_stem.is_some_and(|(c, o)| copy + out < c + o)
        });
    let mut bufs = Buffers::default();
    match (stem_bands.as_ref().map(banded), whole_stem) {
        (Some((copy, out)), _) | (None, Some((copy, out))) => {
            bufs.input = (copy > 0).then(|| req(copy, 0, 0));
            bufs.stem = Some(req(out, 0, 0));
        }
        // The CIFAR stem's convolution writes block 1's buffer.
        (None, None) => bufs.input = (batch > 1).then(|| req(c_in * batch * h * w, 0, 0)),
    }
    // Scratch per step, in the arena: each step's own, sharing memory with the other steps'
    // buffers.
    let mut scratch = vec![0; 2 * nb + 1];
    scratch[0] = match stem_bands {
        Some(bands) => bands
            .bands()
            .map(|pooled| {
                let rows = bands.conv_rows(&pooled);
                conv2d_forward_workspace_len(&StemBands::conv_geom(&conv0, batch, &rows, w))
            })
            .max()
            .unwrap_or(0),
        None => conv0.scratch_len(batch, h, w),
    };
    let mut schedules = Vec::with_capacity(sizes.len());
    let mut winograd = Vec::with_capacity(sizes.len());
    for (b, &(bh, bw)) in sizes.iter().enumerate() {
        let m = batch * bh * bw;
        let c_out = cfg.block_out_channels(b);
        bufs.feats
            .push(req(c_out * m, 2 * b, (2 * b + 2).min(2 * nb)));
        let bk = cfg.bn_size.map(|_| cfg.bottleneck_channels());
        // Run by strips, a layer keeps its bottleneck in the strips' scratch, an arena buffer
        // live during the block (so it shares memory with the stem's and the transitions').
        let by_strips = opts.dense_layers_by_strips && opts.fuse_bn_relu_into_packing;
        let schedule = match bk {
            Some(_) if by_strips => schedule(batch, bh, rayon::current_num_threads()),
            _ => BlockSchedule::Passes,
        };
        let block_winograd = uses_winograd(schedule, batch, bh, bw).filter(|_| opts.winograd_3x3);
        winograd.push(block_winograd);
        bufs.bottleneck.push(
            bk.filter(|_| schedule == BlockSchedule::Passes)
                .map(|bk| req(bk * m, 2 * b + 1, 2 * b + 1)),
        );
        let k = cfg.growth_rate;
        let k0 = cfg.block_in_channels(b);
        let strip_scratch = match (schedule, bk) {
            (BlockSchedule::Images, Some(bk)) => Some(
                ImageBlock {
                    batch,
                    h: bh,
                    w: bw,
                    k0,
                    k,
                    bk,
                    layers: cfg.block_config[b],
                    winograd: block_winograd,
                }
                .scratch_len(),
            ),
            (BlockSchedule::Strips { .. } | BlockSchedule::Channels, Some(bk)) => (0..cfg
                .block_config[b])
                .map(|l| {
                    let layer = StripLayer {
                        batch,
                        h: bh,
                        w: bw,
                        c: k0 + l * k,
                        bk,
                        k,
                        rows: match schedule {
                            BlockSchedule::Strips { rows } => rows,
                            _ => bh,
                        },
                        winograd: block_winograd,
                    };
                    if schedule == BlockSchedule::Channels {
                        layer.channels_scratch_len()
                    } else {
                        layer.scratch_len()
                    }
                })
                .max(),
            _ => None,
        };
        if schedule == BlockSchedule::Passes || bk.is_none() {
            // Layer by layer, through `Conv::run` (layers run by strips use theirs).
            scratch[2 * b + 1] = layers[b]
                .iter()
                .flat_map(|l| {
                    let second = l
                        .bottleneck
                        .as_ref()
                        .map(|(_, c)| c.scratch_len(batch, bh, bw));
                    [l.conv1.scratch_len(batch, bh, bw)]
                        .into_iter()
                        .chain(second)
                })
                .max()
                .unwrap_or(0);
        }
        schedules.push(schedule);
        bufs.strips
            .push(strip_scratch.map(|len| req(len, 2 * b + 1, 2 * b + 1)));
        let widest = (c_out - cfg.growth_rate).max(bk.unwrap_or(0));
        bufs.mapped
            .push((!opts.fuse_bn_relu_into_packing).then(|| req(widest * m, 2 * b + 1, 2 * b + 1)));
        if let Some(t) = transitions.get(b) {
            let step = 2 * b + 2;
            let (oh, ow) = (bh / 2, bw / 2);
            scratch[step] = if opts.pool_before_transition_conv {
                t.conv.scratch_len(batch, oh, ow)
            } else {
                t.conv.scratch_len(batch, bh, bw)
            };
            if opts.pool_before_transition_conv {
                bufs.trans.push(req(c_out * batch * oh * ow, step, step));
                bufs.trans_mapped.push(None);
            } else {
                bufs.trans.push(req(t.conv.oc * m, step, step));
                bufs.trans_mapped
                    .push((!opts.fuse_bn_relu_into_packing).then(|| req(c_out * m, step, step)));
            }
        }
    }
    let (classes, cf) = (cfg.num_classes, cfg.final_channels());
    scratch[2 * nb] = on_any_tier(|isa| {
        if batch == 1 {
            gemm::gemm_abt_scratch_len(isa, 1, classes, false)
        } else {
            pointwise_scratch_len(cf, batch, isa)
        }
    });
    bufs.kernels = scratch
        .iter()
        .enumerate()
        .map(|(step, &len)| (len > 0).then(|| req(len, step, step)))
        .collect();
    bufs.pooled = req(batch * cfg.final_channels(), 2 * nb, 2 * nb);
    bufs.logits_t = req(batch * cfg.num_classes, 2 * nb, 2 * nb);
    bufs.logits = req(batch * cfg.num_classes, 2 * nb, 2 * nb);
    let layout = arena::layout(&reqs);

    let arena = vec![0.0; layout.len];

    Ok(InferencePlan {
        config: cfg,
        batch,
        h,
        w,
        opts,
        isa,
        sizes,
        stem_hw,
        stem_bands,
        conv0,
        norm0,
        layers,
        transitions,
        norm5,
        weights,
        classifier,
        classifier_b,
        arena,
        ranges: layout.ranges,
        peak_floats: layout.peak,
        bufs,
        schedules,
        winograd,
    })
}

/// One pass on zeros when the plan is built, so that its first real pass finds every page of the
/// arena mapped.
pub(crate) fn warm_up(plan: &mut InferencePlan) -> Result<()> {
    let zeros = vec![0.0; plan.input_len()];
    plan.forward(&zeros)?;
    Ok(())
}
