//! The parameter store: every weight, bias and batch-norm running statistic of a network, named
//! exactly as torchvision's state-dict keys, plus their gradients.
//!
//! Storage is three flat vectors: `params` (trainable: conv and linear weights, BN γ and β,
//! linear bias), `grads` (same layout as `params`) and `buffers` (BN running mean and variance).
//! Each tensor is a named range of one of them. Keeping the running statistics out of `params`
//! lets a training forward pass read the weights (`&[f32]`) while it updates the statistics
//! (`&mut [f32]`), and keeps them out of SGD.
//!
//! `num_batches_tracked` is not an `f32` tensor: it is kept as one `u64` per batch norm, read with
//! [`ParamStore::batches_tracked`] and written with [`ParamStore::set_batches_tracked`].

use std::collections::HashMap;

use crate::config::{DenseNetConfig, Stem};
use crate::error::Result;
use crate::init::init_torchvision;

/// What a tensor is; decides its initialisation and whether SGD updates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// Convolution weight `[OC, IC, KH, KW]`.
    ConvWeight,
    /// Batch-norm scale γ `[C]`.
    BnWeight,
    /// Batch-norm shift β `[C]`.
    BnBias,
    /// Batch-norm running mean `[C]` (not trainable).
    RunningMean,
    /// Batch-norm running variance `[C]` (not trainable).
    RunningVar,
    /// Linear weight `[out, in]`.
    LinearWeight,
    /// Linear bias `[out]`.
    LinearBias,
}

impl TensorKind {
    /// Whether SGD updates the tensor (running statistics are not).
    pub fn trainable(self) -> bool {
        !matches!(self, TensorKind::RunningMean | TensorKind::RunningVar)
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    kind: TensorKind,
    offset: usize,
    len: usize,
}

/// A range of `params`/`grads` (trainable) or of `buffers` (running statistics).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub off: usize,
    pub len: usize,
}

impl Slot {
    pub fn of<'a>(&self, v: &'a [f32]) -> &'a [f32] {
        &v[self.off..self.off + self.len]
    }
    pub fn of_mut<'a>(&self, v: &'a mut [f32]) -> &'a mut [f32] {
        &mut v[self.off..self.off + self.len]
    }
}

/// A convolution without bias (DenseNet has none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvP {
    pub weight: Slot,
    pub ic: usize,
    pub oc: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

/// A batch norm: γ, β in `params`, running statistics in `buffers`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BnP {
    pub gamma: Slot,
    pub beta: Slot,
    pub running_mean: Slot,
    pub running_var: Slot,
    pub channels: usize,
}

/// The classifier.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinearP {
    pub weight: Slot,
    pub bias: Slot,
    pub out_features: usize,
}

/// One dense layer: `norm1, conv1` and, with a bottleneck, `norm2, conv2`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerP {
    pub norm1: BnP,
    pub conv1: ConvP,
    pub bottleneck: Option<(BnP, ConvP)>,
}

/// A transition: BN, ReLU, 1×1 conv, 2×2 average pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransitionP {
    pub norm: BnP,
    pub conv: ConvP,
}

/// Where every parameter of the network lives in the store.
#[derive(Clone, Debug)]
pub(crate) struct Arch {
    pub conv0: ConvP,
    pub norm0: Option<BnP>,
    pub blocks: Vec<Vec<LayerP>>,
    pub transitions: Vec<TransitionP>,
    pub norm5: BnP,
    pub classifier: LinearP,
}

/// All tensors of a network, by torchvision name, with gradients.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    params: Vec<f32>,
    grads: Vec<f32>,
    buffers: Vec<f32>,
    bn_names: Vec<String>,
    batches_tracked: Vec<u64>,
}

impl ParamStore {
    /// Every tensor of `cfg`, initialised as torchvision does (see [`init_torchvision`]) from
    /// `seed`.
    pub fn new(cfg: &DenseNetConfig, seed: u64) -> Result<ParamStore> {
        cfg.validate()?;
        let (mut store, _) = ParamStore::build(cfg);
        init_torchvision(&mut store, seed);
        Ok(store)
    }

    fn add(&mut self, name: String, shape: Vec<usize>, kind: TensorKind) -> Slot {
        let len = shape.iter().product();
        let vec = if kind.trainable() {
            &mut self.params
        } else {
            &mut self.buffers
        };
        let offset = vec.len();
        vec.resize(offset + len, 0.0);
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push(Entry {
            name,
            shape,
            kind,
            offset,
            len,
        });
        Slot { off: offset, len }
    }

