//! Network configurations: the paper's presets, custom specs, validation, and stage geometry.
//!
//! A [`DenseNetConfig`] says everything that decides the parameter shapes. It is parsed from
//! strings such as `densenet121`, `densenet121:classes=10` or `bc:k=12,blocks=16-16-16`
//! (see [`DenseNetConfig::from_str`]); every failure names the part of the string at fault.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The network's first stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// ImageNet stem: 7×7/s2/p3 conv, BN, ReLU, 3×3/s2/p1 max pool (torchvision `features.conv0`,
    /// `norm0`, `relu0`, `pool0`). Divides the input size by 4.
    ImageNet,
    /// CIFAR stem: a single 3×3/s1/p1 conv (`features.conv0`), no norm and no pool.
    Cifar,
}

impl Stem {
    /// The name used in specs: `imagenet` or `cifar`.
    pub fn name(self) -> &'static str {
        match self {
            Stem::ImageNet => "imagenet",
            Stem::Cifar => "cifar",
        }
    }
}

/// Everything that shapes a DenseNet.
///
/// Channel bookkeeping (torchvision's): block `b` starts with `c_b` channels (`c_0` =
/// `init_features`), its layer `l` reads `c_b + l·k` channels and adds `k`, so the block ends
/// with `c_b + L_b·k`; the transition after it maps `C` channels to `⌊θ·C⌋`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseNetConfig {
    /// Growth rate `k`: channels each dense layer adds.
    pub growth_rate: usize,
    /// Dense layers per block, `L_b`.
    pub block_config: Vec<usize>,
    /// Channels out of the stem.
    pub init_features: usize,
    /// Bottleneck width factor: the 1×1 conv of a layer outputs `bn_size·k` channels
    /// (DenseNet-B). `None`: plain DenseNet, whose layer is BN-ReLU-3×3 conv only.
    pub bn_size: Option<usize>,
    /// Transition compression `θ ∈ (0, 1]` (DenseNet-C when `< 1`).
    pub compression: f32,
    /// Dropout probability after each dense layer's last conv (torchvision's placement).
    pub drop_rate: f32,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// The first stage.
    pub stem: Stem,
}

/// The preset names [`DenseNetConfig::preset`] knows, in the order the docs list them.
pub const PRESETS: [&str; 11] = [
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
];

// Caps that keep every size product far from overflow (the fuzz target feeds any string).
const MAX_GROWTH: usize = 4096;
const MAX_BLOCKS: usize = 16;
const MAX_LAYERS: usize = 4096;
const MAX_INIT: usize = 65536;
const MAX_BN_SIZE: usize = 64;
const MAX_CLASSES: usize = 1 << 20;
const MAX_IN: usize = 4096;
/// The most parameters a configuration may have: 2^30 (4 GiB of `f32`, 30 times DenseNet-264).
/// Checked by [`DenseNetConfig::validate`] from a closed form, before anything is allocated, so
/// a spec such as `bc:k=4096,blocks=4096-4096` is refused instead of exhausting memory.
pub const MAX_PARAMETERS: u64 = 1 << 30;

impl DenseNetConfig {
    /// An ImageNet DenseNet-BC of the paper's Table 1 (bottleneck 4, θ = 0.5, 1000 classes).
    fn imagenet(k: usize, blocks: &[usize], init: usize) -> Self {
        DenseNetConfig {
            growth_rate: k,
            block_config: blocks.to_vec(),
            init_features: init,
            bn_size: Some(4),
            compression: 0.5,
            drop_rate: 0.0,
            num_classes: 1000,
            in_channels: 3,
            stem: Stem::ImageNet,
        }
    }

    /// A CIFAR DenseNet of the paper's Table 2 with depth `depth`: plain (3 blocks of
    /// `(L−4)/3` layers, 16 initial channels, no bottleneck, no compression) or BC (3 blocks of
    /// `(L−4)/6` layers, `2k` initial channels, bottleneck 4, θ = 0.5). 10 classes.
    pub fn cifar(depth: usize, k: usize, bc: bool) -> Self {
        let per_block = if bc {
            depth.saturating_sub(4) / 6
        } else {
            depth.saturating_sub(4) / 3
        };
        DenseNetConfig {
            growth_rate: k,
            block_config: vec![per_block; 3],
            init_features: if bc { 2 * k } else { 16 },
            bn_size: if bc { Some(4) } else { None },
            compression: if bc { 0.5 } else { 1.0 },
            drop_rate: 0.0,
            num_classes: 10,
            in_channels: 3,
            stem: Stem::Cifar,
        }
    }

