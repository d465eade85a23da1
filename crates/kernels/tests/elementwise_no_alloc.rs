//! The forward kernels of batch norm, ReLU, dropout and pooling allocate
//! nothing, measured with the counting allocator. One test only: the counters are process-wide,
//! and a second test running alongside would be counted too.
use densenet_kernels::alloc_counter::{measure, CountingAllocator};
use densenet_kernels::batchnorm::*;
use densenet_kernels::elementwise::*;
use densenet_kernels::pool::*;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, ChannelAffine, Pool2dGeom};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[test]
fn forward_kernels_allocate_nothing() {
    // Large enough to run on rayon workers, small enough to be quick.
    let g = BatchNormGeom {
        channels: 64,
        per_channel: 4 * 28 * 28,
    };
    let pg = Pool2dGeom {
        planes: 64,
        in_h: 56,
        in_w: 56,
        kernel: 3,
        stride: 2,
        pad: 1,
    };
    let ag = Pool2dGeom {
        kernel: 2,
        stride: 2,
        pad: 0,
        ..pg
    };
    let x: Vec<f32> = (0..g.len()).map(|i| (i % 97) as f32 * 0.01 - 0.4).collect();
    let c = g.channels;
    let (gamma, beta) = (vec![1.1; c], vec![0.1; c]);
    let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
    let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
    let (mut scale, mut shift) = (vec![0.0; c], vec![0.0; c]);
    let mut out = vec![0.0; g.len()];
    let mut pooled = vec![0.0; pg.output_len()];
    let mut avg = vec![0.0; ag.output_len()];
    let mut feats = vec![0.0; 2 * 16];
    let cfg = BatchNormConfig::default();

    let mut run = || {
        batchnorm_relu_forward_train(
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
        );
        batchnorm_forward_train(
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
        );
        batchnorm_forward_infer(&mut out, &x, &gamma, &beta, &rm, &rv, 1e-5, &g);
        batchnorm_relu_forward_infer(&mut out, &x, &gamma, &beta, &rm, &rv, 1e-5, &g);
        batchnorm_scale_shift(&mut scale, &mut shift, &gamma, &beta, &mean, &invstd);
        let affine = ChannelAffine {
            scale: &scale,
            shift: &shift,
            relu: true,
        };
        channel_affine_forward(&mut out, &x, &affine, &g);
        relu_forward(&mut out, &x);
        dropout_forward(&mut out, &x, 0.2, 1);
        maxpool2d_forward(&mut pooled, &x, &pg);
        avgpool2d_forward(&mut avg, &x, &ag);
        global_avgpool_forward(&mut feats, &x[..16 * 2 * 49], 16, 2, 49);
    };
    // As in `conv2d_alloc.rs`: on a 1-thread pool nothing at all may be allocated; on 2 threads
    // the kernels request nothing either, but work stealing pins crossbeam's epoch collector,
    // which now and then allocates a garbage bag of a few KB (this test failed now and then on a
    // loaded machine when it ran the kernels from outside the pool and allowed 0 bytes there).
    // A kernel that allocates does so on every call, so the least of a few passes is what
    // counts.
    for (threads, max_bytes) in [(1, 0), (2, 8192)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // Warm up: the pool and its thread-locals allocate on first use.
            run();
            run();
            let least = (0..3)
                .map(|_| measure(&mut run).1)
                .min_by_key(|d| d.allocated_bytes)
                .unwrap();
            assert!(
                least.allocated_bytes <= max_bytes,
                "forward kernels allocated on {threads} threads: {least:?}"
            );
        });
    }
}