    fn conv(&mut self, name: &str, ic: usize, oc: usize, k: usize, s: usize, p: usize) -> ConvP {
        let weight = self.add(
            format!("{name}.weight"),
            vec![oc, ic, k, k],
            TensorKind::ConvWeight,
        );
        ConvP {
            weight,
            ic,
            oc,
            kernel: k,
            stride: s,
            pad: p,
        }
    }

    fn bn(&mut self, name: &str, c: usize) -> BnP {
        let gamma = self.add(format!("{name}.weight"), vec![c], TensorKind::BnWeight);
        let beta = self.add(format!("{name}.bias"), vec![c], TensorKind::BnBias);
        let running_mean = self.add(
            format!("{name}.running_mean"),
            vec![c],
            TensorKind::RunningMean,
        );
        let running_var = self.add(
            format!("{name}.running_var"),
            vec![c],
            TensorKind::RunningVar,
        );
        self.bn_names.push(name.to_string());
        self.batches_tracked.push(0);
        BnP {
            gamma,
            beta,
            running_mean,
            running_var,
            channels: c,
        }
    }

    /// Lays out every tensor of `cfg` in torchvision's state-dict order (all zero; see
    /// [`crate::init`]). The configuration must be valid.
    pub(crate) fn build(cfg: &DenseNetConfig) -> (ParamStore, Arch) {
        let mut s = ParamStore::default();
        let k = cfg.growth_rate;
        let c0 = cfg.init_features;
        let (conv0, norm0) = match cfg.stem {
            Stem::ImageNet => {
                let conv0 = s.conv("features.conv0", cfg.in_channels, c0, 7, 2, 3);
                (conv0, Some(s.bn("features.norm0", c0)))
            }
            Stem::Cifar => (s.conv("features.conv0", cfg.in_channels, c0, 3, 1, 1), None),
        };
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for (b, &layers) in cfg.block_config.iter().enumerate() {
            let cin = cfg.block_in_channels(b);
            let mut block = Vec::with_capacity(layers);
            for l in 0..layers {
                let name = format!("features.denseblock{}.denselayer{}", b + 1, l + 1);
                let c = cin + l * k;
                let norm1 = s.bn(&format!("{name}.norm1"), c);
                let layer = match cfg.bn_size {
                    Some(bs) => {
                        let conv1 = s.conv(&format!("{name}.conv1"), c, bs * k, 1, 1, 0);
                        let norm2 = s.bn(&format!("{name}.norm2"), bs * k);
                        let conv2 = s.conv(&format!("{name}.conv2"), bs * k, k, 3, 1, 1);
                        LayerP {
                            norm1,
                            conv1,
                            bottleneck: Some((norm2, conv2)),
                        }
                    }
                    None => LayerP {
                        norm1,
                        conv1: s.conv(&format!("{name}.conv1"), c, k, 3, 1, 1),
                        bottleneck: None,
                    },
                };
                block.push(layer);
            }
            blocks.push(block);
            if b + 1 < cfg.block_config.len() {
                let name = format!("features.transition{}", b + 1);
                let cout = cfg.block_out_channels(b);
                let norm = s.bn(&format!("{name}.norm"), cout);
                let conv = s.conv(
                    &format!("{name}.conv"),
                    cout,
                    cfg.transition_out_channels(b),
                    1,
                    1,
                    0,
                );
                transitions.push(TransitionP { norm, conv });
            }
        }
        let cf = cfg.final_channels();
        let norm5 = s.bn("features.norm5", cf);
        let weight = s.add(
            "classifier.weight".into(),
            vec![cfg.num_classes, cf],
            TensorKind::LinearWeight,
        );
        let bias = s.add(
            "classifier.bias".into(),
            vec![cfg.num_classes],
            TensorKind::LinearBias,
        );
        // Growing by `resize` left up to twice the capacity needed: give it back, so that a
        // model (and an inference plan, which takes over `params`) holds what it uses.
        s.params.shrink_to_fit();
        s.buffers.shrink_to_fit();
        s.grads = vec![0.0; s.params.len()];
        let arch = Arch {
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            classifier: LinearP {
                weight,
                bias,
                out_features: cfg.num_classes,
            },
        };
        (s, arch)
    }

    /// A store with this one's layout and counters, all values zero and no gradient storage:
    /// where a load is staged before [`ParamStore::take_values`] moves it in.
    pub(crate) fn empty_like(&self) -> ParamStore {
        ParamStore {
            entries: self.entries.clone(),
            index: self.index.clone(),
            params: vec![0.0; self.params.len()],
            grads: Vec::new(),
            buffers: vec![0.0; self.buffers.len()],
            bn_names: self.bn_names.clone(),
            batches_tracked: self.batches_tracked.clone(),
        }
    }

