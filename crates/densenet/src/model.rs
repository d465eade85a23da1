//! The whole network: stem, dense blocks, transitions, head; forward in training and evaluation
//! mode, the loss, and per-stage traces for golden comparisons. Backward is in
//! [`crate::backward`].
//!
//! Input is NCHW `f32` as PyTorch takes it (`[N, IC, H, W]`, row-major); it is converted once to
//! the channel-major CNHW layout every kernel uses (`index = ((c·N + n)·H + y)·W + x`). Logits
//! are `[N, classes]`, one row per image, as PyTorch returns them.

use densenet_kernels::batchnorm::batchnorm_statistics;
use densenet_kernels::conv2d::conv2d_forward;
use densenet_kernels::linear::linear_forward;
use densenet_kernels::loss::softmax_cross_entropy_forward;
use densenet_kernels::pool::{global_avgpool_forward, maxpool2d_forward};
use densenet_kernels::{BatchNormConfig, BatchNormGeom, ChannelAffine, Pool2dGeom};

pub use crate::block::Mode;
use crate::block::{
    apply_affine, bn_affine, channel_statistics, conv_geom, dropout_seed, layer_forward,
    transition_forward, PassCtx,
};
use crate::config::DenseNetConfig;
use crate::error::{Error, Result};
use crate::init::init_torchvision;
use crate::params::{Arch, ParamStore};
use crate::plan::{MemoryPlan, TrainWorkspace};

/// A DenseNet: its configuration, parameters and the map from layers to parameters.
#[derive(Clone, Debug)]
pub struct DenseNet {
    config: DenseNetConfig,
    pub(crate) store: ParamStore,
    pub(crate) arch: Arch,
    pub(crate) bn: BatchNormConfig,
    seed: u64,
}

/// One named activation of a traced forward pass, NCHW.
#[derive(Clone, Debug, PartialEq)]
pub struct TracedTensor {
    /// `stem`, `denseblock1`, `transition1`, ..., `features` (the output of `norm5`, before the
    /// final ReLU, as torchvision's `model.features(x)`), `logits`.
    pub name: String,
    /// `[N, C, H, W]` (`[N, classes]` for the logits).
    pub shape: Vec<usize>,
    /// Row-major values in `shape`'s order.
    pub data: Vec<f32>,
}

impl DenseNet {
    /// A network for `config`, initialised as torchvision does from `seed` (which also seeds
    /// dropout masks).
    pub fn new(config: DenseNetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (mut store, arch) = ParamStore::build(&config);
        init_torchvision(&mut store, seed);
        Ok(DenseNet {
            config,
            store,
            arch,
            bn: BatchNormConfig::default(),
            seed,
        })
    }

    /// A network for `config` holding the weights of the safetensors file at `path`
    /// (torchvision names or the legacy spellings [`canonical_key`](crate::weights::canonical_key)
    /// accepts; `num_batches_tracked` restored where the file has it). `seed` seeds dropout.
    ///
    /// The file is read tensor by tensor straight into the network's parameters, so the only
    /// copy of the weights in memory is the network's own (its gradient storage is allocated
    /// zeroed and takes no memory until training touches it); no initialisation runs. Every
    /// missing, unexpected or mis-shaped tensor is reported at once ([`Error::Weights`]).
    pub fn from_weights(
        config: DenseNetConfig,
        path: impl AsRef<std::path::Path>,
        seed: u64,
    ) -> Result<(Self, crate::weights::LoadReport)> {
        config.validate()?;
        let (mut store, arch) = ParamStore::build(&config);
        let report = crate::weights::load_params_from_file(&mut store, path.as_ref())?;
        let model = DenseNet {
            config,
            store,
            arch,
            bn: BatchNormConfig::default(),
            seed,
        };
        Ok((model, report))
    }

    /// The configuration.
    pub fn config(&self) -> &DenseNetConfig {
        &self.config
    }

