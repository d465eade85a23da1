//! Batch norm (and fused batch norm + ReLU), forward and backward, over channel-major tensors.
//!
//! Every channel is one contiguous run of `M = N·H·W` values, so each kernel is a loop over
//! channels, each channel handled whole by one rayon task (channels are grouped so a task holds
//! a few thousand values). The split never depends on the thread count, and a channel's result
//! never depends on the split, so results are bit-identical for any pool size. Loop bodies are
//! compiled per SIMD tier by `simd::on_tier` and agree bit for bit across tiers.
//!
//! # Numerics
//!
//! Statistics come from one pass over shifted values (see the `simd` module), with
//! `f32` lane partials per block and `f64` totals. Normalisation computes `(x − μ)·s + β`
//! rather than `x·s + (β − μ·s)`: the subtraction comes first so that a large mean (values near
//! 1000 ± 1) cancels exactly instead of leaving the rounding error of `x·s` in the result.

use rayon::prelude::*;

use crate::dispatch::{active_isa, Isa};
use crate::geom::{BatchNormConfig, BatchNormGeom, ChannelAffine};
use crate::simd::lanes::{with_lanes, Lanes, LanesBody};
use crate::simd::{self, on_tier, BLOCK, PAR_MIN_LEN};

/// The running-statistics update is `O(C)` scalar work: the reference loop is the kernel.
pub use crate::reference::batchnorm_update_running;

/// Asserts the documented preconditions: non-empty channels, tensors of `C·M` floats,
/// per-channel vectors of `C`.
fn check_geom(g: &BatchNormGeom, lens: &[usize], per_channel_lens: &[usize]) {
    assert!(g.per_channel > 0, "batch norm over empty channels");
    for &l in lens {
        assert_eq!(l, g.len(), "tensor length does not match {g:?}");
    }
    for &l in per_channel_lens {
        assert_eq!(
            l, g.channels,
            "per-channel vector length does not match {g:?}"
        );
    }
}

fn use_threads(g: &BatchNormGeom) -> bool {
    g.len() >= PAR_MIN_LEN
}

/// Batch statistics of each channel: the mean `μ_c = (1/M) Σ x` and the inverse standard
/// deviation `1/σ_c = 1/√(var_c + eps)`, with the *biased* variance `var_c = (1/M) Σ (x − μ_c)²`
/// (as PyTorch normalises in training). `M = N·H·W`.
///
/// # Shapes
/// - `mean`, `invstd`: `[C]`, written. `inp`: `[C, N, H, W]`, read.
///
/// # Panics
/// On length mismatches or `M = 0`.
pub fn batchnorm_statistics(
    mean: &mut [f32],
    invstd: &mut [f32],
    inp: &[f32],
    eps: f32,
    g: &BatchNormGeom,
) {
    check_geom(g, &[inp.len()], &[mean.len(), invstd.len()]);
    let isa = active_isa();
    let one = |(x, (mu, is)): (&[f32], (&mut f32, &mut f32))| {
        let (m, var) = with_lanes(isa, simd::MeanVar(x));
        *mu = m as f32;
        *is = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
    };
    let per_task = simd::channels_per_task(g.per_channel);
    if use_threads(g) {
        inp.par_chunks(g.per_channel)
            .zip(mean.par_iter_mut().zip(invstd.par_iter_mut()))
            .with_min_len(per_task)
            .for_each(one);
    } else {
        inp.chunks(g.per_channel)
            .zip(mean.iter_mut().zip(invstd.iter_mut()))
            .for_each(one);
    }
}

/// The per-channel affine form of normalisation with given statistics:
/// `scale_c = γ_c·invstd_c` and `shift_c = β_c − μ_c·scale_c`, so that `BN(x) = scale·x + shift`.
/// This is what a convolution applies on the fly as a [`ChannelAffine`] while packing its input.
///
/// # Shapes
/// - `scale`, `shift`: `[C]`, written. `gamma`, `beta`, `mean`, `invstd`: `[C]`, read.
pub fn batchnorm_scale_shift(
    scale: &mut [f32],
    shift: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
) {
    let c = scale.len();
    for len in [
        shift.len(),
        gamma.len(),
        beta.len(),
        mean.len(),
        invstd.len(),
    ] {
        assert_eq!(len, c, "per-channel vectors of unequal lengths");
    }
    for i in 0..c {
        let s = f64::from(gamma[i]) * f64::from(invstd[i]);
        scale[i] = s as f32;
        shift[i] = (f64::from(beta[i]) - f64::from(mean[i]) * s) as f32;
    }
}

