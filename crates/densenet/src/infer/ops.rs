//! The inference plan's own kernels: a 1×1 convolution over in-place weights with batch norm +
//! ReLU fused into the packing of its input, the transition's fused BN-ReLU-AvgPool, and the
//! head's fused BN-ReLU-global-average pool. Everything else is the kernels crate's.
//!
//! Activations are CNHW (`[C, M]` with `M = N·H·W` values per channel), as everywhere.

use densenet_kernels::elementwise::affine_run;
use densenet_kernels::gemm::{self, Tile};
use densenet_kernels::{on_tier, ChannelAffine, Isa};
use rayon::prelude::*;

/// A per-channel affine map (batch norm in eval form: `y = scale·x + shift`) owned by the plan.
#[derive(Clone, Debug)]
pub(crate) struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Affine {
    /// The identity map on `c` channels (used as `pre` with `relu` for a bare ReLU).
    pub fn identity(c: usize) -> Self {
        Affine {
            scale: vec![1.0; c],
            shift: vec![0.0; c],
        }
    }

    /// The map restricted to the first `c` channels, with or without the ReLU.
    pub fn prefix(&self, c: usize, relu: bool) -> ChannelAffine<'_> {
        ChannelAffine {
            scale: &self.scale[..c],
            shift: &self.shift[..c],
            relu,
        }
    }
}

/// `dst = pre(src)` for one channel's run, `pre` the channel's `scale`, `shift` and ReLU:
/// `elementwise::affine_run`, the very map (multiply, then add) the convolutions' packing
/// applies, so a plan's maps and the kernels' give the same bits. Callers run it inside
/// [`on_tier`] so that it is compiled for the plan's SIMD tier.
#[inline(always)]
pub(crate) fn map_run(dst: &mut [f32], src: &[f32], scale: f32, shift: f32, relu: bool) {
    affine_run(dst, src, scale, shift, relu);
}

/// `out[c, ·] = pre(inp)[c, ·]` for a CNHW tensor of `m` values per channel.
///
/// # Shapes
/// - `out`, `inp`: `[C, M]`, written and read.
pub(crate) fn affine_forward(out: &mut [f32], inp: &[f32], pre: &ChannelAffine<'_>, m: usize) {
    let isa = densenet_kernels::active_isa();
    let one = |(c, (o, x)): (usize, (&mut [f32], &[f32]))| {
        on_tier(
            isa,
            #[inline(always)]
            || map_run(o, x, pre.scale[c], pre.shift[c], pre.relu),
        )
    };
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(m)
            .zip(inp.par_chunks(m))
            .enumerate()
            .for_each(one);
    } else {
        out.chunks_mut(m)
            .zip(inp.chunks(m))
            .enumerate()
            .for_each(one);
    }
}

/// In place: `x = max(0, x)`.
pub(crate) fn relu_inplace(x: &mut [f32]) {
    let one = |x: &mut [f32]| x.iter_mut().for_each(|v| *v = v.max(0.0));
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 4).for_each(one);
    } else {
        one(x);
    }
}

/// Element counts below which a pass stays on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Panels per packing task of [`pointwise_forward`] on the pool (128 columns on AVX-512).
const PACK_GROUP_PANELS: usize = 4;

/// Floats of packed `B` [`pointwise_forward`] needs for `ic` input channels and `m` columns.
pub(crate) fn pointwise_scratch_len(ic: usize, m: usize, isa: Isa) -> usize {
    let t = gemm::tile(isa);
    gemm::packed_b_len(ic, gemm::b_block_cols(ic, m, t), t)
}