    /// The parameters, running statistics and gradients.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The parameters, mutable (e.g. to load weights by name).
    pub fn store_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    /// A workspace for `batch` images of `h×w` (see [`TrainWorkspace`]).
    pub fn workspace(
        &self,
        batch: usize,
        h: usize,
        w: usize,
        memory_efficient: bool,
    ) -> Result<TrainWorkspace> {
        TrainWorkspace::new(&self.config, batch, h, w, memory_efficient)
    }

    /// A workspace for `batch` images of `h×w` under a chosen [`MemoryPlan`].
    pub fn workspace_with_plan(
        &self,
        batch: usize,
        h: usize,
        w: usize,
        plan: MemoryPlan,
    ) -> Result<TrainWorkspace> {
        TrainWorkspace::with_plan(&self.config, batch, h, w, plan)
    }

    fn check_input(&self, ws: &TrainWorkspace, input: &[f32], mode: Mode) -> Result<()> {
        let (n, c, h, w) = (ws.batch, self.config.in_channels, ws.h, ws.w);
        if input.len() != n * c * h * w {
            return Err(Error::Shape(format!(
                "input has {} values; the workspace expects N={n} images of {c} channels of \
                 {h}x{w} ({} values, NCHW)",
                input.len(),
                n * c * h * w
            )));
        }
        if let Some(i) = input.iter().position(|v| !v.is_finite()) {
            let per_image = (c * h * w).max(1);
            return Err(Error::NonFinite(format!(
                "value {} at index {i} (image {}, NCHW) is not finite",
                input[i],
                i / per_image
            )));
        }
        if ws.blocks.len() != self.config.block_config.len()
            || ws.blocks.iter().enumerate().any(|(i, b)| {
                b.layers != self.config.block_config[i]
                    || b.feats.capacity() != self.config.block_out_channels(i)
            })
            || ws.pooled.len() != n * self.config.final_channels()
            || ws.logits.len() != n * self.config.num_classes
        {
            return Err(Error::Shape(
                "the workspace was made for a different configuration".into(),
            ));
        }
        if mode == Mode::Train {
            let smallest = ws.blocks.iter().map(|b| b.m()).min().unwrap_or(0);
            let stem = ws.stem_hw.0 * ws.stem_hw.1 * n;
            if smallest <= 1 || (self.arch.norm0.is_some() && stem <= 1) {
                return Err(Error::Shape(format!(
                    "training batch norm needs more than one value per channel, but batch {n} \
                     at {h}x{w} leaves N*H*W = 1 in some layer"
                )));
            }
        }
        Ok(())
    }

