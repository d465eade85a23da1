//! The Winograd convolutions, F(2×2, 3×3) and F(4×4, 3×3), against the reference direct
//! convolution, on every tier this CPU has.
//!
//! Small integers as `f32` (inputs and weights in −8..=8), F(2×2, 3×3): the weight
//! transform only adds and halves, the input transform only adds, so every transformed value,
//! product and sum is exact and the result must equal the reference bit for bit. Uniform
//! floats in [−1, 1): each output within `tol·Σ|w|·|x|` of the reference (the sum of its terms'
//! magnitudes, which bounds the roundings of both orders), where a wrong tap or a misplaced
//! tile is off by about one term, `Σ|w|·|x| / (9·C)`, hundreds of times more; F(4×4, 3×3)'s
//! transforms scale by up to 5 and 1/24, and its bound is larger ([`tol`]).
//!
//! `conv2d_forward_winograd` (a whole batch, batch norm + ReLU applied to its input on the way)
//! and `conv2d_backward_input_winograd` are checked the same way, on one thread and on two,
//! which must agree bit for bit.

mod common;

use common::{with_threads, Rng, Values};
use densenet_kernels::conv2d::{conv2d_backward_input_winograd, conv2d_forward_winograd};
use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::winograd::{Variant, Winograd3x3, V_BLOCK_FLOATS};
use densenet_kernels::{reference, ChannelAffine, Conv2dGeom, Isa, Workspace};
use proptest::prelude::*;

/// The float tolerance, relative to `Σ|w|·|x|`.
fn tol(variant: Variant) -> f32 {
    match variant {
        Variant::F2x2 => 1e-5,
        Variant::F4x4 => 1e-4,
    }
}

/// Rows of the padded input `row` floats apart with zeros to the right of the map up to whole
/// tiles, as both variants need (F(4×4, 3×3) reads them into every output of its last tiles).
fn shared_row(conv: &Winograd3x3) -> usize {
    conv.variant.m() * conv.tiles().1 + 1
}

/// One problem: `x` `[c, rows, cols]`, `w` `[k, c, 3, 3]`.
struct Problem {
    conv: Winograd3x3,
    x: Vec<f32>,
    w: Vec<f32>,
}

impl Problem {
    fn new(conv: Winograd3x3, seed: u64, ints: bool) -> Self {
        let mut r = Rng::new(seed);
        let values = if ints { Values::Ints } else { Values::Floats };
        let x = values.draw(&mut r, conv.c * conv.rows * conv.cols);
        let w = values.draw(&mut r, conv.k * conv.c * 9);
        Problem { conv, x, w }
    }

    fn geom(&self) -> Conv2dGeom {
        let c = self.conv;
        Conv2dGeom::square(1, c.c, c.k, c.rows, c.cols, 3, 1, 1)
    }

    /// The direct convolution, and the same on `|x|` and `|w|` (each output's `Σ|w|·|x|`).
    fn reference(&self) -> (Vec<f32>, Vec<f32>) {
        let g = self.geom();
        let mut out = vec![0.0; g.output_len()];
        reference::conv2d_forward(&mut out, &self.x, &self.w, None, &g);
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mut bound = vec![0.0; g.output_len()];
        reference::conv2d_forward(&mut bound, &abs(&self.x), &abs(&self.w), None, &g);
        (out, bound)
    }

    /// The padded input with rows `row` floats apart ([`shared_row`]: the shared-padding layout
    /// with the map's columns rounded up to whole tiles), planes of whole tile rows and the
    /// padding rows (`(m·⌈rows/m⌉ + 2)·row` floats) apart, and `slack` after the documented
    /// region (the first float after the last plane zero, as the shared layout's last column
    /// needs).
    fn padded(&self, row: usize, slack: f32) -> (Vec<f32>, usize) {
        let c = self.conv;
        let plane = (c.variant.m() * c.tiles().0 + 2) * row;
        let len = (c.c * plane + 1).max(c.input_len(plane, row));
        let mut q = vec![slack; len];
        for ch in 0..c.c {
            let p = &mut q[ch * plane..][..plane];
            p.fill(0.0);
            for y in 0..c.rows {
                let src = &self.x[(ch * c.rows + y) * c.cols..][..c.cols];
                p[(y + 1) * row + 1..][..c.cols].copy_from_slice(src);
            }
        }
        q[c.c * plane] = 0.0;
        (q, plane)
    }

