//! The packed-GEMM convolution against the reference kernels, on every tier this CPU has.
//!
//! Two value strategies: small integers in −4..=4 stored as `f32` (every product and sum is an
//! exactly representable integer, so the fast kernels must match bit for bit, `assert_eq`), and
//! uniform floats in [−1, 1) compared with the tolerance documented at [`FLOAT_TOL`].

use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::{conv2d, reference, ChannelAffine, Conv2dGeom, Isa, Workspace};
use proptest::prelude::*;

/// Float tolerance: `|fast − ref| <= FLOAT_TOL·(1 + |ref|)`. The reference sums in f64; the
/// kernels sum up to `K = IC·KH·KW <= 33·25` f32 products of magnitude <= 4 (with `pre`) in
/// slices of 256, so the accumulated rounding stays below ~K·2⁻²⁴·4 ≈ 2e-4 in the worst case
/// and far less in practice.
const FLOAT_TOL: f32 = 2e-4;

/// A tiny deterministic generator, so proptest shrinks geometry while values follow the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn int(&mut self, lo: i32, hi: i32) -> f32 {
        (lo + (self.next() % (hi - lo + 1) as u64) as i32) as f32
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize, ints: bool) -> Vec<f32> {
        (0..len)
            .map(|_| if ints { self.int(-4, 4) } else { self.unit() })
            .collect()
    }
}

/// One convolution problem: geometry, data, and which optional features are on.
#[derive(Debug, Clone)]
struct Problem {
    g: Conv2dGeom,
    ints: bool,
    inp: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// scale, shift, relu
    pre: Option<(Vec<f32>, Vec<f32>, bool)>,
    d_out: Vec<f32>,
    /// Non-zero starting gradients, to test accumulation.
    d_inp0: Vec<f32>,
    d_weight0: Vec<f32>,
    d_bias0: Vec<f32>,
}

impl Problem {
    fn new(g: Conv2dGeom, seed: u64, ints: bool, bias: bool, pre: bool, relu: bool) -> Self {
        let mut r = Rng(seed | 1);
        let pre = pre.then(|| {
            let scale = (0..g.in_channels)
                .map(|_| if ints { r.int(-2, 2) } else { r.unit() * 2.0 })
                .collect();
            let shift = (0..g.in_channels)
                .map(|_| if ints { r.int(-3, 3) } else { r.unit() })
                .collect();
            (scale, shift, relu)
        });
        Problem {
            g,
            ints,
            inp: r.vec(g.input_len(), ints),
            weight: r.vec(g.weight_len(), ints),
            bias: bias.then(|| r.vec(g.out_channels, ints)),
            pre,
            d_out: r.vec(g.output_len(), ints),
            d_inp0: r.vec(g.input_len(), ints),
            d_weight0: r.vec(g.weight_len(), ints),
            d_bias0: r.vec(g.out_channels, ints),
        }
    }

