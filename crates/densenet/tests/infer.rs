//! The inference plan against the training code's eval forward: every rewrite on its own and
//! all together, on BC and plain networks, both stems, odd sizes and batches; no allocation in
//! `forward`; invalid sizes refused; weights round-tripped through safetensors files.
//!
//! Metric: `max_i |plan_i − ref_i| / max_i |ref_i|` over all logits of the batch (the error
//! relative to the largest logit), at most `1e-5`.

use densenet::infer::{InferencePlan, PlanOptions};
use densenet::{DenseNet, DenseNetConfig, Mode, Stem};
use densenet_kernels::alloc_counter::{self, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const TOL: f32 = 1e-5;

fn config(stem: Stem, blocks: &[usize], bn: Option<usize>, theta: f32) -> DenseNetConfig {
    DenseNetConfig {
        growth_rate: 4,
        block_config: blocks.to_vec(),
        init_features: 8,
        bn_size: bn,
        compression: theta,
        drop_rate: 0.0,
        num_classes: 7,
        in_channels: 3,
        stem,
    }
}

/// Deterministic values in [lo, hi).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// A model whose batch norms are far from the identity (random γ, β, running statistics), so
/// folding and fusing them is really exercised.
fn model(cfg: DenseNetConfig, seed: u64) -> DenseNet {
    let mut net = DenseNet::new(cfg, seed).unwrap();
    let mut rng = Lcg(seed);
    let store = net.store_mut();
    for name in store.tensor_names() {
        let (_, v) = store.tensor_mut(&name).unwrap();
        let range = if name.ends_with("running_var") {
            (0.5, 2.0)
        } else if name.ends_with("running_mean") || name.ends_with(".bias") {
            (-0.3, 0.3)
        } else if name.contains("norm") && name.ends_with(".weight") {
            (0.5, 1.5)
        } else {
            continue;
        };
        v.iter_mut().for_each(|x| *x = rng.next(range.0, range.1));
    }
    net
}

fn input(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed ^ 0xabcdef);
    (0..len).map(|_| rng.next(-2.0, 2.0)).collect()
}

fn eval_reference(net: &mut DenseNet, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    let mut ws = net.workspace(n, h, w, true).unwrap();
    net.forward(&mut ws, x, Mode::Eval).unwrap().to_vec()
}

fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Each option alone, all of them, none.
fn option_sets() -> Vec<(&'static str, PlanOptions)> {
    let none = PlanOptions::plain();
    vec![
        ("plain", none),
        (
            "fold_norm0",
            PlanOptions {
                fold_norm0: true,
                ..none
            },
        ),
        (
            "fold_norm2",
            PlanOptions {
                fold_norm2: true,
                ..none
            },
        ),
        (
            "pool_before_transition_conv",
            PlanOptions {
                pool_before_transition_conv: true,
                ..none
            },
        ),
        (
            "fuse_bn_relu_into_packing",
            PlanOptions {
                fuse_bn_relu_into_packing: true,
                ..none
            },
        ),
        (
            "dense_layers_by_strips",
            PlanOptions {
                fuse_bn_relu_into_packing: true,
                dense_layers_by_strips: true,
                ..none
            },
        ),
        (
            "winograd_3x3",
            PlanOptions {
                fuse_bn_relu_into_packing: true,
                dense_layers_by_strips: true,
                winograd_3x3: true,
                ..none
            },
        ),
        (
            "stem_in_bands",
            PlanOptions {
                stem_in_bands: true,
                ..none
            },
        ),
        (
            "all but strips",
            PlanOptions {
                dense_layers_by_strips: false,
                ..PlanOptions::default()
            },
        ),
        (
            "all but winograd",
            PlanOptions {
                winograd_3x3: false,
                ..PlanOptions::default()
            },
        ),
        ("all", PlanOptions::default()),
    ]
}