    /// A named preset (see [`PRESETS`]); `-` and `_` are interchangeable, case is ignored.
    pub fn preset(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match key.as_str() {
            "densenet121" => Self::imagenet(32, &[6, 12, 24, 16], 64),
            "densenet161" => Self::imagenet(48, &[6, 12, 36, 24], 96),
            "densenet169" => Self::imagenet(32, &[6, 12, 32, 32], 64),
            "densenet201" => Self::imagenet(32, &[6, 12, 48, 32], 64),
            "densenet264" => Self::imagenet(32, &[6, 12, 64, 48], 64),
            "densenet40_k12" => Self::cifar(40, 12, false),
            "densenet100_k12" => Self::cifar(100, 12, false),
            "densenet100_k24" => Self::cifar(100, 24, false),
            "densenet_bc100_k12" => Self::cifar(100, 12, true),
            "densenet_bc250_k24" => Self::cifar(250, 24, true),
            "densenet_bc190_k40" => Self::cifar(190, 40, true),
            _ => {
                return Err(Error::Config(format!(
                    "unknown preset {name:?}; known presets: {}, or a custom spec such as \
                     bc:k=12,blocks=16-16-16",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Checks that the configuration describes a buildable network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.growth_rate == 0 || self.growth_rate > MAX_GROWTH {
            return bad(format!(
                "growth rate k={} must be in 1..={MAX_GROWTH}",
                self.growth_rate
            ));
        }
        if self.block_config.is_empty() || self.block_config.len() > MAX_BLOCKS {
            return bad(format!(
                "{} dense blocks given; need 1..={MAX_BLOCKS}",
                self.block_config.len()
            ));
        }
        if let Some((i, &l)) = self
            .block_config
            .iter()
            .enumerate()
            .find(|(_, &l)| l == 0 || l > MAX_LAYERS)
        {
            return bad(format!(
                "dense block {} has {l} layers; need 1..={MAX_LAYERS}",
                i + 1
            ));
        }
        if self.init_features == 0 || self.init_features > MAX_INIT {
            return bad(format!(
                "initial features {} must be in 1..={MAX_INIT}",
                self.init_features
            ));
        }
        if let Some(b) = self.bn_size {
            if b == 0 || b > MAX_BN_SIZE {
                return bad(format!(
                    "bottleneck width factor bn={b} must be in 1..={MAX_BN_SIZE} (or none)"
                ));
            }
        }
        if !(self.compression > 0.0 && self.compression <= 1.0) {
            return bad(format!(
                "compression theta={} must be in (0, 1]",
                self.compression
            ));
        }
        if !(self.drop_rate >= 0.0 && self.drop_rate < 1.0) {
            return bad(format!("drop rate {} must be in [0, 1)", self.drop_rate));
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return bad(format!(
                "classes={} must be in 1..={MAX_CLASSES}",
                self.num_classes
            ));
        }
        if self.in_channels == 0 || self.in_channels > MAX_IN {
            return bad(format!(
                "input channels in={} must be in 1..={MAX_IN}",
                self.in_channels
            ));
        }
        match self.parameter_count() {
            Some(p) if p <= MAX_PARAMETERS => {}
            count => {
                return bad(format!(
                    "{} parameters; at most {MAX_PARAMETERS} are allowed",
                    count.map_or("more than 2^64".to_string(), |p| p.to_string())
                ))
            }
        }
        for b in 0..self.block_config.len() - 1 {
            if self.transition_out_channels(b) == 0 {
                return bad(format!(
                    "transition {} would keep 0 of {} channels with theta={}",
                    b + 1,
                    self.block_out_channels(b),
                    self.compression
                ));
            }
        }
        Ok(())
    }

    /// The number of `f32` tensor entries of the network (weights, biases and BN running
    /// statistics, as torchvision's state dict holds them), from a closed form with every
    /// product checked; `None` if it overflows `u64`. The per-field limits of
    /// [`DenseNetConfig::validate`] need not hold, except that `block_config` is non-empty.
    pub fn parameter_count(&self) -> Option<u64> {
        let u = |x: usize| x as u64;
        let k = u(self.growth_rate);
        // A BN layer holds weight, bias, running mean and running variance.
        let bn = |c: u64| c.checked_mul(4);
        let (stem_taps, stem_bn) = match self.stem {
            Stem::ImageNet => (49, bn(u(self.init_features))?),
            Stem::Cifar => (9, 0),
        };
        let mut total = u(self.in_channels)
            .checked_mul(u(self.init_features))?
            .checked_mul(stem_taps)?
            .checked_add(stem_bn)?;
        let mut c = u(self.init_features);
        let last = self.block_config.len().checked_sub(1)?;
        for (b, &layers) in self.block_config.iter().enumerate() {
            // Layer l reads c + l·k channels: the inputs of the block's layers sum to
            // L·c + k·L(L−1)/2 (a closed form, so absurd layer counts cannot make this loop).
            let l = u(layers);
            let inputs = l
                .checked_mul(c)?
                .checked_add(k.checked_mul(l.checked_mul(l.saturating_sub(1))? / 2)?)?;
            let block = match self.bn_size {
                Some(bs) => {
                    // norm1 (4·c_l), conv1 (c_l·bs·k), norm2 (4·bs·k), conv2 (bs·k·k·9).
                    let inner = u(bs).checked_mul(k)?;
                    let fixed = bn(inner)?.checked_add(inner.checked_mul(k)?.checked_mul(9)?)?;
                    inputs
                        .checked_mul(inner.checked_add(4)?)?
                        .checked_add(l.checked_mul(fixed)?)?
                }
                // norm1 (4·c_l), conv1 (c_l·k·9).
                None => inputs.checked_mul(k.checked_mul(9)?.checked_add(4)?)?,
            };
            total = total.checked_add(block)?;
            c = c.checked_add(l.checked_mul(k)?)?;
            if b < last {
                let out = if self.compression >= 1.0 {
                    c
                } else {
                    (c as f64 * f64::from(self.compression)).floor() as u64
                };
                total = total
                    .checked_add(bn(c)?)?
                    .checked_add(c.checked_mul(out)?)?;
                c = out;
            }
        }
        let classes = u(self.num_classes);
        total
            .checked_add(bn(c)?)?
            .checked_add(classes.checked_mul(c)?)?
            .checked_add(classes)
    }

    /// Channels entering dense block `b` (0-based).
    pub fn block_in_channels(&self, b: usize) -> usize {
        if b == 0 {
            self.init_features
        } else {
            self.transition_out_channels(b - 1)
        }
    }

    /// Channels leaving dense block `b`: `c_b + L_b·k`.
    pub fn block_out_channels(&self, b: usize) -> usize {
        self.block_in_channels(b) + self.block_config[b] * self.growth_rate
    }

    /// Channels out of the transition after block `b`: `⌊θ·C⌋`, as torchvision's
    /// `int(num_features * compression)`.
    pub fn transition_out_channels(&self, b: usize) -> usize {
        let c = self.block_out_channels(b);
        if self.compression >= 1.0 {
            c
        } else {
            (c as f64 * f64::from(self.compression)).floor() as usize
        }
    }

    /// Channels into `features.norm5` and the classifier.
    pub fn final_channels(&self) -> usize {
        self.block_out_channels(self.block_config.len() - 1)
    }

    /// Output channels of a dense layer's first conv: `bn_size·k` with a bottleneck, else `k`.
    pub fn bottleneck_channels(&self) -> usize {
        self.bn_size
            .map_or(self.growth_rate, |b| b * self.growth_rate)
    }

    /// The spatial size of each dense block's feature maps for an `h×w` input, or an error when
    /// the input is too small for the stem or a transition's 2×2 pooling.
    pub fn block_sizes(&self, h: usize, w: usize) -> Result<Vec<(usize, usize)>> {
        let too_small = |what: &str| {
            Err(Error::Shape(format!(
                "input {h}x{w} is too small for {what} of this network"
            )))
        };
        let (mut sh, mut sw) = match self.stem {
            Stem::Cifar => (h, w),
            Stem::ImageNet => {
                if h < 4 || w < 4 {
                    return too_small("the 7x7/s2 stem and 3x3/s2 max pool");
                }
                let conv = |x: usize| (x + 6 - 7) / 2 + 1;
                let pool = |x: usize| (x + 2 - 3) / 2 + 1;
                (pool(conv(h)), pool(conv(w)))
            }
        };
        if sh == 0 || sw == 0 {
            return too_small("the stem");
        }
        let mut sizes = Vec::with_capacity(self.block_config.len());
        for b in 0..self.block_config.len() {
            if b > 0 {
                if sh < 2 || sw < 2 {
                    return too_small(&format!("transition {}'s 2x2 pooling", b));
                }
                sh /= 2;
                sw /= 2;
            }
            sizes.push((sh, sw));
        }
        Ok(sizes)
    }

    /// The spec string that parses back to this configuration.
    pub fn spec(&self) -> String {
        let blocks: Vec<String> = self.block_config.iter().map(|l| l.to_string()).collect();
        format!(
            "custom:k={},blocks={},init={},bn={},theta={},drop={},classes={},stem={},in={}",
            self.growth_rate,
            blocks.join("-"),
            self.init_features,
            self.bn_size.map_or("none".to_string(), |b| b.to_string()),
            self.compression,
            self.drop_rate,
            self.num_classes,
            self.stem.name(),
            self.in_channels
        )
    }
}

impl fmt::Display for DenseNetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

impl FromStr for DenseNetConfig {
    type Err = Error;

    /// Parses `BASE[:key=value,...]`.
    ///
    /// `BASE` is a preset name (see [`PRESETS`]), `bc` (CIFAR DenseNet-BC: bottleneck 4,
    /// θ = 0.5, `init` defaults to `2k`), `plain` (CIFAR DenseNet: no bottleneck, θ = 1,
    /// `init` defaults to 16) or `custom` (same defaults as `bc`). Keys: `k`, `blocks`
    /// (`16-16-16`), `init`, `bn` (a number or `none`), `theta`, `drop`, `classes`,
    /// `stem` (`cifar` or `imagenet`), `in`.
    ///
    /// ```
    /// use densenet::config::DenseNetConfig;
    /// let c: DenseNetConfig = "bc:k=12,blocks=16-16-16".parse().unwrap();
    /// assert_eq!(c, DenseNetConfig::preset("densenet_bc100_k12").unwrap());
    /// assert!("bc:k=twelve".parse::<DenseNetConfig>().unwrap_err().to_string().contains("k=twelve"));
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (base, rest) = match s.split_once(':') {
            Some((b, r)) => (b.trim(), Some(r)),
            None => (s, None),
        };
        let base_key = base.to_ascii_lowercase();
        let (mut cfg, family_init) = match base_key.as_str() {
            "bc" | "custom" => (DenseNetConfig::cifar(100, 12, true), true),
            "plain" => (DenseNetConfig::cifar(40, 12, false), false),
            "" => return Err(Error::Config(
                "empty model spec; give a preset such as densenet121 or bc:k=12,blocks=16-16-16"
                    .into(),
            )),
            _ => (DenseNetConfig::preset(base)?, false),
        };
        let is_family = matches!(base_key.as_str(), "bc" | "custom" | "plain");
        let mut init_given = false;
        if let Some(rest) = rest {
            for part in rest.split(',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let bad = |why: &str| Error::Config(format!("in model spec, {part:?}: {why}"));
                let (key, value) = part
                    .split_once('=')
                    .ok_or_else(|| bad("expected key=value"))?;
                let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
                let num = || {
                    value
                        .parse::<usize>()
                        .map_err(|_| bad("expected a whole number"))
                };
                let real = || {
                    value
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| bad("expected a number"))
                };
                match key.as_str() {
                    "k" => cfg.growth_rate = num()?,
                    "blocks" => {
                        let blocks: std::result::Result<Vec<usize>, _> =
                            value.split('-').map(|l| l.trim().parse::<usize>()).collect();
                        cfg.block_config = blocks.map_err(|_| {
                            bad("expected layer counts joined by '-', e.g. blocks=6-12-24-16")
                        })?;
                        if cfg.block_config.len() > MAX_BLOCKS {
                            return Err(bad(&format!("at most {MAX_BLOCKS} blocks")));
                        }
                    }
                    "init" => {
                        cfg.init_features = num()?;
                        init_given = true;
                    }
                    "bn" => {
                        cfg.bn_size = if value.eq_ignore_ascii_case("none") {
                            None
                        } else {
                            Some(num()?)
                        }
                    }
                    "theta" => cfg.compression = real()?,
                    "drop" => cfg.drop_rate = real()?,
                    "classes" => cfg.num_classes = num()?,
                    "in" => cfg.in_channels = num()?,
                    "stem" => {
                        cfg.stem = match value.to_ascii_lowercase().as_str() {
                            "cifar" => Stem::Cifar,
                            "imagenet" => Stem::ImageNet,
                            _ => return Err(bad("expected stem=cifar or stem=imagenet")),
                        }
                    }
                    _ => {
                        return Err(bad(
                            "unknown key; known keys: k, blocks, init, bn, theta, drop, classes, stem, in",
                        ))
                    }
                }
            }
        }
        if is_family && !init_given {
            cfg.init_features = if family_init {
                cfg.growth_rate.saturating_mul(2)
            } else {
                16
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }
}
