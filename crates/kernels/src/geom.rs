//! Geometry structs: the shapes an op works on, and the output-size formulas (they live here
//! only).

/// The geometry of a 2-D convolution over a channel-major (CNHW) batch.
///
/// Output size, as PyTorch computes it (no dilation):
/// `OH = (H + 2·pad_h − KH) / stride_h + 1`, `OW = (W + 2·pad_w − KW) / stride_w + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeom {
    /// Images `N`.
    pub batch: usize,
    /// Input channels `IC`.
    pub in_channels: usize,
    /// Output channels `OC`.
    pub out_channels: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// Kernel height `KH`.
    pub kernel_h: usize,
    /// Kernel width `KW`.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero padding above and below.
    pub pad_h: usize,
    /// Zero padding left and right.
    pub pad_w: usize,
}

impl Conv2dGeom {
    /// A square convolution: `kernel×kernel`, the same stride and padding on both axes.
    pub fn square(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        in_h: usize,
        in_w: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Conv2dGeom {
            batch,
            in_channels,
            out_channels,
            in_h,
            in_w,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad,
        }
    }

    /// Whether the geometry is usable: non-zero kernel and stride, and a kernel that fits the
    /// padded input (so that `OH, OW >= 1`).
    pub fn is_valid(&self) -> bool {
        self.kernel_h > 0
            && self.kernel_w > 0
            && self.stride_h > 0
            && self.stride_w > 0
            && self.in_h + 2 * self.pad_h >= self.kernel_h
            && self.in_w + 2 * self.pad_w >= self.kernel_w
    }

    /// Output height `OH`.
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad_h - self.kernel_h) / self.stride_h + 1
    }

    /// Output width `OW`.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad_w - self.kernel_w) / self.stride_w + 1
    }

    /// Floats in the input: `IC·N·H·W`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.batch * self.in_h * self.in_w
    }

    /// Floats in the output: `OC·N·OH·OW`.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.batch * self.out_h() * self.out_w()
    }

    /// Floats in the weight: `OC·IC·KH·KW`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Multiply-adds of the forward pass: `OC·IC·KH·KW·N·OH·OW` (FLOPs are twice this).
    pub fn macs(&self) -> u64 {
        (self.weight_len() as u64) * (self.batch * self.out_h() * self.out_w()) as u64
    }
}

/// The geometry of a 2-D pooling window over `planes` independent `H×W` planes.
///
/// Pooling treats every (channel, image) plane alike, so it does not care whether the planes are
/// stored CNHW or NCHW: `planes = C·N`. Output size: `OH = (H + 2·pad − K) / stride + 1`
/// (floor mode, as PyTorch's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dGeom {
    /// Independent `H×W` planes, `C·N`.
    pub planes: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// Window size `K` (square).
    pub kernel: usize,
    /// Stride on both axes.
    pub stride: usize,
    /// Padding on every side (max pooling only).
    pub pad: usize,
}

impl Pool2dGeom {
    /// Whether the geometry is usable: non-zero kernel and stride, padding at most half the
    /// kernel (PyTorch's rule), and a window that fits the padded input.
    pub fn is_valid(&self) -> bool {
        self.kernel > 0
            && self.stride > 0
            && 2 * self.pad <= self.kernel
            && self.in_h + 2 * self.pad >= self.kernel
            && self.in_w + 2 * self.pad >= self.kernel
    }

    /// Output height `OH`.
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// Output width `OW`.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// Floats in the input: `planes·H·W`.
    pub fn input_len(&self) -> usize {
        self.planes * self.in_h * self.in_w
    }

    /// Floats in the output: `planes·OH·OW`.
    pub fn output_len(&self) -> usize {
        self.planes * self.out_h() * self.out_w()
    }
}

/// The geometry of a per-channel op (batch norm) over a channel-major tensor: `channels`
/// channels, each a contiguous run of `per_channel = N·H·W` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchNormGeom {
    /// Channels `C`.
    pub channels: usize,
    /// Values per channel, `M = N·H·W`.
    pub per_channel: usize,
}

impl BatchNormGeom {
    /// Floats in the tensor: `C·N·H·W`.
    pub fn len(&self) -> usize {
        self.channels * self.per_channel
    }

    /// Whether the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Batch-norm settings, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root: `1e-5`.
    pub eps: f32,
    /// Weight of the new batch statistic in the running average: `0.1`
    /// (`running = (1 − momentum)·running + momentum·batch`).
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// A per-channel affine map with an optional ReLU, `y = max(0, scale[c]·x + shift[c])` (or
/// without the max): batch norm in eval form, or in training form once the batch statistics are
/// known (`scale = γ/σ`, `shift = β − μ·γ/σ`). Convolutions accept one to apply to their input
/// on the fly; padding is applied after it, so padded taps still read zero.
#[derive(Clone, Copy, Debug)]
pub struct ChannelAffine<'a> {
    /// `[C]`
    pub scale: &'a [f32],
    /// `[C]`
    pub shift: &'a [f32],
    /// Whether to apply `max(0, ·)` after the affine map.
    pub relu: bool,
}

impl ChannelAffine<'_> {
    /// Applies the map to one value of channel `c`: multiply, then add, exactly as the
    /// convolutions apply it while packing their input (`elementwise::affine_run`), so a
    /// tensor mapped here and one mapped on the fly hold the same bits.
    #[inline(always)]
    pub fn apply(&self, c: usize, x: f32) -> f32 {
        let y = self.scale[c] * x + self.shift[c];
        if self.relu {
            crate::elementwise::relu_value(y)
        } else {
            y
        }
    }
}