    /// Output channels `row0 .. row0 + k_rows` on `isa`, cropped to `[k_rows, rows, cols]`.
    fn winograd(
        &self,
        isa: Isa,
        row: usize,
        slack: f32,
        (row0, k_rows): (usize, usize),
    ) -> Vec<f32> {
        let c = self.conv;
        let (q, plane) = self.padded(row, slack);
        let mut u = vec![f32::NAN; c.weights_len(k_rows)];
        c.transform_weights(isa, (row0, k_rows), &self.w, &mut u);
        let mut out = vec![f32::NAN; c.out_len(k_rows)];
        let mut scratch = vec![f32::NAN; c.scratch_len(isa, k_rows)];
        c.forward(isa, (&u, k_rows), &q, [plane, row], &mut out, &mut scratch);
        let (ty, ow) = (c.tiles().0, c.out_row());
        let mut cropped = Vec::with_capacity(k_rows * c.rows * c.cols);
        for o in 0..k_rows {
            for y in 0..c.rows {
                cropped.extend_from_slice(&out[(o * c.variant.m() * ty + y) * ow..][..c.cols]);
            }
        }
        cropped
    }
}

fn tiers() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_supported())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Shapes up to 10 × 19 tiles of F(2×2, 3×3) (or 5 × 10 of F(4×4, 3×3)), in one block of tiles,
/// in blocks of one panel (32 tiles on AVX-512) or in blocks of 16 tiles (half a panel on
/// AVX-512: products of half-width tiles), several blocks ending inside tile rows, by either
/// variant.
fn conv_strategy() -> impl Strategy<Value = Winograd3x3> {
    (
        1usize..=40,
        1usize..=40,
        1usize..=19,
        1usize..=37,
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(k, c, rows, cols, blocks, f4)| {
            let variant = if f4 { Variant::F4x4 } else { Variant::F2x2 };
            Winograd3x3 {
                v_block: match blocks {
                    0 => 0,
                    // 32 tiles' worth.
                    1 => variant.positions() * c * 32,
                    _ => V_BLOCK_FLOATS,
                },
                variant,
                ..Winograd3x3::new(k, c, rows, cols)
            }
        })
}