    fn pre(&self) -> Option<ChannelAffine<'_>> {
        self.pre.as_ref().map(|(scale, shift, relu)| ChannelAffine {
            scale,
            shift,
            relu: *relu,
        })
    }

    /// `pre(inp)`, materialised, for the reference.
    fn mapped_input(&self) -> Vec<f32> {
        let per_channel = self.g.batch * self.g.in_h * self.g.in_w;
        match self.pre() {
            None => self.inp.clone(),
            Some(p) => self
                .inp
                .iter()
                .enumerate()
                .map(|(i, &x)| p.apply(i / per_channel, x))
                .collect(),
        }
    }

    fn check(&self, what: &str, isa: Isa, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        if self.ints {
            if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "{what} [{isa}] {:?}: first mismatch at {i}: got {} want {}",
                    self.g, got[i], want[i]
                );
            }
            return;
        }
        let (mut worst, mut worst_i, mut max_abs, mut max_rel) = (0.0f32, 0, 0.0f32, 0.0f32);
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            let abs = (a - b).abs();
            let scaled = abs / (1.0 + b.abs());
            max_abs = max_abs.max(abs);
            max_rel = max_rel.max(abs / b.abs().max(1e-30));
            // NaN counts as worst of all.
            if !worst.is_nan() && (scaled.is_nan() || scaled > worst) {
                worst = scaled;
                worst_i = i;
            }
        }
        assert!(
            worst <= FLOAT_TOL,
            "{what} [{isa}] {:?}: max abs diff {max_abs:e}, max rel diff {max_rel:e}, \
             worst at {worst_i}: got {} want {}",
            self.g,
            got[worst_i],
            want[worst_i]
        );
    }

    fn forward(&self, isa: Isa, ws: &mut Workspace) -> Vec<f32> {
        let mut out = vec![f32::NAN; self.g.output_len()];
        with_max_isa(isa, || {
            conv2d::conv2d_forward(
                &mut out,
                &self.inp,
                &self.weight,
                self.bias.as_deref(),
                self.pre(),
                &self.g,
                ws,
            )
        });
        out
    }

    fn backward_input(&self, isa: Isa, ws: &mut Workspace) -> Vec<f32> {
        let mut d_inp = self.d_inp0.clone();
        with_max_isa(isa, || {
            conv2d::conv2d_backward_input(&mut d_inp, &self.d_out, &self.weight, &self.g, ws)
        });
        d_inp
    }

    fn backward_weight(&self, isa: Isa, ws: &mut Workspace) -> (Vec<f32>, Vec<f32>) {
        let mut d_weight = self.d_weight0.clone();
        let mut d_bias = self.d_bias0.clone();
        with_max_isa(isa, || {
            conv2d::conv2d_backward_weight(
                &mut d_weight,
                self.bias.is_some().then_some(&mut d_bias[..]),
                &self.d_out,
                &self.inp,
                self.pre(),
                &self.g,
                ws,
            )
        });
        (d_weight, d_bias)
    }

    fn check_all(&self, isa: Isa) {
        self.check_all_with(isa, false);
    }

    /// [`Problem::check_all`]; with `poison`, the workspace is filled with NaN before every
    /// call, so a read of any position the call did not write itself (padding, slack past the
    /// padded input) shows up.
    fn check_all_with(&self, isa: Isa, poison: bool) {
        let mut ws = Workspace::new();
        let x = self.mapped_input();
        let fresh = |ws: &mut Workspace| {
            if poison {
                ws.get(conv2d::conv2d_workspace_len(&self.g)).fill(f32::NAN);
            }
        };

        let mut want = vec![0.0; self.g.output_len()];
        reference::conv2d_forward(&mut want, &x, &self.weight, self.bias.as_deref(), &self.g);
        fresh(&mut ws);
        let forward = self.forward(isa, &mut ws);
        self.check("forward", isa, &forward, &want);
        // The forward alone runs in a borrowed workspace of exactly its documented length
        // (which would panic if it asked for more), with the same results.
        let mut memory = vec![f32::NAN; conv2d::conv2d_forward_workspace_len(&self.g)];
        let borrowed = self.forward(isa, &mut Workspace::borrowing(&mut memory));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&borrowed),
            bits(&forward),
            "forward in a borrowed workspace"
        );

        let mut want = self.d_inp0.clone();
        reference::conv2d_backward_input(&mut want, &self.d_out, &self.weight, &self.g);
        fresh(&mut ws);
        self.check(
            "backward_input",
            isa,
            &self.backward_input(isa, &mut ws),
            &want,
        );

        let mut want_w = self.d_weight0.clone();
        let mut want_b = self.d_bias0.clone();
        reference::conv2d_backward_weight(
            &mut want_w,
            self.bias.is_some().then_some(&mut want_b[..]),
            &self.d_out,
            &x,
            &self.g,
        );
        fresh(&mut ws);
        let (got_w, got_b) = self.backward_weight(isa, &mut ws);
        self.check("backward_weight", isa, &got_w, &want_w);
        self.check("backward_bias", isa, &got_b, &want_b);
        assert!(
            ws.bytes() <= conv2d::conv2d_workspace_len(&self.g) * 4,
            "workspace over its bound"
        );
    }
}

/// Channel counts that are not multiples of any vector width or tile.
fn channels() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(1usize),
        Just(3),
        Just(7),
        Just(17),
        Just(33),
        1usize..40
    ]
}

