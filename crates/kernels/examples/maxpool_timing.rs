//! Time of the max-pooling forward and backward, for comparing builds side by side in one
//! sitting (criterion's `cargo bench --bench kernels -- maxpool` measures the same calls, one
//! shape at a time).
//!
//! ```sh
//! cargo run --release -p densenet-kernels --example maxpool_timing
//! RAYON_NUM_THREADS=1 cargo run --release -p densenet-kernels --example maxpool_timing
//! ```
//!
//! Each line: the median and the minimum of 9 runs of at least 10 calls, and a checksum of the
//! output (forward) or gradient (backward) bits after one call, which must not change between
//! builds. An argument keeps the shapes whose name contains it. `relu` inputs are
//! rectified (half zeros, so many ties, as after the stem's ReLU); `mixed` inputs are small
//! integers with NaNs, infinities and signed zeros sprinkled in.

use densenet_kernels::pool::{maxpool2d_backward, maxpool2d_forward};
use densenet_kernels::Pool2dGeom;
use std::time::Instant;

fn values(len: usize, kind: &str) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (s >> 40) as u32;
            let u = r as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            match kind {
                "relu" => u.max(0.0),
                "mixed" => match r % 64 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => -0.0,
                    4 => 0.0,
                    _ => (r % 9) as f32 - 4.0,
                },
                _ => u,
            }
        })
        .collect()
}

fn checksum(v: &[f32]) -> u64 {
    v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let only = std::env::args().nth(1);
    for (name, planes, h, w, kernel, stride, pad) in [
        ("d121_stem_n1_64x112x112_k3s2p1", 64, 112, 112, 3, 2, 1),
        ("d121_stem_n8_512x112x112_k3s2p1", 512, 112, 112, 3, 2, 1),
        ("awkward_37x15x13_k3s2p1", 37, 15, 13, 3, 2, 1),
        ("awkward_37x15x13_k3s2p0", 37, 15, 13, 3, 2, 0),
        ("generic_64x28x28_k2s1p1", 64, 28, 28, 2, 1, 1),
    ] {
        if only.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let g = Pool2dGeom {
            planes,
            in_h: h,
            in_w: w,
            kernel,
            stride,
            pad,
        };
        let iters = (20_000_000 / g.input_len()).max(10);
        for kind in ["uniform", "relu", "mixed"] {
            let x = values(g.input_len(), kind);
            let mut y = vec![0.0; g.output_len()];
            maxpool2d_forward(&mut y, &x, &g);
            let sum = checksum(&y);
            let (median, min) = time(iters, || maxpool2d_forward(&mut y, &x, &g));
            println!(
                "forward  {name} {kind}: median {median:.1} us min {min:.1} (checksum {sum:016x})"
            );
            let dy = values(g.output_len(), "uniform");
            let mut dx = values(g.input_len(), "uniform");
            maxpool2d_backward(&mut dx, &dy, &x, &g);
            let sum = checksum(&dx);
            let (median, min) = time(iters, || maxpool2d_backward(&mut dx, &dy, &x, &g));
            println!(
                "backward {name} {kind}: median {median:.1} us min {min:.1} (checksum {sum:016x})"
            );
        }
    }
}

/// Median and minimum over 9 runs of `iters` calls of `call`, in µs per call.
fn time(iters: usize, mut call: impl FnMut()) -> (f64, f64) {
    let mut times = vec![];
    for _ in 0..9 {
        let st = Instant::now();
        for _ in 0..iters {
            call();
        }
        times.push(st.elapsed().as_secs_f64() / iters as f64 * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[4], times[0])
}