/// A 1×1 convolution whose input is mapped by `pre` while it is packed:
/// `out[oc, j] = bias[oc] + Σ_ic W[oc, ic] · pre(inp)[ic, j]`, on the tier `isa`.
///
/// The weight is read in place, row-major (the micro-kernel broadcasts from its rows; packing
/// it once at plan time measured no faster and would double the weights' memory).
///
/// # Shapes
/// - `out`: `[OC, M]`, written. `inp`: `[IC, M]` (a channel prefix of a block buffer), read.
/// - `weight`: `[OC, IC]` (`[oc, ic]` gives the two); `bias`: `[OC]`; `pre`: `[IC]`; `b_scratch`: at least
///   [`pointwise_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pointwise_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    [oc, ic]: [usize; 2],
    isa: Isa,
    bias: Option<&[f32]>,
    pre: Option<ChannelAffine<'_>>,
    m: usize,
    b_scratch: &mut [f32],
) {
    let (rows, depth, cols) = (oc, ic, m);
    assert_eq!(weight.len(), rows * depth, "pointwise: weight length");
    assert_eq!(out.len(), rows * cols, "pointwise: output length");
    assert_eq!(inp.len(), depth * cols, "pointwise: input length");
    if rows == 0 || cols == 0 {
        return;
    }
    let t = gemm::tile(isa);
    if let Some(b) = bias {
        for (row, &b) in out.chunks_exact_mut(cols).zip(b) {
            row.fill(b);
        }
    } else if depth == 0 {
        out.fill(0.0);
    }
    if depth == 0 {
        return;
    }
    let block = gemm::b_block_cols(depth, cols, t);
    let parallel = gemm::worth_parallel(rows * depth * cols);
    let channel = |k: usize| &inp[k * m..(k + 1) * m];
    for col0 in (0..cols).step_by(block) {
        let ncols = block.min(cols - col0);
        let b = &mut b_scratch[..gemm::packed_b_len(depth, ncols, t)];
        // Packing tasks of a few panels each, every one packed channel by channel.
        let group_cols = PACK_GROUP_PANELS * t.nr;
        let pack = |(g, panels): (usize, &mut [f32])| {
            let first = g * group_cols;
            let width = group_cols.min(ncols - first);
            pack_block(isa, panels, channel, depth, col0 + first, width, pre, t);
        };
        if parallel {
            b.par_chunks_mut(PACK_GROUP_PANELS * depth * t.nr)
                .enumerate()
                .for_each(pack);
        } else {
            pack_block(isa, b, channel, depth, col0, ncols, pre, t);
        }
        gemm::gemm_packed(
            isa,
            rows,
            ncols,
            depth,
            gemm::AView::RowMajor {
                data: weight,
                ld: depth,
            },
            b,
            &mut out[col0..],
            cols,
            gemm::CStore::from_accumulate(bias.is_some()),
            parallel,
        );
    }
}

/// The packed `B` of one column block, row by row: `b[j·depth·NR + k·NR + i] =
/// pre(row(k))[c0 + j·NR + i]` for the block's `ncols` columns, zero past them (the layout of
/// `gemm`'s packed `B`).
///
/// Each input channel's run of the block is read once, front to back, and dealt out to the
/// panels. Panel by panel, every panel would read `depth` runs of `NR` floats lying `m` floats
/// apart: at batch 64 (`m` = 65,536, 256 KB) each run is on its own page, and that packing took
/// a third of a DenseNet-BC-100 inference pass. Compiled for `isa`'s SIMD tier ([`on_tier`]):
/// on the baseline target the map and the copies ran four lanes at a time (3.8% of a
/// densenet121 pass at batch 1, 2.9% since).
///
/// # Shapes
/// - `b`: at least `ncols.div_ceil(NR)·depth·NR` floats, written.
/// - `row(k)`: input channel `k`'s values (at least `c0 + ncols`), read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_block<'a>(
    isa: Isa,
    b: &mut [f32],
    row: impl Fn(usize) -> &'a [f32],
    depth: usize,
    c0: usize,
    ncols: usize,
    pre: Option<ChannelAffine<'_>>,
    t: Tile,
) {
    match t.nr {
        32 => on_tier(
            isa,
            #[inline(always)]
            || pack_block_nr::<32>(b, &row, depth, c0, ncols, pre),
        ),
        16 => on_tier(
            isa,
            #[inline(always)]
            || pack_block_nr::<16>(b, &row, depth, c0, ncols, pre),
        ),
        8 => on_tier(
            isa,
            #[inline(always)]
            || pack_block_nr::<8>(b, &row, depth, c0, ncols, pre),
        ),
        nr => panic!("pack_block: no packing for {nr}-column panels"),
    }
}

