//! Time of every dense-layer convolution of one DenseNet-BC-100 (k = 12) training step at
//! batch 64 on 32×32 inputs, by kind, called the way the training step calls them (batch norm +
//! ReLU applied on the fly, fresh input gradients overwritten; the 1×1 input gradient taken
//! back through norm1 + ReLU with its weight gradient in the same pass, as
//! `pointwise_bn_relu_backward` does).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p densenet-kernels --example bc100_convs
//! RAYON_NUM_THREADS=2 cargo run --release -p densenet-kernels --example bc100_convs
//! BC100_ONLY=0 BC100_RUNS=10 cargo run --release -p densenet-kernels --example bc100_convs
//! ```
//!
//! `BC100_ONLY=K` times kind `K` alone (0–5, in the order printed), `BC100_RUNS=R` calls each
//! convolution `R` times instead of 3 (the last is timed): together they give a profiler a run
//! of one kind's kernels.
//!
//! Each line: the summed time over the 48 layers (the third of three runs of each call) and the
//! rate in GFLOP/s (`2·OC·IC·KH·KW·M` per call, the direct product's count even where Winograd
//! does fewer). "forward 3x3 step" is the forward as the training step runs it: by Winograd
//! where `winograd_variant` finds it the faster (the 32×32 and 16×16 blocks on AVX-512), else
//! direct; "all" counts it instead of the direct one. Transitions, stem and classifier are left
//! out.

use densenet_kernels::batchnorm::BnReluSaved;
use densenet_kernels::conv2d::{
    conv2d_backward_input_to, conv2d_backward_weight, conv2d_forward, conv2d_forward_winograd,
    pointwise_bn_relu_backward, winograd_variant,
};
use densenet_kernels::{ChannelAffine, Conv2dGeom, Workspace};
use std::time::Instant;

/// One convolution call of a layer, run with the shared workspace.
type Call<'a> = Box<dyn FnMut(&mut Workspace) + 'a>;

/// Each kind with its FLOPs per call in units of the conv's multiply-adds (the fused 1×1
/// backward does both products: weight and input gradient).
const KINDS: [(&str, f64); 6] = [
    ("forward 1x1", 1.0),
    ("forward 3x3 direct", 1.0),
    ("backward 1x1 (w+in+bn)", 2.0),
    ("backward input 3x3", 1.0),
    ("backward weight 3x3", 1.0),
    ("forward 3x3 step", 1.0),
];

/// The direct forward 3×3, which the step runs only where Winograd is not the faster: left out
/// of "all".
const DIRECT_3X3: usize = 1;