    /// Takes the values and counters of `staged`, a store of the same layout made by
    /// [`ParamStore::empty_like`]; the gradients stay.
    pub(crate) fn take_values(&mut self, staged: ParamStore) {
        assert!(
            staged.params.len() == self.params.len()
                && staged.buffers.len() == self.buffers.len()
                && staged.batches_tracked.len() == self.batches_tracked.len(),
            "take_values: a store of another layout"
        );
        self.params = staged.params;
        self.buffers = staged.buffers;
        self.batches_tracked = staged.batches_tracked;
    }

    /// Every `f32` tensor name, in torchvision's state-dict order (without the
    /// `num_batches_tracked` counters; see [`ParamStore::bn_names`]).
    pub fn tensor_names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    /// The shape and values of a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        let e = &self.entries[*self.index.get(name)?];
        let v = if e.kind.trainable() {
            &self.params
        } else {
            &self.buffers
        };
        Some((&e.shape, &v[e.offset..e.offset + e.len]))
    }

    /// The shape and mutable values of a tensor by name.
    pub fn tensor_mut(&mut self, name: &str) -> Option<(&[usize], &mut [f32])> {
        let e = &self.entries[*self.index.get(name)?];
        let v = if e.kind.trainable() {
            &mut self.params
        } else {
            &mut self.buffers
        };
        Some((&e.shape, &mut v[e.offset..e.offset + e.len]))
    }

    /// What a tensor is, by name.
    pub fn kind(&self, name: &str) -> Option<TensorKind> {
        Some(self.entries[*self.index.get(name)?].kind)
    }

    /// The gradient of a trainable tensor (`None` for running statistics and unknown names).
    pub fn grad(&self, name: &str) -> Option<&[f32]> {
        let e = &self.entries[*self.index.get(name)?];
        e.kind
            .trainable()
            .then(|| &self.grads[e.offset..e.offset + e.len])
    }

    /// The batch-norm module names (`features.norm0`, `...denselayer1.norm1`, ...), in order.
    pub fn bn_names(&self) -> &[String] {
        &self.bn_names
    }

    /// `num_batches_tracked` of the batch norm `bn_name` (e.g. `features.norm5`, without the
    /// `.num_batches_tracked` suffix, though that suffix is accepted too).
    pub fn batches_tracked(&self, bn_name: &str) -> Option<u64> {
        let i = self.bn_position(bn_name)?;
        Some(self.batches_tracked[i])
    }

    /// Sets `num_batches_tracked` of a batch norm; `false` if there is no such batch norm.
    pub fn set_batches_tracked(&mut self, bn_name: &str, value: u64) -> bool {
        match self.bn_position(bn_name) {
            Some(i) => {
                self.batches_tracked[i] = value;
                true
            }
            None => false,
        }
    }

    fn bn_position(&self, bn_name: &str) -> Option<usize> {
        let name = bn_name
            .strip_suffix(".num_batches_tracked")
            .unwrap_or(bn_name);
        self.bn_names.iter().position(|n| n == name)
    }

    /// Number of trainable parameters (what torchvision's `sum(p.numel() for p in
    /// model.parameters())` counts).
    pub fn num_parameters(&self) -> usize {
        self.params.len()
    }

    /// Floats of running statistics.
    pub fn num_buffers(&self) -> usize {
        self.buffers.len()
    }

    /// Sets every gradient to zero.
    pub fn zero_grads(&mut self) {
        self.grads.fill(0.0);
    }

    /// All trainable values, flat (the layout of [`ParamStore::grads`]).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Moves the parameter vector out, leaving the store without parameters: for a consumer
    /// that keeps the weights and drops the model (see `InferencePlan::from_model`).
    pub(crate) fn take_params(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.params)
    }

    /// All gradients, flat.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// The trainable tensors as `(name, kind, range into params/grads)`.
    pub fn trainable_ranges(&self) -> Vec<(&str, TensorKind, std::ops::Range<usize>)> {
        self.entries
            .iter()
            .filter(|e| e.kind.trainable())
            .map(|e| (e.name.as_str(), e.kind, e.offset..e.offset + e.len))
            .collect()
    }

    pub(crate) fn split_mut(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        (&mut self.params, &mut self.grads, &mut self.buffers)
    }

    pub(crate) fn bump_batches_tracked(&mut self) {
        for t in &mut self.batches_tracked {
            *t += 1;
        }
    }

    pub(crate) fn entries_for_init(&mut self) -> Vec<(TensorKind, Vec<usize>, Slot)> {
        self.entries
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.shape.clone(),
                    Slot {
                        off: e.offset,
                        len: e.len,
                    },
                )
            })
            .collect()
    }

    pub(crate) fn buffers(&self) -> &[f32] {
        &self.buffers
    }

    pub(crate) fn buffers_mut(&mut self) -> &mut [f32] {
        &mut self.buffers
    }

    pub(crate) fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
}
