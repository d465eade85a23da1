//! The forward 3×3, stride-1, padding-1 convolution of a whole batch by Winograd's minimal
//! filtering ([`crate::winograd`]): what the training step runs for the dense layers' growth
//! convolutions where it is faster than the direct wide-row product.
//!
//! The batch goes through the same wide-row input `Q[IC, N, H + 2, W + 1]` as the direct path
//! (`wide.rs`, `WideInput`), written once with `pre` applied. Image `n`'s planes then are the
//! zero-padded planes [`Winograd3x3::forward`] reads, `N·(H + 2)·(W + 1)` floats apart, starting
//! at `n·(H + 2)·(W + 1)`: the images run one at a time, each over all its channels, the images
//! split between the threads. Each image's output comes out as `[OC, H, W]` (whole tiles) in
//! the part's scratch and is copied to its place in the `[OC, N, H, W]` output (each output
//! channel's rows are split between the parts, as the direct path's column tasks split them).
//!
//! Every output is computed from its image alone, in an order that does not depend on the
//! part the image falls in: the same bits on any number of threads.

use super::check;
use super::tasks::{self, MAX_OWNED_ROWS};
use super::wide::{fill_wide_input, WideInput};
use crate::dispatch::{active_isa, Isa};
use crate::gemm;
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::winograd::{self, Variant, Winograd3x3};
use crate::workspace::Workspace;

/// Smallest map side on which [`winograd_variant`] picks Winograd: below it the transforms'
/// share outgrows the saving (48 → 12 at 16×16 1.09× the direct product, at 8×8 0.71×; 128 → 32
/// at 14×14 1.24×, at 7×7 0.87×, one thread, AVX-512).
pub const WINOGRAD_MIN_SIDE: usize = 14;

/// Smallest map side on which [`winograd_variant`] picks F(4×4, 3×3) (sides multiples of 4):
/// 2.2× the direct product at 56×56 against F(2×2, 3×3)'s 1.66× (128 → 32, one thread). Below
/// it the gain is small for its twentyfold error: BC-100's 48 → 12 forward 3×3s at 32×32 take
/// 6% less time, and three training steps of a small DenseNet-BC end with logits 2.3e-5 apart
/// from the direct convolution's instead of 7e-8.
pub const WINOGRAD_F4_MIN_SIDE: usize = 48;

/// The Winograd variant [`conv2d_forward_winograd`] runs fastest for `g` on the active SIMD
/// tier, or `None` where the direct product ([`super::conv2d_forward`]) is faster or `g` is not
/// a 3×3, stride-1, padding-1 convolution of at most 128 output channels. A function of the
/// shape and the tier only, never of the thread count.
pub fn winograd_variant(g: &Conv2dGeom) -> Option<Variant> {
    variant_on(active_isa(), g)
}

fn variant_on(isa: Isa, g: &Conv2dGeom) -> Option<Variant> {
    if !is_3x3_same(g) || g.out_channels > MAX_OWNED_ROWS {
        return None;
    }
    let side = g.in_h.min(g.in_w);
    let f4 = side >= WINOGRAD_F4_MIN_SIDE && g.in_h.is_multiple_of(4) && g.in_w.is_multiple_of(4);
    if f4 && winograd::is_fast_on(isa, Variant::F4x4) {
        return Some(Variant::F4x4);
    }
    (side >= WINOGRAD_MIN_SIDE && winograd::is_fast_on(isa, Variant::F2x2)).then_some(Variant::F2x2)
}

/// A 3×3 kernel, stride 1, padding 1 on both axes.
fn is_3x3_same(g: &Conv2dGeom) -> bool {
    (
        g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w,
    ) == (3, 3, 1, 1, 1, 1)
}

