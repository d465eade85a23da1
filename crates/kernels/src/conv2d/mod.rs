//! 2-D convolution, forward and backward, over channel-major (CNHW) activations, as packed
//! matrix products ([`crate::gemm`]).
//!
//! # As matrix algebra
//!
//! With `K = IC·KH·KW`, `M = N·OH·OW` and the implicit im2col matrix
//! `col[K, M]` (see `im2col.rs`; never stored):
//!
//! ```text
//! forward          out[OC, M]  = W[OC, K] · col[K, M]              (+ bias[OC] on every column)
//! backward input   d_col[K, M] = Wᵀ[K, OC] · d_out[OC, M],   d_in += col2im(d_col)
//! backward weight  dW[OC, K]  += d_out[OC, M] · colᵀ[M, K],  d_bias[OC] += Σ_M d_out
//! ```
//!
//! CNHW makes `out` and `d_out` plain row-major `[OC, M]` matrices, so no output is ever
//! transposed. For a 1×1 stride-1 unpadded convolution `col` *is* the input `[IC, M]`, so its
//! packing is a row copy and the input gradient is one GEMM accumulated straight into `d_in`.
//! Otherwise `col`'s rows are read from the input on the fly while packing, with the optional
//! per-channel map `pre` (batch norm + ReLU) applied there, so neither `col` nor the mapped
//! input is ever stored.
//!
//! Paths, fastest first:
//! - **1×1, stride 1, no padding**: one GEMM, output row groups as the parallel tasks.
//! - **stride 1** (the 3×3 growth convs): *wide rows* (`wide.rs`): the input padded once,
//!   every row of `col` a contiguous run of it, read in place by the GEMM (no packing); the
//!   input gradient as a convolution of `d_out`
//!   with the flipped weight, the weight gradient with `col` read in place as the GEMM's rows.
//! - **strided, forward** (the 7×7/s2 stem): wide rows too, over the input split into its
//!   `sh·sw` phases (`wide.rs`, `WideInput`).
//! - **anything else** (the strided backward passes): implicit im2col per tap, `col2im` for the
//!   input gradient.
//!
//! - **3×3, stride 1, padding 1, forward, by Winograd** (`winograd3x3.rs`,
//!   [`conv2d_forward_winograd`]): the same wide-row input, then [`crate::winograd`] image by
//!   image: 2.25× (F(2×2, 3×3)) or 4× (F(4×4, 3×3)) fewer multiply-adds; the input gradient
//!   the same way, as the convolution of `d_out` with the flipped weight
//!   ([`conv2d_backward_input_winograd`]). Separate entry points, as their sums differ from the
//!   direct product's by roundings; [`winograd_variant`] and
//!   [`winograd_variant_backward_input`] say where they are the faster.
//! - **1×1 backward through batch norm + ReLU** (`pointwise_bn.rs`): the dense layer's
//!   bottleneck backward, weight and input gradient in one pass over the input, the batch
//!   norm's mean terms deferred, `d_a` never stored.
//!
//! The forward paths run as *column tasks* (`tasks.rs`), which store their own spans of the
//! output rows (up to 128 output channels; a wider output goes through a shared scratch and a
//! store pass); on several threads the wide-row path runs a product of two row groups or more
//! as *row tasks* (`wide.rs`), which store their own output channels. Whatever the path and the
//! thread count, each output value is summed in one fixed order: results are bit-identical on 1
//! and N threads. Measured figures: `docs/performance.md`.
//!
//! Every entry point reads [`crate::active_isa`] once and hands the tier down. Scratch memory
//! (the packed operands) comes from the caller's [`Workspace`]; [`conv2d_workspace_len`] gives
//! the floats needed, after which the kernels allocate nothing.

mod im2col;
mod pointwise_bn;
mod tasks;
mod wide;
mod winograd3x3;