/// A rayon pool of `threads` threads.
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn check_against_eval(cfg: DenseNetConfig, n: usize, h: usize, w: usize, seed: u64) {
    let mut net = model(cfg, seed);
    let x = input(n * 3 * h * w, seed);
    let want = eval_reference(&mut net, &x, n, h, w);
    for (name, opts) in option_sets() {
        let mut plan = InferencePlan::new(&net, n, h, w, opts).unwrap();
        let got = plan.forward(&x).unwrap().to_vec();
        let err = relative_error(&got, &want);
        println!("{name:>28}: relative error {err:.2e}");
        assert!(err <= TOL, "{name}: relative error {err:e} > {TOL:e}");
        // A second pass over the same arena gives the same logits.
        assert_eq!(
            plan.forward(&x).unwrap(),
            &got[..],
            "{name}: not repeatable"
        );
    }
}

#[test]
fn bc_imagenet_stem_odd_size_matches_eval_forward() {
    let _serial = alloc_counter::exclusive();
    check_against_eval(
        config(Stem::ImageNet, &[2, 3, 2], Some(4), 0.5),
        2,
        67,
        61,
        1,
    );
}

#[test]
fn bc_cifar_stem_matches_eval_forward() {
    let _serial = alloc_counter::exclusive();
    check_against_eval(config(Stem::Cifar, &[3, 2, 2], Some(4), 0.5), 3, 16, 16, 2);
}

/// Batch 1 cuts each image of 16 rows or more into two strips on several threads: odd heights
/// (a short last strip: 17 and 35 rows), maps shared by channels below 16 rows (15, 9, 5: the
/// later blocks), maps of one or two rows in the last blocks, and a width of one column.
#[test]
fn batch_one_strips_match_eval_forward() {
    let _serial = alloc_counter::exclusive();
    check_against_eval(config(Stem::Cifar, &[3, 2, 2], Some(4), 0.5), 1, 15, 9, 5);
    check_against_eval(config(Stem::Cifar, &[3, 2], Some(4), 0.5), 1, 17, 13, 8);
    // Winograd's 3×3s in the first block: two strips of 16 and 15 rows on several threads.
    check_against_eval(config(Stem::Cifar, &[2, 2], Some(4), 0.5), 1, 31, 29, 9);
    check_against_eval(config(Stem::Cifar, &[3], Some(2), 0.5), 1, 5, 1, 6);
    check_against_eval(
        config(Stem::ImageNet, &[2, 2, 2], Some(4), 0.5),
        1,
        35,
        37,
        7,
    );
}

#[test]
fn plain_densenet_matches_eval_forward() {
    let _serial = alloc_counter::exclusive();
    check_against_eval(config(Stem::Cifar, &[3, 3], None, 1.0), 1, 13, 11, 3);
}

#[test]
fn wide_layers_take_the_parallel_paths() {
    let _serial = alloc_counter::exclusive();
    // Wide enough that the GEMMs and the fused passes go to the thread pool.
    let cfg = DenseNetConfig {
        growth_rate: 16,
        init_features: 32,
        ..config(Stem::ImageNet, &[3, 3], Some(4), 0.5)
    };
    check_against_eval(cfg, 2, 64, 64, 4);
}

