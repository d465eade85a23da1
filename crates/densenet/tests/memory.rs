//! Peak training memory is linear in depth with the memory-efficient plan, quadratic for the
//! naive concatenating twin.
//!
//! A single DenseNet-BC block of depth L and 2L (same k, batch and size) is trained for one step
//! (workspace creation, forward, loss, backward) while the counting allocator records the peak
//! of live bytes. Doubling the depth of a linear plan at most doubles the memory (plus the
//! constant stem and head, so a little under 2); the naive twin stores each layer's
//! concatenated input and its BN+ReLU output, `Σ_l (k0 + l·k) = O(L²)`.

mod naive;

use densenet::{DenseNet, DenseNetConfig, MemoryPlan};
use densenet_kernels::alloc_counter::{measure, CountingAllocator};
use densenet_kernels::BatchNormConfig;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const N: usize = 4;
const HW: usize = 16;

fn cfg(layers: usize) -> DenseNetConfig {
    format!("bc:k=12,blocks={layers},classes=10")
        .parse()
        .unwrap()
}

fn inputs(c: &DenseNetConfig) -> (Vec<f32>, Vec<usize>) {
    let mut rng = densenet::init::Rng::new(5);
    let x = (0..N * c.in_channels * HW * HW)
        .map(|_| rng.normal())
        .collect();
    let y = (0..N).map(|i| i % c.num_classes).collect();
    (x, y)
}

fn buffered_peak(layers: usize, plan: MemoryPlan) -> u64 {
    let c = cfg(layers);
    let mut model = DenseNet::new(c.clone(), 1).unwrap();
    let (x, y) = inputs(&c);
    let (ws_bytes, delta) = measure(|| {
        let mut ws = model.workspace_with_plan(N, HW, HW, plan).unwrap();
        model.forward_train(&mut ws, &x, &y).unwrap();
        model.backward(&mut ws).unwrap();
        ws.bytes()
    });
    println!(
        "L={layers} {plan:?}: peak {} bytes, workspace {ws_bytes} bytes",
        delta.peak_extra_bytes
    );
    delta.peak_extra_bytes
}

fn naive_peak(layers: usize) -> u64 {
    let c = cfg(layers);
    let model = DenseNet::new(c.clone(), 1).unwrap();
    let (x, y) = inputs(&c);
    let t = naive::tensors_of(model.store());
    let (_, delta) = measure(|| {
        naive::Naive {
            cfg: &c,
            t,
            bn: BatchNormConfig::default(),
            train: true,
            model_seed: 1,
            step: 1,
        }
        .run(&x, N, HW, HW, Some(&y))
        .loss
    });
    println!("L={layers} naive: peak {} bytes", delta.peak_extra_bytes);
    delta.peak_extra_bytes
}

#[test]
fn memory_efficient_training_is_linear_in_depth() {
    let (l, l2) = (12, 24);
    let growth = |plan| buffered_peak(l2, plan) as f64 / buffered_peak(l, plan) as f64;
    let me = growth(MemoryPlan::RecomputeNorm);
    let least = growth(MemoryPlan::RecomputeBottleneck);
    let stored = growth(MemoryPlan::StoreAll);
    let naive = naive_peak(l2) as f64 / naive_peak(l) as f64;
    println!(
        "growth from L={l} to L={l2}: memory-efficient {me:.3}x, recompute-bottleneck {least:.3}x, \
         stored {stored:.3}x, naive {naive:.3}x"
    );
    assert!(me <= 2.1, "memory-efficient peak grew {me:.3}x");
    assert!(least <= 2.1, "recompute-bottleneck peak grew {least:.3}x");
    assert!(naive >= 2.6, "naive twin grew only {naive:.3}x");
    assert!(
        naive > me + 0.5,
        "naive {naive:.3}x vs memory-efficient {me:.3}x"
    );
    assert!(
        stored > me + 0.3,
        "storing BN outputs grew {stored:.3}x vs {me:.3}x"
    );
}