/// `out = conv(pre(inp), weight)` for a 3×3, stride-1, padding-1 convolution without bias, by
/// Winograd's F(2×2, 3×3) or F(4×4, 3×3) (`variant`; [`winograd_variant`] says which is
/// fastest). The same convolution as [`super::conv2d_forward`], as a different sum: the outputs
/// differ from the direct product's by a few units in the last place of the largest term
/// (F(2×2, 3×3)) or about 2e-6 of `Σ|w|·|x|` (F(4×4, 3×3)); see [`crate::winograd`].
///
/// Any tier runs it; on one whose transforms are not vectorised
/// ([`winograd::is_fast_on`]) it is slower than the direct product.
///
/// # Shapes
/// - `out`: `[OC, N, H, W]`, written. `inp`: `[IC, N, H, W]`, read.
/// - `weight`: `[OC, IC, 3, 3]`, read; `pre`: `[IC]` scale and shift, applied to the input with
///   the padding read as zero after it.
///
/// # Panics
/// If `g` is not a 3×3, stride-1, padding-1 convolution of at most 128 output channels, or a
/// buffer length does not match it.
pub fn conv2d_forward_winograd(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    variant: Variant,
    ws: &mut Workspace,
) {
    check(g, inp.len(), out.len(), weight.len(), pre.as_ref());
    assert!(
        is_3x3_same(g),
        "conv2d_forward_winograd: the convolution must be 3x3 with stride 1 and padding 1"
    );
    assert!(
        g.out_channels <= MAX_OWNED_ROWS,
        "conv2d_forward_winograd: at most {MAX_OWNED_ROWS} output channels"
    );
    let (n, k, c, h, w) = (g.batch, g.out_channels, g.in_channels, g.in_h, g.in_w);
    if out.is_empty() {
        return;
    }
    if c == 0 {
        out.fill(0.0);
        return;
    }
    let isa = active_isa();
    let conv = Winograd3x3 {
        k,
        c,
        rows: h,
        cols: w,
        v_block: winograd::V_BLOCK_FLOATS,
        variant,
    };
    let layout = WideInput::new(g);
    let (image, row) = (layout.plane(), layout.wq);
    let channel = n * image;
    let q_len = layout.len(g);
    // The last image's tiles read past `Q` (rows and lanes beyond the map): zeros.
    let q_floats = q_len.max((n - 1) * image + conv.input_len(channel, row));
    let macs = 9 * k * c * n * h * w;
    let parts = if gemm::worth_parallel(macs) {
        rayon::current_num_threads().min(n)
    } else {
        1
    };
    let (scratch_len, image_len) = (conv.scratch_len(isa, k), conv.out_len(k));
    let [q, u, scratch, images] = gemm::carve(
        ws,
        [
            q_floats,
            conv.weights_len(k),
            parts * scratch_len,
            parts * image_len,
        ],
    );
    q[q_len..].fill(0.0);
    fill_wide_input(isa, &mut q[..q_len], inp, pre, g, &layout, parts > 1);
    conv.transform_weights(isa, (0, k), weight, u);
    let (q, u) = (&*q, &*u);

    let plane = h * w;
    let (out_rows, out_row) = (variant.m() * conv.tiles().0, conv.out_row());
    let first_image = |p: usize| p * n / parts;
    let run_part =
        |p: usize, windows: &mut [&mut [f32]], scratch: &mut [f32], image_out: &mut [f32]| {
            for img in first_image(p)..first_image(p + 1) {
                conv.forward(
                    isa,
                    (u, k),
                    &q[img * image..],
                    [channel, row],
                    image_out,
                    scratch,
                );
                let at = (img - first_image(p)) * plane;
                for (o, window) in windows.iter_mut().enumerate() {
                    let src = &image_out[o * out_rows * out_row..];
                    let dst = &mut window[at..at + plane];
                    if out_row == w {
                        dst.copy_from_slice(&src[..plane]);
                    } else {
                        for (d, s) in dst.chunks_exact_mut(w).zip(src.chunks(out_row)) {
                            d.copy_from_slice(&s[..w]);
                        }
                    }
                }
            }
        };
    let mut windows: [&mut [f32]; MAX_OWNED_ROWS] = std::array::from_fn(|_| Default::default());
    for (window, channel_out) in windows.iter_mut().zip(out.chunks_exact_mut(n * plane)) {
        *window = channel_out;
    }
    tasks::split_parts(
        &mut windows[..k],
        0..parts,
        (scratch, images),
        (scratch_len, image_len),
        &|p| first_image(p) * plane,
        &run_part,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(n: usize, c: usize, k: usize, h: usize, w: usize) -> Conv2dGeom {
        Conv2dGeom::square(n, c, k, h, w, 3, 1, 1)
    }

    /// The choice follows the map's side, the tile size's divisibility and the tier.
    #[test]
    fn variant_follows_shape_and_tier() {
        let on = |isa, g: &Conv2dGeom| variant_on(isa, g);
        assert_eq!(
            on(Isa::Avx512, &geom(8, 128, 32, 56, 56)),
            Some(Variant::F4x4)
        );
        assert_eq!(
            on(Isa::Avx2, &geom(8, 128, 32, 56, 56)),
            Some(Variant::F2x2)
        );
        assert_eq!(
            on(Isa::Avx512, &geom(8, 128, 32, 54, 54)),
            Some(Variant::F2x2)
        );
        assert_eq!(
            on(Isa::Avx512, &geom(64, 48, 12, 32, 32)),
            Some(Variant::F2x2)
        );
        assert_eq!(
            on(Isa::Avx512, &geom(8, 128, 32, 14, 14)),
            Some(Variant::F2x2)
        );
        assert_eq!(on(Isa::Avx512, &geom(8, 128, 32, 13, 40)), None);
        assert_eq!(on(Isa::Portable, &geom(8, 128, 32, 56, 56)), None);
        assert_eq!(on(Isa::Avx512, &geom(8, 128, 129, 56, 56)), None);
        let strided = Conv2dGeom::square(8, 128, 32, 56, 56, 3, 2, 1);
        assert_eq!(on(Isa::Avx512, &strided), None);
        let one = Conv2dGeom::square(8, 128, 32, 56, 56, 1, 1, 0);
        assert_eq!(on(Isa::Avx512, &one), None);
    }
}