/// The counters are process-wide: every test of this binary holds `alloc_counter::exclusive`,
/// so none allocates beside this one. It still takes the best of five passes, as a stray
/// allocation of the test harness itself must not count against the plan.
///
/// On a 1-thread pool nothing at all may be allocated. On 2 threads the plan still requests
/// nothing, but rayon's work stealing pins crossbeam's epoch collector, which now and then
/// allocates a small garbage bag (and jobs injected into the pool from outside take a queue
/// block every few dozen passes): bounded here at 16 KB, far below any buffer of the plan.
#[test]
fn forward_allocates_nothing() {
    let _serial = alloc_counter::exclusive();
    let cfg = DenseNetConfig {
        growth_rate: 16,
        init_features: 32,
        ..config(Stem::ImageNet, &[2, 2], Some(4), 0.5)
    };
    let net = model(cfg, 5);
    // Batch 2 runs the blocks image by image; batch 1 by strips, and at 48×48 (a 6×6 second
    // block) on two threads by output channels.
    for (threads, max_bytes, batch, size) in [
        (1, 0, 2, 64),
        (2, 16 * 1024, 2, 64),
        (1, 0, 1, 64),
        (2, 16 * 1024, 1, 64),
        (2, 16 * 1024, 1, 48),
    ] {
        let pool = pool(threads);
        pool.install(|| {
            for (_, opts) in option_sets() {
                let mut plan = InferencePlan::new(&net, batch, size, size, opts).unwrap();
                let x = input(plan.input_len(), 5);
                // Warm up, including the pool.
                plan.forward(&x).unwrap();
                plan.forward(&x).unwrap();
                let mut best = u64::MAX;
                for _ in 0..5 {
                    let (_, delta) = alloc_counter::measure(|| {
                        plan.forward(&x).unwrap();
                    });
                    best = best.min(delta.allocated_bytes);
                }
                println!("{threads} threads, batch {batch}, {size}², {opts:?}: {best} bytes");
                assert!(
                    best <= max_bytes,
                    "{threads} threads, batch {batch}, {size}², {opts:?}: forward allocated \
                     {best} bytes"
                );
            }
        });
    }
}

/// A plan built on one tier and run capped to another (or built under a cap and run uncapped)
/// allocates nothing either: every step's scratch is sized for every tier when the plan is
/// built (tile sizes, and with them packed buffers, differ from tier to tier). Every option set,
/// the ImageNet stem whole and by bands, batch 1 and 2, 1 and 2 threads.
#[test]
fn forward_under_another_tier_allocates_nothing() {
    use densenet_kernels::dispatch::with_max_isa;
    use densenet_kernels::Isa;
    let _serial = alloc_counter::exclusive();
    let cfg = config(Stem::ImageNet, &[2, 2], Some(4), 0.5);
    let net = model(cfg, 7);
    let tiers: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_supported()).collect();
    for (threads, batch, h, w) in [(1, 1, 67, 61), (2, 2, 67, 61), (2, 1, 48, 48)] {
        pool(threads).install(|| {
            for (name, opts) in option_sets() {
                for &built in &tiers {
                    let mut plan = with_max_isa(built, || {
                        InferencePlan::new(&net, batch, h, w, opts).unwrap()
                    });
                    let x = input(plan.input_len(), 7);
                    for &run in &tiers {
                        with_max_isa(run, || plan.forward(&x).unwrap());
                        // The best of three passes, as in `forward_allocates_nothing`: the
                        // test harness allocates now and then on its own.
                        let best = (0..3)
                            .map(|_| {
                                let (_, delta) = alloc_counter::measure(|| {
                                    with_max_isa(run, || plan.forward(&x).unwrap())
                                });
                                delta.allocated_bytes
                            })
                            .min()
                            .unwrap_or(0);
                        // Two threads: crossbeam's epoch bags, as in `forward_allocates_nothing`.
                        let max = if threads == 1 { 0 } else { 16 * 1024 };
                        assert!(
                            best <= max,
                            "{name}, batch {batch}, {h}x{w}, {threads} threads: built on {built}, \
                             run on {run}: {best} bytes"
                        );
                    }
                }
            }
        });
    }
}

