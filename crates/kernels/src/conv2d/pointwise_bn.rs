//! The backward pass of a 1×1 convolution that reads `relu(batchnorm(x))`: its weight gradient
//! and its input gradient taken back through the ReLU and the batch norm, in one pass over `x`,
//! with the batch norm's mean terms deferred.
//!
//! A dense layer's bottleneck is `z = W · relu(bn(x))` over its prefix `x` (`[C, M]`). Its
//! backward needs, per channel `c`, with `s = γ/σ`, `x̂ = (x − μ)/σ`, `M = N·H·W`:
//!
//! ```text
//! dW += d_z · aᵀ,  a = relu(bn(x))                     the weight gradient
//! d_a = Wᵀ · d_z                                      [C, M], the gradient of relu(bn(x))
//! g   = d_a · [s·x + t > 0],  t = β − μ·s               the ReLU's mask (the forward's map)
//! d_x += s·g − (s/M)·Σg − s·x̂·(1/M)·Σ g·x̂
//! ```
//!
//! Done as three kernels, that is five passes over `[C, M]` tensors far larger than the caches
//! (read `x` for `dW`; write `d_a`; read `d_a` and `x` for the sums; read them again with `d_x`
//! and write `d_x`).
//! The last two terms of `d_x` are affine in `x` per channel: `b·(x − μ) + k` with
//! `b = −s·(Σ g·(x − μ))/(M·σ²)` and `k = −s·(Σg)/M`. So this kernel adds only `s·g` and returns
//! the two sums; the caller folds them into `b` and `k`
//! ([`crate::batchnorm::batchnorm_deferred_terms`]) and adds `b·(x − μ) + k` later
//! ([`crate::batchnorm::batchnorm_add_deferred`]). In a dense block every layer that reads
//! channel `c` has the same `x` and `μ` for it, so their `b`s and `k`s add up and the channel is
//! corrected once, when its gradient is complete: `k` channels per layer instead of `C`. `d_a`
//! is never stored: each task computes it one column block at a time into its own scratch and
//! consumes it there, then overwrites it with `a` (the forward's map of the same `x` values,
//! just read) and takes the weight gradient's dot products with `d_z` from there. What is left
//! is one read of `x` and one read and write of `d_x`.
//!
//! Measured in a BC-100 training step at batch 64, two threads (`cargo bench --bench e2e`,
//! interleaved): the input gradient and batch norm fused, 1.07 → 0.93 s; the weight gradient
//! joined in, a further ~9%. Column blocks of 512 → 4096 took the 216-channel case from 18 to
//! 11.4 ms on two threads (long runs of `x` and `d_x` stream better than L2-sized blocks).
//!
//! # Tasks and determinism
//!
//! Tasks own whole output rows (channels), `MR`-aligned groups of them (as many tasks as
//! threads, fewer when there are fewer row groups), and walk the columns in blocks of
//! `block_cols(OC)` (4096, fewer for a deep `d_out`), taking their rows through each block 64
//! at a time. A row's sums run over its columns in the same order whatever the grouping or
//! chunking, each `d_a` value is one micro-kernel sum over the full depth, and each weight
//! gradient value is a dot product over the block's columns, added block by block: results are
//! the same bits on any number of threads. A task owns its channels' columns of the weight
//! gradient too, added to `d_weight` after the tasks, task by task. Every task packs its own
//! blocks of `d_out` (the depth, `OC`, is the narrow side) and reads them again, in place, for
//! the weight gradient's dot products: `d_out` is read twice per task.

use rayon::prelude::*;

use crate::batchnorm::BnReluSaved;
use crate::dispatch::active_isa;
use crate::gemm::{self, AView, BView, CStore};
use crate::geom::Conv2dGeom;
use crate::simd::lanes::{with_lanes, Lanes, LanesBody};
use crate::simd::{self, BLOCK, LANES};
use crate::workspace::Workspace;

use super::im2col::is_pointwise;

/// Columns of `d_a` a task computes and consumes at a time. Long runs of `x` and `d_x` (16 KB
/// per channel) matter more than keeping the `rows × BLOCK_COLS` scratch in L2: measured at
/// BC-100's 216 → 48 channels, batch 64, two threads, 512 columns 18.0 ms, 1024 13.0, 2048 12.0,
/// 4096 11.4, 8192 11.4 (the unfused kernels: 16.8 ms).
const BLOCK_COLS: usize = 4096;

/// Floats of packed `d_out` a task holds for one column block (1 MiB): a transition's 1×1
/// conv has hundreds of output channels, where a dense layer's has 48 or 128.
const B_BLOCK_FLOATS: usize = 256 * 1024;

