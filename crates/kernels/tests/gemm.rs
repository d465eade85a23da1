//! The packed GEMM against a naive triple loop, on every tier this CPU has. Values are small
//! integers, so every sum is exact and results must match bit for bit.

use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::{gemm, Isa, Workspace};
use proptest::prelude::*;

fn naive(
    rows: usize,
    cols: usize,
    depth: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    for r in 0..rows {
        for j in 0..cols {
            let s: f32 = (0..depth)
                .map(|k| a[r * a_rs + k * a_cs] * b[k * cols + j])
                .sum();
            c[r * cols + j] = if accumulate { c[r * cols + j] + s } else { s };
        }
    }
}

fn check(
    isa: Isa,
    rows: usize,
    cols: usize,
    depth: usize,
    transposed: bool,
    accumulate: bool,
    seed: u64,
) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 9) as f32 - 4.0
    };
    let a: Vec<f32> = (0..rows * depth).map(|_| next()).collect();
    let b: Vec<f32> = (0..depth * cols).map(|_| next()).collect();
    let c0: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
    let (a_rs, a_cs) = if transposed { (1, rows) } else { (depth, 1) };
    let mut want = c0.clone();
    naive(rows, cols, depth, &a, a_rs, a_cs, &b, &mut want, accumulate);
    let mut got = c0;
    let mut ws = Workspace::new();
    with_max_isa(isa, || {
        gemm::gemm(
            isa, rows, cols, depth, &a, a_rs, a_cs, &b, cols, &mut got, cols, accumulate, &mut ws,
        )
    });
    assert_eq!(
        got, want,
        "[{isa}] {rows}x{cols}x{depth} transposed={transposed} accumulate={accumulate}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn gemm_matches_naive(rows in 0usize..40, cols in 0usize..80, depth in 0usize..300,
                          transposed: bool, accumulate: bool, seed: u64) {
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            check(isa, rows, cols, depth, transposed, accumulate, seed);
        }
    }
}

#[test]
fn gemm_many_column_blocks() {
    // depth·cols far above one B block, depth above one KC slice.
    for isa in Isa::ALL {
        if !isa.is_supported() {
            println!("skipped: no {isa}");
            continue;
        }
        check(isa, 19, 1500, 600, false, true, 3);
    }
}

/// An in-place `B` whose row starts lie out of `data` is refused with a panic before any read,
/// even when `start + NR` would wrap around `usize`.
#[test]
fn in_place_b_out_of_bounds_is_refused() {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        // (start of row 1, in bounds): 64 floats of data hold a row at 0 for every tier's NR.
        for (start, in_bounds) in [(0, true), (60, false), (usize::MAX - 3, false)] {
            let result = std::panic::catch_unwind(|| {
                let t = gemm::tile(isa);
                let (rows, cols, depth) = (t.mr, t.nr, 2);
                let a = vec![1.0f32; rows * depth];
                let data = vec![1.0f32; 64];
                let row_start = move |k: usize| if k == 0 { 0 } else { start };
                let mut c = vec![0.0f32; rows * cols];
                gemm::gemm_block(
                    isa,
                    0,
                    rows,
                    cols,
                    depth,
                    gemm::AView::RowMajor {
                        data: &a,
                        ld: depth,
                    },
                    gemm::BView::Rows {
                        data: &data,
                        row_start: &row_start,
                    },
                    &mut c,
                    cols,
                    false,
                );
            });
            assert_eq!(result.is_ok(), in_bounds, "[{isa}] row start {start}");
        }
    }
}