/// A batch-1 plan built in one pool and run in a larger one (or a smaller one): the head's dot
/// products (`gemm_abt`), whose scratch the build pool sizes, run fewer tasks at once where it
/// holds fewer slots than the run pool has threads, with the same logits and no allocation. Class
/// counts that split unevenly over the threads' tiles (13, 100, 1000) asked a borrowed scratch
/// for more than it held until the head handed its whole scratch over.
#[test]
fn the_head_runs_in_any_pool() {
    let _serial = alloc_counter::exclusive();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    for classes in [7, 13, 100, 1000] {
        let cfg = DenseNetConfig {
            num_classes: classes,
            ..config(Stem::Cifar, &[2, 2], Some(4), 0.5)
        };
        let net = model(cfg, 11);
        let x = input(3 * 16 * 16, 11);
        let reference = pool(1)
            .install(|| InferencePlan::new(&net, 1, 16, 16, PlanOptions::default()))
            .unwrap()
            .forward(&x)
            .unwrap()
            .to_vec();
        for built_in in 1..=4 {
            let mut plan = pool(built_in)
                .install(|| InferencePlan::new(&net, 1, 16, 16, PlanOptions::default()))
                .unwrap();
            for run_in in 1..=4 {
                let got = pool(run_in).install(|| {
                    plan.forward(&x).unwrap();
                    let best = (0..3)
                        .map(|_| alloc_counter::measure(|| plan.forward(&x).unwrap()).1)
                        .map(|delta| delta.allocated_bytes)
                        .min()
                        .unwrap_or(0);
                    let max = if run_in == 1 { 0 } else { 16 * 1024 };
                    assert!(
                        best <= max,
                        "{classes} classes, built in {built_in}, run in {run_in}: {best} bytes"
                    );
                    plan.forward(&x).unwrap().to_vec()
                });
                assert_eq!(
                    bits(&got),
                    bits(&reference),
                    "{classes} classes, built in {built_in} threads, run in {run_in}"
                );
            }
        }
    }
}

#[test]
fn arena_is_at_least_the_peak_and_reuses_memory() {
    let _serial = alloc_counter::exclusive();
    let cfg = config(Stem::ImageNet, &[2, 3, 2], Some(4), 0.5);
    let net = model(cfg.clone(), 6);
    // Without Winograd: its scratch (the transformed weights and one block of at least 32
    // tiles' transformed input, 128 KiB per image for this first block of 16×16 maps) is
    // larger than all these tiny maps' buffers, where it is a few percent of densenet121's
    // arena at batch 1 (which it leaves unchanged).
    let opts = PlanOptions {
        winograd_3x3: false,
        ..PlanOptions::default()
    };
    let plan = InferencePlan::new(&net, 2, 64, 64, opts).unwrap();
    assert!(plan.arena_bytes() >= plan.peak_live_bytes());
    // Without reuse the arena would hold every buffer at once: the block buffers (and the
    // stem's and the other steps', and each step's packing scratch).
    let sizes = cfg.block_sizes(64, 64).unwrap();
    let all_feats: usize = sizes
        .iter()
        .enumerate()
        .map(|(b, (h, w))| cfg.block_out_channels(b) * 2 * h * w * 4)
        .sum::<usize>();
    assert!(plan.unshared_bytes() > all_feats + plan.scratch_bytes());
    assert!(
        plan.arena_bytes() < plan.unshared_bytes(),
        "arena {} B does not reuse memory ({} B of buffers)",
        plan.arena_bytes(),
        plan.unshared_bytes()
    );
    assert!(plan.weight_bytes() > 0);
}

#[test]
fn invalid_sizes_and_inputs_are_refused() {
    let _serial = alloc_counter::exclusive();
    let net = model(config(Stem::ImageNet, &[2, 2, 2], Some(4), 0.5), 7);
    for (n, h, w) in [(1, 3, 64), (1, 64, 2), (0, 64, 64), (1, 8, 8)] {
        let err = InferencePlan::new(&net, n, h, w, PlanOptions::default());
        assert!(err.is_err(), "{n}x{h}x{w} was accepted");
        println!("{n}x{h}x{w}: {}", err.unwrap_err());
    }
    let mut plan = InferencePlan::new(&net, 1, 32, 32, PlanOptions::default()).unwrap();
    let err = plan.forward(&[0.0; 10]).unwrap_err().to_string();
    assert!(err.contains("3072"), "{err}");
}