/// `1/√(running_var + eps)` of one channel, as the eval-mode kernels use it.
fn running_invstd(running_var: f32, eps: f32) -> f32 {
    (1.0 / (f64::from(running_var) + f64::from(eps)).sqrt()) as f32
}

/// `out = (x − μ)·(γ·invstd) + β`, then `max(0, ·)` if `RELU`, over one channel.
#[inline(always)]
fn normalize_channel<const RELU: bool>(out: &mut [f32], x: &[f32], mu: f32, scale: f32, beta: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        let y = (v - mu) * scale + beta;
        *o = if !RELU || y > 0.0 { y } else { 0.0 };
    }
}

/// Normalises every channel with per-channel `(μ, scale, β)` given by `coef(c)`.
fn normalize_all<const RELU: bool>(
    out: &mut [f32],
    inp: &[f32],
    coef: impl Fn(usize) -> (f32, f32, f32) + Sync,
    g: &BatchNormGeom,
) {
    let isa = active_isa();
    let one = |(c, (o, x)): (usize, (&mut [f32], &[f32]))| {
        let (mu, scale, beta) = coef(c);
        on_tier(
            isa,
            #[inline(always)]
            || normalize_channel::<RELU>(o, x, mu, scale, beta),
        );
    };
    if use_threads(g) {
        out.par_chunks_mut(g.per_channel)
            .zip(inp.par_chunks(g.per_channel))
            .enumerate()
            .with_min_len(simd::channels_per_task(g.per_channel))
            .for_each(one);
    } else {
        out.chunks_mut(g.per_channel)
            .zip(inp.chunks(g.per_channel))
            .enumerate()
            .for_each(one);
    }
}

/// Batch norm forward in training mode:
/// `out = γ_c·(x − μ_c)/σ_c + β_c` with the batch statistics, which are saved for the backward
/// pass (`mean`, `invstd`), and the running statistics updated (see
/// [`batchnorm_update_running`]: momentum, *unbiased* variance, as PyTorch).
///
/// # Shapes
/// - `out`: `[C, N, H, W]`, written. `mean`, `invstd`: `[C]`, written.
/// - `running_mean`, `running_var`: `[C]`, updated.
/// - `inp`: `[C, N, H, W]`, read. `gamma`, `beta`: `[C]`, read.
pub fn batchnorm_forward_train(
    out: &mut [f32],
    mean: &mut [f32],
    invstd: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    cfg: &BatchNormConfig,
    g: &BatchNormGeom,
) {
    forward_train::<false>(
        out,
        mean,
        invstd,
        running_mean,
        running_var,
        inp,
        gamma,
        beta,
        cfg,
        g,
    );
}

/// Fused batch norm + ReLU forward in training mode: `out = max(0, BN(x))`, saving the batch
/// statistics and updating the running ones exactly as [`batchnorm_forward_train`].
///
/// # Shapes
/// As [`batchnorm_forward_train`].
pub fn batchnorm_relu_forward_train(
    out: &mut [f32],
    mean: &mut [f32],
    invstd: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    cfg: &BatchNormConfig,
    g: &BatchNormGeom,
) {
    forward_train::<true>(
        out,
        mean,
        invstd,
        running_mean,
        running_var,
        inp,
        gamma,
        beta,
        cfg,
        g,
    );
}

fn forward_train<const RELU: bool>(
    out: &mut [f32],
    mean: &mut [f32],
    invstd: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    cfg: &BatchNormConfig,
    g: &BatchNormGeom,
) {
    check_geom(
        g,
        &[out.len(), inp.len()],
        &[
            running_mean.len(),
            running_var.len(),
            gamma.len(),
            beta.len(),
        ],
    );
    batchnorm_statistics(mean, invstd, inp, cfg.eps, g);
    batchnorm_update_running(running_mean, running_var, mean, invstd, cfg, g);
    let (mean, invstd) = (&*mean, &*invstd);
    normalize_all::<RELU>(out, inp, |c| (mean[c], gamma[c] * invstd[c], beta[c]), g);
}

