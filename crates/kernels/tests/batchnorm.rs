//! Batch norm kernels against the reference, on every tier, both value strategies, awkward
//! shapes (`per_channel` 1..=37, channel counts that are not multiples of 8 or 16), a large mean,
//! accumulation into non-zero gradients, and 1 vs 2 threads.
//!
//! Tolerances (uniform floats in [-1, 1), or 1000 + that): the kernels sum in `f32` blocks with
//! `f64` totals and normalise in `f32`, the reference works in `f64` throughout.
//! - `mean`: one `f32` ulp of the mean (`rtol 1e-6`, `atol 1e-6`).
//! - `invstd`, running stats: `rtol 1e-5`.
//! - `out`: `(x − μ)·s + β` in `f32`, a few ulps of `|s·(x − μ)|` plus one ulp of μ times `s`:
//!   `atol 1e-5` (`4e-4` when the mean is 1000, whose ulp is 6e-5).
//! - backward: `atol 1e-4`, `rtol 1e-4` (sums of up to 2000 products).
mod common;

use common::*;
use densenet_kernels::batchnorm::*;
use densenet_kernels::reference as r;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, ChannelAffine};
use proptest::prelude::{any, proptest, ProptestConfig};

/// One batch-norm problem: a geometry, an input, parameters, running stats, an upstream
/// gradient and non-zero initial gradients.
#[derive(Clone, Debug)]
struct Problem {
    g: BatchNormGeom,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rmean: Vec<f32>,
    rvar: Vec<f32>,
    dy: Vec<f32>,
    dx0: Vec<f32>,
    dgamma0: Vec<f32>,
    dbeta0: Vec<f32>,
}

impl Problem {
    fn new(channels: usize, per_channel: usize, values: Values, offset: f32, seed: u64) -> Self {
        let g = BatchNormGeom {
            channels,
            per_channel,
        };
        let mut rng = Rng::new(seed);
        let x = values
            .draw(&mut rng, g.len())
            .into_iter()
            .map(|v| v + offset)
            .collect();
        Problem {
            g,
            x,
            gamma: rng.floats(channels, 0.5, 1.5),
            beta: rng.floats(channels, -0.5, 0.5),
            rmean: rng.floats(channels, -1.0, 1.0),
            rvar: rng.floats(channels, 0.5, 2.0),
            dy: values.draw(&mut rng, g.len()),
            dx0: values.draw(&mut rng, g.len()),
            dgamma0: values.draw(&mut rng, channels),
            dbeta0: values.draw(&mut rng, channels),
        }
    }
}

/// Everything a training forward produces.
struct Forward {
    out: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    rmean: Vec<f32>,
    rvar: Vec<f32>,
}

type TrainFn = fn(
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &[f32],
    &[f32],
    &[f32],
    &BatchNormConfig,
    &BatchNormGeom,
);

fn run_train(f: TrainFn, p: &Problem) -> Forward {
    let c = p.g.channels;
    let mut fw = Forward {
        out: vec![f32::NAN; p.g.len()],
        mean: vec![0.0; c],
        invstd: vec![0.0; c],
        rmean: p.rmean.clone(),
        rvar: p.rvar.clone(),
    };
    f(
        &mut fw.out,
        &mut fw.mean,
        &mut fw.invstd,
        &mut fw.rmean,
        &mut fw.rvar,
        &p.x,
        &p.gamma,
        &p.beta,
        &BatchNormConfig::default(),
        &p.g,
    );
    fw
}

type BackwardFn = fn(
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &[f32],
    &BatchNormGeom,
);

fn plain_backward(
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    _beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
) {
    batchnorm_backward(dx, dg, db, dy, x, gamma, mean, invstd, g);
}

fn ref_plain_backward(
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    _beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    g: &BatchNormGeom,
) {
    r::batchnorm_backward(dx, dg, db, dy, x, gamma, mean, invstd, g);
}