/// Geometries: the three fast paths and the generic path, with awkward sizes.
fn geometry() -> impl Strategy<Value = Conv2dGeom> {
    let pointwise = (1usize..3, channels(), channels(), 1usize..12, 1usize..12)
        .prop_map(|(n, ic, oc, h, w)| fitted(n, ic, oc, h, w, 1, 1, 0));
    let three = (1usize..3, channels(), channels(), 1usize..10, 1usize..10)
        .prop_map(|(n, ic, oc, h, w)| fitted(n, ic, oc, h, w, 3, 1, 1));
    let stem = (1usize..3, 1usize..4, channels(), 1usize..14, 1usize..14)
        .prop_map(|(n, ic, oc, h, w)| fitted(n, ic, oc, h, w, 7, 2, 3));
    let generic = (
        (1usize..3, channels(), channels(), 1usize..9, 1usize..9),
        (
            1usize..6,
            1usize..6,
            1usize..4,
            1usize..4,
            0usize..3,
            0usize..3,
        ),
    )
        .prop_map(|((n, ic, oc, h, w), (kh, kw, sh, sw, ph, pw))| Conv2dGeom {
            batch: n,
            in_channels: ic,
            out_channels: oc,
            in_h: h,
            in_w: w,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            pad_h: ph,
            pad_w: pw,
        })
        .prop_filter("kernel must fit the padded input", |g| g.is_valid());
    prop_oneof![pointwise, three, stem, generic]
}

/// A square convolution whose input grows, if needed, to fit the kernel.
#[allow(clippy::too_many_arguments)]
fn fitted(
    n: usize,
    ic: usize,
    oc: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Conv2dGeom {
    let fit = k.saturating_sub(2 * p);
    Conv2dGeom::square(n, ic, oc, h.max(fit), w.max(fit), k, s, p)
}

fn problem() -> impl Strategy<Value = Problem> {
    (
        geometry(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(g, seed, ints, bias, pre, relu)| Problem::new(g, seed, ints, bias, pre, relu))
}

fn run_tier(isa: Isa, cases: u32) {
    if !isa.is_supported() {
        println!("skipped: no {isa}");
        return;
    }
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(p in problem())| p.check_all(isa));
}

macro_rules! tier_tests {
    ($($name:ident => $isa:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            run_tier($isa, 64);
        }
    )*};
}

tier_tests! {
    matches_reference_portable => Isa::Portable,
    matches_reference_avx2 => Isa::Avx2,
    matches_reference_avx512 => Isa::Avx512,
}

/// Real DenseNet shapes, larger than the proptests reach: more than one column block and more
/// than one `KC` depth slice, on every tier.
#[test]
fn densenet_shapes_match_reference() {
    let shapes = [
        Conv2dGeom::square(1, 300, 40, 9, 9, 1, 1, 0),
        Conv2dGeom::square(2, 70, 20, 11, 13, 3, 1, 1),
        Conv2dGeom::square(1, 3, 16, 30, 30, 7, 2, 3),
        Conv2dGeom::square(3, 40, 9, 12, 12, 1, 1, 0),
    ];
    for (i, g) in shapes.into_iter().enumerate() {
        for ints in [true, false] {
            let p = Problem::new(g, 0x9e37 + i as u64, ints, i % 2 == 0, true, true);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                p.check_all(isa);
            }
        }
    }
}

/// Central differences of `L = Σ out · r` against the analytic gradients, in f64 from f32
/// forwards, on tiny shapes. Without ReLU the loss is linear in the input and in the weights, so
/// central differences are exact up to rounding.
#[test]
fn finite_differences_match_backward() {
    let geoms = [
        Conv2dGeom::square(2, 3, 2, 5, 4, 3, 2, 1),
        Conv2dGeom::square(1, 2, 3, 4, 4, 1, 1, 0),
        Conv2dGeom::square(1, 2, 2, 6, 5, 3, 1, 1),
    ];
    for g in geoms {
        let mut p = Problem::new(g, 77, false, true, true, false);
        p.d_inp0.fill(0.0);
        p.d_weight0.fill(0.0);
        p.d_bias0.fill(0.0);
        let mut ws = Workspace::new();
        let isa = densenet_kernels::active_isa();
        let loss = |p: &Problem, ws: &mut Workspace| -> f64 {
            p.forward(isa, ws)
                .iter()
                .zip(&p.d_out)
                .map(|(&o, &r)| f64::from(o) * f64::from(r))
                .sum()
        };
        let h = 1e-2f32;
        let (d_weight, _) = p.backward_weight(isa, &mut ws);
        for (i, &analytic) in d_weight.iter().enumerate() {
            let mut q = p.clone();
            q.weight[i] += h;
            let up = loss(&q, &mut ws);
            q.weight[i] -= 2.0 * h;
            let down = loss(&q, &mut ws);
            let fd = (up - down) / (2.0 * f64::from(h));
            let err = (fd - f64::from(analytic)).abs();
            assert!(
                err <= 1e-3 * (1.0 + fd.abs()),
                "{g:?} d_weight[{i}]: fd {fd} analytic {analytic}"
            );
        }
        // The input gradient is checked without `pre` (the backward input kernel sees d_col only).
        p.pre = None;
        let d_inp = p.backward_input(isa, &mut ws);
        for (i, &analytic) in d_inp.iter().enumerate() {
            let mut q = p.clone();
            q.inp[i] += h;
            let up = loss(&q, &mut ws);
            q.inp[i] -= 2.0 * h;
            let down = loss(&q, &mut ws);
            let fd = (up - down) / (2.0 * f64::from(h));
            let err = (fd - f64::from(analytic)).abs();
            assert!(
                err <= 1e-3 * (1.0 + fd.abs()),
                "{g:?} d_inp[{i}]: fd {fd} analytic {analytic}"
            );
        }
    }
}