pub use pointwise_bn::pointwise_bn_relu_backward;
pub use winograd3x3::{
    conv2d_backward_input_winograd, conv2d_forward_winograd, winograd_variant,
    winograd_variant_backward_input, WINOGRAD_F4_MIN_SIDE, WINOGRAD_MIN_SIDE,
};

use crate::dispatch::{active_isa, Isa};
use crate::gemm::{self, AView, CStore, Tile};
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::workspace::Workspace;
use im2col::{is_pointwise, Im2col};
use rayon::prelude::*;

/// Which weight gradients run as dot products of rows ([`gemm::gemm_abt`]) rather than through
/// the packed GEMM: those summing at least 4096 positions (`N·OH·OW`). The dot products' fixed
/// costs (summing each output's sixteen lanes, loading and storing the partials per chunk) are
/// spread over the sum, and short sums (batch-1 training, 7×7 maps) go faster packed: 3×3
/// 128→32 @7, batch 1, 61 / 90 GFLOP/s (dot / packed, one thread). A function of the shape
/// only, never of the thread count, so results stay the same bits on any pool. Measured with `pre`, AVX-512, GFLOP/s on
/// one / two threads (dot against packed):
///
/// | shape | dot | packed |
/// |---|---:|---:|
/// | BC-100 1×1 216→48 @32, batch 64 | 69 / 136 | 48 / 51 |
/// | BC-100 1×1 120→48 @32, batch 64 | 66 / 131 | 46 / 51 |
/// | BC-100 3×3 48→12 @32, batch 64 | 75 / 150 | 33 / 51 |
/// | DenseNet-121 1×1 256→128 @56, batch 8 | 74 / 148 | 79 / 103 |
/// | DenseNet-121 1×1 256→128 @28, batch 8 | 82 / 167 | 92 / 89 |
/// | DenseNet-121 3×3 128→32 @56, batch 8 | 90 / 177 | 96 / 174 |
/// | DenseNet-121 3×3 128→32 @28, batch 8 | 85 / 156 | 92 / 157 |
///
/// The packed path keeps a 5–10% lead on one thread for DenseNet-121's 32- and 128-channel
/// layers; on two threads the dot products match or beat it everywhere, by up to 2.9×.
fn weight_gradient_by_dots(g: &Conv2dGeom) -> bool {
    g.batch * g.out_h() * g.out_w() >= 4096
}

/// Outputs at least this large (16 MiB, half this machine's L3, which two cores share with
/// everything else a step touches) are written with [`CStore::Stream`] where the next pass
/// reads them from memory anyway.
const STREAM_MIN_BYTES: usize = 16 << 20;

