//! For a given seed, training is bit-identical with 1 and 2 threads, and across two runs.

use densenet::train::{train_step, Sgd};
use densenet::{DenseNet, DenseNetConfig, MemoryPlan, Mode};
use densenet_kernels::sgd::SgdConfig;

/// Losses, eval logits and parameters (with running statistics) after three steps, as bits.
type Run = (Vec<u32>, Vec<u32>, Vec<u32>);

/// The floats behind `bits`.
fn floats(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

fn run(threads: usize, spec: &str, plan: MemoryPlan) -> Run {
    run_with(threads, spec, plan, true)
}

fn run_with(threads: usize, spec: &str, plan: MemoryPlan, winograd: bool) -> Run {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let cfg: DenseNetConfig = spec.parse().unwrap();
        let mut model = DenseNet::new(cfg.clone(), 21).unwrap();
        // Large enough that the convolutions of the CIFAR-stem models go to the thread pool
        // (`gemm::worth_parallel`: 2¹⁸ multiply-adds): 8 × 32² columns.
        let (n, h, w) = (8, 32, 32);
        let mut rng = densenet::init::Rng::new(8);
        let x: Vec<f32> = (0..n * cfg.in_channels * h * w)
            .map(|_| rng.normal())
            .collect();
        let y: Vec<usize> = (0..n).map(|i| (i * 3) % cfg.num_classes).collect();
        let mut ws = model.workspace_with_plan(n, h, w, plan).unwrap();
        ws.set_winograd_3x3(winograd);
        let mut sgd = Sgd::new(SgdConfig::default(), model.store());
        let mut losses = Vec::new();
        for _ in 0..3 {
            losses.push(
                train_step(&mut model, &mut ws, &mut sgd, &x, &y)
                    .unwrap()
                    .to_bits(),
            );
        }
        let logits = model.forward(&mut ws, &x, Mode::Eval).unwrap().to_vec();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let mut state = bits(model.store().params());
        for name in model.store().tensor_names() {
            if name.contains("running") {
                state.extend(bits(model.store().tensor(&name).unwrap().1));
            }
        }
        (losses, bits(&logits), state)
    })
}

#[test]
fn one_and_two_threads_agree_bit_for_bit() {
    for (spec, me) in [
        (
            "bc:k=6,blocks=3-3,init=8,drop=0.2,classes=5",
            MemoryPlan::RecomputeNorm,
        ),
        ("bc:k=6,blocks=3-3,init=8,classes=5", MemoryPlan::StoreAll),
        (
            "bc:k=6,blocks=3-3,init=8,classes=5",
            MemoryPlan::RecomputeBottleneck,
        ),
        ("plain:k=4,blocks=2-2,classes=3", MemoryPlan::RecomputeNorm),
        // The ImageNet stem adds its own BN, ReLU and max pool to the parallel paths.
        (
            "custom:k=4,blocks=2-2,init=8,stem=imagenet,classes=3",
            MemoryPlan::RecomputeNorm,
        ),
    ] {
        let one = run(1, spec, me);
        let two = run(2, spec, me);
        let again = run(2, spec, me);
        assert_eq!(one, two, "{spec}: 1 vs 2 threads");
        assert_eq!(two, again, "{spec}: two runs");
        assert!(
            one.0.windows(2).all(|w| w[0] != w[1]),
            "{spec}: the loss should move"
        );
    }
}

