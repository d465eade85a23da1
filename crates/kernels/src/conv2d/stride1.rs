//! Stride-1 convolutions (3×3/p1 growth convs, and any other stride-1 kernel) by *wide rows*.
//!
//! Copy the input once into a zero-padded buffer `P[IC, N, Hp, Wp]` (`Hp = H + 2·ph`,
//! `Wp = W + 2·pw`), with `pre` applied. Then compute the output of each image on the padded
//! width, `m' = oy·Wp + ox` for `ox < Wp` (the last `KW − 1` columns of each row are computed
//! and thrown away), because then every row of `col` is a contiguous slice of `P`:
//!
//! ```text
//! col[(ic, ky, kx), m'] = P[ic, n, oy + ky, ox + kx] = P_flat[ic, n][m' + ky·Wp + kx]
//! ```
//!
//! and packing `B` is a plain copy of `NR` floats per row, as fast as for a 1×1 convolution.
//! The `(Wp − OW)/Wp` wasted columns cost 3.5% at 56×56, 7% at 28×28 and 22% at 7×7; the
//! generic path's per-tap index arithmetic cost far more.
//!
//! The input gradient of a stride-1 convolution is itself a stride-1 convolution of `d_out`
//! (padding `KH − 1 − ph`) with the weights flipped and transposed, so it reuses this path with
//! accumulation instead of a `col2im` scatter.

use super::im2col::ChannelMap;
use crate::dispatch::Isa;
use crate::gemm::{self, Tile};
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::workspace::Workspace;
use rayon::prelude::*;

/// What the computed values do to the output.
#[derive(Clone, Copy)]
pub(super) enum Store<'a> {
    /// `out = value + bias[oc]` (or `value` without bias).
    Overwrite(Option<&'a [f32]>),
    /// `out += value`.
    Accumulate,
}

/// Whether this path handles the geometry: stride 1 and padding smaller than the kernel.
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    g.stride_h == 1 && g.stride_w == 1 && g.pad_h < g.kernel_h && g.pad_w < g.kernel_w
}

/// Floats of workspace [`conv_stride1`] needs.
pub(super) fn workspace_len(g: &Conv2dGeom, t: Tile) -> usize {
    gemm::aligned_len(&lens(g, t))
}

fn lens(g: &Conv2dGeom, t: Tile) -> [usize; 4] {
    let (hp, wp) = (g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w);
    let depth = g.in_channels * g.kernel_h * g.kernel_w;
    let cols = (g.out_h() - 1) * wp + g.out_w();
    let block = gemm::b_block_cols(depth, cols, t);
    [
        gemm::packed_a_len(g.out_channels, depth, t),
        g.in_channels * g.batch * hp * wp,
        gemm::packed_b_len(depth, block, t),
        g.out_channels.div_ceil(t.mr) * t.mr * block,
    ]
}