/// Convolution forward, optionally applying a per-input-channel affine map (+ReLU) to the input
/// on the fly (batch norm + ReLU fused into the convolution's input packing).
///
/// `out[oc, n, oy, ox] = bias[oc] + Σ weight[oc, ic, ky, kx] · pre(in)[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]`,
/// padding read as zero *after* `pre`.
///
/// # Shapes
/// - `out`: `[OC, N, OH, OW]`, written. `inp`: `[IC, N, H, W]`, read.
/// - `weight`: `[OC, IC, KH, KW]`, read; `bias`: `[OC]`, read; `pre`: `[IC]` scale and shift.
///
/// # Panics
/// If the geometry is invalid or a buffer length does not match it.
pub fn conv2d_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    check(g, inp.len(), out.len(), weight.len(), pre.as_ref());
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_channels, "conv2d: bias length");
    }
    let isa = active_isa();
    let t = gemm::tile(isa);
    let src = Im2col::new(inp, g, pre);
    let (rows, depth, cols) = (g.out_channels, src.rows(), src.cols());
    if rows == 0 || cols == 0 {
        return;
    }
    if depth == 0 {
        // No input channels: the output is the bias alone.
        for (oc, row) in out.chunks_exact_mut(cols).enumerate() {
            row.fill(bias.map_or(0.0, |b| b[oc]));
        }
        return;
    }
    if !is_pointwise(g) && wide::applies_forward(g) {
        let weights = wide::Weights::RowMajor(weight);
        let store = wide::Store::Overwrite(bias);
        wide::conv_wide(isa, out, inp, weights, pre, store, g, ws);
        return;
    }
    let parallel = gemm::worth_parallel(rows * depth * cols);
    // Column tasks for the 1×1 convolutions too: each task packs its own `B` and computes every
    // output row for its columns, so no packed data written on one core is read on the other.
    // Sharing one packed `B` between the threads (the former 1×1 schedule) gave no speed-up at
    // all on two cores; see `tasks::block_cols` and docs/performance.md.
    if is_pointwise(g) && bias.is_none() && !parallel {
        // One thread: straight into the output, skipping the tasks' scratch and its store (5–8%
        // of a 1×1). Bit-identical to the tasks: each value is the same micro-kernel sum, only
        // copied once fewer.
        pointwise_serial(isa, out, &src, weight, rows, depth, cols, t, ws);
        return;
    }
    let block = tasks::block_cols(depth, cols, 1, t);
    let ntasks = cols.div_ceil(block);
    let [b_len, c_len] = tasks::scratch_lens(rows, depth, block, ntasks, t, true);
    let [b, c] = gemm::carve(ws, [b_len, c_len]);
    let a = AView::RowMajor {
        data: weight,
        ld: depth,
    };
    let task_at = |i: usize| tasks::Task {
        n: 0,
        col0: i * block,
        ncols: block.min(cols - i * block),
    };
    let pack = |task: &tasks::Task, b: &mut [f32]| src.pack_b(isa, b, task.col0, task.ncols, 0, t);
    let store = |task: &tasks::Task, oc: usize, values: &[f32], window: &mut [f32], start| {
        let dst = &mut window[task.col0 - start..][..task.ncols];
        match bias {
            None => dst.copy_from_slice(values),
            Some(bias) => dst
                .iter_mut()
                .zip(values)
                .for_each(|(d, &v)| *d = v + bias[oc]),
        }
    };
    tasks::run(
        isa,
        rows,
        depth,
        a,
        block,
        ntasks,
        task_at,
        tasks::BSource::Packed(&pack),
        |task| task.col0,
        store,
        out,
        cols,
        b,
        c,
        parallel,
    );
}

/// The 1×1 forward on the calling thread, without bias: `out = W · in`, one L2-sized column
/// block of packed `B` at a time, written straight into `out`.
#[allow(clippy::too_many_arguments)]
fn pointwise_serial(
    isa: Isa,
    out: &mut [f32],
    src: &Im2col<'_>,
    weight: &[f32],
    rows: usize,
    depth: usize,
    cols: usize,
    t: Tile,
    ws: &mut Workspace,
) {
    let block = gemm::b_block_cols(depth, cols, t);
    let [b] = gemm::carve(ws, [gemm::packed_b_len(depth, block, t)]);
    let a = AView::RowMajor {
        data: weight,
        ld: depth,
    };
    for col0 in (0..cols).step_by(block) {
        let ncols = block.min(cols - col0);
        let b = &mut b[..gemm::packed_b_len(depth, ncols, t)];
        src.pack_b(isa, b, col0, ncols, 0, t);
        let c = &mut out[col0..];
        gemm::gemm_packed(isa, rows, ncols, depth, a, b, c, cols, CStore::Write, false);
    }
}

/// Convolution backward, input gradient (accumulates):
///
/// `d_in[ic, n, iy, ix] += Σ weight[oc, ic, ky, kx] · d_out[oc, n, oy, ox]` over every
/// `(oc, ky, kx, oy, ox)` whose tap `oy·sh + ky − ph = iy`, `ox·sw + kx − pw = ix`.
///
/// # Shapes
/// - `d_inp`: `[IC, N, H, W]`, accumulated. `d_out`: `[OC, N, OH, OW]`, read.
/// - `weight`: `[OC, IC, KH, KW]`, read.
///
/// # Panics
/// If the geometry is invalid or a buffer length does not match it.
pub fn conv2d_backward_input(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    conv2d_backward_input_to(d_inp, d_out, weight, g, ws, true);
}