/// The fixed work split makes results independent of the thread count, bit for bit (1, 2 and 3
/// threads).
#[test]
fn one_and_two_threads_agree_bitwise() {
    // (geometry, bias): the 1×1 without bias takes a direct path on one thread and column
    // tasks on two, with different column blocks (several L2 blocks at 256 channels × 28²).
    // Every shape is above `gemm::worth_parallel`'s 2¹⁸ multiply-adds, so two threads split it.
    let shapes = [
        (Conv2dGeom::square(2, 48, 24, 16, 16, 3, 1, 1), true),
        (Conv2dGeom::square(2, 96, 40, 24, 24, 1, 1, 0), true),
        (Conv2dGeom::square(2, 96, 40, 24, 24, 1, 1, 0), false),
        (Conv2dGeom::square(1, 256, 16, 28, 28, 1, 1, 0), false),
        (Conv2dGeom::square(1, 3, 16, 96, 96, 7, 2, 3), true),
    ];
    for (g, _) in &shapes {
        assert!(g.macs() >= 1 << 18, "{g:?} would run on one thread");
    }
    for (g, bias) in shapes {
        let p = Problem::new(g, 5, false, bias, true, true);
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut ws = Workspace::new();
                    (
                        p.forward(isa, &mut ws),
                        p.backward_input(isa, &mut ws),
                        p.backward_weight(isa, &mut ws),
                    )
                })
            };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let one = run(1);
            // Three threads split the wide rows' row tasks unevenly (3 groups of 8 rows: 1 each;
            // 6: 2 each; 2: one task idle).
            for two in [run(2), run(3)] {
                assert_eq!(bits(&one.0), bits(&two.0), "forward [{isa}] {g:?}");
                assert_eq!(bits(&one.1), bits(&two.1), "backward_input [{isa}] {g:?}");
                assert_eq!(
                    bits(&one.2 .0),
                    bits(&two.2 .0),
                    "backward_weight [{isa}] {g:?}"
                );
                assert_eq!(
                    bits(&one.2 .1),
                    bits(&two.2 .1),
                    "backward_bias [{isa}] {g:?}"
                );
            }
        }
    }
}

/// `conv2d_backward_input_to(.., accumulate = false)` overwrites whatever `d_inp` held (NaN
/// here) with the values accumulating into zeros gives, on every path: 1×1, stride-1 wide rows,
/// strided (col2im), and a degenerate one without output channels. (Bits compared with zeros
/// normalised: an overwritten sum of −0 stays −0 where `0 + −0` is +0.)
#[test]
fn backward_input_overwrite_equals_accumulating_into_zeros() {
    let shapes = [
        Conv2dGeom::square(2, 40, 24, 12, 12, 1, 1, 0),
        Conv2dGeom::square(2, 12, 8, 9, 9, 3, 1, 1),
        Conv2dGeom::square(1, 5, 7, 13, 13, 3, 2, 1),
        Conv2dGeom::square(1, 3, 0, 6, 6, 3, 1, 1),
    ];
    for g in shapes {
        let mut rng = Rng(17);
        let d_out = rng.vec(g.output_len(), false);
        let weight = rng.vec(g.weight_len(), false);
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let mut ws = Workspace::new();
            let mut want = vec![0.0f32; g.input_len()];
            let mut got = vec![f32::NAN; g.input_len()];
            with_max_isa(isa, || {
                conv2d::conv2d_backward_input(&mut want, &d_out, &weight, &g, &mut ws);
                conv2d::conv2d_backward_input_to(&mut got, &d_out, &weight, &g, &mut ws, false);
            });
            let bits = |v: &[f32]| v.iter().map(|x| (x + 0.0).to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "[{isa}] {g:?}");
        }
    }
}

