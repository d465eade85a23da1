//! The 3×3 convolutions of a dense layer on one thread, direct (the wide-row product the
//! inference strips run: depth `9·C`, `B` read in place from the padded input) against
//! Winograd F(2×2, 3×3) ([`densenet_kernels::winograd`]), interleaved, on the same padded input.
//!
//! ```sh
//! cargo run --release -p densenet-kernels --example winograd_timing
//! ```
//!
//! Each line: a shape (`C → K` at `S×S`), then per method the median and minimum of 9 runs of
//! at least 20 calls (`WINOGRAD_SIZE=S` for the `S×S` shapes only; `WINOGRAD_VARIANT=4` for
//! F(4×4, 3×3)), the median's GFLOP/s
//! counted as the direct convolution's `2·K·C·9·S²` FLOPs (so Winograd's figure is an
//! effective rate), and the median time of the weight transform alone.

use densenet_kernels::gemm::{self, AView, BView, CStore};
use densenet_kernels::winograd::{Variant, Winograd3x3};
use std::time::Instant;

fn main() {
    let isa = densenet_kernels::active_isa();
    let shapes: &[(usize, usize, usize)] = &[
        (128, 32, 56),
        (128, 32, 28),
        (128, 32, 14),
        (128, 32, 7),
        (48, 12, 32),
        (48, 12, 16),
        (48, 12, 8),
        // The input gradients of the same layers: 3×3 convolutions of `d_out` back to the
        // layer's input channels (weights flipped and transposed).
        (32, 128, 56),
        (32, 128, 28),
        (32, 128, 14),
        (12, 48, 32),
        (12, 48, 16),
    ];
    // `WINOGRAD_SIZE=S` times the shapes at `S×S` only.
    let only: Option<usize> = std::env::var("WINOGRAD_SIZE")
        .ok()
        .and_then(|v| v.parse().ok());
    // `WINOGRAD_VARIANT=4` times F(4×4, 3×3) instead of F(2×2, 3×3).
    let variant = match std::env::var("WINOGRAD_VARIANT").as_deref() {
        Ok("4") => Variant::F4x4,
        _ => Variant::F2x2,
    };
    for &(c, k, s) in shapes.iter().filter(|sh| only.is_none_or(|o| o == sh.2)) {
        let row = s + 1;
        let plane = (s + 2) * row;
        let conv = Winograd3x3 {
            variant,
            ..Winograd3x3::new(k, c, s, s)
        };
        let len = (c * plane + 64).max(conv.input_len(plane, row));
        let mut q: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.1).collect();
        for p in q.chunks_mut(row) {
            p[0] = 0.0;
        }
        let w: Vec<f32> = (0..k * c * 9).map(|i| (i % 5) as f32 * 0.1).collect();
        let cols3 = s * row;
        let mut direct_out = vec![0.0; k * cols3];
        let mut wino_out = vec![0.0; conv.out_len(k)];
        let mut scratch = vec![0.0; conv.scratch_len(isa, k)];
        let row_start = |d: usize| (d / 9) * plane + (d % 9 / 3) * row + d % 3;
        let mut direct = || {
            gemm::gemm_block_with(
                isa,
                gemm::tile_for_rows(isa, k),
                0,
                k,
                cols3,
                9 * c,
                AView::RowMajor {
                    data: &w,
                    ld: 9 * c,
                },
                BView::Rows {
                    data: &q,
                    row_start: &row_start,
                },
                &mut direct_out,
                cols3,
                CStore::Write,
            )
        };
        let mut u = vec![0.0; conv.weights_len(k)];
        // The weight transform is part of each call, as in the inference plan.
        let mut wino = || {
            conv.transform_weights(isa, (0, k), &w, &mut u);
            conv.forward(isa, (&u, k), &q, [plane, row], &mut wino_out, &mut scratch)
        };
        let flops = 2.0 * (k * c * 9 * s * s) as f64;
        let iters = (200_000_000.0 / flops).max(20.0) as usize;
        let (mut td, mut tw) = (vec![], vec![]);
        for _ in 0..9 {
            let t = Instant::now();
            for _ in 0..iters {
                direct();
            }
            td.push(t.elapsed().as_secs_f64() / iters as f64);
            let t = Instant::now();
            for _ in 0..iters {
                wino();
            }
            tw.push(t.elapsed().as_secs_f64() / iters as f64);
        }
        let stat = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0])
        };
        let ((dm, dmin), (wm, wmin)) = (stat(&mut td), stat(&mut tw));
        // The weight transform alone (part of the Winograd time above).
        let mut tu = vec![];
        for _ in 0..9 {
            let t = Instant::now();
            for _ in 0..iters {
                conv.transform_weights(isa, (0, k), &w, &mut u);
            }
            tu.push(t.elapsed().as_secs_f64() / iters as f64);
        }
        let (um, _) = stat(&mut tu);
        println!(
            "{c:>4} -> {k:>3} @{s:>2}: direct {:>7.1} us (min {:>7.1}, {:>5.1} GFLOP/s)   \
             winograd {:>7.1} us (min {:>7.1}, {:>5.1} effective; weights {:>5.1} us)   {:.2}x",
            dm * 1e6,
            dmin * 1e6,
            flops / dm / 1e9,
            wm * 1e6,
            wmin * 1e6,
            flops / wm / 1e9,
            um * 1e6,
            dm / wm
        );
    }
}