/// [`conv2d_backward_input`], overwriting `d_inp` instead of accumulating when `accumulate` is
/// false: `d_inp = Σ …` (the same sums as accumulating into zeros, bit for bit but for the
/// sign of a zero). For a fresh gradient
/// buffer this saves clearing it first, a full pass over `d_inp` (5% of a DenseNet-BC-100
/// training step went into such clears).
///
/// # Panics
/// As [`conv2d_backward_input`].
pub fn conv2d_backward_input_to(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    g: &Conv2dGeom,
    ws: &mut Workspace,
    accumulate: bool,
) {
    check(g, d_inp.len(), d_out.len(), weight.len(), None);
    let isa = active_isa();
    let t = gemm::tile(isa);
    let taps = g.kernel_h * g.kernel_w;
    let (rows, depth, cols) = (
        g.in_channels * taps,
        g.out_channels,
        g.batch * g.out_h() * g.out_w(),
    );
    if rows == 0 || cols == 0 || depth == 0 {
        if !accumulate {
            d_inp.fill(0.0);
        }
        return;
    }
    let pointwise = is_pointwise(g);
    if !pointwise && wide::applies(g) {
        // d_in = d_out ⋆ flip(W)ᵀ: W'[ic, (oc, ky', kx')] = W[oc, ic, KH−1−ky', KW−1−kx'].
        let tg = wide::transposed_geometry(g);
        wide::conv_wide(
            isa,
            d_inp,
            d_out,
            wide::Weights::Flipped(weight),
            None,
            if accumulate {
                wide::Store::Accumulate
            } else {
                wide::Store::Overwrite(None)
            },
            &tg,
            ws,
        );
        return;
    }
    let block = gemm::b_block_cols(depth, cols, t);
    let d_col_len = if pointwise { 0 } else { rows * block };
    let (a, b, d_col) = split3(
        ws,
        gemm::packed_a_len(rows, depth, t),
        gemm::packed_b_len(depth, block, t),
        d_col_len,
    );
    // A = Wᵀ: A[k, oc] = weight[oc·K + k].
    gemm::pack_a(a, weight, rows, depth, 1, rows, t);
    let a = AView::Packed(a);
    let parallel = gemm::worth_parallel(rows * depth * cols);
    let geometry = Im2col::new(&[], g, None);
    let chan_len = g.batch * g.in_h * g.in_w;
    // A fresh input gradient far larger than the caches goes straight to memory: the batch
    // norm backward that reads it next streams it from there anyway.
    let store = match accumulate {
        true => CStore::Add,
        false if d_inp.len() * 4 >= STREAM_MIN_BYTES => CStore::Stream,
        false => CStore::Write,
    };
    if !pointwise && !accumulate {
        // col2im adds into every input position a tap reaches (and skips the rest).
        d_inp.fill(0.0);
    }
    for col0 in (0..cols).step_by(block) {
        let ncols = block.min(cols - col0);
        let b = &mut b[..gemm::packed_b_len(depth, ncols, t)];
        pack_matrix_b(isa, b, d_out, cols, depth, col0, ncols, parallel);
        if pointwise {
            let c = &mut d_inp[col0..];
            gemm::gemm_packed(isa, rows, ncols, depth, a, b, c, cols, store, parallel);
            continue;
        }
        let d_col = &mut d_col[..rows * ncols];
        let store = CStore::Write;
        gemm::gemm_packed(isa, rows, ncols, depth, a, b, d_col, ncols, store, parallel);
        // col2im: each input channel gathers its own KH·KW rows, so channels are independent
        // tasks and every value is summed in the same order on any number of threads.
        let d_col = &*d_col;
        let add_back = |(ic, d_chan): (usize, &mut [f32])| {
            for k in ic * taps..(ic + 1) * taps {
                geometry.row_add_back(k, col0, &d_col[k * ncols..(k + 1) * ncols], d_chan);
            }
        };
        if parallel {
            d_inp
                .par_chunks_mut(chan_len)
                .enumerate()
                .for_each(add_back);
        } else {
            d_inp.chunks_mut(chan_len).enumerate().for_each(add_back);
        }
    }
}