/// A stride-1 convolution `out (+)= W ⋆ pre(inp)`, with `weight_at(oc, k)` giving
/// `W[oc, k]`, `k = (ic·KH + ky)·KW + kx`.
///
/// # Shapes
/// - `out`: `[OC, N, OH, OW]`, written or accumulated per `store`. `inp`: `[IC, N, H, W]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_stride1(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    weight_at: impl Fn(usize, usize) -> f32,
    pre: Option<ChannelAffine<'_>>,
    store: Store<'_>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    let t = gemm::tile(isa);
    let (hp, wp) = (g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w);
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let rows = g.out_channels;
    let depth = g.in_channels * kh * kw;
    let cols = (oh - 1) * wp + ow;
    let plane = hp * wp;
    let out_plane = oh * ow;
    let out_len = g.batch * out_plane;
    let block = gemm::b_block_cols(depth, cols, t);
    let [a, padded, b, c_block] = gemm::carve(ws, lens(g, t));
    gemm::pack_a_with(a, rows, depth, t, weight_at);
    let parallel = gemm::worth_parallel(rows * depth * cols * g.batch);

    let pad_channel = |(ic, p): (usize, &mut [f32])| {
        let map = ChannelMap::new(pre.as_ref(), ic);
        for (n, image) in p.chunks_exact_mut(plane).enumerate() {
            for (yy, row) in image.chunks_exact_mut(wp).enumerate() {
                let Some(y) = yy.checked_sub(g.pad_h).filter(|&y| y < g.in_h) else {
                    row.fill(0.0);
                    continue;
                };
                let src = &inp[((ic * g.batch + n) * g.in_h + y) * g.in_w..][..g.in_w];
                row[..g.pad_w].fill(0.0);
                map.copy(&mut row[g.pad_w..g.pad_w + g.in_w], src);
                row[g.pad_w + g.in_w..].fill(0.0);
            }
        }
    };
    let chan_len = g.batch * plane;
    if parallel {
        padded
            .par_chunks_mut(chan_len)
            .enumerate()
            .for_each(pad_channel);
    } else {
        padded
            .chunks_mut(chan_len)
            .enumerate()
            .for_each(pad_channel);
    }
    let padded = &*padded;

    for n in 0..g.batch {
        for col0 in (0..cols).step_by(block) {
            let ncols = block.min(cols - col0);
            let b = &mut b[..gemm::packed_b_len(depth, ncols, t)];
            let pack = |(j, panel): (usize, &mut [f32])| {
                let m0 = col0 + j * t.nr;
                let w = t.nr.min(ncols - j * t.nr);
                let mut lanes = panel.chunks_exact_mut(t.nr);
                for ic in 0..g.in_channels {
                    let image = &padded[(ic * g.batch + n) * plane..][..plane];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let lane = lanes.next().expect("depth rows");
                            let start = m0 + ky * wp + kx;
                            lane[..w].copy_from_slice(&image[start..start + w]);
                            lane[w..].fill(0.0);
                        }
                    }
                }
            };
            if parallel {
                b.par_chunks_mut(depth * t.nr).enumerate().for_each(pack);
            } else {
                b.chunks_mut(depth * t.nr).enumerate().for_each(pack);
            }
            let b = &*b;
            let group = |(gi, (out_g, c_g)): (usize, (&mut [f32], &mut [f32]))| {
                let rows_here = t.mr.min(rows - gi * t.mr);
                let a_g = &a[gi * t.mr * depth..(gi + 1) * t.mr * depth];
                gemm::gemm_row_group(isa, rows_here, ncols, depth, a_g, b, c_g, block, false);
                for r in 0..rows_here {
                    let oc = gi * t.mr + r;
                    let dst = &mut out_g[r * out_len + n * out_plane..][..out_plane];
                    let src = &c_g[r * block..r * block + ncols];
                    scatter_row(dst, src, col0, wp, ow, oc, store);
                }
            };
            let c_block = &mut c_block[..];
            if parallel {
                out.par_chunks_mut(t.mr * out_len)
                    .zip(c_block.par_chunks_mut(t.mr * block))
                    .enumerate()
                    .for_each(group);
            } else {
                out.chunks_mut(t.mr * out_len)
                    .zip(c_block.chunks_mut(t.mr * block))
                    .enumerate()
                    .for_each(group);
            }
        }
    }
}

/// Stores the wide-row values `src[j]` (`m' = col0 + j`) of one output channel into its image
/// plane `dst[oy·OW + ox]`, dropping the columns `ox ≥ OW`.
fn scatter_row(
    dst: &mut [f32],
    src: &[f32],
    col0: usize,
    wp: usize,
    ow: usize,
    oc: usize,
    store: Store<'_>,
) {
    let mut j = 0;
    while j < src.len() {
        let m = col0 + j;
        let (oy, ox) = (m / wp, m % wp);
        let run = (wp - ox).min(src.len() - j);
        if ox < ow {
            let valid = (ow - ox).min(run);
            let d = &mut dst[oy * ow + ox..][..valid];
            let s = &src[j..j + valid];
            match store {
                Store::Overwrite(None) => d.copy_from_slice(s),
                Store::Overwrite(Some(bias)) => {
                    d.iter_mut().zip(s).for_each(|(d, &v)| *d = v + bias[oc]);
                }
                Store::Accumulate => d.iter_mut().zip(s).for_each(|(d, &v)| *d += v),
            }
        }
        j += run;
    }
}

/// The geometry of the input gradient of a stride-1 convolution as a convolution of `d_out`:
/// `OC → IC` channels on the `OH × OW` map, padding `K − 1 − p`, output `H × W`.
pub(super) fn transposed_geometry(g: &Conv2dGeom) -> Conv2dGeom {
    Conv2dGeom {
        batch: g.batch,
        in_channels: g.out_channels,
        out_channels: g.in_channels,
        in_h: g.out_h(),
        in_w: g.out_w(),
        kernel_h: g.kernel_h,
        kernel_w: g.kernel_w,
        stride_h: 1,
        stride_w: 1,
        pad_h: g.kernel_h - 1 - g.pad_h,
        pad_w: g.kernel_w - 1 - g.pad_w,
    }
}
