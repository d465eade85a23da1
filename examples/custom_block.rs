//! A dense block built by hand from the kernels: one [`FeatureBuffer`], no concatenation.
//!
//! The block has `k0` input channels, `L` plain layers (ReLU, then a 3×3 conv with `k` outputs)
//! and growth rate `k`. Layer `l` reads the channel prefix `[0, k0 + l·k)` of the buffer and
//! writes its `k` new channels right after it, so `x_l = H_l([x_0, ..., x_{l-1}])` costs no copy.
//! The ReLU is never stored: the convolution applies it while reading its input
//! ([`ChannelAffine`] with scale 1, shift 0).
//!
//! Backward walks the layers in reverse over a gradient buffer of the same shape: each layer
//! reads the gradient of its slot and *accumulates* into the gradient of its prefix, which is
//! what the backward of a concatenation would have done.
//!
//! Run it with `cargo run --release --example custom_block`; `cargo test --examples` (and
//! `cargo test --workspace`) runs its test, which checks the block against a naive version that
//! concatenates with `Vec`s and uses the reference kernels, and the gradient against finite
//! differences.

use densenet_kernels::conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward};
use densenet_kernels::elementwise::relu_backward;
use densenet_kernels::{ChannelAffine, Conv2dGeom, FeatureBuffer, Workspace};

/// A plain dense block: its shape and one OIHW 3×3 weight per layer.
struct DenseBlock {
    k0: usize,
    k: usize,
    h: usize,
    w: usize,
    weights: Vec<Vec<f32>>,
}

impl DenseBlock {
    /// Deterministic small weights (a fixed pseudo-random sequence, no RNG crate needed).
    fn new(k0: usize, k: usize, layers: usize, h: usize, w: usize) -> Self {
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.4
        };
        let weights = (0..layers)
            .map(|l| (0..k * (k0 + l * k) * 9).map(|_| next()).collect())
            .collect();
        DenseBlock {
            k0,
            k,
            h,
            w,
            weights,
        }
    }

    fn layers(&self) -> usize {
        self.weights.len()
    }

    /// Layer `l`'s convolution: batch 1, `k0 + l·k` channels in, `k` out, 3×3, stride 1, pad 1.
    fn geom(&self, l: usize) -> Conv2dGeom {
        Conv2dGeom::square(1, self.k0 + l * self.k, self.k, self.h, self.w, 3, 1, 1)
    }

    /// Forward: `feats` holds the block input in channels `[0, k0)`; every layer appends.
    fn forward(&self, feats: &mut FeatureBuffer, ws: &mut Workspace) {
        let widest = self.k0 + self.layers() * self.k;
        let (ones, zeros) = (vec![1.0; widest], vec![0.0; widest]);
        for l in 0..self.layers() {
            let c = self.k0 + l * self.k;
            let relu = ChannelAffine {
                scale: &ones[..c],
                shift: &zeros[..c],
                relu: true,
            };
            let (prefix, slot) = feats.prefix_and_slot(c, self.k);
            conv2d_forward(
                slot,
                prefix,
                &self.weights[l],
                None,
                Some(relu),
                &self.geom(l),
                ws,
            );
        }
    }

    /// Backward: `d_feats` holds the gradient of every channel of the block output; on return
    /// channels `[0, k0)` hold the gradient of the block input. Weight gradients accumulate
    /// into `d_weights`.
    fn backward(
        &self,
        d_feats: &mut FeatureBuffer,
        d_weights: &mut [Vec<f32>],
        feats: &FeatureBuffer,
        ws: &mut Workspace,
    ) {
        let widest = self.k0 + self.layers() * self.k;
        let (ones, zeros) = (vec![1.0; widest], vec![0.0; widest]);
        let m = self.h * self.w;
        let mut d_act = vec![0.0; widest * m];
        for l in (0..self.layers()).rev() {
            let c = self.k0 + l * self.k;
            let g = self.geom(l);
            let relu = ChannelAffine {
                scale: &ones[..c],
                shift: &zeros[..c],
                relu: true,
            };
            let (d_prefix, d_slot) = d_feats.prefix_mut_and_slot(c, self.k);
            conv2d_backward_weight(
                &mut d_weights[l],
                None,
                d_slot,
                feats.prefix(c),
                Some(relu),
                &g,
                ws,
            );
            // Gradient w.r.t. relu(prefix), then through the ReLU, accumulated into the prefix.
            let d_act = &mut d_act[..c * m];
            d_act.fill(0.0);
            conv2d_backward_input(d_act, d_slot, &self.weights[l], &g, ws);
            relu_backward(d_prefix, d_act, feats.prefix(c));
        }
    }
}