/// Runs a backward with the given saved statistics; returns `(d_inp, d_gamma, d_beta)`.
fn run_backward(
    f: BackwardFn,
    p: &Problem,
    dy: &[f32],
    mean: &[f32],
    invstd: &[f32],
) -> [Vec<f32>; 3] {
    let (mut dx, mut dg, mut db) = (p.dx0.clone(), p.dgamma0.clone(), p.dbeta0.clone());
    f(
        &mut dx, &mut dg, &mut db, dy, &p.x, &p.gamma, &p.beta, mean, invstd, &p.g,
    );
    [dx, dg, db]
}

/// Zeroes the upstream gradient where the reference's BN output is within `margin` of the
/// ReLU kink, where an `f32` and an `f64` evaluation may disagree on the mask.
fn away_from_kink(p: &Problem, mean: &[f32], invstd: &[f32], margin: f64) -> Vec<f32> {
    let m = p.g.per_channel;
    p.dy.iter()
        .enumerate()
        .map(|(i, &d)| {
            let c = i / m;
            let y = (f64::from(p.x[i]) - f64::from(mean[c]))
                * f64::from(invstd[c])
                * f64::from(p.gamma[c])
                + f64::from(p.beta[c]);
            if y.abs() < margin {
                0.0
            } else {
                d
            }
        })
        .collect()
}

fn check_problem(p: &Problem, large_mean: bool) {
    let out_atol = if large_mean { 4e-4 } else { 1e-5 };
    for (relu, fast, reference) in [
        (
            false,
            batchnorm_forward_train as TrainFn,
            r::batchnorm_forward_train as TrainFn,
        ),
        (
            true,
            batchnorm_relu_forward_train,
            r::batchnorm_relu_forward_train,
        ),
    ] {
        let want = run_train(reference, p);
        let mut first: Option<Vec<f32>> = None;
        for_each_tier(|isa| {
            let got = run_train(fast, p);
            let l = |what: &str| format!("{isa} relu={relu} {what} {:?}", p.g);
            assert_close(&l("mean"), &got.mean, &want.mean, 1e-6, 1e-6);
            assert_close(&l("invstd"), &got.invstd, &want.invstd, 0.0, 1e-5);
            assert_close(&l("running_mean"), &got.rmean, &want.rmean, 1e-6, 1e-5);
            assert_close(&l("running_var"), &got.rvar, &want.rvar, 1e-6, 1e-5);
            assert_close(&l("out"), &got.out, &want.out, out_atol, 1e-5);
            // One source, one rounding sequence: every tier gives the same bits.
            match &first {
                None => first = Some(got.out.clone()),
                Some(f) => assert_bits(&l("tiers agree"), &got.out, f),
            }

            // Backward, fed the fast forward's statistics on both sides.
            let (bw, rbw): (BackwardFn, BackwardFn) = if relu {
                (batchnorm_relu_backward, r::batchnorm_relu_backward)
            } else {
                (plain_backward, ref_plain_backward)
            };
            let dy = if relu {
                away_from_kink(p, &got.mean, &got.invstd, 1e-3)
            } else {
                p.dy.clone()
            };
            let g = run_backward(bw, p, &dy, &got.mean, &got.invstd);
            let w = run_backward(rbw, p, &dy, &got.mean, &got.invstd);
            let scale = if large_mean { 10.0 } else { 1.0 };
            assert_close(&l("d_beta"), &g[2], &w[2], 1e-4, 1e-5);
            assert_close(&l("d_gamma"), &g[1], &w[1], 1e-4 * scale, 1e-4);
            // `d_inp` is a difference of terms of size |γ·invstd·dy|; a channel of (nearly)
            // constant values has invstd up to 1/√eps ≈ 316, and the f32 kernel's rounding of
            // those terms (a few ulps) can leave ~1e-4 where the exact answer is 0.
            let terms = dy
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    let c = i / p.g.per_channel;
                    (p.gamma[c] * got.invstd[c] * d).abs()
                })
                .fold(0.0f32, f32::max);
            let d_inp_atol = (1e-4 * scale).max(2e-6 * terms);
            assert_close(&l("d_inp"), &g[0], &w[0], d_inp_atol, 1e-4);
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_reference(
        channels in 1usize..=19,
        per_channel in 1usize..=37,
        ints in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let values = if ints { Values::Ints } else { Values::Floats };
        check_problem(&Problem::new(channels, per_channel, values, 0.0, seed), false);
    }

    #[test]
    fn large_mean_keeps_variance(
        channels in 1usize..=5,
        per_channel in 2usize..=300,
        seed in any::<u64>(),
    ) {
        check_problem(&Problem::new(channels, per_channel, Values::Floats, 1000.0, seed), true);
    }

    #[test]
    fn eval_forms_match_reference(
        channels in 1usize..=19,
        per_channel in 1usize..=37,
        seed in any::<u64>(),
    ) {
        check_eval(&Problem::new(channels, per_channel, Values::Floats, 0.0, seed));
    }
}

fn check_eval(p: &Problem) {
    let eps = 1e-5;
    let n = p.g.len();
    let mut want = vec![0.0; n];
    r::batchnorm_forward_infer(
        &mut want, &p.x, &p.gamma, &p.beta, &p.rmean, &p.rvar, eps, &p.g,
    );
    let want_relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; n];
        batchnorm_forward_infer(
            &mut got, &p.x, &p.gamma, &p.beta, &p.rmean, &p.rvar, eps, &p.g,
        );
        assert_close(&format!("{isa} infer"), &got, &want, 1e-5, 1e-5);
        batchnorm_relu_forward_infer(
            &mut got, &p.x, &p.gamma, &p.beta, &p.rmean, &p.rvar, eps, &p.g,
        );
        assert_close(&format!("{isa} relu infer"), &got, &want_relu, 1e-5, 1e-5);

        // The folded affine form: scale/shift from the running statistics.
        let c = p.g.channels;
        let invstd: Vec<f32> = p
            .rvar
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + 1e-5).sqrt()) as f32)
            .collect();
        let (mut scale, mut shift) = (vec![0.0; c], vec![0.0; c]);
        batchnorm_scale_shift(&mut scale, &mut shift, &p.gamma, &p.beta, &p.rmean, &invstd);
        for relu in [false, true] {
            let affine = ChannelAffine {
                scale: &scale,
                shift: &shift,
                relu,
            };
            channel_affine_forward(&mut got, &p.x, &affine, &p.g);
            let w = if relu { &want_relu } else { &want };
            assert_close(&format!("{isa} affine relu={relu}"), &got, w, 1e-5, 1e-5);
        }
    });
}