/// Weight gradients over many positions (`N·OH·OW >= 4096`) take the dot-product path
/// (`gemm::gemm_abt`), which the small proptest shapes never reach: 1×1, stride-1 3×3 (wide
/// rows across the whole batch) and strided, with and without `pre`, exact on integers and
/// within tolerance on floats. Also one and two threads bit for bit.
#[test]
fn long_weight_gradients_match_reference() {
    let shapes = [
        Conv2dGeom::square(4, 40, 13, 32, 32, 1, 1, 0),
        Conv2dGeom::square(5, 12, 8, 30, 30, 3, 1, 1),
        Conv2dGeom::square(2, 8, 12, 92, 92, 3, 2, 1),
    ];
    for g in shapes {
        assert!(
            g.batch * g.out_h() * g.out_w() >= 4096,
            "{g:?} is too short"
        );
        // Above `gemm::worth_parallel`'s 2¹⁸ multiply-adds, so two threads really split it.
        assert!(g.macs() >= 1 << 18, "{g:?} would run on one thread");
        for (ints, pre) in [(true, false), (true, true), (false, true)] {
            let p = Problem::new(g, 31, ints, true, pre, true);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                p.check_all(isa);
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| p.backward_weight(isa, &mut Workspace::new()).0)
                };
                let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(run(1)), bits(run(2)), "[{isa}] {g:?}");
            }
        }
    }
}

/// Output channel counts that take AVX-512's 12-row tile (`gemm::tile_for_rows`: 12, 36, 60)
/// on the paths that read `A` in place: the stride-1 wide forward (3×3 and 5×5), the 1×1 and
/// strided column tasks; exact on integers against the reference, every tier, and 1, 2 and 3
/// threads bit for bit.
#[test]
fn narrow_output_tiles_match_reference() {
    let shapes = [
        (Conv2dGeom::square(2, 48, 12, 32, 32, 3, 1, 1), false),
        (Conv2dGeom::square(1, 20, 36, 17, 13, 3, 1, 1), true),
        (Conv2dGeom::square(1, 7, 60, 9, 9, 5, 1, 2), true),
        (Conv2dGeom::square(2, 33, 12, 24, 24, 1, 1, 0), true),
        // No bias: one thread takes the direct 1×1 path (8-row tiles), two the column tasks
        // (12-row tiles); the bits must not change.
        (Conv2dGeom::square(2, 40, 36, 24, 24, 1, 1, 0), false),
        (Conv2dGeom::square(1, 5, 36, 31, 31, 3, 2, 1), false),
    ];
    for (g, bias) in shapes {
        let p = Problem::new(g, 41, true, bias, true, true);
        check_on_pools(&p, |p, isa, ws| p.forward(isa, ws));
    }
}

/// Column tasks store their own results into the spans of the output rows their part owns, up
/// to `MAX_OWNED_ROWS` (128) output channels, and through a shared scratch and a store pass above
/// it: both sides of that bound (1×1 with 128, 129, 136 and 200 output channels, with and
/// without bias), parts that run several tasks one after the other in one scratch (1×1 with
/// many column blocks), more than one wave of tasks above the bound (forward with 136 output
/// channels, and a 3×3 input gradient with 136 input channels), and wide-row tasks whose spans
/// start mid-row and cross images (3×3 forward, 12 output rows, 20×20 maps: 22-column wide
/// rows in 224-column tasks); exact on integers against the reference on every tier, and bit
/// for bit on 1, 2 and 3 threads.
#[test]
fn column_tasks_store_their_own_spans() {
    let shapes = [
        (Conv2dGeom::square(2, 40, 128, 24, 24, 1, 1, 0), false),
        (Conv2dGeom::square(2, 40, 129, 24, 24, 1, 1, 0), true),
        (Conv2dGeom::square(2, 40, 200, 24, 24, 1, 1, 0), false),
        (Conv2dGeom::square(3, 16, 12, 20, 20, 3, 1, 1), false),
        (Conv2dGeom::square(3, 16, 12, 20, 20, 3, 1, 1), true),
        (Conv2dGeom::square(3, 256, 128, 32, 32, 1, 1, 0), false),
        (
            Conv2dGeom {
                in_w: 37,
                ..Conv2dGeom::square(1, 300, 40, 61, 61, 1, 1, 0)
            },
            true,
        ),
        (Conv2dGeom::square(2, 512, 136, 24, 24, 1, 1, 0), false),
    ];
    // The input gradient of this one is a stride-1 convolution with 136 output rows: column
    // tasks in several waves on one thread.
    let long_backward = Conv2dGeom::square(1, 136, 8, 100, 100, 3, 1, 1);
    for (g, bias) in shapes {
        assert!(g.macs() >= 1 << 18, "{g:?} would run on one thread");
        let p = Problem::new(g, 43, true, bias, true, true);
        check_on_pools(&p, |p, isa, ws| p.forward(isa, ws));
    }
    let p = Problem::new(long_backward, 47, true, false, false, false);
    check_on_pools(&p, |p, isa, ws| p.backward_input(isa, ws));
}

