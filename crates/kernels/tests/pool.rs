//! Pooling kernels against the reference on every tier: DenseNet's 3×3/s2/p1 max pool and 2×2/s2
//! average pool plus generic windows, odd sizes in PyTorch's floor mode, 1×1 planes, max-pool
//! ties (small integers make many), NaN, accumulation into non-zero gradients, 1 vs 2 threads.
//! The forward's order among equal values of different bits (±0, NaNs of either sign) is pinned
//! bit for bit against an oracle of its separable order, which differs from the reference's.
//! The 3×3 stride-2 max-pool backward has its own fast path, tested at its edges: padding 0 and
//! 1, odd and even sizes, tiny planes, widths around its lane blocks and its row buffer, and
//! inputs made of ties, signed zeros, infinities and NaNs of either sign.
//!
//! Exact where the op is exact: max pooling (a selection), average pooling of small integers
//! (sums of at most 49 integers times 1/K², exact when K² is a power of two, else one rounding),
//! global average pooling of small integers over power-of-two planes. Uniform floats: `f32`
//! window sums against the reference's `f64`, `rtol 1e-5`, `atol 1e-6`.
mod common;

use common::*;
use densenet_kernels::pool::*;
use densenet_kernels::reference as r;
use densenet_kernels::Pool2dGeom;
use proptest::prelude::{any, prop_assume, prop_oneof, proptest, ProptestConfig};

fn check_max(g: &Pool2dGeom, values: Values, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = values.draw(&mut rng, g.input_len());
    let dy = values.draw(&mut rng, g.output_len());
    let d0 = values.draw(&mut rng, g.input_len());
    let mut want = vec![0.0; g.output_len()];
    r::maxpool2d_forward(&mut want, &x, g);
    let mut want_d = d0.clone();
    r::maxpool2d_backward(&mut want_d, &dy, &x, g);
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; g.output_len()];
        maxpool2d_forward(&mut got, &x, g);
        assert_exact(&format!("{isa} maxpool forward {g:?}"), &got, &want);
        let mut d = d0.clone();
        maxpool2d_backward(&mut d, &dy, &x, g);
        // Each input receives the same gradients in the same order as in the reference.
        assert_exact(&format!("{isa} maxpool backward {g:?}"), &d, &want_d);
    });
}

/// Inputs that stress the max-pool tie and NaN rules: few distinct values, both zeros, both
/// infinities, NaNs of either sign.
fn specials(rng: &mut Rng, len: usize) -> Vec<f32> {
    const S: [f32; 8] = [
        f32::NEG_INFINITY,
        -1.0,
        -0.0,
        0.0,
        1.0,
        f32::INFINITY,
        f32::NAN,
        -f32::NAN,
    ];
    (0..len).map(|_| S[rng.below(S.len())]).collect()
}

/// The max-pool backward of input `x` against the reference on every tier, bit for bit, with
/// uniform gradients and a uniform non-zero starting `d_inp`: an input that wrongly wins, or
/// gradients added in another order, changes the bits.
fn check_max_backward(g: &Pool2dGeom, x: &[f32], seed: u64) {
    let mut rng = Rng::new(seed);
    let dy = rng.floats(g.output_len(), -1.0, 1.0);
    let d0 = rng.floats(g.input_len(), -1.0, 1.0);
    let mut want = d0.clone();
    r::maxpool2d_backward(&mut want, &dy, x, g);
    for_each_tier(|isa| {
        let mut d = d0.clone();
        maxpool2d_backward(&mut d, &dy, x, g);
        assert_bits(&format!("{isa} maxpool backward {g:?}"), &d, &want);
    });
}

/// A 3×3 stride-2 pool over `h×w` planes.
fn pool_3s2(planes: usize, h: usize, w: usize, pad: usize) -> Pool2dGeom {
    Pool2dGeom {
        planes,
        in_h: h,
        in_w: w,
        kernel: 3,
        stride: 2,
        pad,
    }
}

fn check_avg(g: &Pool2dGeom, values: Values, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = values.draw(&mut rng, g.input_len());
    let dy = values.draw(&mut rng, g.output_len());
    let d0 = values.draw(&mut rng, g.input_len());
    let mut want = vec![0.0; g.output_len()];
    r::avgpool2d_forward(&mut want, &x, g);
    let mut want_d = d0.clone();
    r::avgpool2d_backward(&mut want_d, &dy, g);
    let exact = matches!(values, Values::Ints) && (g.kernel * g.kernel).is_power_of_two();
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; g.output_len()];
        avgpool2d_forward(&mut got, &x, g);
        let l = format!("{isa} avgpool forward {g:?}");
        if exact {
            assert_exact(&l, &got, &want);
        } else {
            assert_close(&l, &got, &want, 1e-6, 1e-5);
        }
        let mut d = d0.clone();
        avgpool2d_backward(&mut d, &dy, g);
        // Same products, added in the reference's order.
        assert_exact(&format!("{isa} avgpool backward {g:?}"), &d, &want_d);
    });
}