fn main() {
    let (batch, growth, bottleneck) = (64, 12, 48);
    let mut ws = Workspace::new();
    let mut seconds = [0f64; KINDS.len()];
    let mut flops = [0f64; KINDS.len()];
    let only = env_usize("BC100_ONLY");
    let runs = env_usize("BC100_RUNS").unwrap_or(3).max(1);
    // The three blocks: map size and the channels entering the block.
    for (hw, k0) in [(32, 24), (16, 108), (8, 150)] {
        for l in 0..16 {
            let c = k0 + growth * l;
            let g1 = Conv2dGeom::square(batch, c, bottleneck, hw, hw, 1, 1, 0);
            let g3 = Conv2dGeom::square(batch, bottleneck, growth, hw, hw, 3, 1, 1);
            let prefix: Vec<f32> = (0..g1.input_len())
                .map(|i| (i % 7) as f32 * 0.1 - 0.3)
                .collect();
            let z: Vec<f32> = (0..g1.output_len())
                .map(|i| (i % 5) as f32 * 0.1 - 0.2)
                .collect();
            let d_slot: Vec<f32> = (0..g3.output_len()).map(|i| (i % 3) as f32 * 0.1).collect();
            let (w1, w3) = (
                vec![0.01f32; g1.weight_len()],
                vec![0.01f32; g3.weight_len()],
            );
            let (mut dw1, mut dw3) = (vec![0f32; g1.weight_len()], vec![0f32; g3.weight_len()]);
            let mut z_out = vec![0f32; g1.output_len()];
            let mut slot = vec![0f32; g3.output_len()];
            let mut slot_step = vec![0f32; g3.output_len()];
            let mut d_z = vec![0f32; g1.output_len()];
            let mut d_prefix = vec![0f32; g1.input_len()];
            let (scale1, shift1) = (vec![1.1f32; c], vec![0.1f32; c]);
            let (scale2, shift2) = (vec![0.9f32; bottleneck], vec![0.05f32; bottleneck]);
            let norm1 = ChannelAffine {
                scale: &scale1,
                shift: &shift1,
                relu: true,
            };
            // norm1 as its backward sees it: `scale1 = γ·invstd`, `shift1 = β − μ·scale1`.
            let (gamma1, beta1, mean1, invstd1) = (
                vec![1.1f32; c],
                vec![0.1f32; c],
                vec![0.0f32; c],
                vec![1.0f32; c],
            );
            let bn1 = BnReluSaved {
                gamma: &gamma1,
                beta: &beta1,
                mean: &mean1,
                invstd: &invstd1,
            };
            let (mut sum_dy, mut sum_dy_xmu) = (vec![0f64; c], vec![0f64; c]);
            let norm2 = ChannelAffine {
                scale: &scale2,
                shift: &shift2,
                relu: true,
            };
            let mut calls: [Call<'_>; KINDS.len()] = [
                Box::new(|ws| conv2d_forward(&mut z_out, &prefix, &w1, None, Some(norm1), &g1, ws)),
                Box::new(|ws| conv2d_forward(&mut slot, &z, &w3, None, Some(norm2), &g3, ws)),
                Box::new(|ws| {
                    pointwise_bn_relu_backward(
                        &mut d_prefix,
                        &mut dw1,
                        &mut sum_dy,
                        &mut sum_dy_xmu,
                        &z,
                        &w1,
                        &prefix,
                        bn1,
                        &g1,
                        ws,
                        true,
                    )
                }),
                Box::new(|ws| conv2d_backward_input_to(&mut d_z, &d_slot, &w3, &g3, ws, false)),
                Box::new(|ws| {
                    conv2d_backward_weight(&mut dw3, None, &d_slot, &z, Some(norm2), &g3, ws)
                }),
                Box::new(|ws| match winograd_variant(&g3) {
                    Some(v) => {
                        conv2d_forward_winograd(&mut slot_step, &z, &w3, Some(norm2), &g3, v, ws)
                    }
                    None => conv2d_forward(&mut slot_step, &z, &w3, None, Some(norm2), &g3, ws),
                }),
            ];
            for (kind, call) in calls.iter_mut().enumerate() {
                if only.is_some_and(|k| k != kind) {
                    continue;
                }
                let mut last = 0.0;
                for _ in 0..runs {
                    let start = Instant::now();
                    call(&mut ws);
                    last = start.elapsed().as_secs_f64();
                }
                seconds[kind] += last;
                let g = if matches!(kind, 0 | 2) { &g1 } else { &g3 };
                flops[kind] += 2.0 * KINDS[kind].1 * g.macs() as f64;
            }
        }
    }
    for (kind, (name, _)) in KINDS.iter().enumerate() {
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        println!(
            "{name:<22} {:7.1} ms {:6.1} GFLOP/s",
            seconds[kind] * 1e3,
            flops[kind] / seconds[kind] / 1e9
        );
    }
    let step = |v: &[f64]| -> f64 {
        v.iter()
            .enumerate()
            .filter(|&(kind, _)| kind != DIRECT_3X3)
            .map(|(_, x)| x)
            .sum()
    };
    let total = step(&seconds);
    println!(
        "{:<22} {:7.1} ms {:6.1} GFLOP/s",
        "all",
        total * 1e3,
        step(&flops) / total / 1e9
    );
}

/// A whole number from the environment variable `name`, if set and valid.
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}