/// The column block for `depth` output channels: [`BLOCK_COLS`], fewer (in steps of 1024, at
/// least 1024) where its packed `d_out` would pass [`B_BLOCK_FLOATS`]. A function of the shape
/// only, so the sums stay the same on any pool.
fn block_cols(depth: usize) -> usize {
    (B_BLOCK_FLOATS / depth.max(1) / 1024 * 1024).clamp(1024, BLOCK_COLS)
}

/// Rows of `d_a` a task computes at a time within a column block (rounded down to the tile's
/// `MR`): 64 rows × 4096 columns is 1 MiB of scratch per task however wide the prefix.
const ROW_CHUNK: usize = 64;

/// Backward of `z = conv1x1(relu(bn(x)))` to the weight and to `x`, less the batch norm's
/// deferred mean terms (see the module docs). With `s_c = γ_c/σ_c` and `t_c = β_c − μ_c·s_c`
/// (the forward's map):
///
/// ```text
/// a[c, m]        = max(0, s_c·x[c, m] + t_c)                        (never stored)
/// d_weight[o, c] += Σ_m d_out[o, m]·a[c, m]
/// g[c, m]        = (Σ_o W[o, c]·d_out[o, m]) · [s_c·x[c, m] + t_c > 0]           (the forward's map)
/// d_inp[c, m]   (+)= s_c·g[c, m]
/// sum_dy[c]      = Σ_m g[c, m]
/// sum_dy_xmu[c]  = Σ_m g[c, m]·(x[c, m] − μ_c)
/// ```
///
/// `d_inp` is accumulated into when `accumulate`, overwritten otherwise; `d_weight` is
/// accumulated; the sums are written. One read of `x` serves the weight gradient, the ReLU's
/// mask and the input gradient: each task maps its block of `x` into the scratch where `g`
/// was, and takes the weight gradient's dot products from there.
///
/// # Shapes
/// - `d_inp`, `inp`: `[C, N, H, W]`; `d_out`: `[OC, N, H, W]`; `weight`, `d_weight`:
///   `[OC, C, 1, 1]`.
/// - `sum_dy`, `sum_dy_xmu`: `[C]`, written. `bn`: `[C]` each.
///
/// # Panics
/// If `g` is not a 1×1, stride-1, unpadded convolution, or a length does not match it.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_bn_relu_backward(
    d_inp: &mut [f32],
    d_weight: &mut [f32],
    sum_dy: &mut [f64],
    sum_dy_xmu: &mut [f64],
    d_out: &[f32],
    weight: &[f32],
    inp: &[f32],
    bn: BnReluSaved<'_>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
    accumulate: bool,
) {
    assert!(
        is_pointwise(g),
        "pointwise_bn_relu_backward: {g:?} is not a 1x1, stride-1, unpadded convolution"
    );
    let (channels, depth, cols) = (g.in_channels, g.out_channels, g.batch * g.in_h * g.in_w);
    assert_eq!(d_inp.len(), channels * cols, "d_inp length");
    assert_eq!(inp.len(), channels * cols, "input length");
    assert_eq!(d_out.len(), depth * cols, "d_out length");
    assert_eq!(weight.len(), depth * channels, "weight length");
    assert_eq!(d_weight.len(), depth * channels, "d_weight length");
    for (name, len) in [("sum_dy", sum_dy.len()), ("sum_dy_xmu", sum_dy_xmu.len())] {
        assert_eq!(len, channels, "{name} length");
    }
    bn.check(channels);
    if channels == 0 {
        return;
    }
    if cols == 0 {
        sum_dy.fill(0.0);
        sum_dy_xmu.fill(0.0);
        return;
    }
    let isa = active_isa();
    let t = gemm::tile(isa);
    let groups = channels.div_ceil(t.mr);
    let threads = if gemm::worth_parallel(channels * depth * cols) {
        rayon::current_num_threads()
    } else {
        1
    };
    let ntasks = threads.min(groups);
    let rows_per_task = groups.div_ceil(ntasks) * t.mr;
    let ntasks = channels.div_ceil(rows_per_task);
    let block = block_cols(depth).min(cols.div_ceil(t.nr) * t.nr);
    let b_len = gemm::packed_b_len(depth, block, t);
    // A task's rows go through each column block a chunk at a time, so its scratch for `d_a`
    // (then `a`) is bounded whatever the channel count: chunks cut no sum (each row's sums and
    // dot products are its own), they only bound memory.
    let row_chunk = (ROW_CHUNK / t.mr).max(1) * t.mr;
    let c_len = row_chunk.min(rows_per_task) * block;
    // The task's share of the weight gradient, `[OC, rows]`, and the dot products' scratch,
    // sized for every chunk height a task can meet (the plan of the dot products is not
    // monotone in the row count: fewer rows can mean fewer, larger register-tile blocks).
    let dw_len = depth * rows_per_task;
    let dot_len = (1..=row_chunk.min(rows_per_task))
        .map(|rows| gemm::gemm_abt_serial_scratch_len(isa, depth, rows, false))
        .max()
        .unwrap_or(0);
    let task_len = [b_len, c_len, dw_len, dot_len]
        .iter()
        .map(|&n| lines(n))
        .sum::<usize>();
    // Where a task's weight-gradient share starts in its scratch (see `split_task_scratch`).
    let dw_at = lines(b_len) + lines(c_len);
    let [a, scratch] = gemm::carve(
        ws,
        [gemm::packed_a_len(channels, depth, t), ntasks * task_len],
    );
    // A = Wᵀ: A[c, o] = weight[o·C + c].
    gemm::pack_a(a, weight, channels, depth, 1, channels, t);
    let a = &*a;

    let task = |(i, (((d_rows, x_rows), (s_dy, s_dyx)), scratch)): TaskItem<'_>| {
        let row0 = i * rows_per_task;
        let rows = s_dy.len();
        let [b, c, dw, dot] = split_task_scratch(scratch, [b_len, c_len, dw_len, dot_len]);
        s_dy.fill(0.0);
        s_dyx.fill(0.0);
        dw.fill(0.0);
        for col0 in (0..cols).step_by(block) {
            let ncols = block.min(cols - col0);
            gemm::pack_b_matrix(isa, b, d_out, cols, depth, col0, ncols);
            for chunk0 in (0..rows).step_by(row_chunk) {
                let chunk = row_chunk.min(rows - chunk0);
                gemm::gemm_block_with(
                    isa,
                    t,
                    row0 + chunk0,
                    chunk,
                    ncols,
                    depth,
                    AView::Packed(a),
                    BView::Packed(b),
                    c,
                    block,
                    CStore::Write,
                );
                for r in chunk0..chunk0 + chunk {
                    let ch = row0 + r;
                    let at = r * cols + col0..r * cols + col0 + ncols;
                    let scale = bn.gamma[ch] * bn.invstd[ch];
                    let c_row = (r - chunk0) * block;
                    let body = MaskScaleStore {
                        d_a: &mut c[c_row..c_row + ncols],
                        x: &x_rows[at.clone()],
                        d_x: &mut d_rows[at],
                        mean: bn.mean[ch],
                        scale,
                        shift: bn.beta[ch] - bn.mean[ch] * scale,
                        accumulate,
                    };
                    let (s1, s2) = with_lanes(isa, body);
                    s_dy[r] += s1;
                    s_dyx[r] += s2;
                }
                // `c` now holds `a` for these rows: dW[o, r] += Σ_m d_out[o, m]·a[r, m].
                let d_out_rows = gemm::Rows {
                    data: d_out,
                    count: depth,
                    start: &|o| o * cols + col0,
                };
                let a_rows = gemm::BRows::InPlace(gemm::Rows {
                    data: c,
                    count: chunk,
                    start: &|r| r * block,
                });
                let dw_chunk = &mut dw[chunk0..];
                gemm::gemm_abt(
                    isa,
                    dw_chunk,
                    rows_per_task,
                    d_out_rows,
                    &a_rows,
                    ncols,
                    dot,
                    false,
                );
            }
        }
    };
    let items = d_inp
        .par_chunks_mut(rows_per_task * cols)
        .zip(inp.par_chunks(rows_per_task * cols))
        .zip(
            sum_dy
                .par_chunks_mut(rows_per_task)
                .zip(sum_dy_xmu.par_chunks_mut(rows_per_task)),
        )
        .zip(scratch.par_chunks_mut(task_len))
        .enumerate();
    // One task (a product too small for the pool) runs on this thread.
    items.for_each(task);
    // Each task's columns of the weight gradient, added in task order.
    for (i, task_scratch) in scratch.chunks(task_len).take(ntasks).enumerate() {
        let dw = &task_scratch[dw_at..dw_at + dw_len];
        let (row0, rows) = (
            i * rows_per_task,
            rows_per_task.min(channels - i * rows_per_task),
        );
        for (o, d_row) in d_weight.chunks_mut(channels).enumerate() {
            let partial = &dw[o * rows_per_task..o * rows_per_task + rows];
            for (d, &v) in d_row[row0..row0 + rows].iter_mut().zip(partial) {
                *d += v;
            }
        }
    }
}