#[test]
fn memory_modes_agree() {
    let spec = "bc:k=6,blocks=3-3,init=8,drop=0.2,classes=5";
    let me = run(1, spec, MemoryPlan::RecomputeNorm);
    let stored = run(1, spec, MemoryPlan::StoreAll);
    // Recomputing the bottleneck runs the very same conv on the very same input: same bits.
    assert_eq!(me, run(1, spec, MemoryPlan::RecomputeBottleneck));
    // The two modes feed the convs identical inputs (the fused `pre` map and the stored map
    // compute the same f32 expression), so they agree exactly with the reference kernels; fast
    // kernels may pack the fused path differently, hence a tolerance.
    for (a, b) in floats(&me.2).iter().zip(floats(&stored.2)) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// Winograd's 3×3 forward and input gradient (on by default) train as the direct convolutions
/// do, within roundings, on one thread and two alike; where the SIMD tier runs them, they do run
/// (the bits differ). The first model's 32×32 and 16×16 blocks are over the forward's 14×14
/// threshold; the second's 32-channel growth convolutions at 32×32 take the input gradient too.
#[test]
fn winograd_and_direct_agree() {
    use densenet_kernels::conv2d::{winograd_variant, winograd_variant_backward_input};
    let growth_conv = |c, k| densenet_kernels::Conv2dGeom::square(8, c, k, 32, 32, 3, 1, 1);
    for (spec, runs_winograd) in [
        (
            "bc:k=6,blocks=3-3,init=8,drop=0.2,classes=5",
            winograd_variant(&growth_conv(24, 6)).is_some(),
        ),
        (
            "bc:k=32,blocks=2,init=16,classes=3",
            winograd_variant_backward_input(&growth_conv(128, 32)).is_some(),
        ),
    ] {
        let winograd = run_with(2, spec, MemoryPlan::RecomputeNorm, true);
        assert_eq!(winograd, run_with(1, spec, MemoryPlan::RecomputeNorm, true));
        let direct = run_with(2, spec, MemoryPlan::RecomputeNorm, false);
        if runs_winograd {
            assert_ne!(winograd.2, direct.2, "{spec}: Winograd should have run");
        }
        for (what, a, b) in [
            ("losses", &winograd.0, &direct.0),
            ("logits", &winograd.1, &direct.1),
            ("parameters", &winograd.2, &direct.2),
        ] {
            let worst = floats(a)
                .iter()
                .zip(floats(b))
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0.0f32, f32::max);
            println!("{spec}: {what}: worst difference {worst:.2e}");
            assert!(worst <= 1e-5, "{spec}: {what} differ by {worst:e}");
        }
    }
}

/// The backward pass alone: after the same forward (Winograd on), the input gradients by
/// Winograd give parameter gradients within roundings of the direct ones, and different bits
/// where the tier runs it (32-channel growth convolutions on a 32×32 map take it).
#[test]
fn winograd_input_gradients_agree_with_direct() {
    let spec = "bc:k=32,blocks=2,init=16,classes=3";
    let cfg: DenseNetConfig = spec.parse().unwrap();
    let (n, h, w) = (4, 32, 32);
    let mut rng = densenet::init::Rng::new(9);
    let x: Vec<f32> = (0..n * cfg.in_channels * h * w)
        .map(|_| rng.normal())
        .collect();
    let y: Vec<usize> = (0..n).map(|i| i % cfg.num_classes).collect();
    let grads = |winograd_backward: bool| {
        let mut model = DenseNet::new(cfg.clone(), 4).unwrap();
        let mut ws = model
            .workspace_with_plan(n, h, w, MemoryPlan::RecomputeNorm)
            .unwrap();
        model.forward_train(&mut ws, &x, &y).unwrap();
        ws.set_winograd_3x3(winograd_backward);
        model.backward(&mut ws).unwrap();
        model.store().grads().to_vec()
    };
    let (winograd, direct) = (grads(true), grads(false));
    let growth_conv = densenet_kernels::Conv2dGeom::square(n, 128, 32, h, w, 3, 1, 1);
    if densenet_kernels::conv2d::winograd_variant_backward_input(&growth_conv).is_some() {
        assert_ne!(
            winograd, direct,
            "the input gradients should have run by Winograd"
        );
    }
    let largest = direct.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    let worst = winograd
        .iter()
        .zip(&direct)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("worst gradient difference {worst:.2e} of the largest {largest:.2e}");
    assert!(worst <= 1e-5 * largest, "{worst:e} against {largest:e}");
}

/// Workspace bytes of `spec` at the batch and size `run` uses, under `plan`.
fn workspace_bytes(spec: &str, plan: MemoryPlan) -> densenet::Result<usize> {
    let cfg: DenseNetConfig = spec.parse().unwrap();
    let model = DenseNet::new(cfg, 21).unwrap();
    Ok(model.workspace_with_plan(8, 32, 32, plan)?.bytes())
}