/// Batch norm forward in eval mode, with the running statistics:
/// `out = γ_c·(x − running_mean_c)/√(running_var_c + eps) + β_c`. Allocates nothing.
///
/// # Shapes
/// - `out`: `[C, N, H, W]`, written. `inp`: `[C, N, H, W]`, read.
/// - `gamma`, `beta`, `running_mean`, `running_var`: `[C]`, read.
pub fn batchnorm_forward_infer(
    out: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    g: &BatchNormGeom,
) {
    forward_infer::<false>(out, inp, gamma, beta, running_mean, running_var, eps, g);
}

/// Fused batch norm + ReLU forward in eval mode: `out = max(0, BN_eval(x))` (see
/// [`batchnorm_forward_infer`]).
///
/// # Shapes
/// As [`batchnorm_forward_infer`].
pub fn batchnorm_relu_forward_infer(
    out: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    g: &BatchNormGeom,
) {
    forward_infer::<true>(out, inp, gamma, beta, running_mean, running_var, eps, g);
}

fn forward_infer<const RELU: bool>(
    out: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    g: &BatchNormGeom,
) {
    check_geom(
        g,
        &[out.len(), inp.len()],
        &[
            gamma.len(),
            beta.len(),
            running_mean.len(),
            running_var.len(),
        ],
    );
    normalize_all::<RELU>(
        out,
        inp,
        |c| {
            let is = running_invstd(running_var[c], eps);
            (running_mean[c], gamma[c] * is, beta[c])
        },
        g,
    );
}

/// Applies a per-channel affine map (and its optional ReLU) to a whole tensor:
/// `out = scale_c·x + shift_c`, then `max(0, ·)` if `affine.relu`. The standalone form of what a
/// convolution does while packing; with eval-mode batch norm folded into `scale`, `shift` (see
/// [`batchnorm_scale_shift`]) it is `batchnorm_forward_infer` in two multiply-adds per value.
///
/// # Shapes
/// - `out`: `[C, N, H, W]`, written. `inp`: `[C, N, H, W]`, read.
/// - `affine.scale`, `affine.shift`: `[C]`, read.
pub fn channel_affine_forward(
    out: &mut [f32],
    inp: &[f32],
    affine: &ChannelAffine<'_>,
    g: &BatchNormGeom,
) {
    check_geom(
        g,
        &[out.len(), inp.len()],
        &[affine.scale.len(), affine.shift.len()],
    );
    // `(x − 0)·scale + shift` is `x·scale + shift` exactly, so the normaliser serves.
    let coef = |c: usize| (0.0, affine.scale[c], affine.shift[c]);
    if affine.relu {
        normalize_all::<true>(out, inp, coef, g);
    } else {
        normalize_all::<false>(out, inp, coef, g);
    }
}

/// The two reductions of the backward pass over one channel, in `f64`:
/// `(Σ dy', Σ dy'·(x − μ))` with `dy' = dy` masked by the ReLU if `RELU`
/// (`dy' = dy·[(x − μ)·scale + β > 0]`, the forward's own formula).
struct BackwardSums<'a, const RELU: bool> {
    dy: &'a [f32],
    x: &'a [f32],
    mu: f32,
    scale: f32,
    beta: f32,
}

impl<const RELU: bool> LanesBody for BackwardSums<'_, RELU> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run<L: Lanes>(self) -> (f64, f64) {
        let (mu, scale, beta) = (L::splat(self.mu), L::splat(self.scale), L::splat(self.beta));
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for (dyb, xb) in self.dy.chunks(BLOCK).zip(self.x.chunks(BLOCK)) {
            let (mut a1, mut a2) = (L::splat(0.0), L::splat(0.0));
            // Padding `dy` with zeros makes the padded lanes add nothing.
            simd::for_lane_groups2(
                dyb,
                xb,
                (0.0, self.mu),
                #[inline(always)]
                |d, v| {
                    let xm = L::load(v).sub(mu);
                    let mut d = L::load(d);
                    if RELU {
                        d = d.where_positive(xm.mul(scale).add(beta));
                    }
                    a1 = a1.add(d);
                    a2 = a2.add(d.mul(xm));
                },
            );
            s1 += simd::lanes_to_f64(&a1.to_array());
            s2 += simd::lanes_to_f64(&a2.to_array());
        }
        (s1, s2)
    }
}

