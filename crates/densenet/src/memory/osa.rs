//! A one-shot aggregation (OSA) block, VoVNet's answer to the dense block (Lee et al., "An
//! Energy and GPU-Computation Efficient Backbone Network for Real-Time Object Detection",
//! CVPRW 2019).
//!
//! Each layer reads only the previous layer's output; all outputs are concatenated once, at
//! the end, and mixed by a 1×1 convolution:
//!
//! ```text
//! f_0 = relu(bn_0(conv3x3_0(x)))            [width, M]
//! f_i = relu(bn_i(conv3x3_i(f_{i−1})))      [width, M]     i = 1..L−1
//! y   = relu(bn_agg(conv1x1(cat(x, f_0, …, f_{L−1}))))    [c_out, M]
//! ```
//!
//! The concatenation costs nothing here: `x` and every `f_i` live in one preallocated
//! [`FeatureBuffer`] (`x` at channels `[0, c_in)`, `f_i` at `[c_in + i·width, c_in + (i+1)·width)`),
//! each layer writing its slot directly, exactly as the dense block's shared buffer does. Batch
//! norms run in training mode (batch statistics, running statistics updated). The saved tensors
//! are the buffer and each conv's pre-BN output, so memory is linear in depth.

use densenet_kernels::batchnorm::{batchnorm_relu_backward, batchnorm_relu_forward_train};
use densenet_kernels::conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use densenet_kernels::{BatchNormConfig, BatchNormGeom, Conv2dGeom, FeatureBuffer, Workspace};

use super::mac::{osa_block_convs, total_mac};
use super::random_values;
use crate::error::{Error, Result};

/// The shape of an OSA block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsaShape {
    /// Channels entering the block.
    pub c_in: usize,
    /// 3×3 conv layers `L`.
    pub layers: usize,
    /// Output channels of each 3×3 conv.
    pub width: usize,
    /// Output channels of the 1×1 aggregation conv.
    pub c_out: usize,
    /// Batch size and feature-map size.
    pub batch: usize,
    pub h: usize,
    pub w: usize,
}

impl OsaShape {
    /// The OSA block matching a dense block's depth and widths: `L` layers of `k` channels,
    /// aggregated from `k0 + L·k` channels back to `k0 + L·k`, the dense block's output width.
    pub fn matching(s: &super::BlockShape) -> Self {
        OsaShape {
            c_in: s.k0,
            layers: s.layers,
            width: s.growth,
            c_out: s.out_channels(),
            batch: s.batch,
            h: s.h,
            w: s.w,
        }
    }

    /// Channels of the aggregated concatenation, `c_in + L·width`.
    pub fn concat_channels(&self) -> usize {
        self.c_in + self.layers * self.width
    }

    /// Values per channel, `N·H·W`.
    pub fn per_channel(&self) -> usize {
        self.batch * self.h * self.w
    }

    /// Sum of the VoVNet MAC of its convolutions (see [`super::mac`]).
    pub fn mac(&self) -> u64 {
        total_mac(&osa_block_convs(self))
    }
}

/// One batch norm's tensors.
#[derive(Clone, Debug)]
struct Bn {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    d_gamma: Vec<f32>,
    d_beta: Vec<f32>,
}

impl Bn {
    fn new(c: usize) -> Self {
        Bn {
            gamma: vec![1.0; c],
            beta: vec![0.0; c],
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            mean: vec![0.0; c],
            invstd: vec![0.0; c],
            d_gamma: vec![0.0; c],
            d_beta: vec![0.0; c],
        }
    }
}

/// An OSA block with its parameters and every buffer of a training pass, preallocated.
#[derive(Debug)]
pub struct OsaBlock {
    shape: OsaShape,
    /// Per conv (the `L` 3×3 then the 1×1): weight `[OC, IC, KH, KW]` and its gradient.
    weights: Vec<Vec<f32>>,
    d_weights: Vec<Vec<f32>>,
    bns: Vec<Bn>,
    /// `x, f_0, …, f_{L−1}`: `[c_in + L·width, M]`, and its gradient.
    feats: FeatureBuffer,
    grads: FeatureBuffer,
    /// Each 3×3 conv's output before its batch norm, `[L, width, M]`.
    pre_bn: Vec<f32>,
    /// The 1×1 conv's output before its batch norm and the block output, `[c_out, M]`.
    agg_pre_bn: Vec<f32>,
    output: Vec<f32>,
    /// Scratch: the gradient of a conv output, `[max(width, c_out), M]`.
    d_conv: Vec<f32>,
    bn_cfg: BatchNormConfig,
    kernels: Workspace<'static>,
    copied_bytes: u64,
}

