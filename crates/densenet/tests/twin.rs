//! The twin test (after gpleiss' efficient DenseNet tests): the network with preallocated
//! feature buffers, fused BN+ReLU and shared batch statistics against a naive network built from
//! `kernels::reference` functions and `Vec` concatenation (tests/naive), with the same weights.
//! Compared: logits in eval and train mode, the loss, every parameter gradient and every running
//! statistic after a training pass, in every memory plan, with dropout on and off.
//!
//! Tolerance: `|a − b| ≤ 1e-4·max|b| + 1e-4·|b| + 1e-6` per tensor (the loss is O(1); the
//! absolute 1e-6 covers tensors whose every entry is a near-total cancellation, such as the
//! stem's γ gradient, where f32 rounding of O(1) terms leaves O(1e-8) noise). The two sides compute the same
//! maths in a different order and precision: the buffered network applies BN+ReLU as one f32
//! `scale·x + shift` (the form a fused conv input uses) where the reference evaluates
//! `γ·(x − μ)·invstd + β` in f64, and the fast kernels (when they land) sum in f32 in blocked
//! order. Differences observed are around 1e-6 relative; 1e-4 leaves room for the blocked sums
//! while still catching any wrong slice, missed accumulation or doubled statistic update (those
//! give errors of order 1).

mod naive;

use densenet::{DenseNet, DenseNetConfig, MemoryPlan, Mode};
use densenet_kernels::BatchNormConfig;
use naive::{tensors_of, Naive};

fn close(label: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = (0.0f32, 0usize);
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let err = (a - b).abs();
        let tol = 1e-4 * scale + 1e-4 * b.abs() + 1e-6;
        assert!(
            err <= tol,
            "{label}[{i}]: got {a}, want {b} (|diff| {err}, tol {tol}, max|want| {scale})"
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
}

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = densenet::init::Rng::new(seed);
    (0..len).map(|_| rng.normal()).collect()
}

fn twin(spec: &str, n: usize, h: usize, w: usize, plan: MemoryPlan) {
    let cfg: DenseNetConfig = spec.parse().unwrap();
    let mut model = DenseNet::new(cfg.clone(), 7).unwrap();
    // Non-trivial BN parameters and running statistics, so that γ, β and eval mode matter.
    for name in model.store().tensor_names() {
        let is_bn = name.contains("norm");
        let (_, v) = model.store_mut().tensor_mut(&name).unwrap();
        if is_bn {
            let mut rng = densenet::init::Rng::new(name.len() as u64);
            for x in v.iter_mut() {
                *x = if name.ends_with("running_var") || name.ends_with("weight") {
                    0.5 + rng.uniform() as f32
                } else {
                    0.3 * rng.normal()
                };
            }
        }
    }
    let input = data(n * cfg.in_channels * h * w, 99);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % cfg.num_classes).collect();
    let mut ws = model.workspace_with_plan(n, h, w, plan).unwrap();
    let label = format!("{spec} n={n} {h}x{w} {plan:?}");

    // Eval mode.
    let before = tensors_of(model.store());
    let logits = model.forward(&mut ws, &input, Mode::Eval).unwrap().to_vec();
    let naive = Naive {
        cfg: &cfg,
        t: before.clone(),
        bn: BatchNormConfig::default(),
        train: false,
        model_seed: 7,
        step: 0,
    }
    .run(&input, n, h, w, None);
    close(&format!("{label} eval logits"), &logits, &naive.logits);

    // Train mode: forward, loss, backward.
    model.store_mut().zero_grads();
    let loss = model.forward_train(&mut ws, &input, &labels).unwrap();
    let logits = ws.logits().to_vec();
    model.backward(&mut ws).unwrap();
    let naive = Naive {
        cfg: &cfg,
        t: before,
        bn: BatchNormConfig::default(),
        train: true,
        model_seed: 7,
        step: 1,
    }
    .run(&input, n, h, w, Some(&labels));
    close(&format!("{label} train logits"), &logits, &naive.logits);
    close(&format!("{label} loss"), &[loss], &[naive.loss]);
    let store = model.store();
    for name in store.tensor_names() {
        let (_, v) = store.tensor(&name).unwrap();
        close(&format!("{label} {name} after"), v, &naive.tensors[&name]);
        if let Some(g) = store.grad(&name) {
            let want = naive
                .grads
                .get(&name)
                .unwrap_or_else(|| panic!("naive has no gradient for {name}"));
            close(&format!("{label} d {name}"), g, want);
        }
    }
    for bn in store.bn_names() {
        assert_eq!(store.batches_tracked(bn), Some(1), "{bn}");
    }
}

const PLANS: [MemoryPlan; 3] = [
    MemoryPlan::RecomputeNorm,
    MemoryPlan::RecomputeBottleneck,
    MemoryPlan::StoreAll,
];

#[test]
fn bc_cifar_stem_every_memory_plan() {
    for me in PLANS {
        twin("bc:k=4,blocks=2-3,init=6,classes=5", 3, 8, 8, me);
    }
}

#[test]
fn bc_imagenet_stem_every_memory_plan() {
    for me in PLANS {
        twin(
            "bc:k=3,blocks=2-2,init=8,stem=imagenet,classes=4",
            2,
            32,
            28,
            me,
        );
    }
}

#[test]
fn plain_and_odd_compression() {
    for me in PLANS {
        twin("plain:k=3,blocks=2-2,classes=4", 2, 8, 8, me);
        twin(
            "bc:k=5,blocks=1-2-1,init=7,bn=2,theta=0.6,classes=3,in=2",
            2,
            9,
            7,
            me,
        );
    }
}

#[test]
fn dropout_matches() {
    for me in PLANS {
        twin("bc:k=4,blocks=2-2,init=6,drop=0.3,classes=5", 2, 8, 8, me);
    }
}

#[test]
fn batch_of_one() {
    for plan in PLANS {
        twin("bc:k=4,blocks=2-2,init=6,classes=5", 1, 6, 6, plan);
    }
}
