//! The 1×1 convolution's weight and input gradients through batch norm + ReLU with deferred mean
//! terms (`conv2d::pointwise_bn_relu_backward`, `batchnorm::batchnorm_deferred_terms`,
//! `batchnorm::batchnorm_add_deferred`):
//! - against its reference on every tier, awkward shapes, overwrite and accumulate;
//! - the three together against the plain backward (reference weight gradient over a
//!   materialised `relu(bn(x))`, 1×1 input gradient, then batch norm + ReLU backward), for one
//!   layer and for several layers sharing the deferred terms;
//! - by finite differences of a loss through conv1x1(relu(bn(x))), to `x` and to the weight;
//! - the same bits on 1 and 2 threads, across column blocks and a partial last block;
//! - the transition's pooled variant (`batchnorm::batchnorm_relu_avgpool2_backward`) against its
//!   reference (proptest, odd sizes, both store modes) and, completed, against the plain path.
//!
//! Tolerances: the kernel sums `d_a` over `OC ≤ 20` products in `f32`, the reference in `f64`
//! (`atol 1e-5`, `rtol 1e-5` on `d_inp`); the sums run over up to ~500 values of `|g| < 5`
//! (`atol 1e-4`, `rtol 1e-5`). The composite against the two-kernel path: `atol 2e-4`, `rtol
//! 1e-4`, as the batch-norm backward tests.
mod common;

use common::*;
use densenet_kernels::batchnorm::{
    batchnorm_add_deferred, batchnorm_deferred_terms, batchnorm_relu_avgpool2_backward,
    batchnorm_relu_forward_train, batchnorm_statistics, BnReluSaved,
};
use densenet_kernels::conv2d::{conv2d_forward, pointwise_bn_relu_backward};
use densenet_kernels::elementwise::affine_run;
use densenet_kernels::reference as r;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, Conv2dGeom, Pool2dGeom, Workspace};
use proptest::prelude::{any, proptest, ProptestConfig};

/// A 1×1 convolution reading `relu(bn(x))`: the input, batch statistics, one layer's
/// parameters and upstream gradient, and a non-zero initial input gradient.
#[derive(Clone, Debug)]
struct Problem {
    g: Conv2dGeom,
    x: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    d_inp0: Vec<f32>,
    layers: Vec<Layer>,
}

/// What differs between layers reading the same channels.
#[derive(Clone, Debug)]
struct Layer {
    weight: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    d_out: Vec<f32>,
}

impl Problem {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c: usize,
        oc: usize,
        batch: usize,
        h: usize,
        w: usize,
        layers: usize,
        seed: u64,
    ) -> Self {
        let g = Conv2dGeom::square(batch, c, oc, h, w, 1, 1, 0);
        let mut rng = Rng::new(seed);
        let x = rng.floats(g.input_len(), -1.0, 1.0);
        let m = batch * h * w;
        let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
        let bg = BatchNormGeom {
            channels: c,
            per_channel: m,
        };
        batchnorm_statistics(&mut mean, &mut invstd, &x, 1e-5, &bg);
        let layers = (0..layers)
            .map(|_| Layer {
                weight: rng.floats(g.weight_len(), -0.5, 0.5),
                gamma: rng.floats(c, -1.5, 1.5),
                beta: rng.floats(c, -0.5, 0.5),
                d_out: rng.floats(g.output_len(), -1.0, 1.0),
            })
            .collect();
        let d_inp0 = rng.floats(g.input_len(), -1.0, 1.0);
        Problem {
            g,
            x,
            mean,
            invstd,
            d_inp0,
            layers,
        }
    }

    fn m(&self) -> usize {
        self.g.batch * self.g.in_h * self.g.in_w
    }

    fn bn<'a>(&'a self, l: &'a Layer) -> BnReluSaved<'a> {
        BnReluSaved {
            gamma: &l.gamma,
            beta: &l.beta,
            mean: &self.mean,
            invstd: &self.invstd,
        }
    }

    fn bn_geom(&self) -> BatchNormGeom {
        BatchNormGeom {
            channels: self.g.in_channels,
            per_channel: self.m(),
        }
    }
}

/// What the kernel returns for one layer: `(d_inp, d_weight, sum_dy, sum_dy_xmu)`.
type Grads = (Vec<f32>, Vec<f32>, Vec<f64>, Vec<f64>);

