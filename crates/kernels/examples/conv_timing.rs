//! Forward time of the DenseNet-121 batch-1 convolutions, for comparing thread counts and
//! builds side by side in one sitting (criterion's `cargo bench --bench kernels -- conv/forward`
//! measures the same calls, one shape at a time).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p densenet-kernels --example conv_timing
//! RAYON_NUM_THREADS=2 cargo run --release -p densenet-kernels --example conv_timing
//! ```
//!
//! Each line: the median and the minimum of 7 runs of at least 20 calls (about 200 MFLOP per
//! run), and the median's GFLOP/s (`2·OC·IC·KH·KW·H·W` FLOPs per call).

use densenet_kernels::conv2d::{conv2d_forward, conv2d_workspace_len};
use densenet_kernels::{Conv2dGeom, Workspace};
use std::time::Instant;

fn main() {
    for &(ic, oc, hw, k) in &[
        (64, 128, 56, 1),
        (256, 128, 56, 1),
        (512, 128, 28, 1),
        (512, 128, 14, 1),
        (1024, 128, 14, 1),
        (768, 128, 7, 1),
        (1024, 128, 7, 1),
        (128, 32, 56, 3),
        (128, 32, 28, 3),
        (128, 32, 14, 3),
        (128, 32, 7, 3),
    ] {
        let g = Conv2dGeom {
            batch: 1,
            in_channels: ic,
            out_channels: oc,
            in_h: hw,
            in_w: hw,
            kernel_h: k,
            kernel_w: k,
            stride_h: 1,
            stride_w: 1,
            pad_h: k / 2,
            pad_w: k / 2,
        };
        let inp: Vec<f32> = (0..g.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..g.weight_len()).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0f32; g.output_len()];
        let mut ws = Workspace::with_capacity(conv2d_workspace_len(&g));
        let iters = (200_000_000 / (ic * oc * hw * hw * k * k)).max(20);
        let mut times = vec![];
        for _ in 0..7 {
            let st = Instant::now();
            for _ in 0..iters {
                conv2d_forward(&mut out, &inp, &w, None, None, &g, &mut ws);
            }
            times.push(st.elapsed().as_secs_f64() / iters as f64 * 1e6);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let gf = 2.0 * (ic * oc * hw * hw * k * k) as f64 / times[3] / 1e3;
        println!(
            "{k}x{k} {ic}->{oc} @{hw}: median {:.1} us min {:.1} ({gf:.0} GFLOP/s)",
            times[3], times[0]
        );
    }
}
