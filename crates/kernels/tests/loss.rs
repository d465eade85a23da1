//! Softmax cross-entropy against the reference and a closed form.
//!
//! Tolerances: probabilities `rtol 1e-5` (`f32` exp against `f64`), loss `rtol 1e-5`, gradient
//! `atol 1e-6` plus `rtol 1e-5`.
mod common;

use common::*;
use densenet_kernels::loss::*;
use densenet_kernels::reference as r;
use proptest::prelude::{any, proptest, ProptestConfig};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_reference(batch in 1usize..=9, classes in 1usize..=40, spread in 0.1f32..30.0,
                         seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let logits = rng.floats(batch * classes, -spread, spread);
        let labels: Vec<usize> = (0..batch).map(|_| rng.below(classes)).collect();
        let d0 = rng.floats(batch * classes, -1.0, 1.0);
        let mut want_p = vec![0.0; logits.len()];
        let want = r::softmax_cross_entropy_forward(&mut want_p, &logits, &labels);
        let mut want_d = d0.clone();
        r::softmax_cross_entropy_backward(&mut want_d, &want_p, &labels, 1.7);
        let mut p = vec![f32::NAN; logits.len()];
        let got = softmax_cross_entropy_forward(&mut p, &logits, &labels);
        assert_close("probs", &p, &want_p, 1e-7, 1e-5);
        assert_close("loss", &[got], &[want], 1e-6, 1e-5);
        let mut d = d0.clone();
        softmax_cross_entropy_backward(&mut d, &p, &labels, 1.7);
        assert_close("d_logits", &d, &want_d, 1e-6, 1e-5);
    }
}

/// Equal logits give the uniform distribution and a loss of `ln K`; huge logits do not overflow.
#[test]
fn closed_forms() {
    let (batch, classes) = (3, 10);
    let logits = vec![2.5f32; batch * classes];
    let mut p = vec![0.0; logits.len()];
    let loss = softmax_cross_entropy_forward(&mut p, &logits, &[0, 4, 9]);
    assert!((loss - (classes as f32).ln()).abs() < 1e-6);
    assert!(p.iter().all(|&v| (v - 0.1).abs() < 1e-7));

    let mut p = vec![0.0; 2];
    let loss = softmax_cross_entropy_forward(&mut p, &[1e30, 0.0], &[1]);
    assert!(
        loss.is_finite() && (loss - 1e30).abs() / 1e30 < 1e-6,
        "{loss}"
    );
    assert_eq!(p, [1.0, 0.0]);
}
