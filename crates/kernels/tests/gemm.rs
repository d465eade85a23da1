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
                    gemm::CStore::Write,
                );
            });
            assert_eq!(result.is_ok(), in_bounds, "[{isa}] row start {start}");
        }
    }
}

/// `C += A·Bᵀ` by [`gemm::gemm_abt`] against the naive sum, with small integer values (exact
/// sums, so bit-equal): rows that do not fill a register tile, depths across several chunks
/// with a partial last lane group, `B` in place and mapped, row offsets with gaps, one and two
/// threads (which must give the same bits).
fn check_abt(isa: Isa, a_count: usize, b_count: usize, depth: usize, mapped: bool, seed: u64) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 7) as f32 - 3.0
    };
    // Rows `gap` floats apart, so a row read past its depth would pick up the next row's values.
    let gap = depth + 3;
    let a: Vec<f32> = (0..a_count * gap).map(|_| next()).collect();
    let b: Vec<f32> = (0..b_count * gap).map(|_| next()).collect();
    let ldc = b_count + 2;
    let c0: Vec<f32> = (0..a_count * ldc).map(|_| next()).collect();
    let mut want = c0.clone();
    for i in 0..a_count {
        for j in 0..b_count {
            let s: f32 = (0..depth).map(|m| a[i * gap + m] * b[j * gap + m]).sum();
            want[i * ldc + j] += s;
        }
    }
    let start = |r: usize| r * gap;
    // A mapped row is the in-place row doubled, then halved by dividing `A` in the check: keeps
    // the sums exact while proving the mapped values (not the in-place ones) were read.
    let fill = |r: usize, m0: usize, dst: &mut [f32]| {
        for (d, &v) in dst.iter_mut().zip(&b[r * gap + m0..]) {
            *d = 2.0 * v;
        }
    };
    let a_half: Vec<f32> = a.iter().map(|v| v / 2.0).collect();
    let run = |threads: usize| {
        let a_rows = gemm::Rows {
            data: if mapped { &a_half } else { &a },
            count: a_count,
            start: &start,
        };
        let b_rows = if mapped {
            gemm::BRows::Mapped {
                count: b_count,
                fill: &fill,
            }
        } else {
            gemm::BRows::InPlace(gemm::Rows {
                data: &b,
                count: b_count,
                start: &start,
            })
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let parallel = threads > 1;
            let len = gemm::gemm_abt_scratch_len(isa, a_count, b_count, mapped);
            let mut scratch = vec![f32::NAN; len];
            let mut c = c0.clone();
            with_max_isa(isa, || {
                gemm::gemm_abt(
                    isa,
                    &mut c,
                    ldc,
                    a_rows,
                    &b_rows,
                    depth,
                    &mut scratch,
                    parallel,
                )
            });
            c
        })
    };
    let (one, two) = (run(1), run(2));
    let label = format!("[{isa}] {a_count}x{b_count}x{depth} mapped={mapped}");
    assert_eq!(one, want, "{label}");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one), bits(&two), "{label}: one vs two threads");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn gemm_abt_matches_naive(
        a_count in 1usize..14,
        b_count in 1usize..80,
        depth in 1usize..2600,
        mapped: bool,
        seed: u64,
    ) {
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            check_abt(isa, a_count, b_count, depth, mapped, seed);
        }
    }
}

#[test]
fn gemm_abt_short_row_is_refused() {
    let a = vec![1.0f32; 10];
    let b = vec![1.0f32; 10];
    let mut c = vec![0.0f32; 1];
    let result = std::panic::catch_unwind(move || {
        let a_rows = gemm::Rows {
            data: &a,
            count: 1,
            start: &|_| 0,
        };
        // Row 0 of B starts at 5: 10 values would run past the end.
        let b_rows = gemm::BRows::InPlace(gemm::Rows {
            data: &b,
            count: 1,
            start: &|_| 5,
        });
        let mut scratch = vec![0.0; 4096];
        gemm::gemm_abt(
            Isa::Portable,
            &mut c,
            1,
            a_rows,
            &b_rows,
            10,
            &mut scratch,
            false,
        );
    });
    assert!(result.is_err());
    // A start near usize::MAX must not wrap around the bounds check either.
    let a = vec![1.0f32; 10];
    let result = std::panic::catch_unwind(move || {
        let a_rows = gemm::Rows {
            data: &a,
            count: 1,
            start: &|_| usize::MAX - 2,
        };
        let b_rows = gemm::BRows::InPlace(gemm::Rows {
            data: &a,
            count: 1,
            start: &|_| 0,
        });
        let mut scratch = vec![0.0; 4096];
        let mut c = vec![0.0f32; 1];
        gemm::gemm_abt(
            Isa::Portable,
            &mut c,
            1,
            a_rows,
            &b_rows,
            10,
            &mut scratch,
            false,
        );
    });
    assert!(result.is_err());
}

