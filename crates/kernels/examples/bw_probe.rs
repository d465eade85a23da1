use densenet_kernels::conv2d::*;
use densenet_kernels::{ChannelAffine, Conv2dGeom, Workspace};
use std::time::Instant;

fn main() {
    let mut ws = Workspace::with_capacity(0);
    for &(n, c, oc, hw, k) in &[
        (4usize, 48usize, 12usize, 32usize, 3usize),
        (64, 48, 12, 32, 3),
        (4, 120, 48, 32, 1),
        (64, 120, 48, 32, 1),
        (64, 216, 48, 32, 1),
    ] {
        let g = Conv2dGeom {
            batch: n,
            in_channels: c,
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
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| (i % 7) as f32 * 0.1 - 0.3)
            .collect();
        let dy: Vec<f32> = (0..g.output_len())
            .map(|i| (i % 5) as f32 * 0.1 - 0.2)
            .collect();
        let mut dw = vec![0f32; g.weight_len()];
        let sc = vec![1.1f32; c];
        let sh = vec![0.1f32; c];
        let flops = 2.0 * g.macs() as f64;
        for (name, pre) in [
            ("nopre", None),
            (
                "pre",
                Some(ChannelAffine {
                    scale: &sc,
                    shift: &sh,
                    relu: true,
                }),
            ),
        ] {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let s = Instant::now();
                conv2d_backward_weight(&mut dw, None, &dy, &x, pre, &g, &mut ws);
                best = best.min(s.elapsed().as_secs_f64());
            }
            println!(
                "bw{k}x{k} n{n} c{c}->{oc} {name}: {:.3} ms {:.1} GFLOP/s",
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}
