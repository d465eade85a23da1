use densenet_kernels::gemm::{self, AView};
use densenet_kernels::{active_isa, Isa};
use std::time::Instant;

fn half(
    isa: Isa,
    w: &[f32],
    x: &[f32],
    rows: usize,
    depth: usize,
    cols: usize,
    c0: usize,
    c1: usize,
    bbuf: &mut [f32],
    out: &mut [f32],
) {
    let t = gemm::tile(isa);
    let block = gemm::b_block_cols(depth, c1 - c0, t);
    let ld = c1 - c0;
    for col0 in (c0..c1).step_by(block) {
        let n = block.min(c1 - col0);
        gemm::pack_b_matrix(bbuf, x, cols, depth, col0, n, t);
        gemm::gemm_packed(
            isa,
            rows,
            n,
            depth,
            AView::RowMajor { data: w, ld: depth },
            bbuf,
            &mut out[col0 - c0..],
            ld,
            false,
            false,
        );
    }
}

fn rowhalf(
    isa: Isa,
    w: &[f32],
    x: &[f32],
    r0: usize,
    r1: usize,
    depth: usize,
    cols: usize,
    bbuf: &mut [f32],
    out: &mut [f32],
) {
    let t = gemm::tile(isa);
    let block = gemm::b_block_cols(depth, cols, t);
    for col0 in (0..cols).step_by(block) {
        let n = block.min(cols - col0);
        gemm::pack_b_matrix(bbuf, x, cols, depth, col0, n, t);
        gemm::gemm_packed(
            isa,
            r1 - r0,
            n,
            depth,
            AView::RowMajor {
                data: &w[r0 * depth..],
                ld: depth,
            },
            bbuf,
            &mut out[col0..],
            cols,
            false,
            false,
        );
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (rows, depth, cols) = (args[0], args[1], args[2]);
    let isa = active_isa();
    let t = gemm::tile(isa);
    let w: Vec<f32> = (0..rows * depth).map(|i| (i % 7) as f32 * 0.1).collect();
    let x: Vec<f32> = (0..depth * cols).map(|i| (i % 5) as f32 * 0.1).collect();
    let blen = gemm::packed_b_len(depth, gemm::b_block_cols(depth, cols, t), t);
    let mut b1 = vec![0f32; blen];
    let mut b2 = vec![0f32; blen];
    let h = (cols / 2).div_ceil(t.nr) * t.nr;
    let mut o1 = vec![0f32; rows * h];
    let mut o2 = vec![0f32; rows * (cols - h)];
    let mut full = vec![0f32; rows * cols];
    let iters = 300;
    for mode in 0..5 {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let st = Instant::now();
            for _ in 0..iters {
                match mode {
                    0 => half(isa, &w, &x, rows, depth, cols, 0, cols, &mut b1, &mut full),
                    1 => {
                        rayon::join(
                            || half(isa, &w, &x, rows, depth, cols, 0, h, &mut b1, &mut o1),
                            || half(isa, &w, &x, rows, depth, cols, h, cols, &mut b2, &mut o2),
                        );
                    }
                    3 => {
                        let (lo, hi) = full.split_at_mut(rows / 2 * cols);
                        rayon::join(
                            || rowhalf(isa, &w, &x, 0, rows / 2, depth, cols, &mut b1, lo),
                            || rowhalf(isa, &w, &x, rows / 2, rows, depth, cols, &mut b2, hi),
                        );
                    }
                    4 => {
                        rayon::join(
                            || half(isa, &w, &x, rows, depth, cols, 0, h, &mut b1, &mut o1),
                            || half(isa, &w, &x, rows, depth, cols, h, cols, &mut b2, &mut o2),
                        );
                        let (lo, hi) = full.split_at_mut(rows / 2 * cols);
                        let st = |r0: usize, dst: &mut [f32]| {
                            for (i, row) in dst.chunks_mut(cols).enumerate() {
                                let r = r0 + i;
                                row[..h].copy_from_slice(&o1[r * h..][..h]);
                                row[h..].copy_from_slice(&o2[r * (cols - h)..][..cols - h]);
                            }
                        };
                        rayon::join(|| st(0, lo), || st(rows / 2, hi));
                    }
                    _ => {
                        half(isa, &w, &x, rows, depth, cols, 0, h, &mut b1, &mut o1);
                        half(isa, &w, &x, rows, depth, cols, h, cols, &mut b2, &mut o2);
                    }
                }
            }
            best = best.min(st.elapsed().as_secs_f64() / iters as f64);
        }
        println!(
            "mode {mode} ({}) {:.1} us",
            [
                "serial full",
                "join col halves private out",
                "serial halves",
                "join row halves, each packs all B",
                "join col halves + parallel row store"
            ][mode],
            best * 1e6
        );
    }
}
