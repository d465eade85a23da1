use densenet_kernels::conv2d::*;
use densenet_kernels::{ChannelAffine, Conv2dGeom, Workspace};
use std::time::Instant;

fn g(n: usize, ic: usize, oc: usize, hw: usize, k: usize) -> Conv2dGeom {
    Conv2dGeom {
        batch: n,
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
    }
}

fn main() {
    let n = 64;
    let mut cats = [0f64; 6];
    let mut flops = [0f64; 6];
    let names = ["fwd1x1", "fwd3x3", "bi1x1", "bi3x3", "bw1x1", "bw3x3"];
    let mut ws = Workspace::with_capacity(0);
    for (hw, k0) in [(32usize, 24usize), (16, 108), (8, 150)] {
        for l in 0..16 {
            let c = k0 + 12 * l;
            let g1 = g(n, c, 48, hw, 1);
            let g3 = g(n, 48, 12, hw, 3);
            let x: Vec<f32> = (0..g1.input_len())
                .map(|i| (i % 7) as f32 * 0.1 - 0.3)
                .collect();
            let z = vec![0.1f32; g1.output_len()];
            let mut zo = vec![0f32; g1.output_len()];
            let mut y = vec![0f32; g3.output_len()];
            let dy = vec![0.1f32; g3.output_len()];
            let mut dz = vec![0f32; g1.output_len()];
            let mut dx = vec![0f32; g1.input_len()];
            let w1 = vec![0.01f32; g1.weight_len()];
            let w3 = vec![0.01f32; g3.weight_len()];
            let mut dw1 = vec![0f32; g1.weight_len()];
            let mut dw3 = vec![0f32; g3.weight_len()];
            let sc = vec![1.1f32; c];
            let sh = vec![0.1f32; c];
            let sc2 = vec![1.1f32; 48];
            let sh2 = vec![0.1f32; 48];
            let pre = || {
                Some(ChannelAffine {
                    scale: &sc,
                    shift: &sh,
                    relu: true,
                })
            };
            let pre2 = || {
                Some(ChannelAffine {
                    scale: &sc2,
                    shift: &sh2,
                    relu: true,
                })
            };
            for rep in 0..3 {
                let mut t = [0f64; 6];
                let s = Instant::now();
                conv2d_forward(&mut zo, &x, &w1, None, pre(), &g1, &mut ws);
                t[0] = s.elapsed().as_secs_f64();
                let s = Instant::now();
                conv2d_forward(&mut y, &z, &w3, None, pre2(), &g3, &mut ws);
                t[1] = s.elapsed().as_secs_f64();
                let s = Instant::now();
                conv2d_backward_input(&mut dx, &z, &w1, &g1, &mut ws);
                t[2] = s.elapsed().as_secs_f64();
                let s = Instant::now();
                conv2d_backward_input(&mut dz, &dy, &w3, &g3, &mut ws);
                t[3] = s.elapsed().as_secs_f64();
                let s = Instant::now();
                conv2d_backward_weight(&mut dw1, None, &z, &x, pre(), &g1, &mut ws);
                t[4] = s.elapsed().as_secs_f64();
                let s = Instant::now();
                conv2d_backward_weight(&mut dw3, None, &dy, &z, pre2(), &g3, &mut ws);
                t[5] = s.elapsed().as_secs_f64();
                if rep == 2 {
                    for i in 0..6 {
                        cats[i] += t[i];
                    }
                }
            }
            let f1 = 2.0 * g1.macs() as f64;
            let f3 = 2.0 * g3.macs() as f64;
            flops[0] += f1;
            flops[2] += f1;
            flops[4] += f1;
            flops[1] += f3;
            flops[3] += f3;
            flops[5] += f3;
        }
    }
    let mut tot = 0.0;
    for i in 0..6 {
        tot += cats[i];
        println!(
            "{:8} {:7.1} ms {:6.1} GFLOP/s",
            names[i],
            cats[i] * 1e3,
            flops[i] / cats[i] / 1e9
        );
    }
    println!(
        "total {:.1} ms, {:.1} GFLOP",
        tot * 1e3,
        flops.iter().sum::<f64>() / 1e9
    );
}