fn check_global(channels: usize, batch: usize, hw: usize, values: Values, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = values.draw(&mut rng, channels * batch * hw);
    let dy = values.draw(&mut rng, batch * channels);
    let d0 = values.draw(&mut rng, x.len());
    let mut want = vec![0.0; batch * channels];
    r::global_avgpool_forward(&mut want, &x, channels, batch, hw);
    let mut want_d = d0.clone();
    r::global_avgpool_backward(&mut want_d, &dy, channels, batch, hw);
    let exact = matches!(values, Values::Ints) && hw.is_power_of_two();
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; batch * channels];
        global_avgpool_forward(&mut got, &x, channels, batch, hw);
        let l = format!("{isa} global avgpool c={channels} n={batch} hw={hw}");
        if exact {
            assert_exact(&l, &got, &want);
        } else {
            assert_close(&l, &got, &want, 1e-6, 1e-5);
        }
        let mut d = d0.clone();
        global_avgpool_backward(&mut d, &dy, channels, batch, hw);
        assert_exact(&format!("{l} backward"), &d, &want_d);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn maxpool_matches_reference(
        planes in 1usize..=5, h in 1usize..=13, w in 1usize..=13,
        kernel in 1usize..=4, stride in 1usize..=3, pad in 0usize..=2,
        ints in any::<bool>(), seed in any::<u64>(),
    ) {
        let g = Pool2dGeom { planes, in_h: h, in_w: w, kernel, stride, pad };
        prop_assume!(g.is_valid());
        check_max(&g, if ints { Values::Ints } else { Values::Floats }, seed);
    }

    /// Output rows computed band by band from bands of the input (bands of any height,
    /// partitioning the output) are the whole forward's, bit for bit, on every tier, with NaNs
    /// and signed zeros too; wide rows past the stack buffer take the direct scan.
    #[test]
    fn maxpool_by_row_bands_is_the_whole_forward(
        planes in 1usize..=4, h in 1usize..=17, w in prop_oneof![1usize..=13, 510usize..=520],
        kernel in 1usize..=4, stride in 1usize..=3, pad in 0usize..=2,
        band in 1usize..=5, seed in any::<u64>(),
    ) {
        let g = Pool2dGeom { planes, in_h: h, in_w: w, kernel, stride, pad };
        prop_assume!(g.is_valid());
        let mut rng = Rng::new(seed);
        let x = specials(&mut rng, g.input_len());
        for_each_tier(|isa| {
            let mut whole = vec![f32::NAN; g.output_len()];
            maxpool2d_forward(&mut whole, &x, &g);
            let mut banded = vec![f32::NAN; g.output_len()];
            let oh = g.out_h();
            for r0 in (0..oh).step_by(band) {
                let rows = r0..(r0 + band).min(oh);
                let in_rows = maxpool2d_input_rows(&g, &rows);
                let plane = h * w;
                let mut slab = Vec::with_capacity(planes * in_rows.len() * w);
                for p in 0..planes {
                    slab.extend_from_slice(&x[p * plane + in_rows.start * w..p * plane + in_rows.end * w]);
                }
                maxpool2d_forward_rows(&mut banded, &slab, &g, rows);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&banded), bits(&whole), "{} bands of {} rows {:?}", isa, band, g);
        });
    }

    /// The 3×3 stride-2 fast path: up to three lane blocks of outputs per row, every clipping.
    #[test]
    fn maxpool_3x3_stride2_backward_matches_reference(
        planes in 1usize..=3, h in 1usize..=9, w in 1usize..=70, pad in 0usize..=1,
        kind in 0u8..3, seed in any::<u64>(),
    ) {
        let g = pool_3s2(planes, h, w, pad);
        prop_assume!(g.is_valid());
        let mut rng = Rng::new(seed);
        let x = match kind {
            0 => rng.ints(g.input_len()),
            1 => rng.floats(g.input_len(), -1.0, 1.0),
            _ => specials(&mut rng, g.input_len()),
        };
        check_max_backward(&g, &x, seed ^ 1);
    }

    #[test]
    fn avgpool_matches_reference(
        planes in 1usize..=5, h in 1usize..=13, w in 1usize..=13,
        kernel in 1usize..=4, stride in 1usize..=3,
        ints in any::<bool>(), seed in any::<u64>(),
    ) {
        let g = Pool2dGeom { planes, in_h: h, in_w: w, kernel, stride, pad: 0 };
        prop_assume!(g.is_valid());
        check_avg(&g, if ints { Values::Ints } else { Values::Floats }, seed);
    }

    #[test]
    fn global_avgpool_matches_reference(
        channels in 1usize..=19, batch in 1usize..=3, hw in 1usize..=70,
        ints in any::<bool>(), seed in any::<u64>(),
    ) {
        check_global(channels, batch, hw, if ints { Values::Ints } else { Values::Floats }, seed);
    }
}