/// Runs a block of 3 layers on an 8×8 input with 4 channels and prints what it did.
fn run() -> (FeatureBuffer, DenseBlock) {
    let block = DenseBlock::new(4, 3, 3, 8, 8);
    let m = block.h * block.w;
    let capacity = block.k0 + block.layers() * block.k;
    let mut feats = FeatureBuffer::new(capacity, m);
    for (i, v) in feats.prefix_mut(block.k0).iter_mut().enumerate() {
        *v = ((i * 7) % 11) as f32 / 5.0 - 1.0;
    }
    let mut ws = Workspace::new();
    block.forward(&mut feats, &mut ws);
    println!(
        "block: k0 = {}, k = {}, L = {}: {} channels of {}x{} in one buffer of {} bytes",
        block.k0,
        block.k,
        block.layers(),
        capacity,
        block.h,
        block.w,
        feats.bytes()
    );
    // Loss = Σ feats (all channels), so every channel's gradient starts at 1.
    let mut d_feats = FeatureBuffer::new(capacity, m);
    d_feats.as_mut_slice().fill(1.0);
    let mut d_weights: Vec<Vec<f32>> = block.weights.iter().map(|w| vec![0.0; w.len()]).collect();
    block.backward(&mut d_feats, &mut d_weights, &feats, &mut ws);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    println!("|d input| = {:.4}", norm(d_feats.prefix(block.k0)));
    for (l, d) in d_weights.iter().enumerate() {
        println!("layer {}: |d weight| = {:.4}", l + 1, norm(d));
    }
    (feats, block)
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    run();
}

#[cfg(test)]
mod tests {
    use super::*;
    use densenet_kernels::reference;

    /// The same block the textbook way: a `Vec` per feature map, concatenated for every layer,
    /// ReLU materialised, the reference convolution.
    fn naive_forward(block: &DenseBlock, input: &[f32]) -> Vec<f32> {
        let mut all = input.to_vec();
        for l in 0..block.layers() {
            let relu: Vec<f32> = all.iter().map(|&x| x.max(0.0)).collect();
            let mut out = vec![0.0; block.k * block.h * block.w];
            reference::conv2d_forward(&mut out, &relu, &block.weights[l], None, &block.geom(l));
            all.extend_from_slice(&out); // torch.cat([x_0, ..., x_l])
        }
        all
    }

    #[test]
    fn buffer_block_matches_the_concatenating_block() {
        let (feats, block) = run();
        let naive = naive_forward(&block, feats.prefix(block.k0));
        for (i, (a, b)) in feats.as_slice().iter().zip(&naive).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "value {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let (feats, block) = run();
        let input = feats.prefix(block.k0).to_vec();
        let loss = |x: &[f32]| {
            naive_forward(&block, x)
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
        };
        let m = block.h * block.w;
        let mut d_feats = FeatureBuffer::new(feats.capacity(), m);
        d_feats.as_mut_slice().fill(1.0);
        let mut d_w: Vec<Vec<f32>> = block.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        block.backward(&mut d_feats, &mut d_w, &feats, &mut Workspace::new());
        let eps = 1e-2f32;
        for i in (0..input.len()).step_by(37) {
            // Skip inputs near the ReLU kink, where the loss is not differentiable.
            if input[i].abs() < 2.0 * eps {
                continue;
            }
            let (mut up, mut down) = (input.clone(), input.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(eps));
            let analytic = f64::from(d_feats.prefix(block.k0)[i]);
            assert!(
                (numeric - analytic).abs() <= 1e-2 * (1.0 + analytic.abs()),
                "input {i}: finite difference {numeric}, backward {analytic}"
            );
        }
    }
}