/// `d_in += a·dy' + b·(x − μ) + k` over one channel, `dy'` masked as in [`BackwardSums`].
#[inline(always)]
fn backward_apply<const RELU: bool, const ACCUMULATE: bool>(
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    mu: f32,
    scale: f32,
    beta: f32,
    (a, b, k): (f32, f32, f32),
) {
    for ((o, &d), &v) in dx.iter_mut().zip(dy).zip(x) {
        let xm = v - mu;
        let d = if !RELU || xm * scale + beta > 0.0 {
            d
        } else {
            0.0
        };
        let v = a * d + b * xm + k;
        *o = if ACCUMULATE { *o + v } else { v };
    }
}

/// Batch norm backward (training mode; accumulates). With `x̂ = (x − μ)/σ` and `M = N·H·W`:
///
/// ```text
/// d_beta[c]  += Σ dy
/// d_gamma[c] += Σ dy·x̂
/// d_in       += (γ_c/σ_c)·(dy − (1/M)·Σ dy − x̂·(1/M)·Σ dy·x̂)
/// ```
///
/// Two passes per channel: the sums, then the update, which is computed as
/// `d_in += a·dy + b·(x − μ) + k` with `a = γ/σ`, `b = −a·(Σ dy·x̂)/(M·σ)`, `k = −a·(Σ dy)/M`.
///
/// # Shapes
/// - `d_inp`: `[C, N, H, W]`, accumulated. `d_gamma`, `d_beta`: `[C]`, accumulated.
/// - `d_out`, `inp`: `[C, N, H, W]`, read. `gamma`, `mean`, `invstd`: `[C]`, read.
pub fn batchnorm_backward(
    d_inp: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
) {
    backward::<false>(
        d_inp, d_gamma, d_beta, d_out, inp, gamma, None, mean, invstd, g, true,
    );
}

/// Fused batch norm + ReLU backward (accumulates). The ReLU mask is recomputed from the input
/// with the forward pass's own formula, `dy' = dy·[(x − μ)·(γ·invstd) + β > 0]`, so it matches
/// what [`batchnorm_relu_forward_train`] zeroed; then as [`batchnorm_backward`] with `dy'`.
/// Nothing is allocated: the mask is recomputed in both passes.
///
/// # Shapes
/// As [`batchnorm_backward`], plus `beta`: `[C]`, read.
pub fn batchnorm_relu_backward(
    d_inp: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
) {
    batchnorm_relu_backward_to(
        d_inp, d_gamma, d_beta, d_out, inp, gamma, beta, mean, invstd, g, true,
    );
}

/// [`batchnorm_relu_backward`], overwriting `d_inp` instead of adding to it when `accumulate`
/// is false (`d_gamma`, `d_beta` still accumulate). A fresh gradient buffer then needs no
/// clearing first, a pass over it saved.
///
/// # Shapes
/// As [`batchnorm_relu_backward`].
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_relu_backward_to(
    d_inp: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
    accumulate: bool,
) {
    backward::<true>(
        d_inp,
        d_gamma,
        d_beta,
        d_out,
        inp,
        gamma,
        Some(beta),
        mean,
        invstd,
        g,
        accumulate,
    );
}

/// One channel's share of the backward pass, as the zipped iterators hand it out:
/// `(c, ((d_inp, (d_gamma, d_beta)), (d_out, inp)))`.
type ChannelItem<'a> = (
    usize,
    (
        (&'a mut [f32], (&'a mut f32, &'a mut f32)),
        (&'a [f32], &'a [f32]),
    ),
);