/// DenseNet's own windows at odd and even sizes, 1×1 planes, and a plane wider than the
/// separable path's row buffer.
#[test]
fn densenet_windows_and_edges() {
    for (h, w) in [(1, 1), (2, 2), (7, 7), (8, 9), (15, 14), (3, 600)] {
        for values in [Values::Ints, Values::Floats] {
            let g = Pool2dGeom {
                planes: 3,
                in_h: h,
                in_w: w,
                kernel: 3,
                stride: 2,
                pad: 1,
            };
            check_max(&g, values, (h * w) as u64);
            if h >= 2 && w >= 2 {
                let g = Pool2dGeom {
                    planes: 3,
                    in_h: h,
                    in_w: w,
                    kernel: 2,
                    stride: 2,
                    pad: 0,
                };
                check_avg(&g, values, (h * w) as u64);
            }
            let g = Pool2dGeom {
                planes: 2,
                in_h: h,
                in_w: w,
                kernel: 1,
                stride: 1,
                pad: 0,
            };
            check_max(&g, values, 1);
            check_avg(&g, values, 1);
        }
    }
    for hw in [1, 49, 64, 1025] {
        check_global(5, 2, hw, Values::Ints, 3);
    }
}

/// The 3×3 stride-2 backward at its edges: tiny planes (a window row of one or two input rows
/// or columns), odd and even sizes, one lane block and a column past it, the widest row it
/// buffers and one wider (which takes the generic scan); planes of one repeated value (every
/// window a tie: the first tap must win, never a padded one), of −∞ (below any padding
/// sentinel), of NaN, and of mixed zeros.
#[test]
fn maxpool_3x3_stride2_backward_edges() {
    let sizes = [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (2, 3),
        (3, 2),
        (3, 3),
        (4, 4),
        (5, 6),
        (1, 33),
        (5, 31),
        (4, 32),
        (6, 33),
        (7, 34),
        (3, 35),
        (3, 511),
        (2, 512),
        (3, 513),
    ];
    for (h, w) in sizes {
        for pad in 0..=1 {
            let g = pool_3s2(2, h, w, pad);
            if !g.is_valid() {
                continue;
            }
            let n = g.input_len();
            let mut rng = Rng::new((h * 1000 + w) as u64);
            let zeros: Vec<f32> = (0..n)
                .map(|_| if rng.below(2) == 0 { 0.0 } else { -0.0 })
                .collect();
            for x in [
                vec![1.5; n],
                vec![f32::NEG_INFINITY; n],
                vec![f32::INFINITY; n],
                vec![f32::NAN; n],
                zeros,
                specials(&mut rng, n),
                rng.ints(n),
            ] {
                check_max_backward(&g, &x, (h + w + pad) as u64);
            }
        }
    }
}

/// One NaN at every position of a small plane, then two NaNs at every pair of positions (the
/// first wins), in a plane of ties, with padding 0 and 1.
#[test]
fn maxpool_3x3_stride2_backward_nans_everywhere() {
    for pad in 0..=1 {
        let g = pool_3s2(1, 5, 7, pad);
        let n = g.input_len();
        for i in 0..n {
            let mut x = vec![2.0; n];
            x[i] = f32::NAN;
            check_max_backward(&g, &x, i as u64);
            for j in i + 1..n {
                let mut x = x.clone();
                x[j] = -f32::NAN;
                check_max_backward(&g, &x, (i * n + j) as u64);
            }
        }
    }
}

