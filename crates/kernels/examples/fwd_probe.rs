use densenet_kernels::conv2d::*;
use densenet_kernels::{ChannelAffine, Conv2dGeom, Workspace};
use std::time::Instant;

fn aligned(len: usize) -> (Vec<f32>, usize) {
    let v = vec![0f32; len + 16];
    let off = v.as_ptr().align_offset(64);
    (v, off)
}

fn main() {
    let mut ws = Workspace::with_capacity(0);
    for &(n, c, oc, hw) in &[
        (64usize, 120usize, 48usize, 32usize),
        (4, 120, 48, 32),
        (64, 216, 48, 32),
    ] {
        let g = Conv2dGeom {
            batch: n,
            in_channels: c,
            out_channels: oc,
            in_h: hw,
            in_w: hw,
            kernel_h: 1,
            kernel_w: 1,
            stride_h: 1,
            stride_w: 1,
            pad_h: 0,
            pad_w: 0,
        };
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| (i % 7) as f32 * 0.1 - 0.3)
            .collect();
        let w = vec![0.01f32; g.weight_len()];
        let (mut ov, oo) = aligned(g.output_len());
        let out = &mut ov[oo..oo + g.output_len()];
        let (mut dv, doff) = aligned(g.input_len());
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
            for _ in 0..5 {
                let s = Instant::now();
                conv2d_forward(out, &x, &w, None, pre, &g, &mut ws);
                best = best.min(s.elapsed().as_secs_f64());
            }
            println!(
                "fwd n{n} c{c}->{oc} {name}: {:.2} ms {:.1} GFLOP/s",
                best * 1e3,
                flops / best / 1e9
            );
        }
        for (name, mis) in [("aligned", 0usize), ("misaligned", 4)] {
            let len = g.input_len();
            let mut best = f64::MAX;
            let target: &mut [f32] = if mis == 0 {
                &mut dv[doff..doff + len]
            } else {
                &mut dv[doff + 4..doff + 4 + len]
            };
            for _ in 0..5 {
                let s = Instant::now();
                conv2d_backward_input_to(target, out, &w, &g, &mut ws, false);
                best = best.min(s.elapsed().as_secs_f64());
            }
            println!(
                "bi  n{n} c{c}->{oc} {name}: {:.2} ms {:.1} GFLOP/s",
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}
