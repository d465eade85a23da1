//! Convolution benchmarks at DenseNet's layer shapes, every tier side by side.
//!
//! Throughput is reported as FLOPs (criterion's "elements"): `FLOPs = 2 · MACs`, with
//! `MACs = OC · IC · KH · KW · N · OH · OW` ([`Conv2dGeom::macs`]); the backward passes do the
//! same number of multiply-adds as the forward, so the same count is used. Padding taps are
//! counted, as every library counts them.
//!
//! Groups: `conv/<pass>/<net> <kernel> <IC>-><OC> @<H>[ xN]`; functions: the tiers
//! (`portable`, `avx2`, `avx512`, skipped when the CPU lacks them), `matrixmultiply` (the
//! baseline GEMM, for 1×1 convolutions, where a convolution *is* one GEMM), and `reference`
//! on the small shapes only. Thread count: `RAYON_NUM_THREADS`.

use criterion::{BenchmarkId, Criterion, Throughput};
use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::{conv2d, reference, Conv2dGeom, Isa, Workspace};
use std::hint::black_box;
use std::time::Duration;

/// A named shape.
struct Shape {
    name: String,
    g: Conv2dGeom,
}

fn shape(
    net: &str,
    n: usize,
    ic: usize,
    oc: usize,
    hw: usize,
    k: usize,
    s: usize,
    p: usize,
) -> Shape {
    let batch = if n > 1 {
        format!(" x{n}")
    } else {
        String::new()
    };
    Shape {
        name: format!(
            "{net} {k}x{k}{} {ic}->{oc} @{hw}{batch}",
            if s > 1 {
                format!("/s{s}")
            } else {
                String::new()
            }
        ),
        g: Conv2dGeom::square(n, ic, oc, hw, hw, k, s, p),
    }
}

/// DenseNet-121 at batch 1 (224×224 input) and DenseNet-BC-100 (k = 12) at batch 64 on CIFAR.
fn forward_shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    // Bottleneck 1×1 convs → 4k = 128 channels; the input width grows through each block.
    for (hw, ics) in [
        (56, [64, 128, 256]),
        (28, [128, 256, 512]),
        (14, [256, 512, 1024]),
        (7, [512, 768, 1024]),
    ] {
        for ic in ics {
            v.push(shape("d121", 1, ic, 128, hw, 1, 1, 0));
        }
    }
    // Growth 3×3 convs, 128 → k = 32.
    for hw in [56, 28, 14, 7] {
        v.push(shape("d121", 1, 128, 32, hw, 3, 1, 1));
    }
    // Stem and transitions (conv before pool, as torchvision runs them).
    v.push(shape("d121", 1, 3, 64, 224, 7, 2, 3));
    v.push(shape("d121", 1, 256, 128, 56, 1, 1, 0));
    v.push(shape("d121", 1, 512, 256, 28, 1, 1, 0));
    v.push(shape("d121", 1, 1024, 512, 14, 1, 1, 0));
    // DenseNet-BC-100, block 1 at 32×32, batch 64: bottlenecks 24..216 → 48, growth 48 → 12.
    for ic in [24, 120, 216] {
        v.push(shape("bc100", 64, ic, 48, 32, 1, 1, 0));
    }
    v.push(shape("bc100", 64, 48, 12, 32, 3, 1, 1));
    v
}

/// Shapes small enough to time the reference loops on.
fn is_small(g: &Conv2dGeom) -> bool {
    g.macs() <= 30_000_000
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn tiers() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.is_supported())
}

