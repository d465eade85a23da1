use crate::geom::{BatchNormConfig, BatchNormGeom};

fn channel<'a>(x: &'a [f32], g: &BatchNormGeom, c: usize) -> &'a [f32] {
    &x[c * g.per_channel..(c + 1) * g.per_channel]
}

/// Batch statistics of each channel: the mean `μ_c = (1/M) Σ x` and the inverse standard
/// deviation `1/σ_c = 1/√(var_c + eps)`, with the *biased* variance `var_c = (1/M) Σ (x − μ_c)²`
/// (as PyTorch normalises in training). `M = N·H·W`.
///
/// # Shapes
/// - `mean`, `invstd`: `[C]`, written. `inp`: `[C, N, H, W]`, read.
pub fn batchnorm_statistics(
    mean: &mut [f32],
    invstd: &mut [f32],
    inp: &[f32],
    eps: f32,
    g: &BatchNormGeom,
) {
    assert_eq!(inp.len(), g.len());
    let m = g.per_channel as f64;
    for c in 0..g.channels {
        let x = channel(inp, g, c);
        let mu = x.iter().map(|&v| f64::from(v)).sum::<f64>() / m;
        let var = x.iter().map(|&v| (f64::from(v) - mu).powi(2)).sum::<f64>() / m;
        mean[c] = mu as f32;
        invstd[c] = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
    }
}

/// Updates running statistics as PyTorch does in training:
/// `running_mean = (1 − m)·running_mean + m·μ` and
/// `running_var = (1 − m)·running_var + m·var·M/(M − 1)`, the *unbiased* variance, recovered from
/// the saved `invstd` as `var = 1/invstd² − eps`. With `M = 1` the variance is taken as is.
///
/// # Shapes
/// - `running_mean`, `running_var`: `[C]`, updated. `mean`, `invstd`: `[C]`, read.
pub fn batchnorm_update_running(
    running_mean: &mut [f32],
    running_var: &mut [f32],
    mean: &[f32],
    invstd: &[f32],
    cfg: &BatchNormConfig,
    g: &BatchNormGeom,
) {
    let m = g.per_channel as f64;
    let unbias = if g.per_channel > 1 {
        m / (m - 1.0)
    } else {
        1.0
    };
    let mom = f64::from(cfg.momentum);
    for c in 0..g.channels {
        let var = 1.0 / f64::from(invstd[c]).powi(2) - f64::from(cfg.eps);
        running_mean[c] =
            ((1.0 - mom) * f64::from(running_mean[c]) + mom * f64::from(mean[c])) as f32;
        running_var[c] = ((1.0 - mom) * f64::from(running_var[c]) + mom * var * unbias) as f32;
    }
}

/// Batch norm forward in training mode:
/// `out = γ_c·(x − μ_c)/σ_c + β_c` with the batch statistics, which are saved for the backward
/// pass (`mean`, `invstd`), and the running statistics updated (see
/// [`batchnorm_update_running`]).
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
    batchnorm_statistics(mean, invstd, inp, cfg.eps, g);
    batchnorm_update_running(running_mean, running_var, mean, invstd, cfg, g);
    batchnorm_apply(out, inp, gamma, beta, mean, invstd, false, g);
}

/// Batch norm forward in eval mode, with the running statistics:
/// `out = γ_c·(x − running_mean_c)/√(running_var_c + eps) + β_c`.
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
    let invstd: Vec<f32> = running_var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + f64::from(eps)).sqrt()) as f32)
        .collect();
    batchnorm_apply(out, inp, gamma, beta, running_mean, &invstd, false, g);
}