/// `run` against the reference (by [`Problem::check_all`]) on every tier, and the same bits on
/// pools of 1, 2 and 3 threads.
fn check_on_pools(p: &Problem, run: impl Fn(&Problem, Isa, &mut Workspace) -> Vec<f32> + Sync) {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        p.check_all(isa);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let v = pool.install(|| run(p, isa, &mut Workspace::new()));
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let one = on(1);
        assert_eq!(one, on(2), "[{isa}] {:?} on 2 threads", p.g);
        assert_eq!(one, on(3), "[{isa}] {:?} on 3 threads", p.g);
    }
}
/// A stride-1 geometry with its own kernel and padding per axis.
#[allow(clippy::too_many_arguments)]
fn stride1(
    n: usize,
    ic: usize,
    oc: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
) -> Conv2dGeom {
    Conv2dGeom {
        batch: n,
        in_channels: ic,
        out_channels: oc,
        in_h: h,
        in_w: w,
        kernel_h: kh,
        kernel_w: kw,
        stride_h: 1,
        stride_w: 1,
        pad_h: ph,
        pad_w: pw,
    }
}

/// The wide rows' shared padding columns (`K = 2p + 1`, stride 1: rows `W + p` wide, a tap past
/// a row's end reading the next row's leading zeros, the last plane's last tap reading `p`
/// zeros of slack) on every kind of such geometry, against the reference with a workspace full
/// of NaN: 5×5/p2 and 7×7/p3, one-axis kernels (3×1, 1×3, 1×5), unequal axes (5×3, 3×5),
/// maps of 1 or 2 rows or columns at batch 3, kernels whose padding is not `(K−1)/2` (3×3/p2,
/// 5×5/p1: the old `W + 2p` rows), a last panel whose `NR`-wide read ends exactly at the end of
/// the slack (33 wide columns), and weight gradients long enough for the dot products.
#[test]
fn shared_padding_columns_on_every_geometry() {
    let shapes = [
        stride1(3, 5, 7, 6, 7, 5, 5, 2, 2),
        stride1(2, 3, 4, 9, 8, 7, 7, 3, 3),
        stride1(2, 3, 4, 5, 6, 3, 1, 1, 0),
        stride1(2, 3, 4, 5, 6, 1, 3, 0, 1),
        stride1(2, 3, 4, 5, 6, 1, 5, 0, 2),
        stride1(2, 3, 4, 6, 6, 5, 3, 2, 1),
        stride1(2, 3, 4, 6, 6, 3, 5, 1, 2),
        stride1(3, 2, 3, 1, 1, 3, 3, 1, 1),
        stride1(3, 2, 3, 1, 2, 3, 3, 1, 1),
        stride1(3, 2, 3, 2, 1, 3, 3, 1, 1),
        stride1(3, 2, 3, 1, 1, 5, 5, 2, 2),
        stride1(3, 2, 3, 2, 1, 5, 5, 2, 2),
        stride1(2, 2, 3, 4, 4, 3, 3, 2, 2),
        // (H−1)·(W+p) + W = 33 wide columns, 1 past a panel: the last read ends at the slack's end.
        stride1(2, 3, 4, 2, 15, 7, 7, 3, 3),
        stride1(1, 3, 4, 1, 33, 5, 5, 2, 2),
        stride1(2, 2, 3, 4, 4, 5, 5, 1, 1),
        // N·OH·OW ≥ 4096: weight gradients by dot products.
        stride1(4, 6, 5, 33, 33, 5, 5, 2, 2),
        stride1(2, 4, 3, 50, 45, 7, 7, 3, 3),
        stride1(4, 6, 5, 33, 33, 3, 3, 1, 1),
        stride1(4, 6, 5, 33, 33, 1, 3, 0, 1),
    ];
    for (i, g) in shapes.into_iter().enumerate() {
        for (ints, pre) in [(true, true), (true, false), (false, true)] {
            let p = Problem::new(g, 0x51 + i as u64, ints, true, pre, true);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                p.check_all_with(isa, true);
            }
        }
    }
}
