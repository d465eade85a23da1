//! SGD against a hand-computed PyTorch sequence and against the reference on every tier.
mod common;

use common::*;
use densenet_kernels::reference as r;
use densenet_kernels::sgd::*;
use proptest::prelude::{any, proptest, ProptestConfig};

/// Three steps of `torch.optim.SGD` on one parameter, gradients 1.0, 2.0, −1.0, computed by hand
/// from PyTorch's rule (first step: buffer = gradient; then buffer = m·buffer + g):
///
/// ```python
/// p = torch.nn.Parameter(torch.tensor([1.0]))
/// opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
/// for g in [1.0, 2.0, -1.0]:
///     p.grad = torch.tensor([g]); opt.step()
/// # p after each step: 0.8081, 0.3448, 0.2978
/// ```
///
/// Step 1: g = 1 + 0.01·1 = 1.01; b = 1.01; nesterov g' = 1.01 + 0.9·1.01 = 1.919;
///         p = 1 − 0.1919 = 0.8081.
/// Step 2: g = 2 + 0.008081 = 2.008081; b = 0.909 + 2.008081 = 2.917081;
///         g' = 2.008081 + 2.6253729 = 4.6334539; p = 0.8081 − 0.46334539 = 0.34475461.
/// Step 3: g = −1 + 0.0034475461 = −0.9965524539; b = 2.6253729 − 0.9965524539 = 1.6288204461;
///         g' = −0.9965524539 + 1.46593840149 = 0.46938594759; p = 0.34475461 − 0.046938594759
///         = 0.297816015241.
#[test]
fn nesterov_weight_decay_sequence_follows_pytorch() {
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.01,
        nesterov: true,
    };
    let expected = [0.8081f64, 0.34475461, 0.297816015241];
    for_each_tier(|isa| {
        let (mut p, mut b) = (vec![1.0f32], vec![0.0f32]);
        for (step, (g, want)) in [1.0f32, 2.0, -1.0].iter().zip(expected).enumerate() {
            sgd_step(&mut p, &mut b, &[*g], &cfg, step == 0);
            assert!(
                (f64::from(p[0]) - want).abs() < 1e-6,
                "{isa} step {step}: {} vs {want}",
                p[0]
            );
        }
    });
}

/// Plain momentum with dampening, by hand: lr 0.5, momentum 0.5, dampening 0.5, no decay;
/// gradients 2, 2: b1 = 2 (first step ignores dampening), p1 = 1 − 1 = 0;
/// b2 = 0.5·2 + 0.5·2 = 2, p2 = 0 − 1 = −1.
///
/// ```python
/// opt = torch.optim.SGD([p], lr=0.5, momentum=0.5, dampening=0.5)
/// ```
#[test]
fn momentum_with_dampening_follows_pytorch() {
    let cfg = SgdConfig {
        lr: 0.5,
        momentum: 0.5,
        dampening: 0.5,
        weight_decay: 0.0,
        nesterov: false,
    };
    let (mut p, mut b) = (vec![1.0f32], vec![123.0f32]);
    sgd_step(&mut p, &mut b, &[2.0], &cfg, true);
    assert_eq!((p[0], b[0]), (0.0, 2.0));
    sgd_step(&mut p, &mut b, &[2.0], &cfg, false);
    assert_eq!((p[0], b[0]), (-1.0, 2.0));
    // Momentum 0: plain descent, the buffer untouched.
    let cfg = SgdConfig {
        momentum: 0.0,
        ..cfg
    };
    sgd_step(&mut p, &mut b, &[4.0], &cfg, false);
    assert_eq!((p[0], b[0]), (-3.0, 2.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The same operations in the same order as the reference: identical bits, every tier.
    #[test]
    fn matches_reference_bitwise(
        len in 0usize..=200, nesterov in any::<bool>(), first in any::<bool>(),
        momentum in 0.0f32..0.99, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let cfg = SgdConfig {
            lr: rng.uniform(0.001, 0.5),
            momentum: if rng.below(4) == 0 { 0.0 } else { momentum },
            dampening: if nesterov { 0.0 } else { rng.uniform(0.0, 0.5) },
            weight_decay: rng.uniform(0.0, 1e-3),
            nesterov,
        };
        let p0 = rng.floats(len, -1.0, 1.0);
        let b0 = rng.floats(len, -1.0, 1.0);
        let g = rng.floats(len, -1.0, 1.0);
        let (mut want_p, mut want_b) = (p0.clone(), b0.clone());
        r::sgd_step(&mut want_p, &mut want_b, &g, &cfg, first);
        for_each_tier(|isa| {
            let (mut p, mut b) = (p0.clone(), b0.clone());
            sgd_step(&mut p, &mut b, &g, &cfg, first);
            assert_bits(&format!("{isa} param"), &p, &want_p);
            assert_bits(&format!("{isa} buffer"), &b, &want_b);
        });
    }
}

/// A large parameter tensor, split across threads, matches the single-thread bits.
#[test]
fn one_and_two_threads_agree() {
    let len = 300_001;
    let mut rng = Rng::new(8);
    let p0 = rng.floats(len, -1.0, 1.0);
    let g = rng.floats(len, -1.0, 1.0);
    let run = || {
        let (mut p, mut b) = (p0.clone(), vec![0.0; len]);
        sgd_step(&mut p, &mut b, &g, &SgdConfig::default(), true);
        sgd_step(&mut p, &mut b, &g, &SgdConfig::default(), false);
        (p, b)
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    assert_bits("param", &one.0, &two.0);
    assert_bits("buffer", &one.1, &two.1);
}
