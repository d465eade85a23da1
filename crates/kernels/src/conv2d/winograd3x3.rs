//! The forward 3×3, stride-1, padding-1 convolution of a whole batch by Winograd's minimal
//! filtering ([`crate::winograd`]), and the input gradient as the same computation: what the
//! training step runs for the dense layers' growth convolutions where it is faster than the
//! direct wide-row product.
//!
//! The images run one at a time, split between the threads. A part fills one image's
//! zero-padded planes `Q[C, H' + 2, W' + 1]` (the wide-row layout of `wide.rs`, `WideInput`, for
//! one image, `pre` applied; `H' × W'` the map rounded up to whole tiles, zeros past it, as
//! F(4×4, 3×3) needs), which stay in L2 while [`Winograd3x3::forward`] transforms them
//! (filling the whole batch's first, as the direct path does, sent 14 MB per BC-100 layer to
//! memory and back). Each image's output comes out as `[OC, H', W']` in the part's scratch, and
//! its `H × W` outputs are copied to their place in the `[OC, N, H, W]` output (each output
//! channel's row is split between the parts, as the direct path's column tasks split it).
//!
//! Every output is computed from its image alone, in an order that does not depend on the
//! part the image falls in: the same bits on any number of threads.

use super::check;
use super::im2col::ChannelMap;
use super::tasks::{self, MAX_OWNED_ROWS};
use crate::dispatch::{active_isa, Isa};
use crate::gemm;
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::simd::on_tier;
use crate::winograd::{self, Variant, Winograd3x3};
use crate::workspace::Workspace;

/// Smallest map side on which [`winograd_variant`] picks Winograd: below it the transforms'
/// share outgrows the saving (48 → 12 at 16×16 1.09× the direct product, at 8×8 0.71×; 128 → 32
/// at 14×14 1.24×, at 7×7 0.87×, one image, one thread, AVX-512). Over BC-100's 48 forward 3×3s
/// at batch 64 (`examples/bc100_convs.rs`, interleaved), leaving its 16×16 block direct (a
/// threshold of 17) takes 4–10% longer, and taking its 8×8 block in (a threshold of 8) changes
/// nothing measurable.
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
/// Either variant takes any map size.
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
    run(out, inp, Weights::Oihw(weight), pre, g, variant, ws);
}

/// The Winograd variant [`conv2d_backward_input_winograd`] runs fastest for the input gradient
/// of the forward convolution `g` on the active SIMD tier, or `None` where the direct product
/// ([`super::conv2d_backward_input_to`]) is faster. The input gradient is a 3×3 convolution of
/// `d_out` back to the `IC` input channels, of depth `OC`: with its `IC` output transforms per
/// tile, it gains less than the forward, and nothing on depths under 32 (BC-100's 12 → 48 at
/// 32×32 1.03×) or maps under 28 (densenet121's 32 → 128 at 14×14 0.99×; at 28×28 1.39× and at
/// 56×56 F(4×4, 3×3) 2.32×, one thread, AVX-512). F(4×4, 3×3) from 48×48 as in the forward
/// ([`WINOGRAD_F4_MIN_SIDE`]): at 28×28 it would run 1.64×, about 3 ms of a densenet121 batch-8
/// step, for errors twenty times larger.
pub fn winograd_variant_backward_input(g: &Conv2dGeom) -> Option<Variant> {
    backward_input_variant_on(active_isa(), g)
}

/// Smallest depth (forward output channels) of an input gradient by Winograd.
const BACKWARD_INPUT_MIN_DEPTH: usize = 32;

/// Smallest map side of an input gradient by Winograd.
const BACKWARD_INPUT_MIN_SIDE: usize = 28;

fn backward_input_variant_on(isa: Isa, g: &Conv2dGeom) -> Option<Variant> {
    let enough =
        g.out_channels >= BACKWARD_INPUT_MIN_DEPTH && g.in_h.min(g.in_w) >= BACKWARD_INPUT_MIN_SIDE;
    enough.then(|| variant_on(isa, &transposed(g))).flatten()
}

/// The input gradient's convolution: `d_out`'s `OC` channels back to `IC`, same map.
fn transposed(g: &Conv2dGeom) -> Conv2dGeom {
    Conv2dGeom {
        in_channels: g.out_channels,
        out_channels: g.in_channels,
        ..*g
    }
}

