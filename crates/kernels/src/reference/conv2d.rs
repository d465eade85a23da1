use crate::geom::Conv2dGeom;

/// Index of `(c, n, y, x)` in a channel-major tensor with `batch` images of `h×w`.
fn cnhw(c: usize, n: usize, y: usize, x: usize, batch: usize, h: usize, w: usize) -> usize {
    ((c * batch + n) * h + y) * w + x
}

/// The input pixel that kernel tap `(ky, kx)` of output pixel `(oy, ox)` reads, or `None` where
/// the tap falls on the zero padding.
fn tap(g: &Conv2dGeom, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy * g.stride_h + ky).checked_sub(g.pad_h)?;
    let ix = (ox * g.stride_w + kx).checked_sub(g.pad_w)?;
    (iy < g.in_h && ix < g.in_w).then_some((iy, ix))
}

/// Convolution forward (cross-correlation, as PyTorch's `conv2d`):
///
/// ```text
/// out[oc, n, oy, ox] = bias[oc] + Σ_{ic, ky, kx} weight[oc, ic, ky, kx] · in[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]
/// ```
/// with taps outside the input reading zero.
///
/// # Shapes
/// - `out`: `[OC, N, OH, OW]` channel-major, written.
/// - `inp`: `[IC, N, H, W]` channel-major, read.
/// - `weight`: `[OC, IC, KH, KW]`, read.
/// - `bias`: `[OC]`, read.
pub fn conv2d_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeom,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    assert_eq!(weight.len(), g.weight_len());
    for oc in 0..g.out_channels {
        for n in 0..g.batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| f64::from(b[oc]));
                    for ic in 0..g.in_channels {
                        for ky in 0..g.kernel_h {
                            for kx in 0..g.kernel_w {
                                if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                    let w = weight[((oc * g.in_channels + ic) * g.kernel_h + ky)
                                        * g.kernel_w
                                        + kx];
                                    let x = inp[cnhw(ic, n, iy, ix, g.batch, g.in_h, g.in_w)];
                                    acc += f64::from(w) * f64::from(x);
                                }
                            }
                        }
                    }
                    out[cnhw(oc, n, oy, ox, g.batch, oh, ow)] = acc as f32;
                }
            }
        }
    }
}

/// Convolution backward, input gradient (accumulates):
///
/// ```text
/// d_in[ic, n, iy, ix] += Σ_{oc, ky, kx : oy·sh + ky − ph = iy, ox·sw + kx − pw = ix} weight[oc, ic, ky, kx] · d_out[oc, n, oy, ox]
/// ```
///
/// # Shapes
/// - `d_inp`: `[IC, N, H, W]`, accumulated.
/// - `d_out`: `[OC, N, OH, OW]`, read.
/// - `weight`: `[OC, IC, KH, KW]`, read.
pub fn conv2d_backward_input(d_inp: &mut [f32], d_out: &[f32], weight: &[f32], g: &Conv2dGeom) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(d_inp.len(), g.input_len());
    assert_eq!(weight.len(), g.weight_len());
    let mut sums = vec![0.0f64; d_inp.len()];
    for oc in 0..g.out_channels {
        for n in 0..g.batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    let dy = f64::from(d_out[cnhw(oc, n, oy, ox, g.batch, oh, ow)]);
                    for ic in 0..g.in_channels {
                        for ky in 0..g.kernel_h {
                            for kx in 0..g.kernel_w {
                                if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                    let w = weight[((oc * g.in_channels + ic) * g.kernel_h + ky)
                                        * g.kernel_w
                                        + kx];
                                    sums[cnhw(ic, n, iy, ix, g.batch, g.in_h, g.in_w)] +=
                                        f64::from(w) * dy;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, s) in d_inp.iter_mut().zip(sums) {
        *d = (f64::from(*d) + s) as f32;
    }
}

/// Convolution backward, weight and bias gradients (accumulate):
///
/// ```text
/// d_weight[oc, ic, ky, kx] += Σ_{n, oy, ox} d_out[oc, n, oy, ox] · in[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]
/// d_bias[oc]               += Σ_{n, oy, ox} d_out[oc, n, oy, ox]
/// ```
///
/// # Shapes
/// - `d_weight`: `[OC, IC, KH, KW]`, accumulated; `d_bias`: `[OC]`, accumulated.
/// - `d_out`: `[OC, N, OH, OW]`, read; `inp`: `[IC, N, H, W]`, read.
pub fn conv2d_backward_weight(
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    g: &Conv2dGeom,
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    assert_eq!(d_weight.len(), g.weight_len());
    for oc in 0..g.out_channels {
        for ic in 0..g.in_channels {
            for ky in 0..g.kernel_h {
                for kx in 0..g.kernel_w {
                    let mut acc = 0.0f64;
                    for n in 0..g.batch {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                    acc += f64::from(d_out[cnhw(oc, n, oy, ox, g.batch, oh, ow)])
                                        * f64::from(
                                            inp[cnhw(ic, n, iy, ix, g.batch, g.in_h, g.in_w)],
                                        );
                                }
                            }
                        }
                    }
                    let i = ((oc * g.in_channels + ic) * g.kernel_h + ky) * g.kernel_w + kx;
                    d_weight[i] = (f64::from(d_weight[i]) + acc) as f32;
                }
            }
        }
    }
    if let Some(d_bias) = d_bias {
        assert_eq!(d_bias.len(), g.out_channels);
        let per_channel = g.batch * oh * ow;
        for (oc, db) in d_bias.iter_mut().enumerate() {
            let s: f64 = d_out[oc * per_channel..(oc + 1) * per_channel]
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            *db = (f64::from(*db) + s) as f32;
        }
    }
}

