//! A per-stage table of a configuration: output size, layers, parameters, multiply-adds and the
//! activation memory training keeps.
//!
//! Everything is counted from closed forms of the configuration, independently of the parameter
//! store, so the two can check each other.

use std::fmt;

use crate::config::{DenseNetConfig, Stem};
use crate::error::Result;

/// One stage of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    /// `stem`, `denseblock1`, `transition1`, ..., `classifier`.
    pub stage: String,
    /// Output `(channels, height, width)` of the stage (for the classifier: `(classes, 1, 1)`).
    pub output: (usize, usize, usize),
    /// Conv and linear layers in the stage.
    pub layers: usize,
    /// Trainable parameters (batch-norm γ and β included, running statistics not).
    pub params: u64,
    /// Multiply-adds of convolutions and the linear layer at batch 1 (batch norm, ReLU and
    /// pooling are not counted, as in torchvision's GFLOPS column).
    pub macs: u64,
    /// Bytes of activations the memory-efficient training plan keeps for the backward pass at
    /// batch 1: the stem's conv output (ImageNet stem), each block's feature buffer
    /// and bottleneck outputs, the classifier's pooled features. Transitions write into the next
    /// block's buffer and keep nothing of their own.
    pub activation_bytes: u64,
}

/// The table for one input size, with totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Input `(height, width)`.
    pub input: (usize, usize),
    /// `stem`, then each dense block and the transition after it, then `classifier`.
    pub rows: Vec<SummaryRow>,
    /// Sum of the rows' parameters: the network's trainable parameter count.
    pub total_params: u64,
    /// Sum of the rows' multiply-adds at batch 1.
    pub total_macs: u64,
    /// Sum of the rows' kept activation bytes at batch 1.
    pub total_activation_bytes: u64,
}

const F32: u64 = 4;

impl DenseNetConfig {
    /// The per-stage summary for an `h×w` input; an error if the configuration or the size is
    /// unusable.
    pub fn summary(&self, h: usize, w: usize) -> Result<Summary> {
        self.validate()?;
        let sizes = self.block_sizes(h, w)?;
        let u = |x: usize| x as u64;
        let k = u(self.growth_rate);
        let mut rows = Vec::new();

        let c0 = u(self.init_features);
        let ic = u(self.in_channels);
        let (stem_params, stem_macs, stem_act) = match self.stem {
            Stem::ImageNet => {
                let (ch, cw) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
                let hw = u(ch * cw);
                (c0 * ic * 49 + 2 * c0, c0 * ic * 49 * hw, c0 * hw * F32)
            }
            Stem::Cifar => (c0 * ic * 9, c0 * ic * 9 * u(h * w), 0),
        };
        rows.push(SummaryRow {
            stage: "stem".into(),
            output: (self.init_features, sizes[0].0, sizes[0].1),
            layers: 1,
            params: stem_params,
            macs: stem_macs,
            activation_bytes: stem_act,
        });

        for (b, &layers) in self.block_config.iter().enumerate() {
            let (bh, bw) = sizes[b];
            let hw = u(bh * bw);
            let cin = u(self.block_in_channels(b));
            let (mut params, mut macs) = (0u64, 0u64);
            for l in 0..u(layers) {
                let c = cin + l * k;
                params += 2 * c;
                match self.bn_size {
                    Some(bs) => {
                        let bk = u(bs) * k;
                        params += c * bk + 2 * bk + bk * k * 9;
                        macs += (c * bk + bk * k * 9) * hw;
                    }
                    None => {
                        params += c * k * 9;
                        macs += c * k * 9 * hw;
                    }
                }
            }
            let cout = u(self.block_out_channels(b));
            let kept_bottleneck = if self.bn_size.is_some() {
                u(layers) * u(self.bottleneck_channels()) * hw
            } else {
                0
            };
            rows.push(SummaryRow {
                stage: format!("denseblock{}", b + 1),
                output: (self.block_out_channels(b), bh, bw),
                layers: layers * if self.bn_size.is_some() { 2 } else { 1 },
                params,
                macs,
                activation_bytes: (cout * hw + kept_bottleneck) * F32,
            });
            if b + 1 < self.block_config.len() {
                let ct = u(self.transition_out_channels(b));
                rows.push(SummaryRow {
                    stage: format!("transition{}", b + 1),
                    output: (self.transition_out_channels(b), bh / 2, bw / 2),
                    layers: 1,
                    params: 2 * cout + cout * ct,
                    macs: cout * ct * hw,
                    activation_bytes: 0,
                });
            }
        }

        let cf = u(self.final_channels());
        let classes = u(self.num_classes);
        rows.push(SummaryRow {
            stage: "classifier".into(),
            output: (self.num_classes, 1, 1),
            layers: 1,
            params: 2 * cf + cf * classes + classes,
            macs: cf * classes,
            activation_bytes: cf * F32,
        });

        Ok(Summary {
            input: (h, w),
            total_params: rows.iter().map(|r| r.params).sum(),
            total_macs: rows.iter().map(|r| r.macs).sum(),
            total_activation_bytes: rows.iter().map(|r| r.activation_bytes).sum(),
            rows,
        })
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
            "stage", "output (CxHxW)", "layers", "parameters", "multiply-adds", "act. bytes"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
                r.stage,
                format!("{}x{}x{}", r.output.0, r.output.1, r.output.2),
                r.layers,
                group(r.params),
                group(r.macs),
                group(r.activation_bytes)
            )?;
        }
        writeln!(
            f,
            "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
            "total",
            format!("{}x{}", self.input.0, self.input.1),
            self.rows.iter().map(|r| r.layers).sum::<usize>(),
            group(self.total_params),
            group(self.total_macs),
            group(self.total_activation_bytes)
        )?;
        write!(
            f,
            "({:.3} G multiply-adds; activation bytes at batch 1, memory-efficient training plan)",
            self.total_macs as f64 / 1e9
        )
    }
}