/// Convolution backward, weight and bias gradients (accumulate), with the same optional input
/// map as the forward pass (so the mapped input never needs storing):
///
/// ```text
/// d_weight[oc, ic, ky, kx] += Σ_{n, oy, ox} d_out[oc, n, oy, ox] · pre(in)[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]
/// d_bias[oc]               += Σ_{n, oy, ox} d_out[oc, n, oy, ox]
/// ```
///
/// # Shapes
/// - `d_weight`: `[OC, IC, KH, KW]`, accumulated; `d_bias`: `[OC]`, accumulated.
/// - `d_out`: `[OC, N, OH, OW]`, read; `inp`: `[IC, N, H, W]`, read; `pre`: `[IC]`.
///
/// # Panics
/// If the geometry is invalid or a buffer length does not match it.
pub fn conv2d_backward_weight(
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    check(g, inp.len(), d_out.len(), d_weight.len(), pre.as_ref());
    let isa = active_isa();
    let src = Im2col::new(inp, g, pre);
    // dW[OC, K] = d_out[OC, M] · colᵀ[M, K]: the depth is M.
    let (rows, cols, depth) = (g.out_channels, src.rows(), src.cols());
    if let Some(d_bias) = d_bias {
        assert_eq!(d_bias.len(), rows, "conv2d: d_bias length");
        for (db, row) in d_bias.iter_mut().zip(d_out.chunks_exact(depth.max(1))) {
            *db += lane_sum(row);
        }
    }
    if rows == 0 || cols == 0 || depth == 0 {
        return;
    }
    let dot = weight_gradient_by_dots(g);
    if !is_pointwise(g) && wide::applies(g) {
        if dot {
            wide::backward_weight_stride1(isa, d_weight, d_out, inp, pre, g, ws);
        } else {
            wide::backward_weight_stride1_packed(isa, d_weight, d_out, inp, pre, g, ws);
        }
        return;
    }
    if !dot {
        backward_weight_packed(isa, d_weight, d_out, &src, rows, cols, depth, ws);
        return;
    }
    // Both factors are rows along M: d_out's rows read in place, and col's rows produced
    // (through `pre`) chunk by chunk into the product's scratch: one path for every geometry,
    // the unmapped 1×1 (whose col is the input itself) included.
    let parallel = gemm::worth_parallel(rows * depth * cols);
    let a = gemm::Rows {
        data: d_out,
        count: rows,
        start: &|oc| oc * depth,
    };
    let fill = |k: usize, m0: usize, dst: &mut [f32]| src.row_on_tier(isa, k, m0, dst);
    let b = gemm::BRows::Mapped {
        count: cols,
        fill: &fill,
    };
    let scratch_len = gemm::gemm_abt_scratch_len(isa, rows, cols, true);
    let [scratch] = gemm::carve(ws, [scratch_len]);
    gemm::gemm_abt(isa, d_weight, cols, a, &b, depth, scratch, parallel);
}