/// [`pack_block`] for panels of `NR` columns: a full panel row is a fixed-size copy or map.
#[inline(always)]
fn pack_block_nr<'a, const NR: usize>(
    b: &mut [f32],
    row: &impl Fn(usize) -> &'a [f32],
    depth: usize,
    c0: usize,
    ncols: usize,
    pre: Option<ChannelAffine<'_>>,
) {
    let panel_len = depth * NR;
    let (full, tail) = (ncols / NR, ncols % NR);
    for k in 0..depth {
        let src = &row(k)[c0..c0 + ncols];
        let map = pre.map(|p| (p.scale[k], p.shift[k], p.relu));
        for j in 0..full {
            let lanes: &mut [f32; NR] = (&mut b[j * panel_len + k * NR..][..NR])
                .try_into()
                .expect("NR lanes");
            let run: &[f32; NR] = src[j * NR..(j + 1) * NR].try_into().expect("NR values");
            match map {
                None => *lanes = *run,
                Some((scale, shift, relu)) => map_run(lanes, run, scale, shift, relu),
            }
        }
        if tail > 0 {
            let lanes = &mut b[full * panel_len + k * NR..][..NR];
            let run = &src[full * NR..];
            match map {
                None => lanes[..tail].copy_from_slice(run),
                Some((scale, shift, relu)) => map_run(&mut lanes[..tail], run, scale, shift, relu),
            }
            lanes[tail..].fill(0.0);
        }
    }
}

/// Batch norm + ReLU + 2×2/s2 average pooling in one pass (the first half of a transition
/// rewritten as BN-ReLU-AvgPool-Conv1×1):
/// `out[c, n, oy, ox] = ¼ Σ_{dy, dx < 2} max(0, scale[c]·in[c, n, 2oy+dy, 2ox+dx] + shift[c])`.
/// Odd trailing rows and columns are dropped (floor mode, as PyTorch).
///
/// # Shapes
/// - `out`: `[C, N, H/2, W/2]`, written. `inp`: `[C, N, H, W]`, read. `pre`: `[C]`.
pub(crate) fn affine_relu_avgpool2(
    out: &mut [f32],
    inp: &[f32],
    pre: &ChannelAffine<'_>,
    batch: usize,
    h: usize,
    w: usize,
) {
    let (oh, ow) = (h / 2, w / 2);
    let (plane, out_plane) = (h * w, oh * ow);
    let channels = pre.scale.len();
    assert_eq!(inp.len(), channels * batch * plane, "avgpool: input length");
    assert_eq!(
        out.len(),
        channels * batch * out_plane,
        "avgpool: output length"
    );
    let isa = densenet_kernels::active_isa();
    let one = |(c, (o, x)): (usize, (&mut [f32], &[f32]))| {
        let (s, t) = (pre.scale[c], pre.shift[c]);
        for (o, x) in o.chunks_exact_mut(out_plane).zip(x.chunks_exact(plane)) {
            for (oy, o_row) in o.chunks_exact_mut(ow).enumerate() {
                let r0 = &x[2 * oy * w..][..w];
                let r1 = &x[(2 * oy + 1) * w..][..w];
                // Compiled for the tier: on the baseline target this loop was scalar, 1% of a
                // BC-100 training step and of a densenet121 pass at batch 1.
                on_tier(
                    isa,
                    #[inline(always)]
                    || relu_avgpool2_row(o_row, r0, r1, s, t),
                );
            }
        }
    };
    let (o_chan, i_chan) = (batch * out_plane, batch * plane);
    if inp.len() >= PAR_MIN {
        out.par_chunks_mut(o_chan)
            .zip(inp.par_chunks(i_chan))
            .enumerate()
            .for_each(one);
    } else {
        out.chunks_mut(o_chan)
            .zip(inp.chunks(i_chan))
            .enumerate()
            .for_each(one);
    }
}

