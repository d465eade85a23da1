//! Convolutions by *wide rows*: every stride-1 convolution (the 3×3/p1 growth convs) forward
//! and backward, and the forward of strided ones (the 7×7/s2 stem) through the input's phases
//! (see `WideInput`: with stride `(sh, sw)` the input is split into `sh·sw` phase planes, in
//! which every tap again reads a contiguous run; the stem runs at 3.9 ms instead of 5.5 ms).
//!
//! The stride-1 case:
//!
//! Copy the input once into a zero-padded buffer `P[IC, N, Hp, Wp]` (`Hp = H + 2·ph`,
//! `Wp = W + 2·pw`, or `W + pw` with padding columns shared between rows, below), with `pre`
//! applied. Then compute the output of each image on the padded width, `m' = oy·Wp + ox` for
//! `ox < Wp` (the last `Wp − OW` columns of each row are computed and thrown away), because
//! then every row of `col` is a contiguous slice of `P`:
//!
//! ```text
//! col[(ic, ky, kx), m'] = P[ic, n, oy + ky, ox + kx] = P_flat[ic, n][m' + ky·Wp + kx]
//! ```
//!
//! so `B` is not packed at all: the micro-kernel loads `NR` floats of row `k` straight from `P`
//! at `row_start(k) + m'` ([`crate::gemm::BView::Rows`]). For a 3×3 conv with 32 output
//! channels, each value of `col` feeds only 32 multiply-adds, so copying it into a packed panel
//! first cost a fifth of the convolution (3×3 128→32 at 56×56, one thread: 3.08 ms packed,
//! 2.40 ms in place). The window a depth slice of 256 rows reads (28 channels × 3 rows of `P`
//! around the panel) is a third of the packed panel's size, so it stays in L1 as well.
//! The `(Wp − OW)/Wp` wasted columns cost 3.5% at 56×56, 7% at 28×28 and 22% at 7×7; the
//! generic path's per-tap index arithmetic cost far more. A convolution with "same" padding
//! (`K = 2p + 1`: the 3×3/p1s) shares its padding columns between rows, `Wp = W + pw` (see
//! `WideInput`), which halves that waste: 1.8%, 3.4% and 12.5%.
//!
//! The input gradient of a stride-1 convolution is itself a stride-1 convolution of `d_out`
//! (padding `KH − 1 − ph`) with the weights flipped and transposed, so it reuses this path with
//! accumulation instead of a `col2im` scatter.

use super::im2col::ChannelMap;
use super::tasks::{self, Task};
use crate::dispatch::Isa;
use crate::gemm::{self, AView, BView, CStore, Tile, MAX_MR};
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::simd::on_tier;
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

/// Whether the backward paths here handle the geometry: stride 1 and padding smaller than the
/// kernel.
pub(super) fn applies(g: &Conv2dGeom) -> bool {
    g.stride_h == 1 && g.stride_w == 1 && applies_forward(g)
}

/// Whether [`conv_wide`] handles the geometry: padding smaller than the kernel and a stride
/// no larger than it (a larger stride would be computed correctly too, but would fill whole
/// phases of the input that no tap reads).
pub(super) fn applies_forward(g: &Conv2dGeom) -> bool {
    g.pad_h < g.kernel_h
        && g.pad_w < g.kernel_w
        && g.stride_h <= g.kernel_h
        && g.stride_w <= g.kernel_w
}

/// The layout of the wide-row input `Q` of a convolution with stride `(sh, sw)`: the padded,
/// `pre`-mapped input split into its `sh·sw` *phases*,
///
/// ```text
/// Q[ic, qy·sw + qx, n, y', x'] = pre(inp)[ic, n, sh·y' + qy − ph, sw·x' + qx − pw]   (0 outside)
/// ```
///
/// for `y' < hq = OH + (KH−1)/sh`, `x' < wq = OW + (KW−1)/sw`. Tap `(ky, kx)` of output `(oy, ox)`
/// reads phase `(ky mod sh, kx mod sw)` at `(oy + ky/sh, ox + kx/sw)`, so on the wide columns
/// `m' = oy·wq + ox` every row of `col` is again a contiguous run of `Q`. With stride 1 there is
/// one phase and `Q` is the padded input `P` (`hq = H + 2·ph`, `wq = W + 2·pw`).
///
/// A stride-1 convolution with "same" padding (`KW = 2·pw + 1` and `KH = 2·ph + 1`: the 3×3/p1
/// growth convs and their input gradients) shares the padding columns between rows:
/// `wq = W + pw`, every row (a zero row too) the `pw` zeros then the `W` values, so the zeros
/// starting the next row are this row's right padding. A tap reading past a row's end lands in
/// them (`ox + kx − wq ≤ pw − 1`); past the last row of the last plane, in `pw` zeros of slack
/// after `Q`. Each row computes `pw` columns to throw away instead of `2·pw` (3% of the columns
/// at 32×32, 1.7% at 56×56).
#[derive(Clone, Copy, Debug)]
struct WideInput {
    sh: usize,
    sw: usize,
    hq: usize,
    wq: usize,
}