/// Backward of `z = conv1x1(relu(bn(x)))` to the weight and to `x`, less the batch norm's mean
/// terms (the fast kernel's module, `conv2d/pointwise_bn.rs`, derives the split):
///
/// ```text
/// a[c, m]        = max(0, s_c·x[c, m] + t_c),   t_c = β_c − μ_c·s_c (the forward's map)
/// d_weight[o, c] += Σ_m d_out[o, m] · a[c, m]
/// d_a[c, m]      = Σ_o weight[o, c] · d_out[o, m]
/// g[c, m]        = d_a[c, m] · [s_c·x[c, m] + t_c > 0],   s_c = γ_c·invstd_c
/// d_inp[c, m]   += s_c · g[c, m]       (overwritten instead when not `accumulate`)
/// sum_dy[c]      = Σ_m g[c, m],   sum_dy_xmu[c] = Σ_m g[c, m]·(x[c, m] − μ_c)
/// ```
///
/// The ReLU's mask and `a` are evaluated in `f32` exactly as the kernels evaluate them, so both
/// sides agree on which values the ReLU passed; everything else is in `f64`.
///
/// # Shapes
/// - `d_inp`, `inp`: `[C, M]`; `d_out`: `[OC, M]`; `weight`, `d_weight`: `[OC, C]`; `gamma`,
///   `beta`, `mean`, `invstd`, `sum_dy`, `sum_dy_xmu`: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_bn_relu_backward(
    d_inp: &mut [f32],
    d_weight: &mut [f32],
    sum_dy: &mut [f64],
    sum_dy_xmu: &mut [f64],
    d_out: &[f32],
    weight: &[f32],
    inp: &[f32],
    [gamma, beta, mean, invstd]: [&[f32]; 4],
    accumulate: bool,
) {
    let channels = sum_dy.len();
    let m = inp.len() / channels.max(1);
    let depth = weight.len() / channels.max(1);
    assert_eq!(inp.len(), channels * m);
    assert_eq!(d_inp.len(), channels * m);
    assert_eq!(d_out.len(), depth * m);
    assert_eq!(d_weight.len(), depth * channels);
    for c in 0..channels {
        let s = gamma[c] * invstd[c];
        let t = beta[c] - mean[c] * s;
        for o in 0..depth {
            let dw: f64 = (0..m)
                .map(|j| {
                    let y = s * inp[c * m + j] + t;
                    let a = if y > 0.0 { y } else { 0.0 };
                    f64::from(d_out[o * m + j]) * f64::from(a)
                })
                .sum();
            let d = &mut d_weight[o * channels + c];
            *d = (f64::from(*d) + dw) as f32;
        }
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for j in 0..m {
            let x = inp[c * m + j];
            let d_a: f64 = (0..depth)
                .map(|o| f64::from(weight[o * channels + c]) * f64::from(d_out[o * m + j]))
                .sum();
            let g = if s * x + t > 0.0 { d_a } else { 0.0 };
            s1 += g;
            s2 += g * (f64::from(x) - f64::from(mean[c]));
            let d = &mut d_inp[c * m + j];
            let base = if accumulate { f64::from(*d) } else { 0.0 };
            *d = (base + f64::from(s) * g) as f32;
        }
        sum_dy[c] = s1;
        sum_dy_xmu[c] = s2;
    }
}