/// `out = γ_c·(x − μ_c)·invstd_c + β_c`, followed by `max(0, ·)` when `relu` is set.
fn batchnorm_apply(
    out: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    relu: bool,
    g: &BatchNormGeom,
) {
    assert_eq!(out.len(), g.len());
    assert_eq!(inp.len(), g.len());
    for c in 0..g.channels {
        let range = c * g.per_channel..(c + 1) * g.per_channel;
        for (o, &x) in out[range.clone()].iter_mut().zip(&inp[range]) {
            let xhat = (f64::from(x) - f64::from(mean[c])) * f64::from(invstd[c]);
            let y = (f64::from(gamma[c]) * xhat + f64::from(beta[c])) as f32;
            *o = if relu { y.max(0.0) } else { y };
        }
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
    assert_eq!(d_inp.len(), g.len());
    assert_eq!(d_out.len(), g.len());
    assert_eq!(inp.len(), g.len());
    let m = g.per_channel as f64;
    for c in 0..g.channels {
        let range = c * g.per_channel..(c + 1) * g.per_channel;
        let (mu, is) = (f64::from(mean[c]), f64::from(invstd[c]));
        let xhat = |x: f32| (f64::from(x) - mu) * is;
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        for (&dy, &x) in d_out[range.clone()].iter().zip(&inp[range.clone()]) {
            sum_dy += f64::from(dy);
            sum_dy_xhat += f64::from(dy) * xhat(x);
        }
        d_beta[c] = (f64::from(d_beta[c]) + sum_dy) as f32;
        d_gamma[c] = (f64::from(d_gamma[c]) + sum_dy_xhat) as f32;
        let k = f64::from(gamma[c]) * is;
        for ((d, &dy), &x) in d_inp[range.clone()]
            .iter_mut()
            .zip(&d_out[range.clone()])
            .zip(&inp[range.clone()])
        {
            let dx = k * (f64::from(dy) - sum_dy / m - xhat(x) * sum_dy_xhat / m);
            *d = (f64::from(*d) + dx) as f32;
        }
    }
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
    batchnorm_statistics(mean, invstd, inp, cfg.eps, g);
    batchnorm_update_running(running_mean, running_var, mean, invstd, cfg, g);
    batchnorm_apply(out, inp, gamma, beta, mean, invstd, true, g);
}

/// Fused batch norm + ReLU backward (accumulates). The ReLU mask is recomputed from the input:
/// `dy_bn = dy · [γ_c·x̂ + β_c > 0]`, then [`batchnorm_backward`] with `dy_bn`.
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
    let mut y = vec![0.0f32; g.len()];
    batchnorm_apply(&mut y, inp, gamma, beta, mean, invstd, false, g);
    let masked: Vec<f32> = d_out
        .iter()
        .zip(&y)
        .map(|(&dy, &y)| if y > 0.0 { dy } else { 0.0 })
        .collect();
    batchnorm_backward(d_inp, d_gamma, d_beta, &masked, inp, gamma, mean, invstd, g);
}

/// Backward of `p = avgpool2×2(relu(bn(x)))` (stride 2, floor mode) to `x`, less the batch
/// norm's mean terms (see the fast kernel, `batchnorm::batchnorm_relu_avgpool2_backward`):
///
/// ```text
/// g[c, n, y, x]  = d_pooled[c, n, y/2, x/2] / 4 · [s_c·x + t_c > 0]   (0 on a dropped row or column)
/// d_inp         += s_c·g   (overwritten instead when not `accumulate`)
/// sum_dy[c]      = Σ g,   sum_dy_xmu[c] = Σ g·(x − μ_c)
/// ```
///
/// with `s_c = γ_c·invstd_c`, `t_c = β_c − μ_c·s_c`; the mask in `f32` as the kernels compute
/// it, everything else in `f64`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_relu_avgpool2_backward(
    d_inp: &mut [f32],
    sum_dy: &mut [f64],
    sum_dy_xmu: &mut [f64],
    d_pooled: &[f32],
    inp: &[f32],
    [gamma, beta, mean, invstd]: [&[f32]; 4],
    [batch, h, w]: [usize; 3],
    accumulate: bool,
) {
    let (oh, ow) = (h / 2, w / 2);
    for c in 0..sum_dy.len() {
        let s = gamma[c] * invstd[c];
        let t = beta[c] - mean[c] * s;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for n in 0..batch {
            for y in 0..h {
                for x in 0..w {
                    let i = ((c * batch + n) * h + y) * w + x;
                    let up = if y / 2 < oh && x / 2 < ow {
                        f64::from(d_pooled[((c * batch + n) * oh + y / 2) * ow + x / 2]) / 4.0
                    } else {
                        0.0
                    };
                    let g = if s * inp[i] + t > 0.0 { up } else { 0.0 };
                    s1 += g;
                    s2 += g * (f64::from(inp[i]) - f64::from(mean[c]));
                    let base = if accumulate { f64::from(d_inp[i]) } else { 0.0 };
                    d_inp[i] = (base + f64::from(s) * g) as f32;
                }
            }
        }
        sum_dy[c] = s1;
        sum_dy_xmu[c] = s2;
    }
}