fn group_config(
    c: &mut Criterion,
    name: String,
    macs: u64,
) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Elements(2 * macs))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn bench_forward(c: &mut Criterion) {
    for s in forward_shapes() {
        let g = s.g;
        let inp = data(g.input_len(), 1);
        let weight = data(g.weight_len(), 2);
        let mut out = vec![0.0; g.output_len()];
        let mut ws = Workspace::with_capacity(conv2d::conv2d_workspace_len(&g));
        let mut group = group_config(c, format!("conv/forward/{}", s.name), g.macs());
        for isa in tiers() {
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |b| {
                b.iter(|| {
                    with_max_isa(isa, || {
                        conv2d::conv2d_forward(
                            &mut out,
                            black_box(&inp),
                            &weight,
                            None,
                            None,
                            &g,
                            &mut ws,
                        )
                    })
                })
            });
        }
        if g.kernel_h == 1 && g.stride_h == 1 && g.pad_h == 0 {
            let (m, k, n) = (g.out_channels, g.in_channels, g.batch * g.in_h * g.in_w);
            group.bench_function("matrixmultiply", |b| {
                b.iter(|| {
                    // SAFETY: the pointers and strides describe W [m, k], in [k, n] and
                    // out [m, n], all row-major and in bounds.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            1.0,
                            weight.as_ptr(),
                            k as isize,
                            1,
                            black_box(&inp).as_ptr(),
                            n as isize,
                            1,
                            0.0,
                            out.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    }
                })
            });
        }
        if is_small(&g) {
            group.bench_function("reference", |b| {
                b.iter(|| reference::conv2d_forward(&mut out, black_box(&inp), &weight, None, &g))
            });
        }
        group.finish();
    }
}

fn bench_backward(c: &mut Criterion) {
    let shapes = [
        shape("d121", 1, 256, 128, 28, 1, 1, 0),
        shape("d121", 1, 128, 32, 28, 3, 1, 1),
        shape("d121", 1, 128, 32, 7, 3, 1, 1),
        // DenseNet-BC-100's training shapes at batch 64 (block 1): far larger than the caches.
        shape("bc100", 64, 216, 48, 32, 1, 1, 0),
        shape("bc100", 64, 48, 12, 32, 3, 1, 1),
    ];
    for s in shapes {
        let g = s.g;
        let inp = data(g.input_len(), 1);
        let weight = data(g.weight_len(), 2);
        let d_out = data(g.output_len(), 3);
        let mut d_inp = vec![0.0; g.input_len()];
        let mut d_weight = vec![0.0; g.weight_len()];
        let mut ws = Workspace::with_capacity(conv2d::conv2d_workspace_len(&g));
        let mut group = group_config(c, format!("conv/backward_input/{}", s.name), g.macs());
        for isa in tiers() {
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |b| {
                b.iter(|| {
                    with_max_isa(isa, || {
                        conv2d::conv2d_backward_input(
                            &mut d_inp,
                            black_box(&d_out),
                            &weight,
                            &g,
                            &mut ws,
                        )
                    })
                })
            });
        }
        if is_small(&g) {
            group.bench_function("reference", |b| {
                b.iter(|| {
                    reference::conv2d_backward_input(&mut d_inp, black_box(&d_out), &weight, &g)
                })
            });
        }
        group.finish();
        let mut group = group_config(c, format!("conv/backward_weight/{}", s.name), g.macs());
        for isa in tiers() {
            group.bench_function(BenchmarkId::from_parameter(isa.name()), |b| {
                b.iter(|| {
                    with_max_isa(isa, || {
                        conv2d::conv2d_backward_weight(
                            &mut d_weight,
                            None,
                            black_box(&d_out),
                            &inp,
                            None,
                            &g,
                            &mut ws,
                        )
                    })
                })
            });
        }
        if is_small(&g) {
            group.bench_function("reference", |b| {
                b.iter(|| {
                    reference::conv2d_backward_weight(
                        &mut d_weight,
                        None,
                        black_box(&d_out),
                        &inp,
                        &g,
                    )
                })
            });
        }
        group.finish();
    }
}

/// Convolution forward at every DenseNet shape, then the backward passes at a few.
pub fn benches(c: &mut Criterion) {
    bench_forward(c);
    bench_backward(c);
}
