//! The linear layer against the reference: exact on small integers (every partial sum is a small
//! integer, so any summation order gives the same result), `rtol 1e-5`/`atol 1e-5` on uniform
//! floats (`f32` GEMM against the reference's `f64` dot products of up to 70 terms), with and
//! without bias, accumulation into non-zero gradients, and 1 vs 2 threads.
mod common;

use common::*;
use densenet_kernels::linear::*;
use densenet_kernels::reference as r;
use proptest::prelude::{any, proptest, ProptestConfig};

fn check(batch: usize, in_f: usize, out_f: usize, with_bias: bool, values: Values, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = values.draw(&mut rng, batch * in_f);
    let w = values.draw(&mut rng, out_f * in_f);
    let b = values.draw(&mut rng, out_f);
    let dy = values.draw(&mut rng, batch * out_f);
    let dx0 = values.draw(&mut rng, batch * in_f);
    let dw0 = values.draw(&mut rng, out_f * in_f);
    let db0 = values.draw(&mut rng, out_f);
    let bias = with_bias.then_some(&b[..]);

    let mut want = vec![0.0; batch * out_f];
    r::linear_forward(&mut want, &x, &w, bias, batch);
    let mut want_dx = dx0.clone();
    r::linear_backward_input(&mut want_dx, &dy, &w, batch);
    let (mut want_dw, mut want_db) = (dw0.clone(), db0.clone());
    r::linear_backward_weight(
        &mut want_dw,
        with_bias.then_some(&mut want_db[..]),
        &dy,
        &x,
        batch,
    );

    let cmp = |label: String, got: &[f32], want: &[f32]| match values {
        Values::Ints => assert_exact(&label, got, want),
        Values::Floats => assert_close(&label, got, want, 1e-5, 1e-5),
    };
    let shape = format!("n={batch} i={in_f} o={out_f} bias={with_bias}");
    for_each_tier(|isa| {
        let mut got = vec![f32::NAN; batch * out_f];
        linear_forward(&mut got, &x, &w, bias, batch);
        cmp(format!("{isa} forward {shape}"), &got, &want);
        let mut dx = dx0.clone();
        linear_backward_input(&mut dx, &dy, &w, batch);
        cmp(format!("{isa} d_inp {shape}"), &dx, &want_dx);
        let (mut dw, mut db) = (dw0.clone(), db0.clone());
        linear_backward_weight(&mut dw, with_bias.then_some(&mut db[..]), &dy, &x, batch);
        cmp(format!("{isa} d_weight {shape}"), &dw, &want_dw);
        cmp(format!("{isa} d_bias {shape}"), &db, &want_db);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_reference(
        batch in 1usize..=9, in_f in 1usize..=70, out_f in 1usize..=23,
        with_bias in any::<bool>(), ints in any::<bool>(), seed in any::<u64>(),
    ) {
        check(batch, in_f, out_f, with_bias, if ints { Values::Ints } else { Values::Floats }, seed);
    }
}

/// Large enough to split rows across threads (DenseNet-121's classifier at batch 20).
#[test]
fn classifier_shape_and_threads() {
    check(20, 1024, 100, true, Values::Ints, 2);
    let (batch, in_f, out_f) = (20, 1024, 1000);
    let mut rng = Rng::new(3);
    let x = rng.floats(batch * in_f, -1.0, 1.0);
    let w = rng.floats(out_f * in_f, -0.05, 0.05);
    let b = rng.floats(out_f, -0.1, 0.1);
    let dy = rng.floats(batch * out_f, -1.0, 1.0);
    let run = || {
        let mut out = vec![0.0; batch * out_f];
        linear_forward(&mut out, &x, &w, Some(&b), batch);
        let mut dx = vec![0.0; batch * in_f];
        linear_backward_input(&mut dx, &dy, &w, batch);
        let (mut dw, mut db) = (vec![0.0; out_f * in_f], vec![0.0; out_f]);
        linear_backward_weight(&mut dw, Some(&mut db), &dy, &x, batch);
        (out, dx, dw, db)
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    assert_bits("forward", &one.0, &two.0);
    assert_bits("d_inp", &one.1, &two.1);
    assert_bits("d_weight", &one.2, &two.2);
    assert_bits("d_bias", &one.3, &two.3);
}
