//! The naive dense block: concatenation by copy, as `torch.cat` does, with the same fast kernels
//! and parameters as the network's own block, so that only the memory strategy differs.
//!
//! Forward, layer `l` (0-based, `c = k0 + l·k` input channels, `M = N·H·W`):
//!
//! ```text
//! cat_l = cat(x, f_0, …, f_{l−1})          new [c, M], a copy of c·M floats   (stored)
//! a_l   = relu(norm1(cat_l))               new [c, M]                          (stored)
//! z_l   = conv1(a_l)                       new [B, M]                          (stored)
//! h_l   = relu(norm2(z_l))                 new [B, M]                          (stored)
//! f_l   = conv2(h_l)                       new [k, M]                          (stored)
//! out   = cat(x, f_0, …, f_{L−1})          new [k0 + L·k, M], one more copy
//! ```
//!
//! (without a bottleneck, `f_l = conv1(a_l)`). Batch norm uses the batch statistics of each
//! channel, computed once when the channel is produced — the same numbers the shared buffer
//! uses, so the outputs agree. Backward walks the layers in reverse: the gradient of `cat_l` is
//! a new tensor that is then split, channel range by channel range, into the gradients of `x`
//! and `f_0..f_{l−1}` (a copy-add of `c·M` floats), and the output gradient is split once at the
//! start. Every copy adds its bytes to [`CopyCounts`]; the saved tensors are freed when backward
//! finishes, as autograd frees them.

use densenet_kernels::batchnorm::batchnorm_relu_backward;
use densenet_kernels::conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use densenet_kernels::{BatchNormGeom, ChannelAffine, Workspace};

use super::{BlockParams, BlockShape, CopyCounts};
use crate::block::{apply_affine, bn_affine, channel_statistics, conv_geom, two_mut, Mode};

/// What forward keeps for backward.
#[derive(Debug, Default)]
struct Saved {
    /// `f_l`, `[k, M]` each.
    outputs: Vec<Vec<f32>>,
    /// `cat_l` and `a_l`, `[k0 + l·k, M]` each.
    cats: Vec<Vec<f32>>,
    acts: Vec<Vec<f32>>,
    /// Bottleneck only: `z_l` and `h_l`, `[B, M]` each, and norm2's statistics `[B]`.
    z: Vec<Vec<f32>>,
    h: Vec<Vec<f32>>,
    mean2: Vec<Vec<f32>>,
    invstd2: Vec<Vec<f32>>,
    /// `[k0 + L·k]` batch statistics of every channel, in order.
    mean: Vec<f32>,
    invstd: Vec<f32>,
    /// Length of the block input, which the caller keeps (a framework holds a reference).
    input_len: usize,
}

/// A dense block that concatenates by copying.
#[derive(Debug)]
pub struct NaiveBlock {
    shape: BlockShape,
    saved: Saved,
    output: Vec<f32>,
    d_input: Vec<f32>,
    kernels: Workspace<'static>,
    copies: CopyCounts,
}

/// `cat(x, pieces…)` into a new tensor, counting the bytes copied.
fn concat(x: &[f32], pieces: &[Vec<f32>], copied: &mut u64) -> Vec<f32> {
    let len = x.len() + pieces.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(x);
    for p in pieces {
        out.extend_from_slice(p);
    }
    *copied += (len * std::mem::size_of::<f32>()) as u64;
    out
}

/// Adds consecutive channel ranges of `d_cat` to `d_x` then each of `d_pieces`, counting bytes.
fn split_add(d_x: &mut [f32], d_pieces: &mut [Vec<f32>], d_cat: &[f32], copied: &mut u64) {
    let mut off = 0;
    for dst in std::iter::once(d_x).chain(d_pieces.iter_mut().map(|p| p.as_mut_slice())) {
        let len = dst.len();
        for (d, s) in dst.iter_mut().zip(&d_cat[off..off + len]) {
            *d += *s;
        }
        off += len;
    }
    debug_assert_eq!(off, d_cat.len());
    *copied += std::mem::size_of_val(d_cat) as u64;
}