/// The weight gradient through the packed GEMM, for short depths: `A = d_out` read in place,
/// `B = colᵀ` packed (transposed, through `pre`) one L2-sized block of columns at a time.
#[allow(clippy::too_many_arguments)]
fn backward_weight_packed(
    isa: Isa,
    d_weight: &mut [f32],
    d_out: &[f32],
    src: &Im2col<'_>,
    rows: usize,
    cols: usize,
    depth: usize,
    ws: &mut Workspace,
) {
    let t = gemm::tile(isa);
    let block = gemm::b_block_cols(depth, cols, t);
    let [b] = gemm::carve(ws, [gemm::packed_b_len(depth, block, t)]);
    let a = AView::RowMajor {
        data: d_out,
        ld: depth,
    };
    let parallel = gemm::worth_parallel(rows * depth * cols);
    for col0 in (0..cols).step_by(block) {
        let ncols = block.min(cols - col0);
        let b = &mut b[..gemm::packed_b_len(depth, ncols, t)];
        if parallel {
            b.par_chunks_mut(depth * t.nr)
                .enumerate()
                .for_each(|(j, panel)| src.pack_b_transposed(isa, panel, col0, ncols, j, t));
        } else {
            src.pack_b_transposed(isa, b, col0, ncols, 0, t);
        }
        let c = &mut d_weight[col0..];
        gemm::gemm_packed(
            isa,
            rows,
            ncols,
            depth,
            a,
            b,
            c,
            cols,
            CStore::Add,
            parallel,
        );
    }
}

/// Floats of [`Workspace`] that the three convolution kernels need for this geometry on any
/// tier, in the rayon pool this is called in: a workspace this large never grows there. (The
/// weight gradient's dot products ask for one task slot per thread, so in a larger pool they
/// ask for more and the workspace grows once.)
pub fn conv2d_workspace_len(g: &Conv2dGeom) -> usize {
    Isa::ALL
        .iter()
        .map(|&isa| {
            let t = gemm::tile(isa);
            let taps = g.kernel_h * g.kernel_w;
            let k = g.in_channels * taps;
            let m = g.batch * g.out_h() * g.out_w();
            let oc = g.out_channels;
            let forward = im2col_forward_len(g, isa);
            let bwd_block = gemm::b_block_cols(oc, m, t);
            let d_col = if is_pointwise(g) { 0 } else { k * bwd_block };
            let backward_input = gemm::aligned_len(&[
                gemm::packed_a_len(k, oc, t),
                gemm::packed_b_len(oc, bwd_block, t),
                d_col,
            ]);
            // Sized for rows mapped through `pre` (the larger case).
            let dot = weight_gradient_by_dots(g);
            let backward_weight = if dot {
                gemm::aligned_len(&[gemm::gemm_abt_scratch_len(isa, oc, k, true)])
            } else {
                let w_block = gemm::b_block_cols(m, k, t);
                gemm::aligned_len(&[gemm::packed_b_len(m, w_block, t)])
            };
            let wide_forward = if !is_pointwise(g) && wide::applies_forward(g) {
                wide::workspace_len(g, t)
            } else {
                0
            };
            let wide_backward = if !is_pointwise(g) && wide::applies(g) {
                let weight = if dot {
                    wide::backward_weight_workspace_len(g, isa)
                } else {
                    wide::packed_backward_weight_workspace_len(g, t)
                };
                wide::workspace_len(&wide::transposed_geometry(g), t).max(weight)
            } else {
                0
            };
            let wide = wide_forward.max(wide_backward);
            forward.max(backward_input).max(backward_weight).max(wide)
        })
        .max()
        .unwrap_or(0)
}

/// Floats of [`Workspace`] that [`conv2d_forward`] alone needs for this geometry on any tier
/// (the path it takes: wide rows or packed im2col columns); a borrowed workspace this large
/// serves it (see [`Workspace::borrowing`]).
pub fn conv2d_forward_workspace_len(g: &Conv2dGeom) -> usize {
    Isa::ALL
        .iter()
        .map(|&isa| {
            if !is_pointwise(g) && wide::applies_forward(g) {
                wide::workspace_len(g, gemm::tile(isa))
            } else {
                im2col_forward_len(g, isa)
            }
        })
        .max()
        .unwrap_or(0)
}