    /// Forward pass: logits `[N, classes]`. In [`Mode::Train`] batch statistics are used, the
    /// running statistics and `num_batches_tracked` are updated and dropout is applied, and the
    /// saved tensors a later [`DenseNet::backward`] needs are kept in `ws`.
    pub fn forward<'w>(
        &mut self,
        ws: &'w mut TrainWorkspace,
        input: &[f32],
        mode: Mode,
    ) -> Result<&'w [f32]> {
        self.check_input(ws, input, mode)?;
        crate::on_pool(|| self.run_forward(ws, input, mode, None));
        Ok(&ws.logits)
    }

    /// A training forward pass and the mean softmax cross-entropy against `labels` (one per
    /// image, each `< classes`); afterwards [`DenseNet::backward`] can run.
    pub fn forward_train(
        &mut self,
        ws: &mut TrainWorkspace,
        input: &[f32],
        labels: &[usize],
    ) -> Result<f32> {
        self.check_labels(ws, labels)?;
        self.check_input(ws, input, Mode::Train)?;
        ws.ready_for_backward = false;
        crate::on_pool(|| self.run_forward(ws, input, Mode::Train, None));
        ws.labels.clear();
        ws.labels.extend_from_slice(labels);
        let loss = softmax_cross_entropy_forward(&mut ws.probs, &ws.logits, labels);
        ws.ready_for_backward = true;
        Ok(loss)
    }

    /// The mean softmax cross-entropy of the logits of the last forward pass.
    pub fn loss(&self, ws: &mut TrainWorkspace, labels: &[usize]) -> Result<f32> {
        self.check_labels(ws, labels)?;
        Ok(softmax_cross_entropy_forward(
            &mut ws.probs,
            &ws.logits,
            labels,
        ))
    }

    fn check_labels(&self, ws: &TrainWorkspace, labels: &[usize]) -> Result<()> {
        if labels.len() != ws.batch {
            return Err(Error::Shape(format!(
                "{} labels for a batch of {}",
                labels.len(),
                ws.batch
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= self.config.num_classes)
        {
            return Err(Error::Shape(format!(
                "label {l} of image {i} is out of range for {} classes",
                self.config.num_classes
            )));
        }
        Ok(())
    }

    /// A forward pass that also returns every stage's output, NCHW (see [`TracedTensor`]).
    pub fn forward_trace(
        &mut self,
        ws: &mut TrainWorkspace,
        input: &[f32],
        mode: Mode,
    ) -> Result<Vec<TracedTensor>> {
        self.check_input(ws, input, mode)?;
        let mut trace = Vec::new();
        self.run_forward(ws, input, mode, Some(&mut trace));
        Ok(trace)
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    fn run_forward(
        &mut self,
        ws: &mut TrainWorkspace,
        input: &[f32],
        mode: Mode,
        mut trace: Option<&mut Vec<TracedTensor>>,
    ) {
        let n = ws.batch;
        // Bottleneck storage still lent to gradient buffers (a backward pass that did not
        // finish) is needed now.
        ws.reclaim_gradient_buffers();
        if mode == Mode::Train {
            ws.step += 1;
            self.store.bump_batches_tracked();
        }
        nchw_to_cnhw(&mut ws.input, input, n, ws.h * ws.w);
        let ctx = PassCtx {
            mode,
            memory_efficient: ws.memory_efficient,
            drop_rate: self.config.drop_rate,
            growth: self.config.growth_rate,
            bn: &self.bn,
            winograd: ws.winograd_3x3,
        };
        let arch = &self.arch;
        let (params, _, buffers) = self.store.split_mut();
        let params: &[f32] = params;
        let s = &mut ws.scratch;

        // Stem, writing the first block's channels [0, C0).
        let c0 = arch.conv0.oc;
        let (sh, sw) = ws.stem_hw;
        let g0 = conv_geom(&arch.conv0, n, ws.h, ws.w);
        let w0 = arch.conv0.weight.of(params);
        let first = &mut ws.blocks[0];
        match &arch.norm0 {
            None => conv2d_forward(
                first.feats.prefix_mut(c0),
                &ws.input,
                w0,
                None,
                None,
                &g0,
                &mut s.kernels,
            ),
            Some(norm0) => {
                conv2d_forward(
                    &mut ws.stem_conv,
                    &ws.input,
                    w0,
                    None,
                    None,
                    &g0,
                    &mut s.kernels,
                );
                let m0 = n * sh * sw;
                if mode == Mode::Train {
                    batchnorm_statistics(
                        &mut ws.stem_mean,
                        &mut ws.stem_invstd,
                        &ws.stem_conv,
                        self.bn.eps,
                        &BatchNormGeom {
                            channels: c0,
                            per_channel: m0,
                        },
                    );
                }
                bn_affine(
                    &mut s.scale[..c0],
                    &mut s.shift[..c0],
                    norm0,
                    params,
                    buffers,
                    &ws.stem_mean,
                    &ws.stem_invstd,
                    m0,
                    mode,
                    true,
                    &self.bn,
                );
                let pre = ChannelAffine {
                    scale: &s.scale[..c0],
                    shift: &s.shift[..c0],
                    relu: true,
                };
                // `relu(norm0(conv0))` in the first block's bottleneck storage, which its layers
                // only write after the pool has read it.
                let act = &mut first.bottleneck[..c0 * m0];
                apply_affine(act, &ws.stem_conv, &pre, m0);
                maxpool2d_forward(
                    first.feats.prefix_mut(c0),
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
            }
        }
        if mode == Mode::Train {
            let m = first.m();
            let (mean, invstd, feats) = (&mut first.mean, &mut first.invstd, &first.feats);
            channel_statistics(
                &mut mean[..c0],
                &mut invstd[..c0],
                feats.prefix(c0),
                m,
                &self.bn,
            );
        }
        if let Some(t) = trace.as_deref_mut() {
            let b = &ws.blocks[0];
            t.push(traced("stem", b.feats.prefix(c0), c0, n, b.h, b.w));
        }

        for (bi, layers) in arch.blocks.iter().enumerate() {
            {
                let blk = &mut ws.blocks[bi];
                for (l, layer) in layers.iter().enumerate() {
                    let seed = dropout_seed(self.seed, ws.step, bi, l);
                    layer_forward(layer, l, blk, params, buffers, s, &ctx, seed);
                }
            }
            if let Some(t) = trace.as_deref_mut() {
                let b = &ws.blocks[bi];
                let c = b.feats.capacity();
                let name = format!("denseblock{}", bi + 1);
                t.push(traced(&name, b.feats.as_slice(), c, n, b.h, b.w));
            }
            if let Some(tp) = arch.transitions.get(bi) {
                let (done, rest) = ws.blocks.split_at_mut(bi + 1);
                let stored = ws.stored_trans.get_mut(bi);
                transition_forward(
                    tp,
                    &done[bi],
                    &mut rest[0],
                    stored,
                    params,
                    buffers,
                    s,
                    &ctx,
                );
                if let Some(t) = trace.as_deref_mut() {
                    let b = &rest[0];
                    let name = format!("transition{}", bi + 1);
                    t.push(traced(
                        &name,
                        b.feats.prefix(tp.conv.oc),
                        tp.conv.oc,
                        n,
                        b.h,
                        b.w,
                    ));
                }
            }
        }

        // Head: relu(norm5(·)), global average pool, classifier.
        let last = ws.blocks.last().expect("validated: at least one block");
        let cf = arch.norm5.channels;
        let m = last.m();
        bn_affine(
            &mut s.scale[..cf],
            &mut s.shift[..cf],
            &arch.norm5,
            params,
            buffers,
            &last.mean[..cf],
            &last.invstd[..cf],
            m,
            mode,
            true,
            &self.bn,
        );
        if let Some(t) = trace.as_deref_mut() {
            let pre = ChannelAffine {
                scale: &s.scale[..cf],
                shift: &s.shift[..cf],
                relu: false,
            };
            apply_affine(&mut s.a[..cf * m], last.feats.as_slice(), &pre, m);
            t.push(traced("features", &s.a[..cf * m], cf, n, last.h, last.w));
        }
        let pre = ChannelAffine {
            scale: &s.scale[..cf],
            shift: &s.shift[..cf],
            relu: true,
        };
        let a = &mut s.a[..cf * m];
        apply_affine(a, last.feats.as_slice(), &pre, m);
        global_avgpool_forward(&mut ws.pooled, a, cf, n, last.h * last.w);
        let cls = &arch.classifier;
        linear_forward(
            &mut ws.logits,
            &ws.pooled,
            cls.weight.of(params),
            Some(cls.bias.of(params)),
            n,
        );
        if let Some(t) = trace {
            t.push(TracedTensor {
                name: "logits".into(),
                shape: vec![n, cls.out_features],
                data: ws.logits.clone(),
            });
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

/// A CNHW tensor of `c` channels as an NCHW [`TracedTensor`].
fn traced(name: &str, cnhw: &[f32], c: usize, n: usize, h: usize, w: usize) -> TracedTensor {
    let hw = h * w;
    let mut data = vec![0.0; c * n * hw];
    for ci in 0..c {
        for ni in 0..n {
            data[(ni * c + ci) * hw..(ni * c + ci + 1) * hw]
                .copy_from_slice(&cnhw[(ci * n + ni) * hw..(ci * n + ni + 1) * hw]);
        }
    }
    TracedTensor {
        name: name.into(),
        shape: vec![n, c, h, w],
        data,
    }
}