/// `d_beta` is a plain sum of the upstream gradient: exact on small integers.
#[test]
fn d_beta_is_exact_on_small_integers() {
    for per_channel in [1, 7, 16, 17, 1023, 1025, 3000] {
        let p = Problem::new(3, per_channel, Values::Ints, 0.0, per_channel as u64);
        let fw = run_train(batchnorm_forward_train, &p);
        for_each_tier(|isa| {
            let g = run_backward(plain_backward, &p, &p.dy, &fw.mean, &fw.invstd);
            let w = run_backward(ref_plain_backward, &p, &p.dy, &fw.mean, &fw.invstd);
            assert_exact(&format!("{isa} d_beta m={per_channel}"), &g[2], &w[2]);
        });
    }
}

/// The mean of small integers is exact whenever `M` is a power of two.
#[test]
fn mean_is_exact_on_small_integers() {
    for per_channel in [1, 2, 16, 64, 4096] {
        let p = Problem::new(5, per_channel, Values::Ints, 0.0, 7);
        let want = run_train(r::batchnorm_forward_train, &p);
        for_each_tier(|isa| {
            let got = run_train(batchnorm_forward_train, &p);
            assert_exact(
                &format!("{isa} mean m={per_channel}"),
                &got.mean,
                &want.mean,
            );
        });
    }
}

