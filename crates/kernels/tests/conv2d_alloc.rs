//! Once its workspace is warm, the convolution allocates nothing (its own test binary: the
//! counting allocator is process-wide, so no other test may run beside it).

use densenet_kernels::alloc_counter::{measure, CountingAllocator};
use densenet_kernels::{conv2d, ChannelAffine, Conv2dGeom, Workspace};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// One test only: the counters are process-wide, so a second test running beside it would be
/// counted too.
///
/// On a 1-thread pool nothing at all may be allocated. The kernels run on a pool worker:
/// rayon's queue for jobs injected from *outside* a pool allocates a block every few dozen
/// injections (a network's pass runs inside the pool, so that is paid once per pass).
///
/// On 2 threads the kernels still request no memory, but work stealing pins crossbeam's epoch
/// collector, which now and then allocates a ~2 KB garbage bag; that is bounded far below any
/// buffer the kernels use (the smallest here is tens of KB).
#[test]
fn warm_conv_allocates_nothing() {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(|| check_shapes(0));
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    two.install(|| check_shapes(8192));
}

fn check_shapes(max_bytes: u64) {
    // Large enough to run on the thread pool (`gemm::worth_parallel`: 2¹⁸ multiply-adds); the
    // pool is started (and warm) before measuring.
    let shapes = [
        Conv2dGeom::square(2, 64, 32, 16, 16, 3, 1, 1),
        Conv2dGeom::square(1, 96, 48, 28, 28, 1, 1, 0),
        Conv2dGeom::square(1, 3, 16, 96, 96, 7, 2, 3),
    ];
    for g in shapes {
        assert!(g.macs() >= 1 << 18, "{g:?} would run on one thread");
        let inp = vec![0.5f32; g.input_len()];
        let weight = vec![0.25f32; g.weight_len()];
        let (scale, shift) = (vec![1.5f32; g.in_channels], vec![-0.5f32; g.in_channels]);
        let pre = ChannelAffine {
            scale: &scale,
            shift: &shift,
            relu: true,
        };
        let mut out = vec![0.0f32; g.output_len()];
        let mut d_inp = vec![0.0f32; g.input_len()];
        let mut d_weight = vec![0.0f32; g.weight_len()];
        let mut ws = Workspace::with_capacity(conv2d::conv2d_workspace_len(&g));
        // Each op twice: the first call warms the workspace (and the thread pool), the second
        // must not allocate.
        for round in 0..2 {
            let ((), fwd) = measure(|| {
                conv2d::conv2d_forward(&mut out, &inp, &weight, None, Some(pre), &g, &mut ws)
            });
            let ((), bwd_in) =
                measure(|| conv2d::conv2d_backward_input(&mut d_inp, &out, &weight, &g, &mut ws));
            let ((), bwd_w) = measure(|| {
                conv2d::conv2d_backward_weight(
                    &mut d_weight,
                    None,
                    &out,
                    &inp,
                    Some(pre),
                    &g,
                    &mut ws,
                )
            });
            if round == 1 {
                assert!(fwd.allocated_bytes <= max_bytes, "forward {g:?}: {fwd:?}");
                assert!(
                    bwd_in.allocated_bytes <= max_bytes,
                    "backward_input {g:?}: {bwd_in:?}"
                );
                assert!(
                    bwd_w.allocated_bytes <= max_bytes,
                    "backward_weight {g:?}: {bwd_w:?}"
                );
            }
        }
        let fresh_bytes = ws.bytes();
        assert_eq!(
            fresh_bytes,
            conv2d::conv2d_workspace_len(&g) * 4,
            "workspace grew"
        );
    }
}
