//! Benches of the memory-bound kernels at DenseNet's shapes, every tier beside the reference.
//!
//! Throughput is `Throughput::Bytes`: the bytes each kernel reads plus writes *as it runs*,
//! counted per value with 4-byte floats. A pass that reads one tensor counts 4 B per value, so
//! - BN(+ReLU) training forward: statistics read `x`, normalisation reads `x` and writes `y`:
//!   12 B/value;
//! - BN(+ReLU) eval forward, ReLU forward, dropout forward, copy: read + write, 8 B/value;
//! - BN(+ReLU) backward: sums read `dy`, `x`; update reads `dy`, `x`, `dx`, writes `dx`: 24 B/value;
//! - ReLU backward: reads `dy`, `x`, `dx`, writes `dx`: 16 B/value;
//! - pooling forward: input once plus output once; max-pool backward: input, `dy`, and `dx`
//!   read and written; average-pool backward: `dy` plus `dx` read and written;
//! - SGD: reads parameter, buffer, gradient, writes parameter and buffer: 20 B/value.
//!
//! `copy/*` measures `copy_from_slice` (one thread) and a rayon copy over 64 KiB chunks: the
//! stream-like bandwidth the elementwise kernels are measured against.
//!
//! Quick run: `cargo bench --bench kernels -- elementwise --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{BenchmarkGroup, Criterion, Throughput};
use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::reference as r;
use densenet_kernels::Pool2dGeom;
use densenet_kernels::{batchnorm, elementwise, pool, sgd, BatchNormConfig, BatchNormGeom, Isa};
use rayon::prelude::*;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Deterministic values in about [-1, 1).
fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// Deterministic values in [-1, 1) without `data`'s arithmetic pattern, for kernels whose
/// speed depends on comparisons of neighbouring values: the pattern makes max pooling's window
/// winners, and a branchy scan's branches, regular where real activations make them random.
fn scrambled(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let mut z = (i as u64 ^ (seed as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Adds one function per supported tier, each running `f` capped at that tier.
fn tiers(group: &mut Group<'_>, mut f: impl FnMut()) {
    for isa in Isa::ALL {
        if isa.is_supported() {
            group.bench_function(isa.name(), |b| b.iter(|| with_max_isa(isa, &mut f)));
        }
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g
}

/// BN shapes: DenseNet-121 batch 1 (dense-block prefixes), DenseNet-BC-100 batch 64 at 32×32.
const BN_SHAPES: [(&str, usize, usize); 6] = [
    ("d121_256x56x56", 256, 56 * 56),
    ("d121_512x28x28", 512, 28 * 28),
    ("d121_1024x14x14", 1024, 14 * 14),
    ("d121_1024x7x7", 1024, 7 * 7),
    ("bc100_n64_24x32x32", 24, 64 * 32 * 32),
    ("bc100_n64_216x32x32", 216, 64 * 32 * 32),
];

fn bench_batchnorm(c: &mut Criterion) {
    let cfg = BatchNormConfig::default();
    for (name, channels, per_channel) in BN_SHAPES {
        let g = BatchNormGeom {
            channels,
            per_channel,
        };
        let n = g.len();
        let x = data(n, 1);
        let dy = data(n, 2);
        let (gamma, beta) = (data(channels, 3), data(channels, 4));
        let (mut mean, mut invstd) = (vec![0.0; channels], vec![0.0; channels]);
        let (mut rm, mut rv) = (vec![0.0; channels], vec![1.0; channels]);
        let mut out = vec![0.0; n];
        let mut dx = vec![0.0; n];
        let (mut dg, mut db) = (vec![0.0; channels], vec![0.0; channels]);

        let mut grp = group(c, &format!("bn_relu_forward_train/{name}"), 12 * n);
        grp.bench_function("reference", |b| {
            b.iter(|| {
                r::batchnorm_relu_forward_train(
                    &mut out,
                    &mut mean,
                    &mut invstd,
                    &mut rm,
                    &mut rv,
                    &x,
                    &gamma,
                    &beta,
                    &cfg,
                    &g,
                )
            })
        });
        tiers(&mut grp, || {
            batchnorm::batchnorm_relu_forward_train(
                &mut out,
                &mut mean,
                &mut invstd,
                &mut rm,
                &mut rv,
                &x,
                &gamma,
                &beta,
                &cfg,
                &g,
            )
        });
        grp.finish();

        let mut grp = group(c, &format!("bn_relu_forward_infer/{name}"), 8 * n);
        tiers(&mut grp, || {
            batchnorm::batchnorm_relu_forward_infer(&mut out, &x, &gamma, &beta, &rm, &rv, 1e-5, &g)
        });
        grp.finish();

        let mut grp = group(c, &format!("bn_relu_backward/{name}"), 24 * n);
        grp.bench_function("reference", |b| {
            b.iter(|| {
                r::batchnorm_relu_backward(
                    &mut dx, &mut dg, &mut db, &dy, &x, &gamma, &beta, &mean, &invstd, &g,
                )
            })
        });
        tiers(&mut grp, || {
            batchnorm::batchnorm_relu_backward(
                &mut dx, &mut dg, &mut db, &dy, &x, &gamma, &beta, &mean, &invstd, &g,
            )
        });
        grp.finish();
        black_box((&out, &dx));
    }
}

fn bench_relu_dropout_copy(c: &mut Criterion) {
    for (name, n) in [
        ("256x56x56", 256 * 56 * 56),
        ("bc100_n64_216x32x32", 216 * 64 * 32 * 32),
    ] {
        let x = data(n, 5);
        let dy = data(n, 6);
        let mut out = vec![0.0; n];
        let mut dx = vec![0.0; n];

        let mut grp = group(c, &format!("copy/{name}"), 8 * n);
        grp.bench_function("copy_from_slice", |b| {
            b.iter(|| out.copy_from_slice(black_box(&x)))
        });
        grp.bench_function("rayon_copy", |b| {
            b.iter(|| {
                out.par_chunks_mut(1 << 14)
                    .zip(x.par_chunks(1 << 14))
                    .for_each(|(o, x)| o.copy_from_slice(x))
            })
        });
        grp.finish();

        let mut grp = group(c, &format!("relu_forward/{name}"), 8 * n);
        grp.bench_function("reference", |b| b.iter(|| r::relu_forward(&mut out, &x)));
        tiers(&mut grp, || elementwise::relu_forward(&mut out, &x));
        grp.finish();

        let mut grp = group(c, &format!("relu_backward/{name}"), 16 * n);
        grp.bench_function("reference", |b| {
            b.iter(|| r::relu_backward(&mut dx, &dy, &x))
        });
        tiers(&mut grp, || elementwise::relu_backward(&mut dx, &dy, &x));
        grp.finish();

        let mut grp = group(c, &format!("dropout_forward/{name}"), 8 * n);
        grp.bench_function("reference", |b| {
            b.iter(|| r::dropout_forward(&mut out, &x, 0.2, 7))
        });
        tiers(&mut grp, || {
            elementwise::dropout_forward(&mut out, &x, 0.2, 7)
        });
        grp.finish();
        black_box((&out, &dx));
    }
}

fn bench_pool(c: &mut Criterion) {
    // The stem pool at batch 1 and at batch 8 (a training step's 64·8 planes), and an odd
    // little shape: 7 outputs a row, the first and last windows clipped by the padding.
    let shapes = [
        ("maxpool3s2p1/d121_stem_64x112x112", 64, 112, 112, 3, 2, 1),
        ("maxpool3s2p1/d121_n8_512x112x112", 512, 112, 112, 3, 2, 1),
        ("maxpool3s2p1/odd_37x15x13", 37, 15, 13, 3, 2, 1),
        ("avgpool2s2/d121_t1_128x56x56", 128, 56, 56, 2, 2, 0),
        ("avgpool2s2/d121_t2_256x28x28", 256, 28, 28, 2, 2, 0),
        ("avgpool2s2/d121_t3_512x14x14", 512, 14, 14, 2, 2, 0),
    ];
    for (name, planes, in_h, in_w, kernel, stride, pad) in shapes {
        let g = Pool2dGeom {
            planes,
            in_h,
            in_w,
            kernel,
            stride,
            pad,
        };
        let max = kernel == 3;
        let x = if max {
            scrambled(g.input_len(), 8)
        } else {
            data(g.input_len(), 8)
        };
        let dy = data(g.output_len(), 9);
        let mut out = vec![0.0; g.output_len()];
        let mut dx = vec![0.0; g.input_len()];
        let mut grp = group(
            c,
            &format!("{name}/forward"),
            4 * (g.input_len() + g.output_len()),
        );
        if max {
            grp.bench_function("reference", |b| {
                b.iter(|| r::maxpool2d_forward(&mut out, &x, &g))
            });
            tiers(&mut grp, || pool::maxpool2d_forward(&mut out, &x, &g));
        } else {
            grp.bench_function("reference", |b| {
                b.iter(|| r::avgpool2d_forward(&mut out, &x, &g))
            });
            tiers(&mut grp, || pool::avgpool2d_forward(&mut out, &x, &g));
        }
        grp.finish();
        let bytes = if max {
            4 * (3 * g.input_len() + g.output_len())
        } else {
            4 * (2 * g.input_len() + g.output_len())
        };
        let mut grp = group(c, &format!("{name}/backward"), bytes);
        if max {
            grp.bench_function("reference", |b| {
                b.iter(|| r::maxpool2d_backward(&mut dx, &dy, &x, &g))
            });
            tiers(&mut grp, || pool::maxpool2d_backward(&mut dx, &dy, &x, &g));
        } else {
            grp.bench_function("reference", |b| {
                b.iter(|| r::avgpool2d_backward(&mut dx, &dy, &g))
            });
            tiers(&mut grp, || pool::avgpool2d_backward(&mut dx, &dy, &g));
        }
        grp.finish();
        black_box((&out, &dx));
    }

    // The head: DenseNet-121 batch 1 (1024 × 7×7), DenseNet-BC-100 batch 64 (342 × 8×8).
    for (name, channels, batch, hw) in [
        ("d121_1024x7x7", 1024, 1, 49),
        ("bc100_n64_342x8x8", 342, 64, 64),
    ] {
        let x = data(channels * batch * hw, 10);
        let mut out = vec![0.0; channels * batch];
        let mut grp = group(
            c,
            &format!("global_avgpool/{name}"),
            4 * (x.len() + out.len()),
        );
        grp.bench_function("reference", |b| {
            b.iter(|| r::global_avgpool_forward(&mut out, &x, channels, batch, hw))
        });
        tiers(&mut grp, || {
            pool::global_avgpool_forward(&mut out, &x, channels, batch, hw)
        });
        grp.finish();
        black_box(&out);
    }
}

fn bench_sgd(c: &mut Criterion) {
    // About DenseNet-121's 8 M parameters.
    let n = 8_000_000;
    let mut p = data(n, 11);
    let mut buf = data(n, 12);
    let grad = data(n, 13);
    let cfg = sgd::SgdConfig::default();
    let mut grp = group(c, "sgd_step/8M", 20 * n);
    grp.bench_function("reference", |b| {
        b.iter(|| r::sgd_step(&mut p, &mut buf, &grad, &cfg, false))
    });
    tiers(&mut grp, || {
        sgd::sgd_step(&mut p, &mut buf, &grad, &cfg, false)
    });
    grp.finish();
}

/// Every elementwise, per-channel and pooling bench.
pub fn benches(c: &mut Criterion) {
    bench_relu_dropout_copy(c);
    bench_batchnorm(c);
    bench_pool(c);
    bench_sgd(c);
}
