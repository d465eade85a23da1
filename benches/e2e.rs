//! End-to-end benchmark: one training step (forward, loss, backward, SGD) of whole networks,
//! timed, with the peak of live heap bytes from the counting allocator.
//!
//! ```text
//! cargo bench --bench e2e                    # every case
//! cargo bench --bench e2e -- bc100           # cases whose name contains "bc100"
//! E2E_STEPS=5 cargo bench --bench e2e        # timed steps per case (default 3, after 1 warm-up)
//! E2E_WINOGRAD=0 cargo bench --bench e2e     # 3×3 convolutions by the direct product only
//! ```
//!
//! Each case builds the model and its workspace, runs one warm-up step (which also grows the
//! kernels' scratch to its final size), then times `E2E_STEPS` steps and prints the median.
//! "peak" is the most heap bytes live at once during setup and all steps, above what was live
//! before the case started: parameters, gradients, momentum, workspace and any temporaries; the
//! figure in parentheses is the peak of the timed steps alone (the steady state of a training
//! loop, once every scratch buffer has reached its final size).
//! Criterion is not used because a step takes seconds; a median of a few is what it would give.

use std::time::Instant;

use densenet::train::{train_step, Sgd};
use densenet::{DenseNet, DenseNetConfig, MemoryPlan, Mode};
use densenet_kernels::alloc_counter::{self, CountingAllocator};
use densenet_kernels::sgd::SgdConfig;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

struct Case {
    name: &'static str,
    preset: &'static str,
    batch: usize,
    size: usize,
    plan: MemoryPlan,
    train: bool,
}

const CASES: [Case; 9] = [
    Case {
        name: "train/bc100_k12/b64/32x32/memory_efficient",
        preset: "densenet_bc100_k12",
        batch: 64,
        size: 32,
        plan: MemoryPlan::RecomputeNorm,
        train: true,
    },
    Case {
        name: "train/bc100_k12/b64/32x32/stored",
        preset: "densenet_bc100_k12",
        batch: 64,
        size: 32,
        plan: MemoryPlan::StoreAll,
        train: true,
    },
    Case {
        name: "train/bc100_k12/b64/32x32/recompute_bottleneck",
        preset: "densenet_bc100_k12",
        batch: 64,
        size: 32,
        plan: MemoryPlan::RecomputeBottleneck,
        train: true,
    },
    Case {
        // The budget bounds the workspace as built; on top come the kernels' scratch, which
        // grows during the first step (13 MB here), the parameters, their gradients and
        // momentum (3 MB) and temporaries: 370 MB keeps the step's peak under 400 MB.
        name: "train/bc100_k12/b64/32x32/budget_370MB",
        preset: "densenet_bc100_k12",
        batch: 64,
        size: 32,
        plan: MemoryPlan::Budget(370_000_000),
        train: true,
    },
    Case {
        name: "train/densenet121/b8/224x224/memory_efficient",
        preset: "densenet121",
        batch: 8,
        size: 224,
        plan: MemoryPlan::RecomputeNorm,
        train: true,
    },
    Case {
        name: "train/densenet121/b8/224x224/stored",
        preset: "densenet121",
        batch: 8,
        size: 224,
        plan: MemoryPlan::StoreAll,
        train: true,
    },
    Case {
        name: "train/densenet121/b8/224x224/recompute_bottleneck",
        preset: "densenet121",
        batch: 8,
        size: 224,
        plan: MemoryPlan::RecomputeBottleneck,
        train: true,
    },
    Case {
        name: "eval/densenet121/b1/224x224",
        preset: "densenet121",
        batch: 1,
        size: 224,
        plan: MemoryPlan::RecomputeNorm,
        train: false,
    },
    Case {
        name: "eval/bc100_k12/b1/32x32",
        preset: "densenet_bc100_k12",
        batch: 1,
        size: 32,
        plan: MemoryPlan::RecomputeNorm,
        train: false,
    },
];

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let steps: usize = std::env::var("E2E_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let winograd = std::env::var("E2E_WINOGRAD").map_or(true, |v| v != "0");
    println!(
        "isa {:?}, {} rayon threads, {steps} timed steps per case, Winograd 3x3 {}",
        densenet_kernels::active_isa(),
        rayon::current_num_threads(),
        if winograd { "on" } else { "off" }
    );
    for case in CASES
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
    {
        run(case, steps, winograd);
    }
}

fn run(case: &Case, steps: usize, winograd: bool) {
    let before = alloc_counter::snapshot();
    alloc_counter::reset_peak();
    let cfg = DenseNetConfig::preset(case.preset).expect("preset");
    let mut model = DenseNet::new(cfg.clone(), 0).expect("model");
    let n = case.batch;
    let mut rng = densenet::init::Rng::new(1);
    let x: Vec<f32> = (0..n * 3 * case.size * case.size)
        .map(|_| rng.normal())
        .collect();
    let y: Vec<usize> = (0..n).map(|i| i % cfg.num_classes).collect();
    let mut ws = model
        .workspace_with_plan(n, case.size, case.size, case.plan)
        .expect("workspace");
    ws.set_winograd_3x3(winograd);
    let mut sgd = Sgd::new(SgdConfig::default(), model.store());
    let mut step = |model: &mut DenseNet| {
        if case.train {
            train_step(model, &mut ws, &mut sgd, &x, &y).expect("step");
        } else {
            model.forward(&mut ws, &x, Mode::Eval).expect("forward");
        }
    };
    step(&mut model);
    // Setup and the first step include the kernels' scratch growing to its final size (a
    // reallocation holds old and new buffers at once); later steps allocate nothing new.
    let first_peak = alloc_counter::snapshot()
        .peak_bytes
        .saturating_sub(before.live_bytes);
    alloc_counter::reset_peak();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        step(&mut model);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let steady_peak = alloc_counter::snapshot()
        .peak_bytes
        .saturating_sub(before.live_bytes);
    println!(
        "{:<50} median {:>7.3} s (min {:.3}, max {:.3})  peak {:>7.1} MB (steps after the first: \
         {:>7.1} MB)  workspace {:>7.1} MB",
        case.name,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        first_peak.max(steady_peak) as f64 / 1e6,
        steady_peak as f64 / 1e6,
        ws.bytes() as f64 / 1e6
    );
}