/// The forward's separable order, bit for bit: each column's maximum over the window's rows top
/// to bottom, then those maxima left to right, each step keeping the running value only if it
/// is greater or a NaN (`a > b || a.is_nan()`). On equal values of different bits (−0 and +0,
/// NaNs of either sign) that order picks a different one than the reference's row-major scan,
/// so this oracle, not the reference, pins which (`assert_exact` treats them as equal).
fn separable_maxpool(x: &[f32], g: &Pool2dGeom) -> Vec<f32> {
    let keep = |a: f32, b: f32| if a > b || a.is_nan() { a } else { b };
    let window = |o: usize, n: usize| {
        let start = (o * g.stride) as isize - g.pad as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + g.kernel as isize).max(0) as usize).min(n);
        lo..hi
    };
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut out = Vec::with_capacity(g.output_len());
    for plane in x.chunks_exact(g.in_h * g.in_w) {
        for oy in 0..oh {
            let rows = window(oy, g.in_h);
            let colmax: Vec<f32> = (0..g.in_w)
                .map(|c| {
                    let mut v = rows.clone().map(|y| plane[y * g.in_w + c]);
                    let first = v.next().expect("a window row");
                    v.fold(first, keep)
                })
                .collect();
            for ox in 0..ow {
                let cols = window(ox, g.in_w);
                let first = colmax[cols.start];
                out.push(
                    colmax[cols.start + 1..cols.end]
                        .iter()
                        .fold(first, |m, &v| keep(m, v)),
                );
            }
        }
    }
    out
}

/// The forward on inputs made of ties, signed zeros, infinities and NaNs of either sign, against
/// [`separable_maxpool`] bit for bit on every tier: DenseNet's stem pool, a 2×2 window at
/// stride 1, windows of 4 at stride 2 and 3 at stride 1 (rows of one, two and three in the
/// column pass, planes under the fast path's 512 columns).
#[test]
fn maxpool_forward_order_on_signed_zeros_and_nans() {
    let mut rng = Rng::new(23);
    for (planes, in_h, in_w, kernel, stride, pad) in [
        (5, 7, 7, 3, 2, 1),
        (3, 2, 2, 2, 1, 0),
        (4, 9, 9, 4, 2, 1),
        (4, 6, 5, 3, 1, 1),
        (2, 17, 40, 3, 2, 1),
    ] {
        let g = Pool2dGeom {
            planes,
            in_h,
            in_w,
            kernel,
            stride,
            pad,
        };
        let x = specials(&mut rng, g.input_len());
        let want = separable_maxpool(&x, &g);
        for_each_tier(|isa| {
            let mut got = vec![0.0; g.output_len()];
            maxpool2d_forward(&mut got, &x, &g);
            assert_bits(&format!("{isa} maxpool forward {g:?}"), &got, &want);
        });
    }
}

/// A NaN in a window wins, as in PyTorch.
#[test]
fn maxpool_nan_wins() {
    let g = Pool2dGeom {
        planes: 1,
        in_h: 4,
        in_w: 4,
        kernel: 3,
        stride: 2,
        pad: 1,
    };
    let mut x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    x[5] = f32::NAN;
    let mut want = vec![0.0; 4];
    r::maxpool2d_forward(&mut want, &x, &g);
    assert!(want[0].is_nan());
    for_each_tier(|isa| {
        let mut got = vec![0.0; 4];
        maxpool2d_forward(&mut got, &x, &g);
        assert_exact(&format!("{isa} nan"), &got, &want);
    });
}

/// Big enough to split across threads: 1 and 2 threads give the same bits.
#[test]
fn one_and_two_threads_agree() {
    let g = Pool2dGeom {
        planes: 64,
        in_h: 56,
        in_w: 56,
        kernel: 3,
        stride: 2,
        pad: 1,
    };
    let ga = Pool2dGeom {
        kernel: 2,
        stride: 2,
        pad: 0,
        ..g
    };
    let mut rng = Rng::new(1);
    let x = rng.floats(g.input_len(), -1.0, 1.0);
    let dy = rng.floats(g.output_len(), -1.0, 1.0);
    let dya = rng.floats(ga.output_len(), -1.0, 1.0);
    let run = || {
        let mut out = vec![0.0; g.output_len()];
        let mut outa = vec![0.0; ga.output_len()];
        let mut gout = vec![0.0; 64];
        let mut d = vec![0.0; g.input_len()];
        maxpool2d_forward(&mut out, &x, &g);
        maxpool2d_backward(&mut d, &dy, &x, &g);
        avgpool2d_forward(&mut outa, &x, &ga);
        avgpool2d_backward(&mut d, &dya, &ga);
        global_avgpool_forward(&mut gout, &x, 32, 2, 56 * 56);
        global_avgpool_backward(&mut d, &gout, 32, 2, 56 * 56);
        (out, outa, gout, d)
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    assert_bits("maxpool", &one.0, &two.0);
    assert_bits("avgpool", &one.1, &two.1);
    assert_bits("global", &one.2, &two.2);
    assert_bits("grads", &one.3, &two.3);
}