/// One output row of [`affine_relu_avgpool2`] from input rows `r0` and `r1` (a trailing odd
/// column dropped): the four terms added left to right, as ever, so results keep their bits.
#[inline(always)]
fn relu_avgpool2_row(o_row: &mut [f32], r0: &[f32], r1: &[f32], s: f32, t: f32) {
    let f = |v: f32| (s * v + t).max(0.0);
    for ((o, a), b) in o_row
        .iter_mut()
        .zip(r0.chunks_exact(2))
        .zip(r1.chunks_exact(2))
    {
        *o = (f(a[0]) + f(a[1]) + f(b[0]) + f(b[1])) * 0.25;
    }
}

/// The head's `relu(norm5(x))` averaged over each plane, channel-major (the classifier then runs
/// as a 1×1 convolution over `N` columns):
/// `out[c, n] = (1/HW) Σ_{y, x} max(0, scale[c]·in[c, n, y, x] + shift[c])`, summed in `f64`.
///
/// # Shapes
/// - `out`: `[C, N]`, written. `inp`: `[C, N, H, W]`, read. `pre`: `[C]`.
pub(crate) fn affine_relu_global_avgpool(
    out: &mut [f32],
    inp: &[f32],
    pre: &ChannelAffine<'_>,
    batch: usize,
    hw: usize,
) {
    let channels = pre.scale.len();
    assert_eq!(out.len(), batch * channels, "global pool: output length");
    assert_eq!(
        inp.len(),
        channels * batch * hw,
        "global pool: input length"
    );
    for (c, o_row) in out.chunks_exact_mut(batch).enumerate() {
        for (n, o) in o_row.iter_mut().enumerate() {
            let (s, t) = (pre.scale[c], pre.shift[c]);
            let plane = &inp[(c * batch + n) * hw..][..hw];
            let sum: f64 = plane.iter().map(|&v| f64::from((s * v + t).max(0.0))).sum();
            *o = (sum / hw as f64) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1, 1) from a seed.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::init::Rng::new(seed);
        (0..len).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
    }

    /// The 1×1 against a naive sum, on 1, 2 and 3 threads (bit for bit among them), with
    /// column counts that leave a partial packing group and a partial panel, with and without
    /// the input map and the bias, on every tier.
    #[test]
    fn pointwise_matches_a_naive_sum_on_any_pool() {
        let (rows, depth) = (8, 40);
        for isa in Isa::ALL.into_iter().filter(|t| t.is_supported()) {
            for m in [129, 1001, 8191, 70_000] {
                let inp = values(depth * m, m as u64);
                let weight = values(rows * depth, 3);
                let (scale, shift, bias) = (values(depth, 4), values(depth, 5), values(rows, 6));
                for (mapped, with_bias) in [(true, true), (false, false)] {
                    let pre = mapped.then_some(ChannelAffine {
                        scale: &scale,
                        shift: &shift,
                        relu: true,
                    });
                    let bias = with_bias.then_some(&bias[..]);
                    let run = |threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        pool.install(|| {
                            let mut out = vec![f32::NAN; rows * m];
                            let mut b = vec![f32::NAN; pointwise_scratch_len(depth, m, isa)];
                            pointwise_forward(
                                &mut out,
                                &inp,
                                &weight,
                                [rows, depth],
                                isa,
                                bias,
                                pre,
                                m,
                                &mut b,
                            );
                            out
                        })
                    };
                    let one = run(1);
                    for threads in [2, 3] {
                        let other = run(threads);
                        let same = one
                            .iter()
                            .zip(&other)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa}, m {m}: {threads} threads differ from one");
                    }
                    for r in 0..rows {
                        for j in (0..m).step_by(97).chain([m - 1]) {
                            let mut want = bias.map_or(0.0, |b| f64::from(b[r]));
                            for k in 0..depth {
                                let x = inp[k * m + j];
                                let x = pre.map_or(x, |p| (p.scale[k] * x + p.shift[k]).max(0.0));
                                want += f64::from(weight[r * depth + k]) * f64::from(x);
                            }
                            let got = one[r * m + j];
                            assert!(
                                (f64::from(got) - want).abs() <= 1e-4,
                                "{isa}, m {m}: ({r}, {j}) is {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