impl OsaBlock {
    /// A block for `shape` with He-normal conv weights from `seed` and BN γ = 1, β = 0.
    pub fn new(shape: OsaShape, seed: u64) -> Result<Self> {
        let s = shape;
        if s.c_in == 0 || s.layers == 0 || s.width == 0 || s.c_out == 0 || s.per_channel() <= 1 {
            return Err(Error::Shape(format!(
                "OSA block {s:?}: sizes must be positive and N*H*W > 1"
            )));
        }
        let m = s.per_channel();
        let convs = osa_block_convs(&s);
        let weights: Vec<Vec<f32>> = convs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let fan_in = c.c_in * c.kernel * c.kernel;
                let std = (2.0 / fan_in as f64).sqrt() as f32;
                random_values(c.c_out * fan_in, seed.wrapping_add(i as u64))
                    .into_iter()
                    .map(|v| v * std)
                    .collect()
            })
            .collect();
        let d_weights = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut bns: Vec<Bn> = (0..s.layers).map(|_| Bn::new(s.width)).collect();
        bns.push(Bn::new(s.c_out));
        Ok(OsaBlock {
            shape,
            weights,
            d_weights,
            bns,
            feats: FeatureBuffer::new(s.concat_channels(), m),
            grads: FeatureBuffer::new(s.concat_channels(), m),
            pre_bn: vec![0.0; s.layers * s.width * m],
            agg_pre_bn: vec![0.0; s.c_out * m],
            output: vec![0.0; s.c_out * m],
            d_conv: vec![0.0; s.width.max(s.c_out) * m],
            bn_cfg: BatchNormConfig::default(),
            kernels: Workspace::new(),
            copied_bytes: 0,
        })
    }

    /// The shape.
    pub fn shape(&self) -> OsaShape {
        self.shape
    }

    /// Bytes copied since creation: only loading the input into the buffer (the concatenation
    /// itself copies nothing).
    pub fn copied_bytes(&self) -> u64 {
        self.copied_bytes
    }

    /// Bytes held by the parameters and their gradients (conv weights, BN γ, β, running
    /// statistics and their gradients), so that a measurement can set them apart from
    /// activations, as the dense-block runners keep their parameters outside.
    pub fn parameter_bytes(&self) -> u64 {
        let f = |v: &Vec<f32>| std::mem::size_of_val(v.as_slice()) as u64;
        let convs: u64 = self.weights.iter().chain(&self.d_weights).map(f).sum();
        let bns: u64 = self
            .bns
            .iter()
            .map(|b| {
                [
                    &b.gamma,
                    &b.beta,
                    &b.running_mean,
                    &b.running_var,
                    &b.d_gamma,
                    &b.d_beta,
                ]
                .into_iter()
                .map(f)
                .sum::<u64>()
            })
            .sum();
        convs + bns
    }

    /// The weight gradients of the last backward, one per conv (the 3×3s, then the 1×1).
    pub fn weight_grads(&self) -> &[Vec<f32>] {
        &self.d_weights
    }

    /// The conv weights, one per conv as in [`OsaBlock::weight_grads`] (e.g. to perturb them).
    pub fn weights_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.weights
    }

    fn geom(&self, c_in: usize, c_out: usize, kernel: usize) -> Conv2dGeom {
        let s = self.shape;
        Conv2dGeom::square(s.batch, c_in, c_out, s.h, s.w, kernel, 1, kernel / 2)
    }

    /// Channel offset of layer `i`'s input in the buffer, and its channel count.
    fn layer_input(&self, i: usize) -> (usize, usize) {
        let s = self.shape;
        if i == 0 {
            (0, s.c_in)
        } else {
            (s.c_in + (i - 1) * s.width, s.width)
        }
    }

    /// Training-mode forward of `input` (`[c_in, N, H, W]`); returns `[c_out, N, H, W]`.
    ///
    /// # Panics
    /// If `input` has the wrong length.
    pub fn forward(&mut self, input: &[f32]) -> &[f32] {
        let s = self.shape;
        let m = s.per_channel();
        assert_eq!(input.len(), s.c_in * m, "OSA block: input length");
        self.feats.prefix_mut(s.c_in).copy_from_slice(input);
        self.copied_bytes += std::mem::size_of_val(input) as u64;
        let bng = BatchNormGeom {
            channels: s.width,
            per_channel: m,
        };
        for i in 0..s.layers {
            let (off, ic) = self.layer_input(i);
            let g = self.geom(ic, s.width, 3);
            let (prefix, slot) = self.feats.prefix_and_slot(s.c_in + i * s.width, s.width);
            let z = &mut self.pre_bn[i * s.width * m..(i + 1) * s.width * m];
            conv2d_forward(
                z,
                &prefix[off * m..],
                &self.weights[i],
                None,
                None,
                &g,
                &mut self.kernels,
            );
            let bn = &mut self.bns[i];
            batchnorm_relu_forward_train(
                slot,
                &mut bn.mean,
                &mut bn.invstd,
                &mut bn.running_mean,
                &mut bn.running_var,
                z,
                &bn.gamma,
                &bn.beta,
                &self.bn_cfg,
                &bng,
            );
        }
        let g = self.geom(s.concat_channels(), s.c_out, 1);
        conv2d_forward(
            &mut self.agg_pre_bn,
            self.feats.as_slice(),
            &self.weights[s.layers],
            None,
            None,
            &g,
            &mut self.kernels,
        );
        let bn = &mut self.bns[s.layers];
        batchnorm_relu_forward_train(
            &mut self.output,
            &mut bn.mean,
            &mut bn.invstd,
            &mut bn.running_mean,
            &mut bn.running_var,
            &self.agg_pre_bn,
            &bn.gamma,
            &bn.beta,
            &self.bn_cfg,
            &BatchNormGeom {
                channels: s.c_out,
                per_channel: m,
            },
        );
        &self.output
    }

    /// Backward of the last forward from `d_out` (`[c_out, N, H, W]`): overwrites the weight and
    /// BN gradients, returns the input gradient `[c_in, N, H, W]`.
    ///
    /// # Panics
    /// If `d_out` has the wrong length.
    pub fn backward(&mut self, d_out: &[f32]) -> &[f32] {
        let s = self.shape;
        let m = s.per_channel();
        assert_eq!(d_out.len(), s.c_out * m, "OSA block: d_out length");
        for d in &mut self.d_weights {
            d.fill(0.0);
        }
        for bn in &mut self.bns {
            bn.d_gamma.fill(0.0);
            bn.d_beta.fill(0.0);
        }
        self.grads.zero();
        // Aggregation: BN-ReLU, then the 1×1 conv into the gradient of every concatenated piece.
        let g = self.geom(s.concat_channels(), s.c_out, 1);
        let d_agg = &mut self.d_conv[..s.c_out * m];
        d_agg.fill(0.0);
        let bn = &mut self.bns[s.layers];
        batchnorm_relu_backward(
            d_agg,
            &mut bn.d_gamma,
            &mut bn.d_beta,
            d_out,
            &self.agg_pre_bn,
            &bn.gamma,
            &bn.beta,
            &bn.mean,
            &bn.invstd,
            &BatchNormGeom {
                channels: s.c_out,
                per_channel: m,
            },
        );
        conv2d_backward_weight(
            &mut self.d_weights[s.layers],
            None,
            d_agg,
            self.feats.as_slice(),
            None,
            &g,
            &mut self.kernels,
        );
        conv2d_backward_input(
            self.grads.as_mut_slice(),
            d_agg,
            &self.weights[s.layers],
            &g,
            &mut self.kernels,
        );
        // Layers in reverse: each slot's gradient is complete once layer i+1 has added to it.
        for i in (0..s.layers).rev() {
            let (off, ic) = self.layer_input(i);
            let g = self.geom(ic, s.width, 3);
            let d_z = &mut self.d_conv[..s.width * m];
            d_z.fill(0.0);
            let bn = &mut self.bns[i];
            let (d_prefix, d_slot) = self
                .grads
                .prefix_mut_and_slot(s.c_in + i * s.width, s.width);
            batchnorm_relu_backward(
                d_z,
                &mut bn.d_gamma,
                &mut bn.d_beta,
                d_slot,
                &self.pre_bn[i * s.width * m..(i + 1) * s.width * m],
                &bn.gamma,
                &bn.beta,
                &bn.mean,
                &bn.invstd,
                &BatchNormGeom {
                    channels: s.width,
                    per_channel: m,
                },
            );
            let src = &self.feats.as_slice()[off * m..(off + ic) * m];
            conv2d_backward_weight(
                &mut self.d_weights[i],
                None,
                d_z,
                src,
                None,
                &g,
                &mut self.kernels,
            );
            conv2d_backward_input(
                &mut d_prefix[off * m..(off + ic) * m],
                d_z,
                &self.weights[i],
                &g,
                &mut self.kernels,
            );
        }
        self.grads.prefix(s.c_in)
    }
}