/// Initial weight gradient: non-zero, to check it accumulates.
fn d_weight0(p: &Problem) -> Vec<f32> {
    (0..p.g.weight_len())
        .map(|i| (i % 5) as f32 * 0.25 - 0.5)
        .collect()
}

/// The fast kernel for one layer.
fn fast(p: &Problem, l: &Layer, accumulate: bool) -> Grads {
    let mut d = p.d_inp0.clone();
    let (dw, s1, s2) = fast_into(p, l, &mut d, &mut Workspace::new(), accumulate);
    (d, dw, s1, s2)
}

/// The fast kernel for one layer into (or onto) `d`, with the workspace `ws`:
/// `(d_weight, sum_dy, sum_dy_xmu)`, the weight gradient added to [`d_weight0`].
fn fast_into(
    p: &Problem,
    l: &Layer,
    d: &mut [f32],
    ws: &mut Workspace,
    accumulate: bool,
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let c = p.g.in_channels;
    let (mut s1, mut s2) = (vec![0.0; c], vec![0.0; c]);
    let mut dw = d_weight0(p);
    pointwise_bn_relu_backward(
        d,
        &mut dw,
        &mut s1,
        &mut s2,
        &l.d_out,
        &l.weight,
        &p.x,
        p.bn(l),
        &p.g,
        ws,
        accumulate,
    );
    (dw, s1, s2)
}

fn reference(p: &Problem, l: &Layer, accumulate: bool) -> Grads {
    let c = p.g.in_channels;
    let (mut d, mut s1, mut s2) = (p.d_inp0.clone(), vec![0.0; c], vec![0.0; c]);
    let mut dw = d_weight0(p);
    r::pointwise_bn_relu_backward(
        &mut d,
        &mut dw,
        &mut s1,
        &mut s2,
        &l.d_out,
        &l.weight,
        &p.x,
        [&l.gamma, &l.beta, &p.mean, &p.invstd],
        accumulate,
    );
    (d, dw, s1, s2)
}

fn close64(label: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= atol + rtol * b.abs(),
            "{label}[{i}]: {a} vs {b}"
        );
    }
}

fn check_against_reference(p: &Problem) {
    let l = &p.layers[0];
    for accumulate in [false, true] {
        let want = reference(p, l, accumulate);
        for_each_tier(|isa| {
            let got = fast(p, l, accumulate);
            let label = |what: &str| format!("{isa} accumulate={accumulate} {what} {:?}", p.g);
            assert_close(&label("d_inp"), &got.0, &want.0, 1e-5, 1e-5);
            assert_close(&label("d_weight"), &got.1, &want.1, 1e-4, 1e-5);
            close64(&label("sum_dy"), &got.2, &want.2, 1e-4, 1e-5);
            close64(&label("sum_dy_xmu"), &got.3, &want.3, 1e-4, 1e-5);
        });
    }
}

/// The plain path: `d_a = Wᵀ·d_out` (reference 1×1 input gradient into zeros), its ReLU mask
/// taken from the forward's map in `f32` (`s·x + t`, as the convolutions' packing computes it),
/// then the reference batch-norm backward.
fn two_kernel_backward(p: &Problem, l: &Layer, d_inp: &mut [f32], dg: &mut [f32], db: &mut [f32]) {
    let mut d_a = vec![0.0; p.g.input_len()];
    r::conv2d_backward_input(&mut d_a, &l.d_out, &l.weight, &p.g);
    let m = p.m();
    for (i, d) in d_a.iter_mut().enumerate() {
        let c = i / m;
        let s = l.gamma[c] * p.invstd[c];
        if s * p.x[i] + (l.beta[c] - p.mean[c] * s) <= 0.0 {
            *d = 0.0;
        }
    }
    r::batchnorm_backward(
        d_inp,
        dg,
        db,
        &d_a,
        &p.x,
        &l.gamma,
        &p.mean,
        &p.invstd,
        &p.bn_geom(),
    );
}