#[test]
fn weights_round_trip_through_a_file_into_the_plan() {
    let _serial = alloc_counter::exclusive();
    let cfg = config(Stem::ImageNet, &[2, 2], Some(4), 0.5);
    let mut a = model(cfg.clone(), 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    a.save_weights(&path).unwrap();
    let mut b = DenseNet::new(cfg, 99).unwrap();
    let report = b.load_weights(&path).unwrap();
    assert_eq!(report.loaded, b.store().tensor_names().len());
    let x = input(2 * 3 * 40 * 40, 8);
    let want = eval_reference(&mut a, &x, 2, 40, 40);
    let mut plan = InferencePlan::new(&b, 2, 40, 40, PlanOptions::default()).unwrap();
    let err = relative_error(plan.forward(&x).unwrap(), &want);
    assert!(err <= TOL, "{err:e}");
    // Weights of another architecture are refused, naming the tensors, and change nothing.
    let mut c = DenseNet::new(config(Stem::ImageNet, &[2, 3], Some(4), 0.5), 1).unwrap();
    let before = c.store().params().to_vec();
    let msg = c.load_weights(&path).unwrap_err().to_string();
    assert!(msg.contains("denseblock2.denselayer3"), "{msg}");
    assert_eq!(c.store().params(), &before[..]);
}

#[test]
fn a_plan_from_a_consumed_model_is_the_same_plan() {
    let _serial = alloc_counter::exclusive();
    // The ImageNet stem, so that `norm0` is folded into the taken-over parameter vector too.
    let cfg = config(Stem::ImageNet, &[2, 2], Some(4), 0.5);
    let mut net = model(cfg.clone(), 9);
    let x = input(2 * 3 * 37 * 41, 9);
    let want = eval_reference(&mut net, &x, 2, 37, 41);
    let before = net.store().params().to_vec();
    let mut borrowed = InferencePlan::new(&net, 2, 37, 41, PlanOptions::default()).unwrap();
    assert_eq!(net.store().params(), &before[..], "new() changed the model");
    let want_plan = borrowed.forward(&x).unwrap().to_vec();
    let mut plan = InferencePlan::from_model(net, 2, 37, 41, PlanOptions::default()).unwrap();
    let got = plan.forward(&x).unwrap();
    assert_eq!(got, &want_plan[..], "from_model and new differ");
    let err = relative_error(got, &want);
    assert!(err <= TOL, "{err:e}");
}

/// The plan's work split depends on shapes only: logits are bit-identical on 1 and 2 threads.
#[test]
fn one_and_two_threads_give_the_same_logits() {
    let _serial = alloc_counter::exclusive();
    let cfg = DenseNetConfig {
        growth_rate: 16,
        init_features: 32,
        ..config(Stem::ImageNet, &[3, 3], Some(4), 0.5)
    };
    let net = model(cfg, 12);
    let logits = |batch: usize, x: &[f32], threads: usize| {
        pool(threads).install(|| {
            let mut plan = InferencePlan::new(&net, batch, 64, 64, PlanOptions::default()).unwrap();
            plan.forward(x).unwrap().to_vec()
        })
    };
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let x = input(2 * 3 * 64 * 64, 12);
    assert_eq!(bits(&logits(2, &x, 1)), bits(&logits(2, &x, 2)));

    // Batch 1: the strips of one image run on both threads.
    let x = input(3 * 64 * 64, 13);
    assert_eq!(bits(&logits(1, &x, 1)), bits(&logits(1, &x, 2)));
}

/// A plan built in one pool (or under one tier cap) and run in another: the blocks' schedule
/// (one whole-image strip per layer on one thread; two strips per image, or for maps under 16
/// rows a whole-image strip shared by output channels, on more; image by image at batch ≥ 2)
/// and the strips' scratch are chosen when the plan is built, so plans built in different pools run different schedules.
/// Every schedule gives the same bits: with `norm2` folded (a bare ReLU before the 3×3) and
/// unfolded (a real affine map, where a fused multiply-add would round differently), against a
/// plan without strips, on every tier. With Winograd's 3×3s (maps of 14 rows and columns and
/// more, 16 rows at batch 1: strips of 10 and 8 or 7 rows, 16 and 15; image by image; a 15-row
/// map, direct in every pool; F(4×4, 3×3) in strips of 24 rows at 48×52 and of 28 and 24 rows
/// at 52×56, image by image at 48×48; F(2×2, 3×3) at 50×52, whose rows are not whole 4×4
/// tiles), whose sums are not the direct convolution's, against
/// the plan built on one thread (one strip per image).
#[test]
fn a_plan_built_in_one_pool_runs_in_another() {
    use densenet_kernels::dispatch::with_max_isa;
    use densenet_kernels::Isa;
    let _serial = alloc_counter::exclusive();
    let cfg = config(Stem::Cifar, &[3, 2], Some(4), 0.5);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let unfolded = PlanOptions {
        fold_norm2: false,
        ..PlanOptions::default()
    };
    let direct = PlanOptions {
        winograd_3x3: false,
        ..PlanOptions::default()
    };
    // The strips' maps against the passes' in the Winograd blocks too (with Winograd those
    // blocks are compared with a plan built on one thread instead).
    let unfolded_direct = PlanOptions {
        winograd_3x3: false,
        ..unfolded
    };
    for opts in [PlanOptions::default(), unfolded, direct, unfolded_direct] {
        let passes = PlanOptions {
            dense_layers_by_strips: false,
            ..opts
        };
        let sizes = [
            (1, 17, 13),
            (1, 9, 31),
            (1, 3, 3),
            (3, 2, 2),
            (5, 6, 5),
            (1, 18, 15),
            (1, 17, 14),
            (1, 31, 16),
            (1, 15, 29),
            (2, 14, 17),
            (1, 48, 52),
            (1, 52, 56),
            (1, 50, 52),
            (2, 48, 48),
        ];
        for (n, h, w) in sizes {
            let net = model(cfg.clone(), 21);
            let x = input(n * 3 * h * w, 21);
            let want = eval_reference(&mut net.clone(), &x, n, h, w);
            let build = |opts| InferencePlan::new(&net, n, h, w, opts).unwrap();
            let single = if opts.winograd_3x3 { opts } else { passes };
            let reference = pool(1).install(|| build(single).forward(&x).unwrap().to_vec());
            assert!(relative_error(&reference, &want) <= 1e-5, "{n}x{h}x{w}");
            for built_in in 1..=4 {
                let mut plan = pool(built_in).install(|| build(opts));
                for run_in in 1..=4 {
                    let got = pool(run_in).install(|| plan.forward(&x).unwrap().to_vec());
                    assert_eq!(
                        bits(&got),
                        bits(&reference),
                        "{n}x{h}x{w} {opts:?}: built in {built_in} threads, run in {run_in}"
                    );
                }
            }
            // On every tier: plans built in one and two threads, and under the portable cap,
            // equal a plan without strips (with Winograd: built on one thread) on that tier.
            let mut portable = with_max_isa(Isa::Portable, || build(opts));
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                let on = |threads: usize, o| {
                    pool(threads)
                        .install(|| with_max_isa(isa, || build(o).forward(&x).unwrap().to_vec()))
                };
                let native = on(1, single);
                let capped = with_max_isa(isa, || portable.forward(&x).unwrap().to_vec());
                assert_eq!(
                    bits(&capped),
                    bits(&native),
                    "{n}x{h}x{w} {opts:?} on {isa}"
                );
                assert_eq!(
                    bits(&on(1, opts)),
                    bits(&native),
                    "{n}x{h}x{w} on {isa}, 1 thread"
                );
                assert_eq!(
                    bits(&on(2, opts)),
                    bits(&native),
                    "{n}x{h}x{w} on {isa}, 2 threads"
                );
            }
        }
    }
}

