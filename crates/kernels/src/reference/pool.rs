use crate::geom::Pool2dGeom;

/// Max pooling forward, PyTorch semantics: each output is the maximum over its window; padded
/// taps are ignored (they act as −∞); a NaN in the window wins.
///
/// ```text
/// out[p, oy, ox] = max_{ky, kx < K} in[p, oy·s + ky − pad, ox·s + kx − pad]
/// ```
///
/// # Shapes
/// - `out`: `[P, OH, OW]` written, `inp`: `[P, H, W]` read, with `P = C·N` planes.
pub fn maxpool2d_forward(out: &mut [f32], inp: &[f32], g: &Pool2dGeom) {
    assert_eq!(out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    for p in 0..g.planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let (_, v) = max_tap(inp, g, p, oy, ox);
                out[(p * oh + oy) * ow + ox] = v;
            }
        }
    }
}

/// The input index and value of the maximum in the window of `(p, oy, ox)`: the first one in
/// row-major window order on ties, as PyTorch's CPU kernel.
fn max_tap(inp: &[f32], g: &Pool2dGeom, p: usize, oy: usize, ox: usize) -> (usize, f32) {
    let mut best = (usize::MAX, f32::NEG_INFINITY);
    for ky in 0..g.kernel {
        for kx in 0..g.kernel {
            let (Some(iy), Some(ix)) = (
                (oy * g.stride + ky).checked_sub(g.pad),
                (ox * g.stride + kx).checked_sub(g.pad),
            ) else {
                continue;
            };
            if iy >= g.in_h || ix >= g.in_w {
                continue;
            }
            let i = (p * g.in_h + iy) * g.in_w + ix;
            if best.0 == usize::MAX || inp[i] > best.1 || (inp[i].is_nan() && !best.1.is_nan()) {
                best = (i, inp[i]);
            }
        }
    }
    best
}

/// Max pooling backward (accumulates): each output's gradient goes to the input that won its
/// window (the same tie rule as the forward pass).
///
/// # Shapes
/// - `d_inp`: `[P, H, W]` accumulated; `d_out`: `[P, OH, OW]` read; `inp`: `[P, H, W]` read.
pub fn maxpool2d_backward(d_inp: &mut [f32], d_out: &[f32], inp: &[f32], g: &Pool2dGeom) {
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    assert_eq!(d_inp.len(), g.input_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    for p in 0..g.planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let (i, _) = max_tap(inp, g, p, oy, ox);
                d_inp[i] += d_out[(p * oh + oy) * ow + ox];
            }
        }
    }
}

/// Average pooling forward, without padding (`g.pad` must be 0):
/// `out[p, oy, ox] = (1/K²) Σ_{ky, kx} in[p, oy·s + ky, ox·s + kx]`.
///
/// # Shapes
/// - `out`: `[P, OH, OW]` written, `inp`: `[P, H, W]` read.
pub fn avgpool2d_forward(out: &mut [f32], inp: &[f32], g: &Pool2dGeom) {
    assert_eq!(g.pad, 0, "average pooling takes no padding");
    assert_eq!(out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    let norm = 1.0 / (g.kernel * g.kernel) as f64;
    for p in 0..g.planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0.0f64;
                for ky in 0..g.kernel {
                    for kx in 0..g.kernel {
                        let (iy, ix) = (oy * g.stride + ky, ox * g.stride + kx);
                        acc += f64::from(inp[(p * g.in_h + iy) * g.in_w + ix]);
                    }
                }
                out[(p * oh + oy) * ow + ox] = (acc * norm) as f32;
            }
        }
    }
}

/// Average pooling backward (accumulates): `d_in[p, iy, ix] += (1/K²)·dy` for every window
/// covering the pixel.
///
/// # Shapes
/// - `d_inp`: `[P, H, W]` accumulated; `d_out`: `[P, OH, OW]` read.
pub fn avgpool2d_backward(d_inp: &mut [f32], d_out: &[f32], g: &Pool2dGeom) {
    assert_eq!(g.pad, 0, "average pooling takes no padding");
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(d_inp.len(), g.input_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    let norm = 1.0 / (g.kernel * g.kernel) as f32;
    for p in 0..g.planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let dy = d_out[(p * oh + oy) * ow + ox] * norm;
                for ky in 0..g.kernel {
                    for kx in 0..g.kernel {
                        let (iy, ix) = (oy * g.stride + ky, ox * g.stride + kx);
                        d_inp[(p * g.in_h + iy) * g.in_w + ix] += dy;
                    }
                }
            }
        }
    }
}

/// Global average pooling forward: `out[n, c] = (1/(H·W)) Σ_{y, x} in[c, n, y, x]`.
///
/// The output is image-major (`[N, C]`, one row of features per image), ready for the linear
/// classifier.
///
/// # Shapes
/// - `out`: `[N, C]` written; `inp`: `[C, N, H, W]` read; `hw = H·W`.
pub fn global_avgpool_forward(
    out: &mut [f32],
    inp: &[f32],
    channels: usize,
    batch: usize,
    hw: usize,
) {
    assert_eq!(out.len(), batch * channels);
    assert_eq!(inp.len(), channels * batch * hw);
    for c in 0..channels {
        for n in 0..batch {
            let plane = &inp[(c * batch + n) * hw..(c * batch + n + 1) * hw];
            let s: f64 = plane.iter().map(|&v| f64::from(v)).sum();
            out[n * channels + c] = (s / hw as f64) as f32;
        }
    }
}

/// Global average pooling backward (accumulates): `d_in[c, n, y, x] += dy[n, c]/(H·W)`.
///
/// # Shapes
/// - `d_inp`: `[C, N, H, W]` accumulated; `d_out`: `[N, C]` read.
pub fn global_avgpool_backward(
    d_inp: &mut [f32],
    d_out: &[f32],
    channels: usize,
    batch: usize,
    hw: usize,
) {
    assert_eq!(d_out.len(), batch * channels);
    assert_eq!(d_inp.len(), channels * batch * hw);
    for c in 0..channels {
        for n in 0..batch {
            let dy = d_out[n * channels + c] / hw as f32;
            for d in &mut d_inp[(c * batch + n) * hw..(c * batch + n + 1) * hw] {
                *d += dy;
            }
        }
    }
}
