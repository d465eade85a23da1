//! Building an [`InferencePlan`]: weights pre-transformed (BN folding, packing) and the arena
//! laid out by buffer liveness.

use densenet_kernels::conv2d::conv2d_forward;
use densenet_kernels::{Conv2dGeom, Isa, Workspace};

use super::arena::{self, Request};
use super::ops::{pointwise_forward, pointwise_scratch_len, Affine, PackedPointwise};
use super::{InferencePlan, PlanOptions};
use crate::config::Stem;
use crate::error::{Error, Result};
use crate::model::DenseNet;
use crate::params::{BnP, ConvP};

/// A convolution ready for inference: its (possibly BN-folded) weight and bias, packed once for
/// the GEMM when it is a 1×1 convolution and the plan pre-packs.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    /// `[OC, IC, KH, KW]`; empty when `packed` holds the weight instead.
    pub weight: Vec<f32>,
    /// `[OC]`: the folded batch norm's shift.
    pub bias: Option<Vec<f32>>,
    pub packed: Option<PackedPointwise>,
    pub ic: usize,
    pub oc: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    fn new(p: &ConvP, params: &[f32], fold: Option<&Affine>) -> Conv {
        let mut weight = p.weight.of(params).to_vec();
        let bias = fold.map(|bn| {
            // BN(conv(x))[oc] = scale[oc]·(W·x)[oc] + shift[oc] = ((scale[oc]·W)·x)[oc] + shift[oc].
            let per_oc = weight.len() / p.oc;
            for (row, &s) in weight.chunks_exact_mut(per_oc).zip(&bn.scale) {
                row.iter_mut().for_each(|w| *w *= s);
            }
            bn.shift.clone()
        });
        Conv {
            weight,
            bias,
            packed: None,
            ic: p.ic,
            oc: p.oc,
            kernel: p.kernel,
            stride: p.stride,
            pad: p.pad,
        }
    }

    /// Packs a 1×1 stride-1 unpadded convolution's weight for `isa` (and drops the plain copy).
    fn prepack(&mut self, isa: Isa) {
        if self.kernel == 1 && self.stride == 1 && self.pad == 0 {
            self.packed = Some(PackedPointwise::new(&self.weight, self.oc, self.ic, isa));
            self.weight = Vec::new();
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

    /// `out = conv(pre(inp)) (+ bias)` on a batch of `h×w` maps (CNHW).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        out: &mut [f32],
        inp: &[f32],
        pre: Option<densenet_kernels::ChannelAffine<'_>>,
        batch: usize,
        h: usize,
        w: usize,
        ws: &mut Workspace,
        pack_b: &mut [f32],
    ) {
        match &self.packed {
            Some(p) => pointwise_forward(
                out,
                inp,
                p,
                self.bias.as_deref(),
                pre,
                batch * h * w,
                pack_b,
            ),
            None => conv2d_forward(
                out,
                inp,
                &self.weight,
                self.bias.as_deref(),
                pre,
                &self.geom(batch, h, w),
                ws,
            ),
        }
    }

    /// Floats held (weight, bias, packed weight).
    pub fn floats(&self) -> usize {
        self.weight.len()
            + self.bias.as_ref().map_or(0, Vec::len)
            + self.packed.as_ref().map_or(0, |p| p.packed.len())
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
    pub input: usize,
    pub stem: Option<usize>,
    pub feats: Vec<usize>,
    pub bottleneck: Vec<Option<usize>>,
    pub mapped: Vec<Option<usize>>,
    pub trans: Vec<usize>,
    pub trans_mapped: Vec<Option<usize>>,
    pub pooled: usize,
    pub logits_t: usize,
    pub logits: usize,
}

pub(crate) fn build(
    model: &DenseNet,
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
    let params = model.store.params();
    let buffers = model.store.buffers();
    let eps = model.bn.eps;

    // Stem.
    let norm0 = arch
        .norm0
        .as_ref()
        .map(|p| bn_eval(p, params, buffers, eps));
    let fold0 = opts.fold_norm0 && norm0.is_some();
    let conv0 = Conv::new(&arch.conv0, params, norm0.as_ref().filter(|_| fold0));
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
            let norm1 = bn_eval(&lp.norm1, params, buffers, eps);
            let layer = match &lp.bottleneck {
                None => Layer {
                    norm1,
                    conv1: Conv::new(&lp.conv1, params, None),
                    bottleneck: None,
                },
                Some((n2, c2)) => {
                    let norm2 = bn_eval(n2, params, buffers, eps);
                    let (conv1, pre2) = if opts.fold_norm2 {
                        let conv1 = Conv::new(&lp.conv1, params, Some(&norm2));
                        (conv1, Affine::identity(n2.channels))
                    } else {
                        (Conv::new(&lp.conv1, params, None), norm2)
                    };
                    Layer {
                        norm1,
                        conv1,
                        bottleneck: Some((pre2, Conv::new(c2, params, None))),
                    }
                }
            };
            out.push(layer);
        }
        layers.push(out);
    }
    let mut transitions: Vec<Transition> = arch
        .transitions
        .iter()
        .map(|t| Transition {
            norm: bn_eval(&t.norm, params, buffers, eps),
            conv: Conv::new(&t.conv, params, None),
        })
        .collect();
    let mut conv0 = conv0;
    if opts.prepack_weights {
        conv0.prepack(isa);
        for l in layers.iter_mut().flatten() {
            l.conv1.prepack(isa);
            if let Some((_, c2)) = &mut l.bottleneck {
                c2.prepack(isa);
            }
        }
        for t in &mut transitions {
            t.conv.prepack(isa);
        }
    }
    let norm5 = bn_eval(&arch.norm5, params, buffers, eps);
    let classes = arch.classifier.out_features;
    let classifier = PackedPointwise::new(
        arch.classifier.weight.of(params),
        classes,
        cfg.final_channels(),
        isa,
    );
    let classifier_b = arch.classifier.bias.of(params).to_vec();

    // Buffers and their liveness: step 0 is the stem, 2b+1 block b, 2b+2 transition b, 2B the
    // head (B blocks).
    let nb = sizes.len();
    let mut reqs = Vec::new();
    let mut req = |len: usize, first: usize, last: usize| {
        reqs.push(Request { len, first, last });
        reqs.len() - 1
    };
    let mut bufs = Buffers {
        input: req(cfg.in_channels * batch * h * w, 0, 0),
        ..Buffers::default()
    };
    bufs.stem = stem_hw.map(|(sh, sw)| req(cfg.init_features * batch * sh * sw, 0, 0));
    let mut pack_b_len = 0;
    let mut note_conv = |c: &Conv, m: usize| {
        if let Some(p) = &c.packed {
            pack_b_len = pack_b_len.max(pointwise_scratch_len(p.ic, m, isa));
        }
    };
    note_conv(&conv0, batch * h * w);
    for (b, &(bh, bw)) in sizes.iter().enumerate() {
        let m = batch * bh * bw;
        let c_out = cfg.block_out_channels(b);
        bufs.feats
            .push(req(c_out * m, 2 * b, (2 * b + 2).min(2 * nb)));
        let bk = cfg.bn_size.map(|_| cfg.bottleneck_channels());
        bufs.bottleneck
            .push(bk.map(|bk| req(bk * m, 2 * b + 1, 2 * b + 1)));
        let widest = (c_out - cfg.growth_rate).max(bk.unwrap_or(0));
        bufs.mapped
            .push((!opts.fuse_bn_relu_into_packing).then(|| req(widest * m, 2 * b + 1, 2 * b + 1)));
        for l in &layers[b] {
            note_conv(&l.conv1, m);
            if let Some((_, c2)) = &l.bottleneck {
                note_conv(c2, m);
            }
        }
        if let Some(t) = transitions.get(b) {
            let step = 2 * b + 2;
            let (oh, ow) = (bh / 2, bw / 2);
            if opts.pool_before_transition_conv {
                bufs.trans.push(req(c_out * batch * oh * ow, step, step));
                bufs.trans_mapped.push(None);
                note_conv(&t.conv, batch * oh * ow);
            } else {
                bufs.trans.push(req(t.conv.oc * m, step, step));
                bufs.trans_mapped
                    .push((!opts.fuse_bn_relu_into_packing).then(|| req(c_out * m, step, step)));
                note_conv(&t.conv, m);
            }
        }
    }
    bufs.pooled = req(batch * cfg.final_channels(), 2 * nb, 2 * nb);
    bufs.logits_t = req(batch * cfg.num_classes, 2 * nb, 2 * nb);
    bufs.logits = req(batch * cfg.num_classes, 2 * nb, 2 * nb);
    pack_b_len = pack_b_len.max(pointwise_scratch_len(cfg.final_channels(), batch, isa));
    let layout = arena::layout(&reqs);

    Ok(InferencePlan {
        config: cfg,
        batch,
        h,
        w,
        opts,
        isa,
        sizes,
        stem_hw,
        conv0,
        norm0,
        layers,
        transitions,
        norm5,
        classifier,
        classifier_b,
        arena: vec![0.0; layout.len],
        ranges: layout.ranges,
        peak_floats: layout.peak,
        bufs,
        pack_b: vec![0.0; pack_b_len],
        kernels: Workspace::new(),
    })
}

/// One pass on zeros sizes the kernels' workspace, so later passes never grow it.
pub(crate) fn warm_up(plan: &mut InferencePlan) -> Result<()> {
    let zeros = vec![0.0; plan.input_len()];
    plan.forward(&zeros)?;
    Ok(())
}