/// `len` floats rounded up to whole 64-byte cache lines.
fn lines(len: usize) -> usize {
    len.div_ceil(16) * 16
}

/// A task's scratch cut into its four buffers, each starting on a cache line (as
/// [`gemm::carve`] cuts the workspace).
fn split_task_scratch(scratch: &mut [f32], lens: [usize; 4]) -> [&mut [f32]; 4] {
    let mut rest = scratch;
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(lines(len));
        rest = tail;
        &mut head[..len]
    })
}

/// One task's share: `(index, (((d_inp rows, inp rows), (sum_dy, sum_dy_xmu)), scratch))`.
type TaskItem<'a> = (
    usize,
    (
        ((&'a mut [f32], &'a [f32]), (&'a mut [f64], &'a mut [f64])),
        &'a mut [f32],
    ),
);

/// One channel's run, with the forward's map `y = scale·x + shift` (multiply, then add, as the
/// convolutions' packing computes it): `g = d_a·[y > 0]`, `d_x (+)= scale·g`, and the sums
/// `(Σ g, Σ g·(x − μ))` (`f32` lanes per [`BLOCK`], `f64` across blocks, as the batch-norm
/// kernels sum); `d_a` is then overwritten with `a = max(0, y)`.
struct MaskScaleStore<'a> {
    d_a: &'a mut [f32],
    x: &'a [f32],
    d_x: &'a mut [f32],
    mean: f32,
    scale: f32,
    shift: f32,
    accumulate: bool,
}

