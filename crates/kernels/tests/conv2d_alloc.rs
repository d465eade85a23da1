//! Once its workspace is warm, the convolution allocates nothing (its own test binary: the
//! counting allocator is process-wide, so no other test may run beside it).

use densenet_kernels::alloc_counter::{measure, CountingAllocator};
use densenet_kernels::{conv2d, ChannelAffine, Conv2dGeom, Workspace};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[test]
fn warm_conv_allocates_nothing() {
    // Large enough to run on the thread pool; the pool is started (and warm) before measuring.
    let shapes = [
        Conv2dGeom::square(2, 64, 32, 16, 16, 3, 1, 1),
        Conv2dGeom::square(1, 96, 48, 20, 20, 1, 1, 0),
        Conv2dGeom::square(1, 3, 16, 48, 48, 7, 2, 3),
    ];
    for g in shapes {
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
        let mut all = |ws: &mut Workspace| {
            conv2d::conv2d_forward(&mut out, &inp, &weight, None, Some(pre), &g, ws);
            conv2d::conv2d_backward_input(&mut d_inp, &out, &weight, &g, ws);
            conv2d::conv2d_backward_weight(&mut d_weight, None, &out, &inp, Some(pre), &g, ws);
        };
        all(&mut ws);
        let ((), delta) = measure(|| {
            for _ in 0..3 {
                all(&mut ws);
            }
        });
        assert_eq!(delta.allocations, 0, "{g:?}: {delta:?}");
        let fresh_bytes = ws.bytes();
        assert_eq!(
            fresh_bytes,
            conv2d::conv2d_workspace_len(&g) * 4,
            "workspace grew"
        );
    }
}