/// Maps shorter than 16 rows at batch 1 run by output channels on several threads: the same
/// bits as the whole-tensor passes for plans built and run in pools of 1–3 threads and on every
/// tier, with growth rates and bottlenecks that split unevenly (bottleneck 20 = 8 + 8 + 4 rows;
/// 12 new channels, one row group of AVX-512's 12-row tile; 32, four groups), `norm2` folded
/// and not.
#[test]
fn short_maps_shared_by_channels_across_pools() {
    use densenet_kernels::dispatch::with_max_isa;
    use densenet_kernels::Isa;
    let _serial = alloc_counter::exclusive();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    for (k, bn) in [(5, 4), (12, 4), (32, 2)] {
        let cfg = DenseNetConfig {
            growth_rate: k,
            ..config(Stem::Cifar, &[2, 2], Some(bn), 0.5)
        };
        let net = model(cfg, 33);
        for fold_norm2 in [true, false] {
            let opts = PlanOptions {
                fold_norm2,
                ..PlanOptions::default()
            };
            let passes = PlanOptions {
                dense_layers_by_strips: false,
                ..opts
            };
            for (h, w) in [(7, 7), (4, 5)] {
                let x = input(3 * h * w, 34);
                let build = |o| InferencePlan::new(&net, 1, h, w, o).unwrap();
                let reference = pool(1).install(|| build(passes).forward(&x).unwrap().to_vec());
                for built_in in 1..=3 {
                    let mut plan = pool(built_in).install(|| build(opts));
                    for run_in in 1..=3 {
                        let got = pool(run_in).install(|| plan.forward(&x).unwrap().to_vec());
                        assert_eq!(
                            bits(&got),
                            bits(&reference),
                            "k {k}, {h}x{w}, fold {fold_norm2}: built in {built_in}, run in {run_in}"
                        );
                    }
                }
                for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                    let on = |threads: usize, o| {
                        pool(threads).install(|| {
                            with_max_isa(isa, || build(o).forward(&x).unwrap().to_vec())
                        })
                    };
                    assert_eq!(
                        bits(&on(2, opts)),
                        bits(&on(1, passes)),
                        "k {k}, {h}x{w}, fold {fold_norm2} on {isa}"
                    );
                }
            }
        }
    }
}