/// `CStore::Stream` writes the same values as `CStore::Write`, whether the rows of `C` are
/// 64-byte aligned (non-temporal stores on AVX-512) or not (ordinary stores), with full and
/// edge tiles, and on one depth slice or several (only the first may stream).
#[test]
fn streamed_stores_equal_plain_writes() {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let t = gemm::tile(isa);
        for (rows, cols, depth) in [(2 * t.mr, 4 * t.nr, 37), (2 * t.mr + 3, 3 * t.nr + 5, 300)] {
            let a: Vec<f32> = (0..rows * depth).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..depth * cols).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut b_packed = vec![0.0; gemm::packed_b_len(depth, cols, t)];
            gemm::pack_b_matrix(isa, &mut b_packed, &b, cols, depth, 0, cols);
            // A row stride that keeps every row on a 64-byte boundary when the base is.
            let ldc = cols.div_ceil(16) * 16;
            let run = |store: gemm::CStore, offset: usize| {
                let mut buf = vec![f32::NAN; rows * ldc + 32];
                let base = buf.as_ptr().align_offset(64) + offset;
                let c = &mut buf[base..base + (rows - 1) * ldc + cols];
                with_max_isa(isa, || {
                    gemm::gemm_packed(
                        isa,
                        rows,
                        cols,
                        depth,
                        gemm::AView::RowMajor {
                            data: &a,
                            ld: depth,
                        },
                        &b_packed,
                        c,
                        ldc,
                        store,
                        false,
                    )
                });
                c.chunks(ldc)
                    .map(|r| r[..cols].to_vec())
                    .collect::<Vec<_>>()
            };
            let want = run(gemm::CStore::Write, 0);
            for offset in [0, 1] {
                assert_eq!(
                    run(gemm::CStore::Stream, offset),
                    want,
                    "[{isa}] {rows}x{cols}x{depth} offset {offset}"
                );
            }
        }
    }
}

/// The scratch `gemm_abt_scratch_len` asks for does not depend on the pool: sized on one
/// thread, it serves a product run on eight.
#[test]
fn gemm_abt_scratch_fits_any_pool() {
    let isa = densenet_kernels::active_isa();
    let (a_count, b_count, depth) = (12, 300, 5000);
    let a = vec![1.0f32; a_count * depth];
    let b = vec![2.0f32; b_count * depth];
    let len = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| gemm::gemm_abt_scratch_len(isa, a_count, b_count, false));
    let mut scratch = vec![0.0f32; len];
    let mut c = vec![0.0f32; a_count * b_count];
    rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build()
        .unwrap()
        .install(|| {
            gemm::gemm_abt(
                isa,
                &mut c,
                b_count,
                gemm::Rows {
                    data: &a,
                    count: a_count,
                    start: &|i| i * depth,
                },
                &gemm::BRows::InPlace(gemm::Rows {
                    data: &b,
                    count: b_count,
                    start: &|j| j * depth,
                }),
                depth,
                &mut scratch,
                true,
            )
        });
    assert!(c.iter().all(|&v| v == 2.0 * depth as f32));
}

/// A leading dimension whose products with the row count wrap around `usize` must not let a
/// short `C` pass the bounds checks (it used to, and the AVX kernels then stored far outside
/// it): every tier and tile refuses it with a panic.
#[test]
fn wrapping_ldc_is_refused() {
    // 7·ldc ≡ 1 and 11·ldc ≡ 1 (mod 2⁶⁴): (MR−1)·ldc + NR wraps to a small number for MR 8 / 12.
    let inverse = |m: u64| -> usize {
        let mut x: u64 = 1;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        }
        x as usize
    };
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let own = gemm::tile(isa);
        let mut tiles = vec![own];
        let narrow = gemm::tile_for_rows(isa, 12);
        if narrow != own {
            tiles.push(narrow);
        }
        for t in tiles {
            let ldc = inverse((t.mr - 1) as u64);
            let (rows, cols, depth) = (t.mr, t.nr, 4);
            let a = vec![1.0f32; rows * depth];
            let b = vec![1.0f32; depth * cols];
            let mut b_packed = vec![0.0; gemm::packed_b_len(depth, cols, t)];
            gemm::pack_b_matrix(isa, &mut b_packed, &b, cols, depth, 0, cols);
            let result = std::panic::catch_unwind(move || {
                let mut c = vec![0.0f32; cols + 1];
                gemm::gemm_block_with(
                    isa,
                    t,
                    0,
                    rows,
                    cols,
                    depth,
                    gemm::AView::RowMajor {
                        data: &a,
                        ld: depth,
                    },
                    gemm::BView::Packed(&b_packed),
                    &mut c,
                    ldc,
                    gemm::CStore::Write,
                );
            });
            assert!(
                result.is_err(),
                "[{isa}] {t:?}: a wrapping ldc was accepted"
            );
        }
    }
}