/// A tensor big enough to be split across threads gives the same bits on 1 and 2 threads.
#[test]
fn one_and_two_threads_agree() {
    for (channels, per_channel) in [(40, 4000), (3000, 49), (3, 60_000)] {
        let p = Problem::new(channels, per_channel, Values::Floats, 0.5, 11);
        let run = || {
            let fw = run_train(batchnorm_relu_forward_train, &p);
            let bw = run_backward(batchnorm_relu_backward, &p, &p.dy, &fw.mean, &fw.invstd);
            (fw.out, fw.mean, fw.invstd, bw)
        };
        let one = with_threads(1, run);
        let two = with_threads(2, run);
        assert_bits("out", &one.0, &two.0);
        assert_bits("mean", &one.1, &two.1);
        assert_bits("invstd", &one.2, &two.2);
        for k in 0..3 {
            assert_bits("grads", &one.3[k], &two.3[k]);
        }
    }
}

/// PyTorch's running-statistics rule, by hand: M = 4 values 1, 2, 3, 6 in one channel have mean
/// 3, biased variance 3.5 and unbiased variance 14/3, so from running (0, 1) with momentum 0.1
/// the running stats become (0.3, 0.9 + 0.1·14/3 = 1.3666…).
///
/// ```python
/// bn = torch.nn.BatchNorm2d(1); bn.train()
/// bn(torch.tensor([1., 2., 3., 6.]).view(1, 1, 2, 2))
/// bn.running_mean, bn.running_var   # tensor([0.3000]), tensor([1.3667])
/// ```
#[test]
fn running_stats_follow_pytorch() {
    let g = BatchNormGeom {
        channels: 1,
        per_channel: 4,
    };
    let (mut out, mut mean, mut invstd) = (vec![0.0; 4], vec![0.0], vec![0.0]);
    let (mut rm, mut rv) = (vec![0.0], vec![1.0]);
    batchnorm_forward_train(
        &mut out,
        &mut mean,
        &mut invstd,
        &mut rm,
        &mut rv,
        &[1.0, 2.0, 3.0, 6.0],
        &[1.0],
        &[0.0],
        &BatchNormConfig::default(),
        &g,
    );
    assert_eq!(mean[0], 3.0);
    assert!((invstd[0] - 1.0 / (3.5f32 + 1e-5).sqrt()).abs() < 1e-6);
    assert!((rm[0] - 0.3).abs() < 1e-6);
    assert!((rv[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-5, "{}", rv[0]);
}

/// `batchnorm_relu_backward_to(.., accumulate = false)` overwrites `d_inp` (NaN here) with the
/// values accumulating into zeros gives, and still accumulates `d_gamma`, `d_beta`.
#[test]
fn relu_backward_overwrite_equals_accumulating_into_zeros() {
    for (channels, per_channel) in [(5, 37), (40, 4000)] {
        let p = Problem::new(channels, per_channel, Values::Floats, 0.5, 23);
        let fw = run_train(batchnorm_relu_forward_train, &p);
        let run = |accumulate: bool, d_inp0: f32| {
            let mut dx = vec![d_inp0; p.g.len()];
            let (mut dg, mut db) = (p.dgamma0.clone(), p.dbeta0.clone());
            batchnorm_relu_backward_to(
                &mut dx, &mut dg, &mut db, &p.dy, &p.x, &p.gamma, &p.beta, &fw.mean, &fw.invstd,
                &p.g, accumulate,
            );
            // `+ 0.0` folds −0 into +0: an overwritten −0 is the one bit pattern that differs.
            let dx: Vec<f32> = dx.iter().map(|v| v + 0.0).collect();
            [dx, dg, db]
        };
        let want = run(true, 0.0);
        let got = run(false, f32::NAN);
        for (k, name) in ["d_inp", "d_gamma", "d_beta"].iter().enumerate() {
            assert_bits(name, &got[k], &want[k]);
        }
    }
}