fn backward<const RELU: bool>(
    d_inp: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    gamma: &[f32],
    beta: Option<&[f32]>,
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
    accumulate: bool,
) {
    check_geom(
        g,
        &[d_inp.len(), d_out.len(), inp.len()],
        &[
            d_gamma.len(),
            d_beta.len(),
            gamma.len(),
            mean.len(),
            invstd.len(),
        ],
    );
    if let Some(beta) = beta {
        assert_eq!(beta.len(), g.channels, "beta length does not match {g:?}");
    }
    let isa = active_isa();
    let m = g.per_channel as f64;
    let one = |(c, ((dx, (dg, db)), (dy, x))): ChannelItem<'_>| {
        let (mu, is) = (mean[c], invstd[c]);
        let scale = gamma[c] * is;
        let b = beta.map_or(0.0, |b| b[c]);
        let coef = (mu, is, gamma[c], scale, b);
        channel_backward::<RELU>(isa, dx, dg, db, dy, x, coef, m, accumulate);
    };
    let pc = g.per_channel;
    if use_threads(g) {
        d_inp
            .par_chunks_mut(pc)
            .zip(d_gamma.par_iter_mut().zip(d_beta.par_iter_mut()))
            .zip(d_out.par_chunks(pc).zip(inp.par_chunks(pc)))
            .enumerate()
            .with_min_len(simd::channels_per_task(pc))
            .for_each(one);
    } else {
        d_inp
            .chunks_mut(pc)
            .zip(d_gamma.iter_mut().zip(d_beta.iter_mut()))
            .zip(d_out.chunks(pc).zip(inp.chunks(pc)))
            .enumerate()
            .for_each(one);
    }
}

/// Backward of one channel: the sums, the parameter gradients, then the input gradient.
#[allow(clippy::too_many_arguments)]
fn channel_backward<const RELU: bool>(
    isa: Isa,
    dx: &mut [f32],
    d_gamma: &mut f32,
    d_beta: &mut f32,
    dy: &[f32],
    x: &[f32],
    (mu, invstd, gamma, scale, beta): (f32, f32, f32, f32, f32),
    m: f64,
    accumulate: bool,
) {
    let sums = BackwardSums::<RELU> {
        dy,
        x,
        mu,
        scale,
        beta,
    };
    let (sum_dy, sum_dy_xmu) = with_lanes(isa, sums);
    let is = f64::from(invstd);
    let sum_dy_xhat = sum_dy_xmu * is;
    *d_beta = (f64::from(*d_beta) + sum_dy) as f32;
    *d_gamma = (f64::from(*d_gamma) + sum_dy_xhat) as f32;
    let a = f64::from(gamma) * is;
    let coef = (
        a as f32,
        (-a * is * sum_dy_xhat / m) as f32,
        (-a * sum_dy / m) as f32,
    );
    on_tier(
        isa,
        #[inline(always)]
        || {
            if accumulate {
                backward_apply::<RELU, true>(dx, dy, x, mu, scale, beta, coef)
            } else {
                backward_apply::<RELU, false>(dx, dy, x, mu, scale, beta, coef)
            }
        },
    );
}

/// What the backward pass of a training batch norm + ReLU needs of its forward pass:
/// `y = max(0, (x − μ)·γ/σ + β)` with the batch's `μ` and `1/σ` (`invstd`).
#[derive(Clone, Copy, Debug)]
pub struct BnReluSaved<'a> {
    /// `[C]`
    pub gamma: &'a [f32],
    /// `[C]`
    pub beta: &'a [f32],
    /// `[C]` batch means.
    pub mean: &'a [f32],
    /// `[C]` batch inverse standard deviations.
    pub invstd: &'a [f32],
}

impl BnReluSaved<'_> {
    /// Panics unless every vector has `channels` values.
    pub fn check(&self, channels: usize) {
        for (name, len) in [
            ("gamma", self.gamma.len()),
            ("beta", self.beta.len()),
            ("mean", self.mean.len()),
            ("invstd", self.invstd.len()),
        ] {
            assert_eq!(len, channels, "batch norm {name} length");
        }
    }
}

