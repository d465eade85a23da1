//! The input gradient of a 1×1 convolution that reads `relu(batchnorm(x))`, taken back through
//! the batch norm and the ReLU in the same pass, with the batch norm's mean terms deferred.
//!
//! A dense layer's bottleneck is `z = W · relu(bn(x))` over its prefix `x` (`[C, M]`). Its
//! backward needs, per channel `c`, with `s = γ/σ`, `x̂ = (x − μ)/σ`, `M = N·H·W`:
//!
//! ```text
//! d_a = Wᵀ · d_z                                      [C, M], the gradient of relu(bn(x))
//! g   = d_a · [(x − μ)·s + β > 0]                      the ReLU's mask
//! d_x += s·g − (s/M)·Σg − s·x̂·(1/M)·Σ g·x̂
//! ```
//!
//! Done as two kernels, that is four passes over `[C, M]` tensors far larger than the caches
//! (write `d_a`; read `d_a` and `x` for the sums; read them again with `d_x` and write `d_x`).
//! The last two terms of `d_x` are affine in `x` per channel: `b·(x − μ) + k` with
//! `b = −s·(Σ g·(x − μ))/(M·σ²)` and `k = −s·(Σg)/M`. So this kernel adds only `s·g` and returns
//! the two sums; the caller folds them into `b` and `k`
//! ([`crate::batchnorm::batchnorm_deferred_terms`]) and adds `b·(x − μ) + k` later
//! ([`crate::batchnorm::batchnorm_add_deferred`]). In a dense block every layer that reads
//! channel `c` has the same `x` and `μ` for it, so their `b`s and `k`s add up and the channel is
//! corrected once, when its gradient is complete: `k` channels per layer instead of `C`. `d_a`
//! is never stored: each task computes it one column block at a time into its own scratch and
//! consumes it there.
//!
//! # Tasks and determinism
//!
//! Tasks own whole output rows (channels), `MR`-aligned groups of them, and walk the columns in
//! blocks of [`BLOCK_COLS`]. A row's sums run over its columns in the same order whatever the
//! grouping, and each `d_a` value is one micro-kernel sum over the full depth, so results are the
//! same bits on any number of threads. Every task packs its own blocks of `d_out` (the depth,
//! `OC`, is the narrow side: a packed block is `OC × BLOCK_COLS`), so `d_out` is read once per
//! task; there are as many tasks as threads.

use rayon::prelude::*;

use crate::batchnorm::BnReluSaved;
use crate::dispatch::active_isa;
use crate::gemm::{self, AView, BView, CStore};
use crate::geom::Conv2dGeom;
use crate::simd::lanes::{with_lanes, Lanes, LanesBody};
use crate::simd::{self, BLOCK, LANES};
use crate::workspace::Workspace;

use super::im2col::is_pointwise;

/// Columns of `d_a` a task computes and consumes at a time: its `rows × BLOCK_COLS` scratch
/// (221 KB for 108 rows) and the block of `d_out` (96 KB for 48 channels) stay in L2 between
/// the product and its use, and every channel's run of `x` and `d_x` is 2 KB long.
pub const BLOCK_COLS: usize = 4096;

/// Backward of `z = conv1x1(relu(bn(x)))` to `x`, less the batch norm's deferred mean terms
/// (see the module docs):
///
/// ```text
/// g[c, m]        = (Σ_o W[o, c]·d_out[o, m]) · [(x[c, m] − μ_c)·γ_c/σ_c + β_c > 0]
/// d_inp[c, m]   (+)= (γ_c/σ_c)·g[c, m]
/// sum_dy[c]      = Σ_m g[c, m]
/// sum_dy_xmu[c]  = Σ_m g[c, m]·(x[c, m] − μ_c)
/// ```
///
/// `d_inp` is accumulated into when `accumulate`, overwritten otherwise; the sums are written.
///
/// # Shapes
/// - `d_inp`, `inp`: `[C, N, H, W]`; `d_out`: `[OC, N, H, W]`; `weight`: `[OC, C, 1, 1]`.
/// - `sum_dy`, `sum_dy_xmu`: `[C]`, written. `bn`: `[C]` each.
///
/// # Panics
/// If `g` is not a 1×1, stride-1, unpadded convolution, or a length does not match it.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_backward_input_bn_relu(
    d_inp: &mut [f32],
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
        "pointwise_backward_input_bn_relu: {g:?} is not a 1x1, stride-1, unpadded convolution"
    );
    let (channels, depth, cols) = (g.in_channels, g.out_channels, g.batch * g.in_h * g.in_w);
    assert_eq!(d_inp.len(), channels * cols, "d_inp length");
    assert_eq!(inp.len(), channels * cols, "input length");
    assert_eq!(d_out.len(), depth * cols, "d_out length");
    assert_eq!(weight.len(), depth * channels, "weight length");
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
    let block = BLOCK_COLS.min(cols.div_ceil(t.nr) * t.nr);
    let b_len = gemm::packed_b_len(depth, block, t);
    let c_len = rows_per_task * block;
    let [a, scratch] = gemm::carve(
        ws,
        [
            gemm::packed_a_len(channels, depth, t),
            ntasks * (b_len + c_len),
        ],
    );
    // A = Wᵀ: A[c, o] = weight[o·C + c].
    gemm::pack_a(a, weight, channels, depth, 1, channels, t);
    let a = &*a;

    let task = |(i, (((d_rows, x_rows), (s_dy, s_dyx)), scratch)): TaskItem<'_>| {
        let row0 = i * rows_per_task;
        let rows = s_dy.len();
        let (b, c) = scratch.split_at_mut(b_len);
        s_dy.fill(0.0);
        s_dyx.fill(0.0);
        for col0 in (0..cols).step_by(block) {
            let ncols = block.min(cols - col0);
            gemm::pack_b_matrix(b, d_out, cols, depth, col0, ncols, t);
            gemm::gemm_block_with(
                isa,
                t,
                row0,
                rows,
                ncols,
                depth,
                AView::Packed(a),
                BView::Packed(b),
                c,
                block,
                CStore::Write,
            );
            for r in 0..rows {
                let ch = row0 + r;
                let at = r * cols + col0..r * cols + col0 + ncols;
                let body = MaskScaleStore {
                    d_a: &c[r * block..r * block + ncols],
                    x: &x_rows[at.clone()],
                    d_x: &mut d_rows[at],
                    mean: bn.mean[ch],
                    scale: bn.gamma[ch] * bn.invstd[ch],
                    beta: bn.beta[ch],
                    accumulate,
                };
                let (s1, s2) = with_lanes(isa, body);
                s_dy[r] += s1;
                s_dyx[r] += s2;
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
        .zip(scratch.par_chunks_mut(b_len + c_len))
        .enumerate();
    // One task (a product too small for the pool) runs on this thread.
    items.for_each(task);
}

/// One task's share: `(index, (((d_inp rows, inp rows), (sum_dy, sum_dy_xmu)), scratch))`.
type TaskItem<'a> = (
    usize,
    (
        ((&'a mut [f32], &'a [f32]), (&'a mut [f64], &'a mut [f64])),
        &'a mut [f32],
    ),
);