impl WideInput {
    fn new(g: &Conv2dGeom) -> Self {
        let shared = g.stride_h == 1
            && g.stride_w == 1
            && g.kernel_h == 2 * g.pad_h + 1
            && g.kernel_w == 2 * g.pad_w + 1;
        WideInput {
            sh: g.stride_h,
            sw: g.stride_w,
            hq: g.out_h() + (g.kernel_h - 1) / g.stride_h,
            wq: if shared {
                g.in_w + g.pad_w
            } else {
                g.out_w() + (g.kernel_w - 1) / g.stride_w
            },
        }
    }

    /// Floats of one phase plane of one image.
    fn plane(&self) -> usize {
        self.hq * self.wq
    }

    /// Floats of all of `Q`.
    fn len(&self, g: &Conv2dGeom) -> usize {
        g.in_channels * self.sh * self.sw * g.batch * self.plane()
    }

    /// Wide columns per image: `(OH − 1)·wq + OW`.
    fn cols(&self, g: &Conv2dGeom) -> usize {
        (g.out_h() - 1) * self.wq + g.out_w()
    }

    /// Where row `k = (ic·KH + ky)·KW + kx` of `col` starts in `Q`, for image 0 and column 0.
    fn row_start(&self, g: &Conv2dGeom, k: usize) -> usize {
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        let (ic, tap) = (k / (kh * kw), k % (kh * kw));
        let (ky, kx) = (tap / kw, tap % kw);
        let phase = (ky % self.sh) * self.sw + kx % self.sw;
        (ic * self.sh * self.sw + phase) * g.batch * self.plane()
            + (ky / self.sh) * self.wq
            + kx / self.sw
    }
}

/// Floats of workspace [`conv_wide`] needs.
pub(super) fn workspace_len(g: &Conv2dGeom, t: Tile) -> usize {
    gemm::aligned_len(&lens(g, t))
}

fn lens(g: &Conv2dGeom, t: Tile) -> [usize; 4] {
    let layout = WideInput::new(g);
    let depth = g.in_channels * g.kernel_h * g.kernel_w;
    let cols = layout.cols(g);
    let block = tasks::block_cols(depth, cols, g.batch, t);
    let ntasks = g.batch * cols.div_ceil(block);
    let [b, c] = tasks::scratch_lens(g.out_channels, depth, block, ntasks, t, false);
    // Row tasks ([`conv_wide`]) hold `rows_per_task × block` each; together at most the rows
    // plus one row group per task, whatever the pool: `2·rows + MR` rows is enough.
    let by_rows = (2 * g.out_channels + MAX_MR) * block;
    [
        gemm::packed_a_len(g.out_channels, depth, t),
        // The last row of `col` is read `NR` floats wide (see `BView::Rows`), and with shared
        // padding columns `pw` floats further (see `WideInput`): zeros past the end.
        layout.len(g) + t.nr + g.pad_w,
        b,
        c.max(by_rows),
    ]
}