/// The forward's scratch by packed im2col columns on the tier `isa`: the column tasks' (with
/// packed `A` on top), or, for a 1×1, the one-thread path's (`pointwise_serial`, one block of
/// packed `B`), whichever is larger.
fn im2col_forward_len(g: &Conv2dGeom, isa: Isa) -> usize {
    let t = gemm::tile(isa);
    let k = g.in_channels * g.kernel_h * g.kernel_w;
    let m = g.batch * g.out_h() * g.out_w();
    let oc = g.out_channels;
    let fwd_block = tasks::block_cols(k, m, 1, t);
    let [task_b, task_c] = tasks::scratch_lens(oc, k, fwd_block, m.div_ceil(fwd_block), t, true);
    let tasks = gemm::aligned_len(&[
        gemm::packed_a_len(oc, k, t),
        gemm::packed_b_len(k, fwd_block, t).max(task_b),
        task_c,
    ]);
    let serial = if is_pointwise(g) {
        gemm::aligned_len(&[gemm::packed_b_len(k, gemm::b_block_cols(k, m, t), t)])
    } else {
        0
    };
    tasks.max(serial)
}

fn check(
    g: &Conv2dGeom,
    inp_len: usize,
    out_len: usize,
    weight_len: usize,
    pre: Option<&ChannelAffine<'_>>,
) {
    assert!(g.is_valid(), "conv2d: invalid geometry {g:?}");
    assert_eq!(inp_len, g.input_len(), "conv2d: input length");
    assert_eq!(out_len, g.output_len(), "conv2d: output length");
    assert_eq!(weight_len, g.weight_len(), "conv2d: weight length");
    if let Some(p) = pre {
        assert_eq!(p.scale.len(), g.in_channels, "conv2d: pre scale length");
        assert_eq!(p.shift.len(), g.in_channels, "conv2d: pre shift length");
    }
}

/// Packs a plain row-major matrix as `B` for `isa`'s tile, a few panels per task when
/// `parallel`.
#[allow(clippy::too_many_arguments)]
fn pack_matrix_b(
    isa: Isa,
    b: &mut [f32],
    src: &[f32],
    ld: usize,
    depth: usize,
    col0: usize,
    ncols: usize,
    parallel: bool,
) {
    if parallel {
        // A few panels per task, so each task reads long runs of every row.
        let nr = gemm::tile(isa).nr;
        let panels_per_task = ncols
            .div_ceil(nr)
            .div_ceil(2 * rayon::current_num_threads())
            .max(1);
        let cols_per_task = panels_per_task * nr;
        b.par_chunks_mut(depth * cols_per_task)
            .enumerate()
            .for_each(|(i, panels)| {
                let c0 = col0 + i * cols_per_task;
                let w = cols_per_task.min(ncols - i * cols_per_task);
                gemm::pack_b_matrix(isa, panels, src, ld, depth, c0, w);
            });
    } else {
        gemm::pack_b_matrix(isa, b, src, ld, depth, col0, ncols);
    }
}

/// Three 64-byte-aligned buffers from the workspace.
fn split3<'w>(
    ws: &'w mut Workspace<'_>,
    a: usize,
    b: usize,
    c: usize,
) -> (&'w mut [f32], &'w mut [f32], &'w mut [f32]) {
    let buf = gemm::align64(ws.get(gemm::aligned_len(&[a, b, c])));
    let (x, rest) = buf.split_at_mut(a.div_ceil(16) * 16);
    let (y, z) = rest.split_at_mut(b.div_ceil(16) * 16);
    (&mut x[..a], &mut y[..b], &mut z[..c])
}

/// Sum in eight interleaved lanes, then the lanes: vectorisable, more accurate than one running
/// sum, and in a fixed order.
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    for (l, &x) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += x;
    }
    lanes.iter().sum()
}