/// The parameter gradients and the deferred mean terms of a batch norm + ReLU backward whose
/// `s·g` part was already added (by [`crate::conv2d::pointwise_bn_relu_backward`]), from
/// its two sums `Σ g` and `Σ g·(x − μ)`, `M = per_channel`:
///
/// ```text
/// d_beta[c]  += Σ g                 d_gamma[c] += (Σ g·(x − μ))/σ
/// slope[c]   += −(γ/σ)·(Σ g·(x − μ))/(M·σ²)
/// offset[c]  += −(γ/σ)·(Σ g)/M
/// ```
///
/// so that the input gradient is complete once `slope·(x − μ) + offset` is added
/// ([`batchnorm_add_deferred`]). The batch norms of several layers reading the same channel
/// (same `x`, same `μ`) can add into one `slope` and `offset`.
///
/// # Shapes
/// Every slice `[C]`: `d_gamma`, `d_beta`, `slope`, `offset` accumulated; the rest read.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_deferred_terms(
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    slope: &mut [f64],
    offset: &mut [f64],
    sum_dy: &[f64],
    sum_dy_xmu: &[f64],
    bn: BnReluSaved<'_>,
    per_channel: usize,
) {
    let channels = sum_dy.len();
    bn.check(channels);
    for (name, len) in [
        ("d_gamma", d_gamma.len()),
        ("d_beta", d_beta.len()),
        ("slope", slope.len()),
        ("offset", offset.len()),
        ("sum_dy_xmu", sum_dy_xmu.len()),
    ] {
        assert_eq!(len, channels, "batch norm {name} length");
    }
    let m = per_channel as f64;
    for c in 0..channels {
        let is = f64::from(bn.invstd[c]);
        let sum_dy_xhat = sum_dy_xmu[c] * is;
        d_beta[c] = (f64::from(d_beta[c]) + sum_dy[c]) as f32;
        d_gamma[c] = (f64::from(d_gamma[c]) + sum_dy_xhat) as f32;
        let a = f64::from(bn.gamma[c]) * is;
        slope[c] += -a * is * sum_dy_xhat / m;
        offset[c] += -a * sum_dy[c] / m;
    }
}

/// Adds the deferred mean terms of [`batchnorm_deferred_terms`] and clears them:
/// `d_inp[c, ·] += slope[c]·(x[c, ·] − μ_c) + offset[c]`, then `slope = offset = 0`.
///
/// # Shapes
/// - `d_inp`: `[C, M]`, accumulated. `inp`: `[C, M]`, read. `mean`: `[C]`, read.
/// - `slope`, `offset`: `[C]`, read and cleared.
pub fn batchnorm_add_deferred(
    d_inp: &mut [f32],
    inp: &[f32],
    mean: &[f32],
    slope: &mut [f64],
    offset: &mut [f64],
    g: &BatchNormGeom,
) {
    check_geom(g, &[d_inp.len(), inp.len()], &[mean.len()]);
    assert_eq!(slope.len(), g.channels, "slope length");
    assert_eq!(offset.len(), g.channels, "offset length");
    let isa = active_isa();
    let one = |(c, (d, x)): (usize, (&mut [f32], &[f32]))| {
        let (mu, b, k) = (mean[c], slope[c] as f32, offset[c] as f32);
        on_tier(
            isa,
            #[inline(always)]
            || {
                for (d, &x) in d.iter_mut().zip(x) {
                    *d += b * (x - mu) + k;
                }
            },
        );
    };
    let pc = g.per_channel;
    if use_threads(g) {
        d_inp
            .par_chunks_mut(pc)
            .zip(inp.par_chunks(pc))
            .enumerate()
            .with_min_len(simd::channels_per_task(pc))
            .for_each(one);
    } else {
        d_inp
            .chunks_mut(pc)
            .zip(inp.chunks(pc))
            .enumerate()
            .for_each(one);
    }
    slope.fill(0.0);
    offset.fill(0.0);
}