/// A tier cap the caller sets with `with_max_isa` reaches the forward pass, which runs on a
/// rayon worker: the capped result from this (non-pool) thread equals the same call made from
/// inside a pool under the same cap, on every tier the CPU has.
#[test]
fn tier_cap_reaches_the_forward_pass() {
    use densenet_kernels::dispatch::with_max_isa;
    use densenet_kernels::Isa;
    let _exclusive = alloc_counter::exclusive();
    let cfg = config(Stem::Cifar, &[3, 3], Some(4), 0.5);
    let (n, h, w) = (2, 16, 16);
    let x = input(n * 3 * h * w, 5);
    let mut plan =
        InferencePlan::from_model(model(cfg, 3), n, h, w, PlanOptions::default()).expect("plan");
    let pool = pool(2);
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let here = with_max_isa(isa, || plan.forward(&x).expect("forward").to_vec());
        let in_pool =
            pool.install(|| with_max_isa(isa, || plan.forward(&x).expect("forward").to_vec()));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&here), bits(&in_pool), "[{isa}]");
    }
}

/// The ImageNet stem run by bands of 8 pooled rows gives the bits of the stem run whole, in
/// no more arena and scratch: one band, several, a last band of one row; batch 1 (whose whole
/// stem reads the caller's input in place) and more; `norm0` folded and not; plans built and
/// run on 1 and 2 threads.
#[test]
fn stem_in_bands_is_the_whole_stem() {
    let _serial = alloc_counter::exclusive();
    let cfg = config(Stem::ImageNet, &[2, 2], Some(4), 0.5);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    // Pooled heights 17 (8 + 8 + 1), 12 (8 + 4), 33 and 8 (one band).
    for (n, h, w) in [(1, 67, 61), (3, 45, 50), (1, 131, 40), (2, 29, 33)] {
        let net = model(cfg.clone(), 41);
        let x = input(n * 3 * h * w, 41);
        for fold_norm0 in [true, false] {
            let banded = PlanOptions {
                fold_norm0,
                ..PlanOptions::default()
            };
            let whole = PlanOptions {
                stem_in_bands: false,
                ..banded
            };
            for threads in [1, 2] {
                let plan =
                    |o| pool(threads).install(|| InferencePlan::new(&net, n, h, w, o).unwrap());
                let (mut a, mut b) = (plan(banded), plan(whole));
                assert!(a.arena_bytes() <= b.arena_bytes(), "{n}x{h}x{w}: arena");
                assert!(
                    a.scratch_bytes() <= b.scratch_bytes(),
                    "{n}x{h}x{w}: scratch"
                );
                let (got, want) = pool(threads).install(|| {
                    (
                        a.forward(&x).unwrap().to_vec(),
                        b.forward(&x).unwrap().to_vec(),
                    )
                });
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{n}x{h}x{w}, norm0 folded {fold_norm0}, {threads} threads"
                );
            }
        }
    }
}