/// A budget between the two recompute plans keeps some bottleneck outputs, stays within its
/// bytes and gives the same bits as either plan; a budget below `RecomputeBottleneck`'s is
/// refused with the least that would do; a generous one is `RecomputeNorm`.
#[test]
fn budget_plan_fits_and_agrees() {
    let spec = "bc:k=6,blocks=3-3,init=8,drop=0.2,classes=5";
    let least = workspace_bytes(spec, MemoryPlan::RecomputeBottleneck).unwrap();
    let most = workspace_bytes(spec, MemoryPlan::RecomputeNorm).unwrap();
    let mid = (least + most) / 2;
    let got = workspace_bytes(spec, MemoryPlan::Budget(mid)).unwrap();
    assert!(least < got && got <= mid, "{least} < {got} <= {mid}");
    assert_eq!(
        workspace_bytes(spec, MemoryPlan::Budget(most)).unwrap(),
        most
    );
    assert_eq!(
        workspace_bytes(spec, MemoryPlan::Budget(least)).unwrap(),
        least
    );
    let err = workspace_bytes(spec, MemoryPlan::Budget(least - 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("at least {least} bytes")), "{err}");
    let me = run(1, spec, MemoryPlan::RecomputeNorm);
    assert_eq!(me, run(1, spec, MemoryPlan::Budget(mid)));
    assert_eq!(me, run(2, spec, MemoryPlan::Budget(mid)));
}

/// Every budget from the least to the most a plan can use bounds the workspace as built, for
/// configurations whose gradient buffers and stem lend storage in different ways (CIFAR and
/// ImageNet stems, bottleneck and plain layers, one block and several, batches of 2 and 8);
/// a byte less than the least is refused.
#[test]
fn every_budget_bounds_the_workspace() {
    for spec in [
        "bc:k=6,blocks=3-3,init=8,classes=5",
        "bc:k=8,blocks=2-4-3,init=16,classes=3,stem=imagenet",
        "custom:k=4,blocks=2-2,init=8,bn=none,stem=imagenet,classes=3",
        "bc:k=6,blocks=5,init=8,classes=2",
    ] {
        let model = DenseNet::new(spec.parse().unwrap(), 1).unwrap();
        for (n, hw) in [(2, 32), (8, 20)] {
            let bytes = |plan| {
                model
                    .workspace_with_plan(n, hw, hw, plan)
                    .map(|ws| ws.bytes())
            };
            let least = bytes(MemoryPlan::RecomputeBottleneck).unwrap();
            let most = bytes(MemoryPlan::RecomputeNorm).unwrap();
            assert!(
                bytes(MemoryPlan::Budget(least - 1)).is_err(),
                "{spec} n={n}"
            );
            for step in 0..=24 {
                let budget = least + (most - least) * step / 24;
                let got = bytes(MemoryPlan::Budget(budget)).unwrap();
                assert!(
                    got <= budget,
                    "{spec} n={n}: {got} bytes for a budget of {budget}"
                );
            }
        }
    }
}

#[test]
fn bad_input_is_refused() {
    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let mut model = DenseNet::new(cfg, 0).unwrap();
    let mut ws = model.workspace(2, 8, 8, true).unwrap();
    let x = vec![0.0; 2 * 3 * 8 * 8];
    let err = |e: densenet::Error| e.to_string();
    assert!(err(model.forward(&mut ws, &x[1..], Mode::Eval).unwrap_err()).contains("input has"));
    assert!(err(model.forward_train(&mut ws, &x, &[0, 3]).unwrap_err()).contains("label 3"));
    assert!(err(model.forward_train(&mut ws, &x, &[0]).unwrap_err()).contains("1 labels"));
    assert!(err(model.backward(&mut ws).unwrap_err()).contains("forward_train"));
    // N·H·W = 1 in the last block: batch 1 at 2x2 leaves a 1x1 map after the transition.
    let mut ws1 = model.workspace(1, 2, 2, true).unwrap();
    let x1 = vec![0.0; 3 * 2 * 2];
    assert!(
        err(model.forward_train(&mut ws1, &x1, &[0]).unwrap_err()).contains("more than one value")
    );
    assert!(model.forward(&mut ws1, &x1, Mode::Eval).is_ok());
    assert!(model.workspace(0, 8, 8, true).is_err());
    assert!(model.workspace(2, 1, 1, true).is_err());
    // A workspace of another configuration.
    let other: DenseNetConfig = "bc:k=4,blocks=2-3,classes=3".parse().unwrap();
    let mut ws_other = DenseNet::new(other, 0)
        .unwrap()
        .workspace(2, 8, 8, true)
        .unwrap();
    assert!(model.forward(&mut ws_other, &x, Mode::Eval).is_err());
}