/// Backward of `p = avgpool2×2(relu(bn(x)))` (stride 2, floor mode: an odd last row or column
/// is dropped) to `x`, less the batch norm's deferred mean terms, as
/// [`crate::conv2d::pointwise_bn_relu_backward`] leaves them. A DenseNet transition pools before
/// its 1×1 convolution (the two commute), so the gradient reaching its batch norm is the pooled
/// one. With `s_c = γ_c/σ_c`, `t_c = β_c − μ_c·s_c` (the forward's map, multiply then add):
///
/// ```text
/// g[c, n, y, x]  = d_pooled[c, n, y/2, x/2] / 4 · [s_c·x + t_c > 0]   (0 on a dropped row or column)
/// d_inp         (+)= s_c·g
/// sum_dy[c]      = Σ g,   sum_dy_xmu[c] = Σ g·(x − μ_c)
/// ```
///
/// # Shapes
/// - `d_inp`, `inp`: `[C, N, H, W]`; `d_pooled`: `[C, N, H/2, W/2]`; `bn`: `[C]` each.
/// - `sum_dy`, `sum_dy_xmu`: `[C]`, written.
///
/// # Panics
/// On length mismatches, or a map smaller than 2×2.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_relu_avgpool2_backward(
    d_inp: &mut [f32],
    sum_dy: &mut [f64],
    sum_dy_xmu: &mut [f64],
    d_pooled: &[f32],
    inp: &[f32],
    bn: BnReluSaved<'_>,
    [batch, h, w]: [usize; 3],
    accumulate: bool,
) {
    let channels = sum_dy.len();
    bn.check(channels);
    assert!(
        h >= 2 && w >= 2,
        "2×2 average pooling of a {h}×{w} map has no output"
    );
    let (oh, ow) = (h / 2, w / 2);
    let (plane, out_plane) = (h * w, oh * ow);
    assert_eq!(d_inp.len(), channels * batch * plane, "d_inp length");
    assert_eq!(inp.len(), channels * batch * plane, "input length");
    assert_eq!(
        d_pooled.len(),
        channels * batch * out_plane,
        "d_pooled length"
    );
    assert_eq!(sum_dy_xmu.len(), channels, "sum_dy_xmu length");
    let isa = active_isa();
    let one = |(c, ((d, x), (dy, (s1, s2)))): PoolItem<'_>| {
        let s = bn.gamma[c] * bn.invstd[c];
        let t = bn.beta[c] - bn.mean[c] * s;
        let mu = bn.mean[c];
        let (a, b) = on_tier(
            isa,
            #[inline(always)]
            || pool_channel_backward(d, x, dy, [h, w], (s, t, mu), accumulate),
        );
        *s1 = a;
        *s2 = b;
    };
    let (chan, out_chan) = (batch * plane, batch * out_plane);
    let geom = BatchNormGeom {
        channels,
        per_channel: chan,
    };
    if use_threads(&geom) {
        d_inp
            .par_chunks_mut(chan)
            .zip(inp.par_chunks(chan))
            .zip(
                d_pooled
                    .par_chunks(out_chan.max(1))
                    .zip(sum_dy.par_iter_mut().zip(sum_dy_xmu.par_iter_mut())),
            )
            .enumerate()
            .with_min_len(simd::channels_per_task(chan))
            .for_each(one);
    } else {
        d_inp
            .chunks_mut(chan)
            .zip(inp.chunks(chan))
            .zip(
                d_pooled
                    .chunks(out_chan.max(1))
                    .zip(sum_dy.iter_mut().zip(sum_dy_xmu.iter_mut())),
            )
            .enumerate()
            .for_each(one);
    }
}

/// One channel's share of [`batchnorm_relu_avgpool2_backward`]:
/// `(c, ((d_inp, inp), (d_pooled, (sum_dy, sum_dy_xmu))))`.
type PoolItem<'a> = (
    usize,
    (
        (&'a mut [f32], &'a [f32]),
        (&'a [f32], (&'a mut f64, &'a mut f64)),
    ),
);

/// One channel of [`batchnorm_relu_avgpool2_backward`] over every image: returns the two sums
/// (`f32` per row, `f64` across rows).
#[inline(always)]
fn pool_channel_backward(
    d_inp: &mut [f32],
    inp: &[f32],
    d_pooled: &[f32],
    [h, w]: [usize; 2],
    (s, t, mu): (f32, f32, f32),
    accumulate: bool,
) -> (f64, f64) {
    let (oh, ow) = (h / 2, w / 2);
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let images = d_inp
        .chunks_exact_mut(h * w)
        .zip(inp.chunks_exact(h * w))
        .zip(d_pooled.chunks_exact(oh * ow));
    for ((d, x), dy) in images {
        for (y, (d_row, x_row)) in d.chunks_exact_mut(w).zip(x.chunks_exact(w)).enumerate() {
            let dy_row = if y < 2 * oh {
                &dy[(y / 2) * ow..][..ow]
            } else {
                &[][..]
            };
            let (mut r1, mut r2) = (0.0f32, 0.0f32);
            for (i, (d, &x)) in d_row.iter_mut().zip(x_row).enumerate() {
                let up = dy_row.get(i / 2).map_or(0.0, |&v| v * 0.25);
                let g = if s * x + t > 0.0 { up } else { 0.0 };
                r1 += g;
                r2 += g * (x - mu);
                let v = s * g;
                *d = if accumulate { *d + v } else { v };
            }
            s1 += f64::from(r1);
            s2 += f64::from(r2);
        }
    }
    (s1, s2)
}