/// One channel's run: `g = d_a·[(x − μ)·scale + β > 0]`, `d_x (+)= scale·g`, and the sums
/// `(Σ g, Σ g·(x − μ))` (`f32` lanes per [`BLOCK`], `f64` across blocks, as the batch-norm
/// kernels sum).
struct MaskScaleStore<'a> {
    d_a: &'a [f32],
    x: &'a [f32],
    d_x: &'a mut [f32],
    mean: f32,
    scale: f32,
    beta: f32,
    accumulate: bool,
}

impl LanesBody for MaskScaleStore<'_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run<L: Lanes>(self) -> (f64, f64) {
        let (mu, scale, beta) = (
            L::splat(self.mean),
            L::splat(self.scale),
            L::splat(self.beta),
        );
        let accumulate = self.accumulate;
        let lane_group = |d_a: &[f32; LANES], x: &[f32; LANES], d_x: &mut [f32; LANES]| {
            mask_scale_store::<L>(d_a, x, d_x, (mu, scale, beta), accumulate)
        };
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let blocks = self
            .d_a
            .chunks(BLOCK)
            .zip(self.x.chunks(BLOCK))
            .zip(self.d_x.chunks_mut(BLOCK));
        for ((d_a, x), d_x) in blocks {
            let (mut a1, mut a2) = (L::splat(0.0), L::splat(0.0));
            let mut d_a_groups = d_a.chunks_exact(LANES);
            let mut x_groups = x.chunks_exact(LANES);
            let mut d_x_groups = d_x.chunks_exact_mut(LANES);
            for ((d_a, x), d_x) in (&mut d_a_groups).zip(&mut x_groups).zip(&mut d_x_groups) {
                let (d_a, x) = (lanes_of(d_a), lanes_of(x));
                let d_x: &mut [f32; LANES] = d_x.try_into().expect("LANES-long chunk");
                let (g, gx) = lane_group(d_a, x, d_x);
                a1 = a1.add(g);
                a2 = a2.add(gx);
            }
            let rest = d_x_groups.into_remainder();
            if !rest.is_empty() {
                // Padding `d_a` with zeros makes the padded lanes add nothing to the sums.
                let n = rest.len();
                let (mut d_a_pad, mut x_pad, mut d_x_pad) =
                    ([0.0; LANES], [self.mean; LANES], [0.0; LANES]);
                d_a_pad[..n].copy_from_slice(d_a_groups.remainder());
                x_pad[..n].copy_from_slice(x_groups.remainder());
                d_x_pad[..n].copy_from_slice(rest);
                let (g, gx) = lane_group(&d_a_pad, &x_pad, &mut d_x_pad);
                a1 = a1.add(g);
                a2 = a2.add(gx);
                rest.copy_from_slice(&d_x_pad[..n]);
            }
            s1 += simd::lanes_to_f64(&a1.to_array());
            s2 += simd::lanes_to_f64(&a2.to_array());
        }
        (s1, s2)
    }
}

/// One lane group of [`MaskScaleStore`]: returns `(g, g·(x − μ))`. A function rather than a
/// closure so that `#[inline(always)]` puts it inside the target-feature function the body
/// runs in (a closure left out of line had its intrinsics compiled as calls: 4× slower).
#[inline(always)]
fn mask_scale_store<L: Lanes>(
    d_a: &[f32; LANES],
    x: &[f32; LANES],
    d_x: &mut [f32; LANES],
    (mu, scale, beta): (L, L, L),
    accumulate: bool,
) -> (L, L) {
    let xm = L::load(x).sub(mu);
    let g = L::load(d_a).where_positive(xm.mul(scale).add(beta));
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
