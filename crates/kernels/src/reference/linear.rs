/// Linear layer forward (PyTorch's `nn.Linear`): `out[n, o] = bias[o] + Σ_i in[n, i]·weight[o, i]`.
///
/// # Shapes
/// - `out`: `[N, O]` written; `inp`: `[N, I]` read; `weight`: `[O, I]` read; `bias`: `[O]` read.
pub fn linear_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    batch: usize,
) {
    let in_features = inp.len() / batch.max(1);
    let out_features = out.len() / batch.max(1);
    assert_eq!(inp.len(), batch * in_features);
    assert_eq!(weight.len(), out_features * in_features);
    for n in 0..batch {
        for o in 0..out_features {
            let mut acc = bias.map_or(0.0, |b| f64::from(b[o]));
            for i in 0..in_features {
                acc += f64::from(inp[n * in_features + i]) * f64::from(weight[o * in_features + i]);
            }
            out[n * out_features + o] = acc as f32;
        }
    }
}

/// Linear layer backward, input gradient (accumulates): `d_in[n, i] += Σ_o dy[n, o]·weight[o, i]`.
///
/// # Shapes
/// - `d_inp`: `[N, I]` accumulated; `d_out`: `[N, O]` read; `weight`: `[O, I]` read.
pub fn linear_backward_input(d_inp: &mut [f32], d_out: &[f32], weight: &[f32], batch: usize) {
    let in_features = d_inp.len() / batch.max(1);
    let out_features = d_out.len() / batch.max(1);
    assert_eq!(weight.len(), out_features * in_features);
    for n in 0..batch {
        for i in 0..in_features {
            let mut acc = 0.0f64;
            for o in 0..out_features {
                acc +=
                    f64::from(d_out[n * out_features + o]) * f64::from(weight[o * in_features + i]);
            }
            let d = &mut d_inp[n * in_features + i];
            *d = (f64::from(*d) + acc) as f32;
        }
    }
}

/// Linear layer backward, weight and bias gradients (accumulate):
/// `d_weight[o, i] += Σ_n dy[n, o]·in[n, i]`, `d_bias[o] += Σ_n dy[n, o]`.
///
/// # Shapes
/// - `d_weight`: `[O, I]`, `d_bias`: `[O]`, accumulated; `d_out`: `[N, O]`, `inp`: `[N, I]` read.
pub fn linear_backward_weight(
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    batch: usize,
) {
    let in_features = inp.len() / batch.max(1);
    let out_features = d_out.len() / batch.max(1);
    assert_eq!(d_weight.len(), out_features * in_features);
    for o in 0..out_features {
        for i in 0..in_features {
            let mut acc = 0.0f64;
            for n in 0..batch {
                acc += f64::from(d_out[n * out_features + o]) * f64::from(inp[n * in_features + i]);
            }
            let d = &mut d_weight[o * in_features + i];
            *d = (f64::from(*d) + acc) as f32;
        }
    }
    if let Some(d_bias) = d_bias {
        for (o, db) in d_bias.iter_mut().enumerate() {
            let s: f64 = (0..batch)
                .map(|n| f64::from(d_out[n * out_features + o]))
                .sum();
            *db = (f64::from(*db) + s) as f32;
        }
    }
}
