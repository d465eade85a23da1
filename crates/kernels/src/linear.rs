//! The linear (fully connected) layer: three matrix products, each one `matrixmultiply::sgemm`
//! call per fixed block of rows.
//!
//! In matrix form, with `X = in [N, I]`, `Wt = weight [O, I]`, `Y = out [N, O]`:
//! `Y = X·Wtᵀ + 1·biasᵀ`, `dX += dY·Wt`, `dWt += dYᵀ·X`, `dbias += dYᵀ·1`.
//!
//! `matrixmultiply` picks its own SIMD kernel at run time (AVX2+FMA, AVX or SSE2) and is not
//! capped by [`crate::dispatch::with_max_isa`]; its blocking is fixed, so results do not depend
//! on the thread count. Rows are split across rayon tasks in fixed blocks of `ROWS_PER_TASK`,
//! each block one independent GEMM, so the split does not depend on the pool size either.

use rayon::prelude::*;

/// Output rows per rayon task. Fixed, so any thread count computes the same blocks.
const ROWS_PER_TASK: usize = 16;

/// Below this many multiply-adds the layer runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// `c[m, n] = beta·c[m, n] + Σ_k a[m, k]·b[k, n]` over row-major (or strided) operands.
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (isize, isize),
    b: &[f32],
    (rsb, csb): (isize, isize),
    beta: f32,
    c: &mut [f32],
    rsc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // No products: c = beta·c (beta is 0 or 1 here).
        if beta == 0.0 {
            c[..(m - 1) * rsc as usize + n].fill(0.0);
        }
        return;
    }
    // Bounds of the strided views, checked here so the unsafe call reads only inside the slices.
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows - 1) * rs as usize + (cols - 1) * cs as usize
    };
    assert!(last(m, k, rsa, csa) < a.len());
    assert!(last(k, n, rsb, csb) < b.len());
    assert!(last(m, n, rsc, 1) < c.len());
    // SAFETY: the asserts above show every element of the three strided views (all strides
    // non-negative) lies inside its slice; `c` is exclusively borrowed and does not overlap `a`
    // or `b`, which are shared borrows.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            1,
        );
    }
}

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

/// Splits `rows` rows of `row_len` floats into fixed blocks and runs `body(first_row, block)`,
/// in parallel when `macs` is large.
fn for_row_blocks(
    c: &mut [f32],
    row_len: usize,
    macs: usize,
    body: impl Fn(usize, &mut [f32]) + Sync,
) {
    if row_len == 0 {
        return;
    }
    if macs < PAR_MIN_MACS {
        body(0, c);
    } else {
        c.par_chunks_mut(row_len * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(t, block)| body(t * ROWS_PER_TASK, block));
    }
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
    for_row_blocks(out, o_f, batch * o_f * i_f, |n0, block| {
        let rows = block.len() / o_f;
        let beta = match bias {
            Some(b) => {
                for row in block.chunks_exact_mut(o_f) {
                    row.copy_from_slice(b);
                }
                1.0
            }
            None => 0.0,
        };
        // out[rows, O] = in[rows, I] · weightᵀ, weightᵀ read as [I, O] with strides (1, I).
        gemm(
            (rows, i_f, o_f),
            &inp[n0 * i_f..(n0 + rows) * i_f],
            (i_f as isize, 1),
            weight,
            (1, i_f as isize),
            beta,
            block,
            o_f as isize,
        );
    });
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
    for_row_blocks(d_inp, i_f, batch * o_f * i_f, |n0, block| {
        let rows = block.len() / i_f;
        gemm(
            (rows, o_f, i_f),
            &d_out[n0 * o_f..(n0 + rows) * o_f],
            (o_f as isize, 1),
            weight,
            (i_f as isize, 1),
            1.0,
            block,
            i_f as isize,
        );
    });
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
    for_row_blocks(d_weight, i_f, batch * o_f * i_f, |o0, block| {
        let rows = block.len() / i_f;
        // d_weight[rows, I] += dyᵀ[rows, N] · in[N, I], dyᵀ read with strides (1, O).
        gemm(
            (rows, batch, i_f),
            &d_out[o0.min(d_out.len())..],
            (1, o_f as isize),
            inp,
            (i_f as isize, 1),
            1.0,
            block,
            i_f as isize,
        );
    });
    if let Some(d_bias) = d_bias {
        assert_eq!(d_bias.len(), o_f, "d_bias is not [out_features]");
        for (o, db) in d_bias.iter_mut().enumerate() {
            let s: f64 = (0..batch).map(|n| f64::from(d_out[n * o_f + o])).sum();
            *db = (f64::from(*db) + s) as f32;
        }
    }
}