/// The weight matrix `W[OC, K]`, `k = (ic·KH + ky)·KW + kx`, of a stride-1 convolution.
pub(super) enum Weights<'a> {
    /// The `OIHW` weight itself, read in place.
    RowMajor(&'a [f32]),
    /// The input gradient's weight, `W'[ic, (oc, ky, kx)] = W[oc, ic, KH−1−ky, KW−1−kx]`, packed
    /// first. Holds the forward `OIHW` weight `W`.
    Flipped(&'a [f32]),
}

/// Packs the flipped, transposed weight of an input gradient (see [`Weights::Flipped`]) for
/// the transposed geometry `tg` (`tg.out_channels` = forward IC, `tg.in_channels` = forward OC).
fn pack_flipped(dst: &mut [f32], w: &[f32], tg: &Conv2dGeom, t: Tile) {
    let (rows, oc_n, kh, kw) = (tg.out_channels, tg.in_channels, tg.kernel_h, tg.kernel_w);
    let taps = kh * kw;
    let depth = oc_n * taps;
    for (g, group) in dst
        .chunks_exact_mut(t.mr * depth)
        .take(rows.div_ceil(t.mr))
        .enumerate()
    {
        let rows_here = t.mr.min(rows - g * t.mr);
        let mut lanes = group.chunks_exact_mut(t.mr);
        for oc in 0..oc_n {
            for ky in 0..kh {
                for kx in 0..kw {
                    let lane = lanes.next().expect("depth rows");
                    let tap = (kh - 1 - ky) * kw + (kw - 1 - kx);
                    for (i, v) in lane.iter_mut().enumerate() {
                        *v = if i < rows_here {
                            w[(oc * rows + g * t.mr + i) * taps + tap]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// A stride-1 convolution `out (+)= W ⋆ pre(inp)`.
///
/// # Shapes
/// - `out`: `[OC, N, OH, OW]`, written or accumulated per `store`. `inp`: `[IC, N, H, W]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_wide(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    weights: Weights<'_>,
    pre: Option<ChannelAffine<'_>>,
    store: Store<'_>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    let t = gemm::tile(isa);
    let layout = WideInput::new(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let rows = g.out_channels;
    let depth = g.in_channels * g.kernel_h * g.kernel_w;
    let cols = layout.cols(g);
    let out_plane = oh * ow;
    let out_len = g.batch * out_plane;
    let block = tasks::block_cols(depth, cols, g.batch, t);
    let [a, padded, b, c_block] = gemm::carve(ws, lens(g, t));
    let a = match weights {
        Weights::RowMajor(w) => AView::RowMajor { data: w, ld: depth },
        Weights::Flipped(w) => {
            pack_flipped(a, w, g, t);
            AView::Packed(a)
        }
    };
    let parallel = gemm::worth_parallel(rows * depth * cols * g.batch);

    let padded_len = layout.len(g);
    padded[padded_len..].fill(0.0);
    fill_wide_input(
        isa,
        &mut padded[..padded_len],
        inp,
        pre,
        g,
        &layout,
        parallel,
    );
    // `col` is never packed: each of its rows is a run of `Q` (see `WideInput`), so the product
    // reads it in place (`BView::Rows`) from the task's first column on.
    let padded = &*padded;
    let row_start = |k: usize| layout.row_start(g, k);

    let blocks_per_image = cols.div_ceil(block);
    let task_at = |i: usize| {
        let (n, col0) = (i / blocks_per_image, (i % blocks_per_image) * block);
        Task {
            n,
            col0,
            ncols: block.min(cols - col0),
        }
    };
    // Output position `p` of image `n`'s plane is at `n·out_plane + p` of an output row; wide
    // column `c` stores from plane position `(c / wq)·OW + min(c % wq, OW)` on.
    let plane_pos = |col: usize| (col / layout.wq) * ow + (col % layout.wq).min(ow);
    let span_start = |task: &Task| task.n * out_plane + plane_pos(task.col0);
    let store_values = |task: &Task, oc: usize, values: &[f32], window: &mut [f32], start| {
        // The task writes plane positions `skip..end` only (the rest are other tasks').
        let skip = plane_pos(task.col0);
        let end = plane_pos(task.col0 + task.ncols);
        let dst = &mut window[task.n * out_plane + skip - start..][..end - skip];
        scatter_row(dst, values, task.col0, skip, layout.wq, ow, oc, store);
    };
    let ntasks = g.batch * blocks_per_image;
    let kernel_tile = match a {
        AView::Packed(_) => t,
        _ => gemm::tile_for_rows(isa, rows),
    };
    if parallel && rows >= 2 * kernel_tile.mr {
        // Row tasks: each takes a group of output channels through every column block and
        // stores them itself. `B` is read in place by every task; the output, the larger side
        // for an input gradient, is written once. (They replaced column tasks that scattered
        // their blocks in a second pass, 15% of a BC-100 3×3 input gradient at batch 64 on two
        // threads; the column tasks now store their own spans too, and measured the same on
        // that gradient, 104–125 against 100–134 ms in interleaved pairs.)
        let groups = rows.div_ceil(kernel_tile.mr);
        let row_tasks = rayon::current_num_threads().clamp(1, groups);
        let rows_per_task = groups.div_ceil(row_tasks) * kernel_tile.mr;
        let by_rows = |(i, (out_rows, c)): (usize, (&mut [f32], &mut [f32]))| {
            let row0 = i * rows_per_task;
            let nrows = out_rows.len() / out_len;
            for task in (0..ntasks).map(task_at) {
                let b = BView::Rows {
                    data: &padded[task.n * layout.plane() + task.col0..],
                    row_start: &row_start,
                };
                gemm::gemm_block_with(
                    isa,
                    kernel_tile,
                    row0,
                    nrows,
                    task.ncols,
                    depth,
                    a,
                    b,
                    c,
                    block,
                    CStore::Write,
                );
                for (r, out_row) in out_rows.chunks_mut(out_len).enumerate() {
                    store_values(&task, row0 + r, &c[r * block..][..task.ncols], out_row, 0);
                }
            }
        };
        out.par_chunks_mut(rows_per_task * out_len)
            .zip(c_block.par_chunks_mut(rows_per_task * block))
            .enumerate()
            .for_each(by_rows);
        return;
    }
    tasks::run(
        isa,
        rows,
        depth,
        a,
        block,
        ntasks,
        task_at,
        tasks::BSource::InPlace {
            data: padded,
            image_len: layout.plane(),
            row_start: &row_start,
        },
        span_start,
        store_values,
        out,
        out_len,
        b,
        c_block,
        parallel,
    );
}

/// Stores the wide-row values `src[j]` (`m' = col0 + j`) of one output channel into its image
/// plane, position `oy·OW + ox` at `dst[oy·OW + ox − skip]` (`dst` starts `skip` positions into
/// the plane), dropping the columns `ox ≥ OW`.
#[allow(clippy::too_many_arguments)]
fn scatter_row(
    dst: &mut [f32],
    src: &[f32],
    col0: usize,
    skip: usize,
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
            let d = &mut dst[oy * ow + ox - skip..][..valid];
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

/// Writes the wide-row input `Q` of `layout` (see [`WideInput`]): the padded input with `pre`
/// applied, zero on the border, split into the stride's phases.
fn fill_wide_input(
    isa: Isa,
    q: &mut [f32],
    inp: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    layout: &WideInput,
    parallel: bool,
) {
    let WideInput { sh, sw, .. } = *layout;
    let plane = layout.plane();
    // Compiled for the tier ([`on_tier`]): on the baseline target the map ran four lanes at a
    // time, 4% of a DenseNet-BC-100 training step.
    let fill_channel = |(ic, q_ic): (usize, &mut [f32])| {
        on_tier(
            isa,
            #[inline(always)]
            || fill_channel_planes(q_ic, inp, ChannelMap::new(pre.as_ref(), ic), ic, g, layout),
        )
    };
    let chan_len = sh * sw * g.batch * plane;
    if parallel {
        q.par_chunks_mut(chan_len)
            .enumerate()
            .for_each(fill_channel);
    } else {
        q.chunks_mut(chan_len).enumerate().for_each(fill_channel);
    }
}

/// Input channel `ic`'s planes of the wide-row input (every phase of every image), `q_ic`.
#[inline(always)]
fn fill_channel_planes(
    q_ic: &mut [f32],
    inp: &[f32],
    map: ChannelMap,
    ic: usize,
    g: &Conv2dGeom,
    layout: &WideInput,
) {
    let WideInput { sh, sw, wq, .. } = *layout;
    let plane = layout.plane();
    for (phase, q_phase) in q_ic.chunks_exact_mut(g.batch * plane).enumerate() {
        let (qy, qx) = (phase / sw, phase % sw);
        for (n, image) in q_phase.chunks_exact_mut(plane).enumerate() {
            for (yq, row) in image.chunks_exact_mut(wq).enumerate() {
                let Some(y) = (sh * yq + qy).checked_sub(g.pad_h).filter(|&y| y < g.in_h) else {
                    row.fill(0.0);
                    continue;
                };
                let src = &inp[((ic * g.batch + n) * g.in_h + y) * g.in_w..][..g.in_w];
                if sw == 1 {
                    // One phase across: the row is `pw` zeros, the mapped input row, and `pw`
                    // zeros more unless the next row's leading zeros serve as them (see
                    // `WideInput`). (A `fill` of the one zero of a 3×3's padding is a `memset`
                    // call per side and row: 1.6% of BC-100's forward 3×3.)
                    let (left, rest) = row.split_at_mut(g.pad_w);
                    let (mid, right) = rest.split_at_mut(g.in_w);
                    match (&mut *left, &mut *right) {
                        ([l], []) => *l = 0.0,
                        ([l], [r]) => (*l, *r) = (0.0, 0.0),
                        _ => {
                            left.fill(0.0);
                            right.fill(0.0);
                        }
                    }
                    map.copy(mid, src);
                } else {
                    for (xq, value) in row.iter_mut().enumerate() {
                        *value = (sw * xq + qx)
                            .checked_sub(g.pad_w)
                            .and_then(|x| src.get(x))
                            .map_or(0.0, |&x| map.apply(x));
                    }
                }
            }
        }
    }
}

/// Floats of workspace [`backward_weight_stride1`] needs.
pub(super) fn backward_weight_workspace_len(g: &Conv2dGeom, isa: Isa) -> usize {
    gemm::aligned_len(&backward_weight_lens(g, isa))
}

/// `[padded input, padded d_out, dot-product scratch]`; the padded input is followed by `pw`
/// zeros, which its last tap reads with shared padding columns (see [`WideInput`]).
fn backward_weight_lens(g: &Conv2dGeom, isa: Isa) -> [usize; 3] {
    let layout = WideInput::new(g);
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    [
        layout.len(g) + g.pad_w,
        g.out_channels * g.batch * layout.plane(),
        gemm::gemm_abt_scratch_len(isa, g.out_channels, k, false),
    ]
}

fn backward_weight_parallel(g: &Conv2dGeom) -> bool {
    gemm::worth_parallel(usize::try_from(g.macs()).unwrap_or(usize::MAX))
}

/// The weight gradient of a stride-1 convolution by wide rows, as dot products along the whole
/// batch:
///
/// ```text
/// dW[oc, k] += Σ_{m'} d_out'[oc, m'] · col'[k, m'],   m' ∈ [0, (N−1)·P + (OH−1)·Wp + OW)
/// ```
///
/// Every image's padded input is a plane of `P = Hp·Wp` values and the planes of one channel
/// follow each other, so a tap's row of `col'` is one contiguous run of the padded input
/// across all `N` images (`col'[(ic, ky, kx), m'] = padded[ic, m' + ky·Wp + kx]`, see the module
/// doc). `d_out'` is `d_out` laid out on the same planes, zero at every position that is not an
/// output (the dropped columns and the rows below the last output row), so those products
/// vanish. Neither operand is packed: [`gemm::gemm_abt`] reads both in place.
///
/// # Shapes
/// - `d_weight`: `[OC, IC, KH, KW]`, accumulated. `d_out`: `[OC, N, OH, OW]`, read.
/// - `inp`: `[IC, N, H, W]`, read; `pre`: `[IC]`.
pub(super) fn backward_weight_stride1(
    isa: Isa,
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    let layout = WideInput::new(g);
    let (wp, plane) = (layout.wq, layout.plane());
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let taps = kh * kw;
    let k_n = g.in_channels * taps;
    let channel = g.batch * plane;
    let depth = (g.batch - 1) * plane + (oh - 1) * wp + ow;
    let [padded, d_out_wide, scratch] = gemm::carve(ws, backward_weight_lens(g, isa));
    let parallel = backward_weight_parallel(g);
    let (q, slack) = padded.split_at_mut(layout.len(g));
    slack.fill(0.0);
    fill_wide_input(isa, q, inp, pre, g, &layout, parallel);
    let out_len = g.batch * oh * ow;
    let spread = |(oc, wide): (usize, &mut [f32])| {
        for (n, image) in wide.chunks_exact_mut(plane).enumerate() {
            for (oy, row) in image.chunks_exact_mut(wp).enumerate() {
                if oy < oh {
                    let src = &d_out[oc * out_len + (n * oh + oy) * ow..][..ow];
                    row[..ow].copy_from_slice(src);
                    row[ow..].fill(0.0);
                } else {
                    row.fill(0.0);
                }
            }
        }
    };
    if parallel {
        d_out_wide
            .par_chunks_mut(channel)
            .enumerate()
            .for_each(spread);
    } else {
        d_out_wide.chunks_mut(channel).enumerate().for_each(spread);
    }
    let a = gemm::Rows {
        data: d_out_wide,
        count: g.out_channels,
        start: &|oc| oc * channel,
    };
    let b = gemm::BRows::InPlace(gemm::Rows {
        data: padded,
        count: k_n,
        start: &|k| {
            let (ic, tap) = (k / taps, k % taps);
            ic * channel + (tap / kw) * wp + tap % kw
        },
    });
    gemm::gemm_abt(isa, d_weight, k_n, a, &b, depth, scratch, parallel);
}

pub(super) fn packed_backward_weight_workspace_len(g: &Conv2dGeom, t: Tile) -> usize {
    gemm::aligned_len(&packed_backward_weight_lens(g, t))
}

fn packed_backward_weight_lens(g: &Conv2dGeom, t: Tile) -> [usize; 3] {
    let layout = WideInput::new(g);
    let depth = (g.out_h() - 1) * layout.wq + g.out_w();
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    [
        layout.len(g) + g.pad_w,
        gemm::packed_b_len(depth, g.out_channels, t),
        k * g.out_channels,
    ]
}

/// The weight gradient of a stride-1 convolution by wide rows, for short depths (see
/// [`backward_weight_stride1`]):
///
/// ```text
/// dWᵀ[K, OC] = Σ_n col'_n[K, M'] · d_out'_nᵀ[M', OC],    dW += (dWᵀ)ᵀ
/// ```
///
/// where `col'_n` is read in place from the padded input (each row a contiguous run of `P`, see
/// the module doc) and `d_out'_n` is `d_out` on the padded width with zeros in the dropped
/// columns. The `K` rows of `col'` are the GEMM's rows, so the wide `K` dimension is what the
/// tasks split, and only the small `d_out` needs packing.
///
/// # Shapes
/// - `d_weight`: `[OC, IC, KH, KW]`, accumulated. `d_out`: `[OC, N, OH, OW]`, read.
/// - `inp`: `[IC, N, H, W]`, read; `pre`: `[IC]`.
pub(super) fn backward_weight_stride1_packed(
    isa: Isa,
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    let t = gemm::tile(isa);
    let layout = WideInput::new(g);
    let (wp, plane) = (layout.wq, layout.plane());
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let oc_n = g.out_channels;
    let taps = kh * kw;
    let k_n = g.in_channels * taps;
    let depth = (oh - 1) * wp + ow;
    let out_len = g.batch * oh * ow;
    let [padded, b, d_weight_t] = gemm::carve(ws, packed_backward_weight_lens(g, t));
    let parallel = gemm::worth_parallel(k_n * oc_n * depth * g.batch);
    let (q, slack) = padded.split_at_mut(layout.len(g));
    slack.fill(0.0);
    fill_wide_input(isa, q, inp, pre, g, &layout, parallel);
    let padded = &*padded;
    for n in 0..g.batch {
        // B = d_out'ᵀ: panel[m'·NR + t] = d_out[oc = j·NR + t, n, m' / Wp, m' % Wp], 0 where
        // m' % Wp >= OW or the channel does not exist.
        for (j, panel) in b.chunks_exact_mut(depth * t.nr).enumerate() {
            for (m, lanes) in panel.chunks_exact_mut(t.nr).enumerate() {
                let (oy, ox) = (m / wp, m % wp);
                for (tt, lane) in lanes.iter_mut().enumerate() {
                    let oc = j * t.nr + tt;
                    *lane = if ox < ow && oc < oc_n {
                        d_out[oc * out_len + (n * oh + oy) * ow + ox]
                    } else {
                        0.0
                    };
                }
            }
        }
        let row_start = |k: usize| {
            let (ic, tap) = (k / taps, k % taps);
            (ic * g.batch + n) * plane + (tap / kw) * wp + tap % kw
        };
        let a = AView::Gathered {
            data: padded,
            row_start: &row_start,
        };
        gemm::gemm_packed(
            isa,
            k_n,
            oc_n,
            depth,
            a,
            b,
            d_weight_t,
            oc_n,
            CStore::from_accumulate(n > 0),
            parallel,
        );
    }
    for (oc, d_row) in d_weight.chunks_exact_mut(k_n).enumerate() {
        for (k, d) in d_row.iter_mut().enumerate() {
            *d += d_weight_t[k * oc_n + oc];
        }
    }
}
