//! The analytic memory access cost (MAC) of a convolution, as VoVNet (Lee et al. 2019) defines
//! it, and its sum over the convolutions of a dense block or a one-shot aggregation block.
//!
//! ```text
//! MAC(conv) = h·w·(c_in + c_out) + k²·c_in·c_out
//! ```
//!
//! counted in *values* (not bytes): each input and output value is touched once, plus each
//! weight. `h×w` is the (stride-1, "same"-padded) feature-map size. The formula ignores batch
//! size, batch norms, ReLUs and concatenation copies: it is the cost a perfectly fused
//! convolution would pay, which is what makes it a fair yardstick between block designs.

use super::{BlockShape, OsaShape};

/// One convolution of a block, for MAC accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Feature-map height and width (input = output: stride 1, same padding).
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    /// Kernel side `k` (`k×k`).
    pub kernel: usize,
}

impl ConvShape {
    /// `h·w·(c_in + c_out) + k²·c_in·c_out` values.
    pub fn mac(&self) -> u64 {
        let hw = (self.h * self.w) as u64;
        let k2 = (self.kernel * self.kernel) as u64;
        hw * (self.c_in + self.c_out) as u64 + k2 * self.c_in as u64 * self.c_out as u64
    }

    /// Multiply-adds per image: `h·w·k²·c_in·c_out`.
    pub fn macs_per_image(&self) -> u64 {
        (self.h * self.w * self.kernel * self.kernel) as u64 * (self.c_in * self.c_out) as u64
    }
}

/// The convolutions of a dense block, in order: per layer `l` (reading `c = k0 + l·k`
/// channels) a 1×1 `c → bn_size·k` and a 3×3 `bn_size·k → k` with a bottleneck, or one 3×3
/// `c → k` without.
pub fn dense_block_convs(s: &BlockShape) -> Vec<ConvShape> {
    let mut v = Vec::new();
    for l in 0..s.layers {
        let c = s.k0 + l * s.growth;
        let conv = |c_in, c_out, kernel| ConvShape {
            h: s.h,
            w: s.w,
            c_in,
            c_out,
            kernel,
        };
        match s.bn_size {
            Some(b) => {
                v.push(conv(c, b * s.growth, 1));
                v.push(conv(b * s.growth, s.growth, 3));
            }
            None => v.push(conv(c, s.growth, 3)),
        }
    }
    v
}

/// The convolutions of an OSA block: 3×3 `c_in → width`, then `layers − 1` times 3×3
/// `width → width`, then the 1×1 aggregation `c_in + layers·width → c_out`.
pub fn osa_block_convs(s: &OsaShape) -> Vec<ConvShape> {
    let conv = |c_in, c_out, kernel| ConvShape {
        h: s.h,
        w: s.w,
        c_in,
        c_out,
        kernel,
    };
    let mut v = Vec::with_capacity(s.layers + 1);
    for i in 0..s.layers {
        v.push(conv(if i == 0 { s.c_in } else { s.width }, s.width, 3));
    }
    v.push(conv(s.c_in + s.layers * s.width, s.c_out, 1));
    v
}

/// Sum of [`ConvShape::mac`] over `convs`.
pub fn total_mac(convs: &[ConvShape]) -> u64 {
    convs.iter().map(ConvShape::mac).sum()
}

/// Sum of [`ConvShape::macs_per_image`] over `convs`.
pub fn total_macs_per_image(convs: &[ConvShape]) -> u64 {
    convs.iter().map(ConvShape::macs_per_image).sum()
}

/// VoVNet's DenseNet-40 comparison, computed with [`ConvShape::mac`]: the convolutions of
/// DenseNet-40 (k = 12, 3 blocks of 12 plain layers, 16 stem channels, no compression) on a
/// 32×32 CIFAR image, with each dense block replaced by `osa` blocks or not.
///
/// Returns `(stem + blocks + transitions)` conv MAC; `osa = Some((layers, width))` swaps each
/// dense block for an OSA block of `layers` 3×3 convs of `width` channels whose 1×1 aggregation
/// outputs the dense block's own output width, so transitions are unchanged.
pub fn densenet40_network_mac(osa: Option<(usize, usize)>) -> u64 {
    let (k, layers) = (12, 12);
    let mut total = ConvShape {
        h: 32,
        w: 32,
        c_in: 3,
        c_out: 16,
        kernel: 3,
    }
    .mac();
    let mut c0 = 16;
    let mut hw = 32;
    for b in 0..3 {
        let block = BlockShape {
            k0: c0,
            layers,
            growth: k,
            bn_size: None,
            batch: 1,
            h: hw,
            w: hw,
        };
        let c_out = block.out_channels();
        total += match osa {
            None => total_mac(&dense_block_convs(&block)),
            Some((ol, width)) => total_mac(&osa_block_convs(&OsaShape {
                c_in: c0,
                layers: ol,
                width,
                c_out,
                batch: 1,
                h: hw,
                w: hw,
            })),
        };
        if b < 2 {
            // Transition: BN-ReLU-1×1 conv (C → C, no compression) at the block's resolution,
            // then 2×2 average pooling.
            total += ConvShape {
                h: hw,
                w: hw,
                c_in: c_out,
                c_out,
                kernel: 1,
            }
            .mac();
            hw /= 2;
        }
        c0 = c_out;
    }
    total
}
