//! Connection strengths inside each dense block: the paper's Figure 5 for any set of weights.
//!
//! Huang et al. (2017, §5, Figure 5) ask whether a dense layer really uses the feature maps of
//! *all* earlier layers. For every convolutional layer `l` of a block they plot "the average
//! absolute weight" of its connections to every source `s`, "normalized by the number of input
//! feature-maps". This module computes exactly that matrix from a [`ParamStore`].
//!
//! # The formula
//!
//! In dense block `b` with `k0` input channels, `L` layers and growth rate `k`, layer `l`
//! (1-based) reads the channel prefix `[0, k0 + (l−1)·k)` of the block buffer. That prefix is
//! made of **sources**: source `0` is the block input, channels `[0, k0)`; source `s ≥ 1` is the
//! output of layer `s`, channels `[k0 + (s−1)·k, k0 + s·k)`.
//!
//! The **target** is the first convolution that reads the prefix: `conv1` of the layer (the 1×1
//! bottleneck conv in DenseNet-B, or the 3×3 conv in a plain layer), with weight `W` of shape
//! `[OC, IC, KH, KW]` (OIHW). Then, with `C_s` the channel range of source `s`,
//!
//! ```text
//! strength(s → l) = 1 / (OC · |C_s| · KH · KW) · Σ_{o < OC} Σ_{c ∈ C_s} Σ_{i,j} |W[o, c, i, j]|
//! ```
//!
//! the mean of `|w|` over every weight that touches a channel of `s`. Dividing by `|C_s|` is the
//! paper's normalisation by the number of input feature maps (the block input has `k0` maps, a
//! layer's output `k`), so a wide block input does not look strong merely for being wide; the
//! extra division by `OC·KH·KW` only rescales a whole row and keeps values comparable across
//! layers of different widths. The transition after the block (its 1×1 `conv`) is an extra,
//! last target row that reads all `L + 1` sources. The last block has no transition.
//!
//! Entries with `s ≥ l` do not exist (a layer cannot read a later layer) and are `None`.
//!
//! ```
//! use densenet::{heatmap, DenseNetConfig, ParamStore};
//!
//! let cfg: DenseNetConfig = "bc:k=4,blocks=3-2,classes=2".parse()?;
//! let store = ParamStore::new(&cfg, 0)?;
//! let maps = heatmap::connection_strengths(&cfg, &store)?;
//! assert_eq!(maps.len(), 2);
//! // Block 1: targets = 3 layers + the transition, sources = input + 3 layers.
//! assert_eq!((maps[0].targets(), maps[0].sources()), (4, 4));
//! assert!(maps[0].get(0, 1).is_none()); // layer 1 cannot read layer 1
//! assert!(maps[0].get(0, 0).unwrap() > 0.0);
//! # Ok::<(), densenet::Error>(())
//! ```

use crate::config::DenseNetConfig;
use crate::error::{Error, Result};
use crate::params::ParamStore;

/// The connection-strength matrix of one dense block.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockHeatmap {
    /// Block index, 0-based (`features.denseblock{block+1}`).
    pub block: usize,
    /// Dense layers in the block, `L`.
    pub layers: usize,
    /// Whether the last target row is the transition after the block.
    pub has_transition: bool,
    /// Row-major `[targets, sources]`: row `t` is layer `t+1` (or the transition when
    /// `t == layers`), column `s` is the source (`0` = block input, `s` = layer `s`).
    pub values: Vec<Option<f32>>,
}

impl BlockHeatmap {
    /// Rows: the `L` layers plus the transition, if any.
    pub fn targets(&self) -> usize {
        self.layers + usize::from(self.has_transition)
    }

    /// Columns: the block input and the `L` layers.
    pub fn sources(&self) -> usize {
        self.layers + 1
    }

    /// Strength of the connection from `source` to target row `target`, `None` if the target
    /// does not read that source (or either index is out of range).
    pub fn get(&self, target: usize, source: usize) -> Option<f32> {
        if target >= self.targets() || source >= self.sources() {
            return None;
        }
        self.values[target * self.sources() + source]
    }

    /// The largest strength in the block (0 when empty).
    pub fn max(&self) -> f32 {
        self.values.iter().flatten().fold(0.0, |m, &v| m.max(v))
    }

    /// The torchvision name of the weight read for target row `target`.
    pub fn target_weight_name(&self, target: usize) -> String {
        if target == self.layers && self.has_transition {
            format!("features.transition{}.conv.weight", self.block + 1)
        } else {
            format!(
                "features.denseblock{}.denselayer{}.conv1.weight",
                self.block + 1,
                target + 1
            )
        }
    }
}

/// The connection-strength matrix of every dense block of `cfg`, from the weights in `store`
/// (see the [module docs](self) for the formula).
///
/// Errors if a needed conv weight is missing from `store` or has a shape that does not match
/// `cfg` (a store built for another configuration).
pub fn connection_strengths(cfg: &DenseNetConfig, store: &ParamStore) -> Result<Vec<BlockHeatmap>> {
    cfg.validate()?;
    let k = cfg.growth_rate;
    let mut maps = Vec::with_capacity(cfg.block_config.len());
    for (b, &layers) in cfg.block_config.iter().enumerate() {
        let k0 = cfg.block_in_channels(b);
        let has_transition = b + 1 < cfg.block_config.len();
        let mut map = BlockHeatmap {
            block: b,
            layers,
            has_transition,
            values: Vec::new(),
        };
        let sources = map.sources();
        map.values = vec![None; map.targets() * sources];
        for t in 0..map.targets() {
            // Target row t reads sources 0..=t: the block input and layers 1..=t.
            let read = t + 1;
            let name = map.target_weight_name(t);
            let (shape, w) = store
                .tensor(&name)
                .ok_or_else(|| Error::Shape(format!("the weights have no tensor {name}")))?;
            let ic = k0 + t * k;
            let &[oc, wic, kh, kw] = shape else {
                return Err(Error::Shape(format!(
                    "{name} has shape {shape:?}, expected a 4-d OIHW conv weight"
                )));
            };
            if wic != ic || oc == 0 || w.len() != oc * ic * kh * kw {
                return Err(Error::Shape(format!(
                    "{name} has shape {shape:?}, but the model reads {ic} input channels there"
                )));
            }
            for s in 0..read {
                let channels = if s == 0 {
                    0..k0
                } else {
                    k0 + (s - 1) * k..k0 + s * k
                };
                let taps = kh * kw;
                let mut sum = 0.0f64;
                for o in 0..oc {
                    let row = &w[o * ic * taps..(o + 1) * ic * taps];
                    let from = &row[channels.start * taps..channels.end * taps];
                    sum += from.iter().map(|v| f64::from(v.abs())).sum::<f64>();
                }
                let count = (oc * channels.len() * taps) as f64;
                map.values[t * sources + s] = Some((sum / count) as f32);
            }
        }
        maps.push(map);
    }
    Ok(maps)
}