/// The worst output's error relative to its `Σ|w|·|x|`: NaN if any output is NaN (an output
/// left unwritten in a buffer filled with NaNs), which no tolerance accepts.
fn worst_error(got: &[f32], want: &[f32], bound: &[f32]) -> f32 {
    got.iter()
        .zip(want.iter().zip(bound))
        .map(|(&g, (&r, &b))| (g - r).abs() / b.max(f32::MIN_POSITIVE))
        .fold(0.0f32, |worst, e| {
            if worst.is_nan() || e.is_nan() {
                f32::NAN
            } else {
                worst.max(e)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Integers, F(2×2, 3×3): bit for bit the reference, on every tier, in both row layouts.
    #[test]
    fn integers_equal_the_reference(conv in conv_strategy(), seed in any::<u64>(), extra in 0usize..3) {
        let conv = Winograd3x3 { variant: Variant::F2x2, ..conv };
        let p = Problem::new(conv, seed, true);
        let (want, _) = p.reference();
        for isa in tiers() {
            let got = p.winograd(isa, shared_row(&conv) + extra, 0.0, (0, conv.k));
            prop_assert_eq!(bits(&got), bits(&want), "{:?} on {}", conv, isa);
        }
    }

    /// Floats: within `tol·Σ|w|·|x|` of the reference on every tier, with rows one wider
    /// than the tiles too (zero-padded). (The tiers' products round differently: the portable
    /// one multiplies then adds, the others fuse.)
    #[test]
    fn floats_match_the_reference(conv in conv_strategy(), seed in any::<u64>(), extra in 0usize..2) {
        let p = Problem::new(conv, seed, false);
        let (want, bound) = p.reference();
        for isa in tiers() {
            let got = p.winograd(isa, shared_row(&conv) + extra, 0.0, (0, conv.k));
            for (i, (&g, (&r, &b))) in got.iter().zip(want.iter().zip(&bound)).enumerate() {
                prop_assert!(
                    (g - r).abs() <= tol(conv.variant) * b,
                    "{conv:?} on {isa}, output {i}: {g} against {r} (bound {b})"
                );
            }
        }
    }

    /// Groups of output channels (whole row groups of the tile, as callers split them) and
    /// the other block size give the same bits as all channels at once, and NaNs past the
    /// documented input region reach no output of the map (odd sizes read past it for the
    /// dropped row and column).
    #[test]
    fn channel_groups_blocks_and_slack_change_nothing(conv in conv_strategy(), seed in any::<u64>()) {
        let p = Problem::new(conv, seed, false);
        let other_blocks = Problem {
            conv: Winograd3x3 { v_block: V_BLOCK_FLOATS - conv.v_block, ..conv },
            x: p.x.clone(),
            w: p.w.clone(),
        };
        for isa in tiers() {
            let whole = p.winograd(isa, shared_row(&conv), 0.0, (0, conv.k));
            let blocks = other_blocks.winograd(isa, shared_row(&conv), 0.0, (0, conv.k));
            prop_assert_eq!(bits(&blocks), bits(&whole), "{:?} on {}: block size", conv, isa);
            let with_nans = p.winograd(isa, shared_row(&conv), f32::NAN, (0, conv.k));
            prop_assert_eq!(bits(&with_nans), bits(&whole), "{:?} on {}: NaN slack", conv, isa);
            let mr = densenet_kernels::gemm::tile_for_rows(isa, conv.k).mr;
            let mut split = Vec::new();
            for row0 in (0..conv.k).step_by(mr) {
                let rows = mr.min(conv.k - row0);
                split.extend(p.winograd(isa, shared_row(&conv), 0.0, (row0, rows)));
            }
            prop_assert_eq!(bits(&split), bits(&whole), "{:?} on {}: by groups", conv, isa);
        }
    }
}

/// densenet121's shapes (128 → 32 at 56, 28, 14 and 7) by both variants, against the
/// reference; the worst errors are printed.
#[test]
fn densenet121_shapes() {
    for variant in [Variant::F2x2, Variant::F4x4] {
        for size in [56, 28, 14, 7] {
            let conv = Winograd3x3 {
                variant,
                ..Winograd3x3::new(32, 128, size, size)
            };
            let p = Problem::new(conv, size as u64, false);
            let (want, bound) = p.reference();
            for isa in tiers() {
                let got = p.winograd(isa, shared_row(&conv), 0.0, (0, 32));
                let worst = worst_error(&got, &want, &bound);
                println!("{variant:?} {size}x{size} on {isa}: worst error {worst:.2e} of Σ|w||x|");
                assert!(worst <= tol(variant), "{size}x{size} on {isa}: {worst:e}");
            }
        }
    }
}

/// Scratch sizes: a block holds as many whole panels of tiles as its `v_block` fits, and where
/// not even 16 tiles fit, one group of 16 (half a panel on AVX-512), half a panel's scratch
/// (F(4×4, 3×3) on 128 channels in half the default block).
#[test]
fn blocks_hold_what_v_block_fits() {
    let f4 = |v_block| Winograd3x3 {
        variant: Variant::F4x4,
        v_block,
        ..Winograd3x3::new(32, 128, 28, 56)
    };
    // `P` positions of `c` channels per tile, `LANES` floats of padding per position; the
    // products `[k, block]` per position too; 16 floats of alignment.
    let len = |p: usize, c: usize, k: usize, block: usize| {
        (p * (c * block + 16)).next_multiple_of(16)
            + (p * (k * block + 16)).next_multiple_of(16)
            + 16
    };
    // 28 tiles fit in the default block: one panel of 32; 14 in half of it: 16 tiles.
    assert_eq!(
        f4(V_BLOCK_FLOATS).scratch_len(Isa::Avx512, 32),
        len(36, 128, 32, 32)
    );
    assert_eq!(
        f4(V_BLOCK_FLOATS / 2).scratch_len(Isa::Avx512, 32),
        len(36, 128, 32, 16)
    );
    // AVX2's panels are 16 tiles.
    assert_eq!(
        f4(V_BLOCK_FLOATS / 2).scratch_len(Isa::Avx2, 32),
        len(36, 128, 32, 16)
    );
    // F(2×2, 3×3) fits 32 tiles in half the default block.
    let f2 = Winograd3x3 {
        v_block: V_BLOCK_FLOATS / 2,
        ..Winograd3x3::new(32, 128, 28, 56)
    };
    assert_eq!(f2.scratch_len(Isa::Avx512, 32), len(16, 128, 32, 32));
}

/// A batch `x` `[c, n, h, w]` through `conv2d_forward_winograd` with `pre`, against the
/// reference on `pre(x)`.
struct Batch {
    g: Conv2dGeom,
    x: Vec<f32>,
    w: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Batch {
    fn new(g: Conv2dGeom, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        Batch {
            x: r.floats(g.input_len(), -1.0, 1.0),
            w: r.floats(g.weight_len(), -1.0, 1.0),
            scale: r.floats(g.in_channels, 0.5, 1.5),
            shift: r.floats(g.in_channels, -0.5, 0.5),
            g,
        }
    }

    fn pre(&self) -> ChannelAffine<'_> {
        ChannelAffine {
            scale: &self.scale,
            shift: &self.shift,
            relu: true,
        }
    }

    /// The reference on the mapped input, and for each output the largest `Σ|w|·|x|` of its
    /// output channel and image. (An output's own `Σ|w|·|x|` bounds the direct product's
    /// roundings, not Winograd's: a tile's transforms add and subtract terms of its whole
    /// 4×4 or 6×6 input, which cancel exactly only in exact arithmetic. Where the ReLU zeroes
    /// most of an output's 3×3 window, its own sum can be far smaller than those terms; a
    /// misplaced tap or tile is still off by about `1/(9·C)` of the plane's largest.)
    fn reference(&self) -> (Vec<f32>, Vec<f32>) {
        let g = &self.g;
        let per_channel = g.batch * g.in_h * g.in_w;
        let mapped: Vec<f32> = self
            .x
            .iter()
            .enumerate()
            .map(|(i, &v)| self.pre().apply(i / per_channel, v))
            .collect();
        let mut out = vec![0.0; g.output_len()];
        reference::conv2d_forward(&mut out, &mapped, &self.w, None, g);
        let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let mut bound = vec![0.0; g.output_len()];
        reference::conv2d_forward(&mut bound, &abs(&mapped), &abs(&self.w), None, g);
        widen_to_planes(&mut bound, g.out_h() * g.out_w());
        (out, bound)
    }

    /// On tier `isa` in a pool of `threads`, with an output and a workspace full of NaNs.
    fn winograd(&self, isa: Isa, variant: Variant, threads: usize) -> Vec<f32> {
        // The tier cap is the calling thread's: set on the pool's thread.
        with_threads(threads, || {
            with_max_isa(isa, || {
                let mut out = vec![f32::NAN; self.g.output_len()];
                let mut ws = Workspace::new();
                ws.get(1 << 16).fill(f32::NAN);
                conv2d_forward_winograd(
                    &mut out,
                    &self.x,
                    &self.w,
                    Some(self.pre()),
                    &self.g,
                    variant,
                    &mut ws,
                );
                out
            })
        })
    }
}

/// Batches of 1–5 images, 1–24 channels in and out, maps of 1–20 rows and columns, either
/// variant, and a seed.
fn batched_case() -> impl Strategy<Value = (Conv2dGeom, Variant, u64)> {
    (
        1usize..=5,
        1usize..=24,
        1usize..=24,
        1usize..=20,
        1usize..=20,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, c, k, h, w, f4, seed)| {
            let variant = if f4 { Variant::F4x4 } else { Variant::F2x2 };
            (Conv2dGeom::square(n, c, k, h, w, 3, 1, 1), variant, seed)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Batches of odd and even sizes by either variant: within `tol·Σ|w|·|x|` of the reference on
    /// every tier, the same bits on one and two threads.
    #[test]
    fn batched_forward_matches_the_reference((g, variant, seed) in batched_case()) {
        let b = Batch::new(g, seed);
        let (want, bound) = b.reference();
        let run = |isa, threads| b.winograd(isa, variant, threads);
        prop_assert_eq!(check_tiers(&g, variant, &want, &bound, run), Ok(()));
    }

    /// Input gradients of odd and even batches and maps by either variant: within
    /// `tol·Σ|w|·|d_out|` of the reference on every tier, the same bits on one and two threads.
    #[test]
    fn batched_backward_input_matches_the_reference((g, variant, seed) in batched_case()) {
        prop_assert_eq!(backward_input_case(g, variant, seed), Ok(()));
    }
}

/// Each output's bound widened to the largest of its `plane` (see [`Batch::reference`]).
fn widen_to_planes(bound: &mut [f32], plane: usize) {
    for plane in bound.chunks_exact_mut(plane) {
        let largest = plane.iter().fold(0.0f32, |a, &b| a.max(b));
        plane.fill(largest);
    }
}

/// `run(isa, threads)` on every tier this CPU has: one and two threads give the same bits,
/// within `tol(variant)·bound` of `want`. Returns the first failure, named.
fn check_tiers(
    g: &Conv2dGeom,
    variant: Variant,
    want: &[f32],
    bound: &[f32],
    run: impl Fn(Isa, usize) -> Vec<f32>,
) -> Result<(), String> {
    for isa in tiers() {
        let one = run(isa, 1);
        if bits(&one) != bits(&run(isa, 2)) {
            return Err(format!(
                "{g:?} {variant:?} on {isa}: one and two threads differ"
            ));
        }
        let worst = worst_error(&one, want, bound);
        println!("{g:?} {variant:?} on {isa}: worst error {worst:.2e} of Σ|w||x|");
        if worst.is_nan() || worst > tol(variant) {
            return Err(format!("{g:?} {variant:?} on {isa}: worst error {worst:e}"));
        }
    }
    Ok(())
}

/// Shapes large enough to be split between two threads (five images: parts of two and three),
/// BC-100's and densenet121's first-block shapes, by the variant each would run.
#[test]
fn batched_forward_on_two_threads() {
    for (g, variant) in [
        (
            Conv2dGeom::square(5, 16, 12, 18, 22, 3, 1, 1),
            Variant::F2x2,
        ),
        (
            Conv2dGeom::square(3, 48, 12, 32, 32, 3, 1, 1),
            Variant::F2x2,
        ),
        (
            Conv2dGeom::square(2, 128, 32, 56, 56, 3, 1, 1),
            Variant::F4x4,
        ),
    ] {
        let b = Batch::new(g, 7);
        let (want, bound) = b.reference();
        let run = |isa, threads| b.winograd(isa, variant, threads);
        check_tiers(&g, variant, &want, &bound, run).unwrap();
    }
}

/// A convolution that is not 3×3 with stride 1 and padding 1 is refused by name.
#[test]
#[should_panic(expected = "must be 3x3 with stride 1 and padding 1")]
fn batched_forward_refuses_other_geometries() {
    let g = Conv2dGeom::square(1, 2, 2, 8, 8, 3, 2, 1);
    Batch::new(g, 1).winograd(Isa::Portable, Variant::F2x2, 1);
}

/// The input gradient of `g` by Winograd, against the reference: `d_out` `[OC, N, H, W]`, and
/// each input's bound the largest `Σ|w|·|d_out|` of its channel and image (see
/// [`Batch::reference`]).
fn backward_input_case(g: Conv2dGeom, variant: Variant, seed: u64) -> Result<(), String> {
    let mut r = Rng::new(seed);
    let d_out = r.floats(g.output_len(), -1.0, 1.0);
    let w = r.floats(g.weight_len(), -1.0, 1.0);
    let mut want = vec![0.0; g.input_len()];
    reference::conv2d_backward_input(&mut want, &d_out, &w, &g);
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
    let mut bound = vec![0.0; g.input_len()];
    reference::conv2d_backward_input(&mut bound, &abs(&d_out), &abs(&w), &g);
    widen_to_planes(&mut bound, g.in_h * g.in_w);
    let run = |isa, threads| {
        with_threads(threads, || {
            with_max_isa(isa, || {
                let mut d_in = vec![f32::NAN; g.input_len()];
                let mut ws = Workspace::new();
                ws.get(1 << 16).fill(f32::NAN);
                conv2d_backward_input_winograd(&mut d_in, &d_out, &w, &g, variant, &mut ws);
                d_in
            })
        })
    };
    check_tiers(&g, variant, &want, &bound, run)
}

/// densenet121's first two blocks' input gradients (32 → 128), by the variant each would run,
/// split between two threads.
#[test]
fn batched_backward_input_on_two_threads() {
    for (g, variant) in [
        (
            Conv2dGeom::square(2, 128, 32, 56, 56, 3, 1, 1),
            Variant::F4x4,
        ),
        (
            Conv2dGeom::square(3, 128, 32, 28, 28, 3, 1, 1),
            Variant::F2x2,
        ),
    ] {
        backward_input_case(g, variant, 11).unwrap();
    }
}

/// Tiles past a map that is not whole tiles read zeros, not the next plane or image, for
/// either variant and any size: with huge values in the second image and in an input channel
/// whose weights are zero (NaNs would not do: the ReLU maps them to zero), the first image's
/// outputs are the bits it has alone with that channel zero. (Huge values read as padding would
/// reach the outputs through the transforms' cancellations.)
#[test]
fn tiles_read_zeros_past_the_map() {
    const HUGE: f32 = 1e30;
    for variant in [Variant::F2x2, Variant::F4x4] {
        for (h, w) in [(14, 14), (13, 18), (8, 6), (5, 7)] {
            let two = Conv2dGeom::square(2, 2, 8, h, w, 3, 1, 1);
            let mut b = Batch::new(two, 3);
            // Input channel 1 does not reach the outputs.
            for taps in b.w.chunks_exact_mut(18) {
                taps[9..].fill(0.0);
            }
            let plane = h * w;
            let alone = Batch {
                g: Conv2dGeom { batch: 1, ..two },
                x: [&b.x[..plane], &vec![0.0; plane][..]].concat(),
                w: b.w.clone(),
                scale: b.scale.clone(),
                shift: b.shift.clone(),
            };
            b.x[plane..].fill(HUGE);
            for isa in tiers() {
                let got = b.winograd(isa, variant, 1);
                let want = alone.winograd(isa, variant, 1);
                let first: Vec<f32> = (0..8)
                    .flat_map(|o| got[o * 2 * plane..][..plane].to_vec())
                    .collect();
                assert_eq!(bits(&first), bits(&want), "{variant:?} {h}x{w} on {isa}");
            }
        }
    }
}

/// One image through `conv2d_forward_winograd` (no `pre`) is the single-map kernel on the padded
/// layout of whole tiles ([`shared_row`], [`Problem::padded`]), bit for bit, for either variant
/// and sizes that are not whole tiles: the batched path's planes are that layout.
#[test]
fn one_image_is_the_single_map_kernel() {
    for variant in [Variant::F2x2, Variant::F4x4] {
        for (rows, cols) in [(13, 18), (5, 7), (9, 10), (8, 8)] {
            let conv = Winograd3x3 {
                variant,
                ..Winograd3x3::new(12, 20, rows, cols)
            };
            let p = Problem::new(conv, (rows * cols) as u64, false);
            let g = p.geom();
            for isa in tiers() {
                let want = p.winograd(isa, shared_row(&conv), 0.0, (0, conv.k));
                let got = with_max_isa(isa, || {
                    let mut out = vec![f32::NAN; g.output_len()];
                    let mut ws = Workspace::new();
                    conv2d_forward_winograd(&mut out, &p.x, &p.w, None, &g, variant, &mut ws);
                    out
                });
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{variant:?} {rows}x{cols} on {isa}"
                );
            }
        }
    }
}
