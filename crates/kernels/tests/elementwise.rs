//! ReLU, dropout and `add_assign` against the reference on every tier: exact equality (these
//! ops do one rounding per element, the same one as the reference), accumulation into non-zero
//! gradients, lengths around the chunk and vector sizes, 1 vs 2 threads, and dropout's
//! statistics and seed reproducibility.
mod common;

use common::*;
use densenet_kernels::elementwise::*;
use densenet_kernels::reference as r;
use proptest::prelude::{any, proptest, ProptestConfig};

fn check_relu(len: usize, values: Values, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = values.draw(&mut rng, len);
    let dy = values.draw(&mut rng, len);
    let d0 = values.draw(&mut rng, len);
    let mut want = vec![0.0; len];
    r::relu_forward(&mut want, &x);
    let mut want_d = d0.clone();
    r::relu_backward(&mut want_d, &dy, &x);
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; len];
        relu_forward(&mut got, &x);
        assert_exact(&format!("{isa} relu_forward len={len}"), &got, &want);
        let mut inplace = x.clone();
        relu_inplace(&mut inplace);
        assert_exact(&format!("{isa} relu_inplace len={len}"), &inplace, &want);
        let mut d = d0.clone();
        relu_backward(&mut d, &dy, &x);
        assert_exact(&format!("{isa} relu_backward len={len}"), &d, &want_d);
        let mut acc = d0.clone();
        add_assign(&mut acc, &dy);
        let want_acc: Vec<f32> = d0.iter().zip(&dy).map(|(a, b)| a + b).collect();
        assert_exact(&format!("{isa} add_assign len={len}"), &acc, &want_acc);
    });
}

fn check_dropout(len: usize, p: f32, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = rng.floats(len, -1.0, 1.0);
    let dy = rng.floats(len, -1.0, 1.0);
    let d0 = rng.floats(len, -1.0, 1.0);
    let mut want = vec![0.0; len];
    r::dropout_forward(&mut want, &x, p, seed);
    let mut want_d = d0.clone();
    r::dropout_backward(&mut want_d, &dy, p, seed);
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; len];
        dropout_forward(&mut got, &x, p, seed);
        assert_exact(
            &format!("{isa} dropout_forward len={len} p={p}"),
            &got,
            &want,
        );
        let mut d = d0.clone();
        dropout_backward(&mut d, &dy, p, seed);
        assert_exact(
            &format!("{isa} dropout_backward len={len} p={p}"),
            &d,
            &want_d,
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn relu_matches_reference(len in 0usize..=300, ints in any::<bool>(), seed in any::<u64>()) {
        check_relu(len, if ints { Values::Ints } else { Values::Floats }, seed);
    }

    #[test]
    fn dropout_matches_reference(len in 0usize..=300, p in 0.0f32..=1.0, seed in any::<u64>()) {
        check_dropout(len, p, seed);
    }
}

/// Lengths around the parallel threshold and chunk size, and the edge probabilities.
#[test]
fn long_tensors_and_edge_probabilities() {
    for len in [(1 << 17) - 1, 1 << 17, (1 << 17) + (1 << 16) + 17] {
        check_relu(len, Values::Floats, len as u64);
        for p in [0.0, 0.2, 0.5, 1.0] {
            check_dropout(len, p, 3);
        }
    }
}

/// ReLU edge values: zeros of both signs, NaN (gives 0, as the reference), infinities.
#[test]
fn relu_edge_values() {
    let x = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-38,
        -1e-38,
    ];
    let mut want = [0.0; 7];
    r::relu_forward(&mut want, &x);
    for_each_tier(|isa| {
        let mut got = [1.0; 7];
        relu_forward(&mut got, &x);
        assert_exact(&format!("{isa} relu edges"), &got, &want);
    });
}

/// The same seed draws the same mask; another seed draws another; the keep rate is `1 − p`
/// within five standard deviations of the binomial.
#[test]
fn dropout_mask_is_reproducible_and_keeps_one_minus_p() {
    let len = 200_000;
    let x = vec![1.0f32; len];
    for p in [0.1f32, 0.2, 0.5, 0.9] {
        let (mut a, mut b, mut c) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        dropout_forward(&mut a, &x, p, 42);
        dropout_forward(&mut b, &x, p, 42);
        dropout_forward(&mut c, &x, p, 43);
        assert_bits("same seed", &a, &b);
        assert!(a != c, "another seed drew the same mask");
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64;
        let q = 1.0 - f64::from(p);
        let sd = (len as f64 * q * (1.0 - q)).sqrt();
        assert!(
            (kept - len as f64 * q).abs() < 5.0 * sd,
            "p={p}: kept {kept} of {len}, expected {}",
            len as f64 * q
        );
        // Kept values are scaled by 1/(1 − p), so the mean is preserved.
        let scale = 1.0 / (1.0 - p);
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        // Backward with dy = 1 marks exactly the kept elements.
        let mut d = vec![0.0; len];
        dropout_backward(&mut d, &x, p, 42);
        assert_bits("backward mask", &d, &a);
    }
}

/// Splitting across threads changes neither the mask nor any other result.
#[test]
fn one_and_two_threads_agree() {
    let len = 300_003;
    let mut rng = Rng::new(5);
    let x = rng.floats(len, -1.0, 1.0);
    let dy = rng.floats(len, -1.0, 1.0);
    let run = || {
        let mut out = vec![0.0; len];
        let mut drop = vec![0.0; len];
        let mut d = dy.clone();
        relu_forward(&mut out, &x);
        dropout_forward(&mut drop, &x, 0.3, 9);
        relu_backward(&mut d, &dy, &x);
        dropout_backward(&mut d, &dy, 0.3, 9);
        (out, drop, d)
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    assert_bits("relu", &one.0, &two.0);
    assert_bits("dropout", &one.1, &two.1);
    assert_bits("grads", &one.2, &two.2);
}

/// The integer keep rule agrees with the reference's float rule at probabilities whose
/// threshold sits exactly on a 24-bit draw, and just beside it.
#[test]
fn dropout_threshold_edges() {
    let len = 4096;
    let x = vec![1.0f32; len];
    for p in [
        0.5f32,
        0.25,
        1.0 / (1 << 24) as f32,
        f32::from_bits(0.5f32.to_bits() + 1),
        f32::from_bits(0.5f32.to_bits() - 1),
        1.0 - f32::EPSILON,
    ] {
        check_dropout(len, p, 12);
        let mut got = vec![0.0; len];
        dropout_forward(&mut got, &x, p, 12);
        for (i, &v) in got.iter().enumerate() {
            assert_eq!(v != 0.0, r::dropout_keep(12, i as u64, p), "p={p} i={i}");
        }
    }
}