impl NaiveBlock {
    /// A naive block for `shape`. It preallocates nothing: every pass allocates as it goes.
    pub fn new(shape: BlockShape) -> Self {
        NaiveBlock {
            shape,
            saved: Saved::default(),
            output: Vec::new(),
            d_input: Vec::new(),
            kernels: Workspace::new(),
            copies: CopyCounts::default(),
        }
    }

    /// Bytes copied since creation.
    pub fn copies(&self) -> CopyCounts {
        self.copies
    }

    /// Training-mode forward; returns the block output `[k0 + L·k, M]`.
    ///
    /// # Panics
    /// If `input` is not `[k0, N, H, W]` or `params` belongs to another shape.
    pub fn forward(&mut self, params: &mut BlockParams, input: &[f32]) -> &[f32] {
        let s = self.shape;
        assert_eq!(params.shape, s, "naive block: parameters of another shape");
        let m = s.per_channel();
        assert_eq!(input.len(), s.k0 * m, "naive block: input length");
        let (k, batch) = (s.growth, s.batch);
        let bn = params.bn;
        let (p, _, buffers) = params.store.split_mut();
        let p: &[f32] = p;
        let mut sv = Saved {
            mean: vec![0.0; s.k0],
            invstd: vec![0.0; s.k0],
            input_len: input.len(),
            ..Saved::default()
        };
        channel_statistics(&mut sv.mean, &mut sv.invstd, input, m, &bn);
        let width = s.out_channels().max(s.bn_size.unwrap_or(1) * k);
        let (mut scale, mut shift) = (vec![0.0; width], vec![0.0; width]);
        for (l, lp) in params.layers.iter().enumerate() {
            let c = s.k0 + l * k;
            let cat = concat(input, &sv.outputs, &mut self.copies.forward_bytes);
            bn_affine(
                &mut scale[..c],
                &mut shift[..c],
                &lp.norm1,
                p,
                buffers,
                &sv.mean[..c],
                &sv.invstd[..c],
                m,
                Mode::Train,
                true,
                &bn,
            );
            let pre1 = ChannelAffine {
                scale: &scale[..c],
                shift: &shift[..c],
                relu: true,
            };
            let mut a = vec![0.0; c * m];
            apply_affine(&mut a, &cat, &pre1, m);
            let g1 = conv_geom(&lp.conv1, batch, s.h, s.w);
            let mut f = vec![0.0; k * m];
            match &lp.bottleneck {
                None => conv2d_forward(
                    &mut f,
                    &a,
                    lp.conv1.weight.of(p),
                    None,
                    None,
                    &g1,
                    &mut self.kernels,
                ),
                Some((norm2, conv2)) => {
                    let b = norm2.channels;
                    let mut z = vec![0.0; b * m];
                    conv2d_forward(
                        &mut z,
                        &a,
                        lp.conv1.weight.of(p),
                        None,
                        None,
                        &g1,
                        &mut self.kernels,
                    );
                    let (mut mean2, mut invstd2) = (vec![0.0; b], vec![0.0; b]);
                    channel_statistics(&mut mean2, &mut invstd2, &z, m, &bn);
                    bn_affine(
                        &mut scale[..b],
                        &mut shift[..b],
                        norm2,
                        p,
                        buffers,
                        &mean2,
                        &invstd2,
                        m,
                        Mode::Train,
                        true,
                        &bn,
                    );
                    let pre2 = ChannelAffine {
                        scale: &scale[..b],
                        shift: &shift[..b],
                        relu: true,
                    };
                    let mut h = vec![0.0; b * m];
                    apply_affine(&mut h, &z, &pre2, m);
                    let g2 = conv_geom(conv2, batch, s.h, s.w);
                    conv2d_forward(
                        &mut f,
                        &h,
                        conv2.weight.of(p),
                        None,
                        None,
                        &g2,
                        &mut self.kernels,
                    );
                    sv.z.push(z);
                    sv.h.push(h);
                    sv.mean2.push(mean2);
                    sv.invstd2.push(invstd2);
                }
            }
            let (mut fm, mut fi) = (vec![0.0; k], vec![0.0; k]);
            channel_statistics(&mut fm, &mut fi, &f, m, &bn);
            sv.mean.extend_from_slice(&fm);
            sv.invstd.extend_from_slice(&fi);
            sv.outputs.push(f);
            sv.cats.push(cat);
            sv.acts.push(a);
        }
        self.output = concat(input, &sv.outputs, &mut self.copies.forward_bytes);
        self.saved = sv;
        &self.output
    }

