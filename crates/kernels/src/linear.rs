//! The linear (fully connected) layer: three matrix products, each a [`gemm_abt`] of dot
//! products along the shared dimension.
//!
//! In matrix form, with `X = in [N, I]`, `Wt = weight [O, I]`, `Y = out [N, O]`:
//! `Y = X·Wtᵀ + 1·biasᵀ`, `dX += dY·Wt`, `dWt += dYᵀ·X`, `dbias += dYᵀ·1`.
//!
//! Each output is a dot product of two rows along the summed dimension: the forward reads the
//! rows of `X` and `Wt` as they lie; the input gradient reads the rows of `dY` and gathers the
//! columns of `Wt` (`BRows::Mapped`, one register tile's worth at a time); the weight gradient
//! reads `dY` transposed into a scratch `[O, N]` and gathers the columns of `X`. The products
//! take the active SIMD tier (capped by [`crate::dispatch::with_max_isa`]) and give the same
//! bits on any pool ([`gemm_abt`]). Each call allocates its scratch (a few hundred KB at most
//! for a 1000-class head): the layer runs once per step.

use crate::dispatch::active_isa;
use crate::gemm::{gemm_abt, gemm_abt_scratch_len, worth_parallel, BRows, Rows};

/// The features per row of a `[batch, features]` matrix held in `len` floats.
fn features(len: usize, batch: usize) -> usize {
    if batch == 0 {
        0
    } else {
        assert_eq!(
            len % batch,
            0,
            "length {len} is not a multiple of the batch {batch}"
        );
        len / batch
    }
}

/// `c[i·ldc + j] += Σ_m a_row(i)[m] · b_row(j)[m]` for `i < a.count`, `j < b`'s count.
fn dots(c: &mut [f32], ldc: usize, a: Rows<'_>, b: BRows<'_>, depth: usize) {
    let isa = active_isa();
    let (a_count, b_count) = (a.count, b.count());
    let mut scratch = vec![0.0; gemm_abt_scratch_len(isa, a_count, b_count, b.is_mapped())];
    let parallel = worth_parallel(a_count * b_count * depth);
    gemm_abt(isa, c, ldc, a, &b, depth, &mut scratch, parallel);
}

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
    let (i_f, o_f) = (features(inp.len(), batch), features(out.len(), batch));
    assert_eq!(
        weight.len(),
        o_f * i_f,
        "weight is not [out_features, in_features]"
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), o_f, "bias is not [out_features]");
    }
    match bias {
        Some(b) => out
            .chunks_exact_mut(o_f)
            .for_each(|row| row.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    // out[n, o] += in row n · weight row o.
    let (x_row, w_row) = (|n: usize| n * i_f, |o: usize| o * i_f);
    let x = Rows {
        data: inp,
        count: batch,
        start: &x_row,
    };
    let w = Rows {
        data: weight,
        count: o_f,
        start: &w_row,
    };
    dots(out, o_f, x, BRows::InPlace(w), i_f);
}

/// Linear layer backward, input gradient (accumulates): `d_in[n, i] += Σ_o dy[n, o]·weight[o, i]`.
///
/// # Shapes
/// - `d_inp`: `[N, I]` accumulated; `d_out`: `[N, O]` read; `weight`: `[O, I]` read.
pub fn linear_backward_input(d_inp: &mut [f32], d_out: &[f32], weight: &[f32], batch: usize) {
    let (i_f, o_f) = (features(d_inp.len(), batch), features(d_out.len(), batch));
    assert_eq!(
        weight.len(),
        o_f * i_f,
        "weight is not [out_features, in_features]"
    );
    // d_in[n, i] += dy row n · weight column i (gathered).
    let dy_row = |n: usize| n * o_f;
    let dy = Rows {
        data: d_out,
        count: batch,
        start: &dy_row,
    };
    let column = |i: usize, o0: usize, dst: &mut [f32]| {
        for (o, d) in (o0..).zip(dst.iter_mut()) {
            *d = weight[o * i_f + i];
        }
    };
    let w_cols = BRows::Mapped {
        count: i_f,
        fill: &column,
    };
    dots(d_inp, i_f, dy, w_cols, o_f);
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
    let (i_f, o_f) = (features(inp.len(), batch), features(d_out.len(), batch));
    assert_eq!(
        d_weight.len(),
        o_f * i_f,
        "d_weight is not [out_features, in_features]"
    );
    // d_weight[o, i] += dy column o · in column i: dy transposed once, in's columns gathered.
    let mut dy_t = vec![0.0; o_f * batch];
    for (n, row) in d_out.chunks_exact(o_f.max(1)).enumerate().take(batch) {
        for (o, &v) in row.iter().enumerate() {
            dy_t[o * batch + n] = v;
        }
    }
    let dy_t_row = |o: usize| o * batch;
    let dy_cols = Rows {
        data: &dy_t,
        count: o_f,
        start: &dy_t_row,
    };
    let column = |i: usize, n0: usize, dst: &mut [f32]| {
        for (n, d) in (n0..).zip(dst.iter_mut()) {
            *d = inp[n * i_f + i];
        }
    };
    let x_cols = BRows::Mapped {
        count: i_f,
        fill: &column,
    };
    dots(d_weight, i_f, dy_cols, x_cols, batch);
    if let Some(d_bias) = d_bias {
        assert_eq!(d_bias.len(), o_f, "d_bias is not [out_features]");
        for (o, db) in d_bias.iter_mut().enumerate() {
            let s: f64 = (0..batch).map(|n| f64::from(d_out[n * o_f + o])).sum();
            *db = (f64::from(*db) + s) as f32;
        }
    }
}