impl LanesBody for MaskScaleStore<'_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run<L: Lanes>(self) -> (f64, f64) {
        let (mu, scale, shift) = (
            L::splat(self.mean),
            L::splat(self.scale),
            L::splat(self.shift),
        );
        let accumulate = self.accumulate;
        let lane_group = |d_a: &mut [f32; LANES], x: &[f32; LANES], d_x: &mut [f32; LANES]| {
            mask_scale_store::<L>(d_a, x, d_x, (mu, scale, shift), accumulate)
        };
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let blocks = self
            .d_a
            .chunks_mut(BLOCK)
            .zip(self.x.chunks(BLOCK))
            .zip(self.d_x.chunks_mut(BLOCK));
        for ((d_a, x), d_x) in blocks {
            let (mut a1, mut a2) = (L::splat(0.0), L::splat(0.0));
            let mut d_a_groups = d_a.chunks_exact_mut(LANES);
            let mut x_groups = x.chunks_exact(LANES);
            let mut d_x_groups = d_x.chunks_exact_mut(LANES);
            for ((d_a, x), d_x) in (&mut d_a_groups).zip(&mut x_groups).zip(&mut d_x_groups) {
                let x = lanes_of(x);
                let d_a: &mut [f32; LANES] = d_a.try_into().expect("LANES-long chunk");
                let d_x: &mut [f32; LANES] = d_x.try_into().expect("LANES-long chunk");
                let (g, gx) = lane_group(d_a, x, d_x);
                a1 = a1.add(g);
                a2 = a2.add(gx);
            }
            let rest = d_x_groups.into_remainder();
            if !rest.is_empty() {
                // Padding `d_a` with zeros makes the padded lanes add nothing to the sums.
                let n = rest.len();
                let d_a_rest = d_a_groups.into_remainder();
                let (mut d_a_pad, mut x_pad, mut d_x_pad) =
                    ([0.0; LANES], [self.mean; LANES], [0.0; LANES]);
                d_a_pad[..n].copy_from_slice(d_a_rest);
                x_pad[..n].copy_from_slice(x_groups.remainder());
                d_x_pad[..n].copy_from_slice(rest);
                let (g, gx) = lane_group(&mut d_a_pad, &x_pad, &mut d_x_pad);
                a1 = a1.add(g);
                a2 = a2.add(gx);
                rest.copy_from_slice(&d_x_pad[..n]);
                d_a_rest.copy_from_slice(&d_a_pad[..n]);
            }
            s1 += simd::lanes_to_f64(&a1.to_array());
            s2 += simd::lanes_to_f64(&a2.to_array());
        }
        (s1, s2)
    }
}

/// One lane group of [`MaskScaleStore`]: returns `(g, g·(x − μ))` and leaves `a` in `d_a`. A
/// function rather than a
/// closure so that `#[inline(always)]` puts it inside the target-feature function the body
/// runs in (a closure left out of line had its intrinsics compiled as calls: 4× slower).
#[inline(always)]
fn mask_scale_store<L: Lanes>(
    d_a: &mut [f32; LANES],
    x: &[f32; LANES],
    d_x: &mut [f32; LANES],
    (mu, scale, shift): (L, L, L),
    accumulate: bool,
) -> (L, L) {
    let x = L::load(x);
    let xm = x.sub(mu);
    // The forward's map, evaluated as its packing evaluates it: its sign is the ReLU's mask,
    // so the mask agrees with what the forward zeroed even for values at the threshold.
    let y = x.mul(scale).add(shift);
    let g = L::load(d_a).where_positive(y);
    *d_a = y.where_positive(y).to_array();
    let update = g.mul(scale);
    *d_x = if accumulate {
        L::load(d_x).add(update).to_array()
    } else {
        update.to_array()
    };
    (g, g.mul(xm))
}

#[inline(always)]
fn lanes_of(chunk: &[f32]) -> &[f32; LANES] {
    chunk.try_into().expect("LANES-long chunk")
}