/// `d_in = conv(d_out, W')` with `W'[ic, oc, ky, kx] = W[oc, ic, 2 − ky, 2 − kx]`: the input
/// gradient of the 3×3, stride-1, padding-1 convolution `g` by Winograd (`variant`;
/// [`winograd_variant_backward_input`] says where it is faster than
/// [`super::conv2d_backward_input_to`]), written. The same sums' roundings differ as in
/// [`conv2d_forward_winograd`].
///
/// # Shapes
/// - `d_in`: `[IC, N, H, W]`, written. `d_out`: `[OC, N, H, W]`, read.
/// - `weight`: the forward weight `[OC, IC, 3, 3]`, read.
///
/// # Panics
/// If `g` is not a 3×3, stride-1, padding-1 convolution of at most 128 input channels, or a
/// buffer length does not match it.
pub fn conv2d_backward_input_winograd(
    d_in: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    g: &Conv2dGeom,
    variant: Variant,
    ws: &mut Workspace,
) {
    check(g, d_in.len(), d_out.len(), weight.len(), None);
    let tg = transposed(g);
    run(
        d_in,
        d_out,
        Weights::Flipped(weight),
        None,
        &tg,
        variant,
        ws,
    );
}

/// The weights of [`run`]'s convolution.
enum Weights<'a> {
    /// Its own `[OC, IC, 3, 3]`.
    Oihw(&'a [f32]),
    /// The transposed convolution's `[IC, OC, 3, 3]`, whose flip and transpose is the
    /// convolution's: the input gradient's.
    Flipped(&'a [f32]),
}

/// The batch through Winograd: `g` is the convolution run, `out` `[g.OC, N, H, W]`, `inp`
/// `[g.IC, N, H, W]`, lengths checked.
fn run(
    out: &mut [f32],
    inp: &[f32],
    weights: Weights<'_>,
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    variant: Variant,
    ws: &mut Workspace,
) {
    assert!(
        is_3x3_same(g),
        "conv2d Winograd: the convolution must be 3x3 with stride 1 and padding 1"
    );
    assert!(
        g.out_channels <= MAX_OWNED_ROWS,
        "conv2d Winograd: at most {MAX_OWNED_ROWS} output channels"
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
    // Each image's padded planes, filled by the part that transforms them, right before: the
    // image's `C` planes stay in L2 between the two, where the whole batch's would go to memory
    // and back.
    // Planes of the map rounded up to whole tiles, zero past it: F(4×4, 3×3) needs genuine zeros
    // wherever its tiles read (see `Winograd3x3::forward`); F(2×2, 3×3) would drop what they read
    // there, but gets the same layout.
    let (tile_rows, tile_cols) = (variant.m() * conv.tiles().0, variant.m() * conv.tiles().1);
    let row = tile_cols + 1;
    let image_plane = (tile_rows + 2) * row;
    let q_len = c * image_plane;
    // The tiles read past the last plane (rows and lanes beyond the map): zeros.
    let q_floats = q_len.max(conv.input_len(image_plane, row));
    let macs = 9 * k * c * n * h * w;
    let parts = if gemm::worth_parallel(macs) {
        rayon::current_num_threads().min(n)
    } else {
        1
    };
    let flipped_len = match weights {
        Weights::Oihw(_) => 0,
        Weights::Flipped(_) => 9 * k * c,
    };
    let (scratch_len, image_len) = (conv.scratch_len(isa, k), conv.out_len(k));
    // A part's scratch: its image's planes `Q`, then the transforms' scratch.
    let part_len = q_floats.div_ceil(16) * 16 + scratch_len;
    let [u, flipped, scratch, images] = gemm::carve(
        ws,
        [
            conv.weights_len(k),
            flipped_len,
            parts * part_len,
            parts * image_len,
        ],
    );
    let weight = match weights {
        Weights::Oihw(weight) => weight,
        Weights::Flipped(transposed) => {
            // `W[o, i, ky, kx] = W_t[i, o, 2 − ky, 2 − kx]` for this convolution's `o < k`,
            // `i < c`, where `W_t` is `[c, k, 3, 3]`.
            for (o, w_o) in flipped.chunks_exact_mut(9 * c).enumerate() {
                for (i, taps) in w_o.chunks_exact_mut(9).enumerate() {
                    let src = &transposed[(i * k + o) * 9..][..9];
                    for (t, v) in taps.iter_mut().enumerate() {
                        *v = src[8 - t];
                    }
                }
            }
            &*flipped
        }
    };
    conv.transform_weights(isa, (0, k), weight, u);
    let u = &*u;

    let plane = h * w;
    let (out_rows, out_row) = (variant.m() * conv.tiles().0, conv.out_row());
    let first_image = |p: usize| p * n / parts;
    let run_part =
        |p: usize, windows: &mut [&mut [f32]], scratch: &mut [f32], image_out: &mut [f32]| {
            let (q, scratch) = scratch.split_at_mut(part_len - scratch_len);
            let q = &mut q[..q_floats];
            q[q_len..].fill(0.0);
            for img in first_image(p)..first_image(p + 1) {
                on_tier(
                    isa,
                    #[inline(always)]
                    || fill_image_planes(&mut q[..q_len], row, inp, pre.as_ref(), g, img),
                );
                conv.forward(isa, (u, k), q, [image_plane, row], image_out, scratch);
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
        (part_len, image_len),
        &|p| first_image(p) * plane,
        &run_part,
    );
}

/// Image `img`'s zero-padded planes of `pre(inp)` into `q` (`C` planes of rows `row ≥ W + 1`
/// floats long): the wide-row layout of `wide.rs` (`WideInput`) for one image, a zero row
/// above the map, rows of a zero, the mapped row and zeros to the row's end (the first is the
/// row's right padding), then zero rows to the plane's end.
#[inline(always)]
fn fill_image_planes(
    q: &mut [f32],
    row: usize,
    inp: &[f32],
    pre: Option<&ChannelAffine<'_>>,
    g: &Conv2dGeom,
    img: usize,
) {
    let (n, h, w) = (g.batch, g.in_h, g.in_w);
    let plane = q.len() / g.in_channels;
    for (ch, planes) in q.chunks_exact_mut(plane).enumerate() {
        let map = ChannelMap::new(pre, ch);
        let (first, rest) = planes.split_at_mut(row);
        first.fill(0.0);
        let (rows, below) = rest.split_at_mut(h * row);
        below.fill(0.0);
        let src = &inp[(ch * n + img) * h * w..][..h * w];
        for (dst, src) in rows.chunks_exact_mut(row).zip(src.chunks_exact(w)) {
            let (left, rest) = dst.split_at_mut(1);
            let (values, right) = rest.split_at_mut(w);
            left[0] = 0.0;
            map.copy(values, src);
            // Usually empty (rows of whole tiles, `W + 1`): no `memset` call per row.
            for v in right {
                *v = 0.0;
            }
        }
    }
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
        use Variant::{F2x2, F4x4};
        for (isa, (n, c, k, h, w), want) in [
            (Isa::Avx512, (8, 128, 32, 56, 56), Some(F4x4)),
            (Isa::Avx2, (8, 128, 32, 56, 56), Some(F2x2)),
            (Isa::Portable, (8, 128, 32, 56, 56), None),
            (Isa::Avx512, (8, 128, 32, 48, 48), Some(F4x4)),
            (Isa::Avx512, (8, 128, 32, 44, 44), Some(F2x2)),
            (Isa::Avx512, (8, 128, 32, 54, 54), Some(F2x2)),
            (Isa::Avx512, (8, 128, 32, 56, 54), Some(F2x2)),
            (Isa::Avx512, (8, 128, 32, 54, 56), Some(F2x2)),
            (Isa::Avx512, (64, 48, 12, 32, 32), Some(F2x2)),
            (Isa::Avx512, (8, 128, 32, 14, 14), Some(F2x2)),
            (Isa::Avx512, (8, 128, 32, 13, 40), None),
            (Isa::Avx512, (8, 128, 129, 56, 56), None),
        ] {
            assert_eq!(variant_on(isa, &geom(n, c, k, h, w)), want, "{isa} {h}x{w}");
        }
        let strided = Conv2dGeom::square(8, 128, 32, 56, 56, 3, 2, 1);
        assert_eq!(variant_on(Isa::Avx512, &strided), None);
        let one = Conv2dGeom::square(8, 128, 32, 56, 56, 1, 1, 0);
        assert_eq!(variant_on(Isa::Avx512, &one), None);
    }

    /// The input gradient runs by Winograd on deep enough products and large enough maps only.
    #[test]
    fn backward_input_variant_needs_depth_and_size() {
        let on = |isa, g: &Conv2dGeom| backward_input_variant_on(isa, g);
        assert_eq!(
            on(Isa::Avx512, &geom(8, 128, 32, 56, 56)),
            Some(Variant::F4x4)
        );
        assert_eq!(
            on(Isa::Avx512, &geom(8, 128, 32, 28, 28)),
            Some(Variant::F2x2)
        );
        assert_eq!(
            on(Isa::Avx2, &geom(8, 128, 32, 28, 28)),
            Some(Variant::F2x2)
        );
        assert_eq!(on(Isa::Avx512, &geom(8, 128, 32, 14, 14)), None);
        assert_eq!(on(Isa::Avx512, &geom(64, 48, 12, 32, 32)), None);
        assert_eq!(on(Isa::Portable, &geom(8, 128, 32, 56, 56)), None);
        // The transposed convolution's outputs are the forward's inputs: at most 128.
        assert_eq!(on(Isa::Avx512, &geom(8, 129, 32, 56, 56)), None);
    }
}