    /// Backward of the last forward; zeroes and fills `params`' gradients, returns the input
    /// gradient `[k0, M]`, and frees the saved tensors.
    ///
    /// # Panics
    /// If no forward pass preceded it or `d_out` is not `[k0 + L·k, N, H, W]`.
    pub fn backward(&mut self, params: &mut BlockParams, d_out: &[f32]) -> &[f32] {
        let s = self.shape;
        let m = s.per_channel();
        assert_eq!(
            d_out.len(),
            s.out_channels() * m,
            "naive block: d_out length"
        );
        let sv = std::mem::take(&mut self.saved);
        assert_eq!(
            sv.outputs.len(),
            s.layers,
            "naive block: backward before forward"
        );
        let (k, batch) = (s.growth, s.batch);
        params.store.zero_grads();
        let (p, grads, _) = params.store.split_mut();
        let p: &[f32] = p;
        // Split the output gradient into the gradients of its pieces.
        let mut d_x = vec![0.0; sv.input_len];
        let mut d_f: Vec<Vec<f32>> = (0..s.layers).map(|_| vec![0.0; k * m]).collect();
        split_add(&mut d_x, &mut d_f, d_out, &mut self.copies.backward_bytes);
        for (l, lp) in params.layers.iter().enumerate().rev() {
            let c = s.k0 + l * k;
            let (d_earlier, d_rest) = d_f.split_at_mut(l);
            let d_fl = &d_rest[0];
            let g1 = conv_geom(&lp.conv1, batch, s.h, s.w);
            let d_z_owned;
            let d_conv1_out: &[f32] = match &lp.bottleneck {
                None => d_fl,
                Some((norm2, conv2)) => {
                    let b = norm2.channels;
                    let g2 = conv_geom(conv2, batch, s.h, s.w);
                    conv2d_backward_weight(
                        conv2.weight.of_mut(grads),
                        None,
                        d_fl,
                        &sv.h[l],
                        None,
                        &g2,
                        &mut self.kernels,
                    );
                    let mut d_h = vec![0.0; b * m];
                    conv2d_backward_input(
                        &mut d_h,
                        d_fl,
                        conv2.weight.of(p),
                        &g2,
                        &mut self.kernels,
                    );
                    let mut d_z = vec![0.0; b * m];
                    let (dg, db) = two_mut(grads, norm2.gamma, norm2.beta);
                    batchnorm_relu_backward(
                        &mut d_z,
                        dg,
                        db,
                        &d_h,
                        &sv.z[l],
                        norm2.gamma.of(p),
                        norm2.beta.of(p),
                        &sv.mean2[l],
                        &sv.invstd2[l],
                        &BatchNormGeom {
                            channels: b,
                            per_channel: m,
                        },
                    );
                    d_z_owned = d_z;
                    &d_z_owned
                }
            };
            conv2d_backward_weight(
                lp.conv1.weight.of_mut(grads),
                None,
                d_conv1_out,
                &sv.acts[l],
                None,
                &g1,
                &mut self.kernels,
            );
            let mut d_a = vec![0.0; c * m];
            conv2d_backward_input(
                &mut d_a,
                d_conv1_out,
                lp.conv1.weight.of(p),
                &g1,
                &mut self.kernels,
            );
            let mut d_cat = vec![0.0; c * m];
            let (dg, db) = two_mut(grads, lp.norm1.gamma, lp.norm1.beta);
            batchnorm_relu_backward(
                &mut d_cat,
                dg,
                db,
                &d_a,
                &sv.cats[l],
                lp.norm1.gamma.of(p),
                lp.norm1.beta.of(p),
                &sv.mean[..c],
                &sv.invstd[..c],
                &BatchNormGeom {
                    channels: c,
                    per_channel: m,
                },
            );
            split_add(&mut d_x, d_earlier, &d_cat, &mut self.copies.backward_bytes);
        }
        self.d_input = d_x;
        &self.d_input
    }
}