/// Every layer of `p` through the fused kernel and one shared pair of deferred terms, then
/// the terms added: `(d_inp, [d_gamma, d_beta, d_weight] per layer)`.
fn fused_layers(p: &Problem) -> (Vec<f32>, Vec<[Vec<f32>; 3]>) {
    let c = p.g.in_channels;
    let mut d = p.d_inp0.clone();
    let (mut slope, mut offset) = (vec![0.0f64; c], vec![0.0f64; c]);
    let mut ws = Workspace::new();
    let mut per_layer = vec![];
    for l in &p.layers {
        let (dw, s1, s2) = fast_into(p, l, &mut d, &mut ws, true);
        let (mut dg, mut db) = (vec![0.25; c], vec![-0.5; c]);
        batchnorm_deferred_terms(
            &mut dg,
            &mut db,
            &mut slope,
            &mut offset,
            &s1,
            &s2,
            p.bn(l),
            p.m(),
        );
        per_layer.push([dg, db, dw]);
    }
    batchnorm_add_deferred(&mut d, &p.x, &p.mean, &mut slope, &mut offset, &p.bn_geom());
    assert!(
        slope.iter().chain(&offset).all(|&v| v == 0.0),
        "terms cleared"
    );
    (d, per_layer)
}

/// The weight gradient the plain path computes: `relu(bn(x))` materialised with the forward's
/// map, then the reference weight gradient.
fn plain_weight_gradient(p: &Problem, l: &Layer) -> Vec<f32> {
    let m = p.m();
    let a: Vec<f32> =
        p.x.iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = i / m;
                let s = l.gamma[c] * p.invstd[c];
                let y = s * x + (l.beta[c] - p.mean[c] * s);
                if y > 0.0 {
                    y
                } else {
                    0.0
                }
            })
            .collect();
    let mut dw = d_weight0(p);
    r::conv2d_backward_weight(&mut dw, None, &l.d_out, &a, &p.g);
    dw
}

