//! 2-D convolution, forward and backward, over channel-major (CNHW) activations.
//!
//! PLACEHOLDER BODIES: these delegate to [`crate::reference`] until the packed-GEMM kernels land.
//! The signatures are the public contract.

use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::reference;
use crate::workspace::Workspace;

/// Convolution forward, optionally applying a per-input-channel affine map (+ReLU) to the input
/// on the fly (batch norm + ReLU fused into the convolution's input packing).
///
/// `out[oc, n, oy, ox] = bias[oc] + Σ weight[oc, ic, ky, kx] · pre(in)[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]`,
/// padding read as zero *after* `pre`.
///
/// # Shapes
/// - `out`: `[OC, N, OH, OW]`, written. `inp`: `[IC, N, H, W]`, read.
/// - `weight`: `[OC, IC, KH, KW]`; `bias`: `[OC]`; `pre`: `[IC]` scale and shift.
pub fn conv2d_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    match pre {
        None => reference::conv2d_forward(out, inp, weight, bias, g),
        Some(pre) => {
            let x = ws.get(inp.len());
            apply_pre(x, inp, &pre, g);
            reference::conv2d_forward(out, x, weight, bias, g);
        }
    }
}

/// Convolution backward, input gradient (accumulates). See
/// [`reference::conv2d_backward_input`].
pub fn conv2d_backward_input(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    g: &Conv2dGeom,
    _ws: &mut Workspace,
) {
    reference::conv2d_backward_input(d_inp, d_out, weight, g);
}

/// Convolution backward, weight and bias gradients (accumulate), with the same optional input
/// map as the forward pass (so the mapped input never needs storing). See
/// [`reference::conv2d_backward_weight`].
pub fn conv2d_backward_weight(
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    pre: Option<ChannelAffine<'_>>,
    g: &Conv2dGeom,
    ws: &mut Workspace,
) {
    match pre {
        None => reference::conv2d_backward_weight(d_weight, d_bias, d_out, inp, g),
        Some(pre) => {
            let x = ws.get(inp.len());
            apply_pre(x, inp, &pre, g);
            reference::conv2d_backward_weight(d_weight, d_bias, d_out, x, g);
        }
    }
}

fn apply_pre(x: &mut [f32], inp: &[f32], pre: &ChannelAffine<'_>, g: &Conv2dGeom) {
    let per_channel = g.batch * g.in_h * g.in_w;
    for (i, (o, &v)) in x.iter_mut().zip(inp).enumerate() {
        *o = pre.apply(i / per_channel, v);
    }
}