/// densenet121 at 224×224, batch 2: the stem by bands needs less scratch (one band's
/// convolution) and no more arena (it holds no 6.1 MiB output map and no 1.1 MiB CNHW copy of
/// the input, though block 1's step is the arena's peak here), for the same logits bit for bit.
#[test]
fn densenet121_stem_bands_save_memory() {
    let _serial = alloc_counter::exclusive();
    let net = model(DenseNetConfig::preset("densenet121").unwrap(), 43);
    let x = input(2 * 3 * 224 * 224, 43);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    let whole = PlanOptions {
        stem_in_bands: false,
        ..PlanOptions::default()
    };
    let plan = |o| pool(2).install(|| InferencePlan::new(&net, 2, 224, 224, o).unwrap());
    let (mut a, mut b) = (plan(PlanOptions::default()), plan(whole));
    println!(
        "arena {} -> {} bytes, scratch {} -> {} bytes",
        b.arena_bytes(),
        a.arena_bytes(),
        b.scratch_bytes(),
        a.scratch_bytes()
    );
    assert!(a.arena_bytes() <= b.arena_bytes());
    assert!(a.scratch_bytes() < b.scratch_bytes());
    let (got, want) = pool(2).install(|| {
        (
            a.forward(&x).unwrap().to_vec(),
            b.forward(&x).unwrap().to_vec(),
        )
    });
    assert_eq!(bits(&got), bits(&want));
}

/// densenet121 at 224×224, batch 1: Winograd's 3×3s (F(4×4, 3×3) in its 56×56 block,
/// F(2×2, 3×3) in its 28×28 block, 18 layers) against the direct ones, through the whole
/// network: the logits within `1e-5` of the largest, and the plan with Winograd against the
/// training code's eval forward too. Plans built on one and on two threads give the same bits:
/// one whole-image strip per layer, whose F(4×4, 3×3) takes blocks of 32 tiles, against two
/// strips, each with its own block of 32. The two-thread plan's arena is at most 7.1 MiB
/// (7.10: block 1's step, with two strips' blocks).
#[test]
fn winograd_through_densenet121() {
    let _serial = alloc_counter::exclusive();
    let mut net = model(DenseNetConfig::preset("densenet121").unwrap(), 31);
    let x = input(3 * 224 * 224, 31);
    let run = |winograd_3x3, threads| {
        let opts = PlanOptions {
            winograd_3x3,
            ..PlanOptions::default()
        };
        pool(threads).install(|| {
            let mut plan = InferencePlan::new(&net, 1, 224, 224, opts).unwrap();
            if winograd_3x3 && threads == 2 {
                let mib = plan.arena_bytes() as f64 / (1024.0 * 1024.0);
                assert!(mib <= 7.1, "arena {mib:.2} MiB");
            }
            plan.forward(&x).unwrap().to_vec()
        })
    };
    let (winograd, direct) = (run(true, 2), run(false, 2));
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    assert_eq!(
        bits(&run(true, 1)),
        bits(&winograd),
        "one thread against two"
    );
    let err = relative_error(&winograd, &direct);
    println!("densenet121: Winograd against direct, relative error {err:.2e}");
    assert!(err <= TOL, "relative error {err:e}");
    let want = eval_reference(&mut net, &x, 1, 224, 224);
    let err = relative_error(&winograd, &want);
    println!("densenet121: Winograd against the eval forward, relative error {err:.2e}");
    assert!(err <= TOL, "relative error {err:e}");
}