fn check_composite(p: &Problem) {
    let c = p.g.in_channels;
    let mut want = p.d_inp0.clone();
    let mut want_layers = vec![];
    for l in &p.layers {
        let (mut dg, mut db) = (vec![0.25; c], vec![-0.5; c]);
        two_kernel_backward(p, l, &mut want, &mut dg, &mut db);
        want_layers.push([dg, db, plain_weight_gradient(p, l)]);
    }
    for_each_tier(|isa| {
        let (d, layers) = fused_layers(p);
        let label = |what: &str| format!("{isa} {what} {:?}", p.g);
        assert_close(&label("d_inp"), &d, &want, 2e-4, 1e-4);
        for (k, (got, want)) in layers.iter().zip(&want_layers).enumerate() {
            for (name, g, w) in [
                ("d_gamma", &got[0], &want[0]),
                ("d_beta", &got[1], &want[1]),
                ("d_weight", &got[2], &want[2]),
            ] {
                assert_close(&label(&format!("{name} {k}")), g, w, 2e-4, 1e-4);
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_reference(
        c in 1usize..=40,
        oc in 1usize..=20,
        batch in 1usize..=3,
        h in 1usize..=9,
        w in 1usize..=9,
        seed in any::<u64>(),
    ) {
        check_against_reference(&Problem::new(c, oc, batch, h, w, 1, seed));
    }

    #[test]
    fn pooled_backward_matches_reference(
        c in 1usize..=6,
        batch in 1usize..=3,
        h in 2usize..=9,
        w in 2usize..=9,
        accumulate in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let p = PoolProblem::new(c, batch, h, w, seed);
        let (want, w1, w2) = p.reference(accumulate);
        for_each_tier(|isa| {
            let got = p.fast(accumulate);
            let label = |what: &str| format!("{isa} {:?} {what}", p.dims);
            assert_close(&label("d_inp"), &got.0, &want, 1e-5, 1e-5);
            close64(&label("sum_dy"), &got.1, &w1, 1e-4, 1e-5);
            close64(&label("sum_dy_xmu"), &got.2, &w2, 1e-4, 1e-5);
        });
    }

    #[test]
    fn completes_the_batchnorm_backward(
        c in 1usize..=24,
        oc in 1usize..=16,
        batch in 1usize..=3,
        hw in 1usize..=7,
        layers in 1usize..=3,
        seed in any::<u64>(),
    ) {
        check_composite(&Problem::new(c, oc, batch, hw, hw + 1, layers, seed));
    }
}

/// Shapes a BC-100 layer has, cut down: channels past one task's rows, columns past one block
/// with a partial last block, and a 12-channel slot.
#[test]
fn dense_layer_shapes() {
    for (c, oc, batch, hw) in [(60, 48, 2, 17), (12, 48, 3, 16), (37, 5, 1, 33)] {
        let p = Problem::new(c, oc, batch, hw, hw, 2, 7);
        check_against_reference(&p);
        check_composite(&p);
    }
}

/// `L = Σ v·conv1x1(relu(bn(x)))` for the first layer of `p` at input `x`, the batch statistics
/// computed from `x` (so their own gradient is part of the difference quotient).
fn loss_of(p: &Problem, x: &[f32]) -> f64 {
    let l = &p.layers[0];
    let c = p.g.in_channels;
    let (mut a, mut mean, mut invstd) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
    let cfg = BatchNormConfig::default();
    let bg = p.bn_geom();
    batchnorm_relu_forward_train(
        &mut a,
        &mut mean,
        &mut invstd,
        &mut rm,
        &mut rv,
        x,
        &l.gamma,
        &l.beta,
        &cfg,
        &bg,
    );
    let mut z = vec![0.0; p.g.output_len()];
    let mut ws = Workspace::new();
    conv2d_forward(&mut z, &a, &l.weight, None, None, &p.g, &mut ws);
    weighted_sum(&l.d_out, &z)
}

/// The composite's gradients by central differences: `d_x` (through the batch statistics) and
/// `d_weight` (at fixed `x`).
#[test]
fn finite_differences() {
    let mut p = Problem::new(5, 3, 2, 3, 3, 1, 3);
    p.d_inp0.fill(0.0);
    let (d, layers) = fused_layers(&p);
    check_grad("d_x", &p.x, &d, |x| loss_of(&p, x), 1e-3, (2e-3, 2e-3));
    let dw: Vec<f32> = layers[0][2]
        .iter()
        .zip(d_weight0(&p))
        .map(|(g, g0)| g - g0)
        .collect();
    let loss_w = |w: &[f32]| {
        let mut q = p.clone();
        q.layers[0].weight = w.to_vec();
        loss_of(&q, &p.x)
    };
    check_grad(
        "d_weight",
        &p.layers[0].weight,
        &dw,
        loss_w,
        1e-3,
        (2e-3, 2e-3),
    );
}

/// Large enough to split across threads: the same bits on 1 and 2 threads.
#[test]
fn one_and_two_threads_agree() {
    let p = Problem::new(70, 48, 2, 50, 51, 2, 5);
    let one = with_threads(1, || fused_layers(&p));
    let two = with_threads(2, || fused_layers(&p));
    assert_bits("d_inp", &one.0, &two.0);
    for k in 0..2 {
        for (name, i) in [("d_gamma", 0), ("d_beta", 1), ("d_weight", 2)] {
            assert_bits(name, &one.1[k][i], &two.1[k][i]);
        }
    }
}

/// Every channel count up to 700 (BC-250's widest prefix is 504) on 1 and 2 threads: each
/// task's scratch fits its share, whatever rows the last task is left with (a last task with
/// fewer rows once needed a larger dot-product scratch than the others and panicked).
#[test]
fn every_channel_count_fits_its_scratch() {
    for threads in [1, 2] {
        with_threads(threads, || {
            let mut ws = Workspace::new();
            for c in 1..=700 {
                // Wide enough in columns for the pool to split it on two threads.
                let p = Problem::new(c, 48, 1, 8, 16, 1, c as u64);
                let l = &p.layers[0];
                let mut d = p.d_inp0.clone();
                let (dw, _, _) = fast_into(&p, l, &mut d, &mut ws, true);
                if c % 97 == 0 {
                    let want = reference(&p, l, true);
                    assert_close(&format!("d_inp c={c}"), &d, &want.0, 1e-5, 1e-5);
                    assert_close(&format!("d_weight c={c}"), &dw, &want.1, 1e-4, 1e-5);
                }
            }
        });
    }
}

/// The ReLU's mask is the forward's: where the forward map `max(0, s·x + t)` (as the packing
/// computes it) gave 0, no gradient passes, also for inputs within a few ulps of the threshold,
/// where `(x − μ)·s + β` (an equal expression, rounded differently) can land on the other side.
/// Every input here is within 8 ulps of `x = μ − β/s`.
#[test]
fn mask_is_where_the_forward_was_zero() {
    let (gamma, beta, mean, invstd) = (
        [1.132046f32],
        [0.023067176f32],
        [-0.05573535f32],
        [2.4072359f32],
    );
    let s = gamma[0] * invstd[0];
    let t = beta[0] - mean[0] * s;
    let threshold = mean[0] - beta[0] / s;
    let x: Vec<f32> = (-8i32..8)
        .map(|k| f32::from_bits((threshold.to_bits() as i32 + k) as u32))
        .chain([-0.06420005])
        .collect();
    let m = x.len();
    let g = Conv2dGeom::square(1, 1, 1, 1, m, 1, 1, 0);
    let mut a = vec![0.0; m];
    affine_run(&mut a, &x, s, t, true);
    let bn = BnReluSaved {
        gamma: &gamma,
        beta: &beta,
        mean: &mean,
        invstd: &invstd,
    };
    let (mut d, mut dw, mut s1, mut s2) = (vec![0.0; m], vec![0.0], vec![0.0], vec![0.0]);
    for_each_tier(|isa| {
        pointwise_bn_relu_backward(
            &mut d,
            &mut dw,
            &mut s1,
            &mut s2,
            &vec![1.0; m],
            &[1.0],
            &x,
            bn,
            &g,
            &mut Workspace::new(),
            false,
        );
        for i in 0..m {
            assert_eq!(
                a[i] == 0.0,
                d[i] == 0.0,
                "{isa}: x = {}: forward {}, d_x {}",
                x[i],
                a[i],
                d[i]
            );
        }
    });
}

/// Against the reference with several column blocks (4096 columns for 48 output channels, 1024
/// for a transition's 258), an uneven last task and more tasks than one, on 1 to 3 threads and
/// both store modes: the shapes the proptests are too small to reach.
#[test]
fn several_column_blocks_against_reference() {
    for (c, oc, batch, h, w) in [
        (130, 48, 5, 27, 33),
        (300, 258, 1, 40, 41),
        (5, 8, 10, 90, 100),
    ] {
        let p = Problem::new(c, oc, batch, h, w, 1, c as u64);
        let l = &p.layers[0];
        for accumulate in [false, true] {
            let want = reference(&p, l, accumulate);
            for threads in [1, 2, 3] {
                let got = with_threads(threads, || fast(&p, l, accumulate));
                let label = |what: &str| {
                    format!("{threads} threads accumulate={accumulate} {what} {:?}", p.g)
                };
                assert_close(&label("d_inp"), &got.0, &want.0, 1e-5, 1e-5);
                assert_close(&label("d_weight"), &got.1, &want.1, 2e-3, 1e-5);
                close64(&label("sum_dy"), &got.2, &want.2, 2e-3, 1e-5);
                close64(&label("sum_dy_xmu"), &got.3, &want.3, 2e-3, 1e-5);
            }
        }
    }
}

/// A transition's batch norm + ReLU + 2×2 average pooling, backward: the input, its batch
/// statistics, the norm's parameters and the pooled gradient.
struct PoolProblem {
    dims: [usize; 3],
    x: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    d_pooled: Vec<f32>,
    d_inp0: Vec<f32>,
}

impl PoolProblem {
    fn new(c: usize, batch: usize, h: usize, w: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let m = batch * h * w;
        let x = rng.floats(c * m, -1.0, 1.0);
        let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
        let bg = BatchNormGeom {
            channels: c,
            per_channel: m,
        };
        batchnorm_statistics(&mut mean, &mut invstd, &x, 1e-5, &bg);
        PoolProblem {
            dims: [batch, h, w],
            gamma: rng.floats(c, -1.5, 1.5),
            beta: rng.floats(c, -0.5, 0.5),
            d_pooled: rng.floats(c * batch * (h / 2) * (w / 2), -1.0, 1.0),
            d_inp0: rng.floats(c * m, -1.0, 1.0),
            x,
            mean,
            invstd,
        }
    }

    fn bn(&self) -> BnReluSaved<'_> {
        BnReluSaved {
            gamma: &self.gamma,
            beta: &self.beta,
            mean: &self.mean,
            invstd: &self.invstd,
        }
    }

    fn reference(&self, accumulate: bool) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let c = self.gamma.len();
        let (mut d, mut s1, mut s2) = (self.d_inp0.clone(), vec![0.0; c], vec![0.0; c]);
        r::batchnorm_relu_avgpool2_backward(
            &mut d,
            &mut s1,
            &mut s2,
            &self.d_pooled,
            &self.x,
            [&self.gamma, &self.beta, &self.mean, &self.invstd],
            self.dims,
            accumulate,
        );
        (d, s1, s2)
    }

    fn fast(&self, accumulate: bool) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let c = self.gamma.len();
        let (mut d, mut s1, mut s2) = (self.d_inp0.clone(), vec![0.0; c], vec![0.0; c]);
        batchnorm_relu_avgpool2_backward(
            &mut d,
            &mut s1,
            &mut s2,
            &self.d_pooled,
            &self.x,
            self.bn(),
            self.dims,
            accumulate,
        );
        (d, s1, s2)
    }
}

/// The pooled backward against its reference on every tier, odd and even sizes, both store
/// modes, 1 and 2 threads (same bits); then with its deferred terms added, against the plain
/// path: the reference pooling backward into zeros, the forward's mask, the reference batch-norm
/// backward.
#[test]
fn pooled_backward_against_reference_and_plain_path() {
    for (case, &(c, batch, h, w)) in [(3, 2, 4, 6), (5, 1, 7, 5), (1, 3, 2, 3), (40, 2, 33, 31)]
        .iter()
        .enumerate()
    {
        let p = PoolProblem::new(c, batch, h, w, case as u64 + 40);
        let dims = [batch, h, w];
        for accumulate in [false, true] {
            let (want, w1, w2) = p.reference(accumulate);
            for_each_tier(|isa| {
                let got = p.fast(accumulate);
                let label = |what: &str| format!("{isa} {dims:?} accumulate={accumulate} {what}");
                assert_close(&label("d_inp"), &got.0, &want, 1e-5, 1e-5);
                close64(&label("sum_dy"), &got.1, &w1, 1e-4, 1e-5);
                close64(&label("sum_dy_xmu"), &got.2, &w2, 1e-4, 1e-5);
                let two = with_threads(2, || p.fast(accumulate));
                assert_bits(&label("2 threads"), &got.0, &two.0);
            });
        }
        // Completed by the deferred terms, it is the whole batch-norm + ReLU backward.
        let (mut d, s1, s2) = p.fast(true);
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        let (mut slope, mut offset) = (vec![0.0; c], vec![0.0; c]);
        batchnorm_deferred_terms(
            &mut dg,
            &mut db,
            &mut slope,
            &mut offset,
            &s1,
            &s2,
            p.bn(),
            batch * h * w,
        );
        let bg = BatchNormGeom {
            channels: c,
            per_channel: batch * h * w,
        };
        batchnorm_add_deferred(&mut d, &p.x, &p.mean, &mut slope, &mut offset, &bg);
        let mut up = vec![0.0; p.x.len()];
        let pg = Pool2dGeom {
            planes: c * batch,
            in_h: h,
            in_w: w,
            kernel: 2,
            stride: 2,
            pad: 0,
        };
        r::avgpool2d_backward(&mut up, &p.d_pooled, &pg);
        let m = batch * h * w;
        for (i, u) in up.iter_mut().enumerate() {
            let ch = i / m;
            let s = p.gamma[ch] * p.invstd[ch];
            if s * p.x[i] + (p.beta[ch] - p.mean[ch] * s) <= 0.0 {
                *u = 0.0;
            }
        }
        let (mut want, mut wg, mut wb) = (p.d_inp0.clone(), vec![0.0; c], vec![0.0; c]);
        r::batchnorm_backward(
            &mut want, &mut wg, &mut wb, &up, &p.x, &p.gamma, &p.mean, &p.invstd, &bg,
        );
        let label = format!("{dims:?} composite");
        assert_close(&format!("{label} d_inp"), &d, &want, 2e-4, 1e-4);
        assert_close(&format!("{label} d_gamma"), &dg, &wg, 2e-4, 1e-4);
        assert_close(&format!("{label} d_beta"), &db, &wb, 2e-4, 1e-4);
    }
}
