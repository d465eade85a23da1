//! The counting allocator counts what a piece of code allocates.
use densenet_kernels::alloc_counter::{exclusive, measure, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[test]
fn counts_an_allocation_and_its_peak() {
    let _serial = exclusive();
    let (v, d) = measure(|| {
        let v = vec![1u8; 1 << 20];
        std::hint::black_box(&v);
        v.len()
    });
    assert_eq!(v, 1 << 20);
    assert!(d.allocations >= 1);
    assert!(d.allocated_bytes >= 1 << 20);
    // The peak is taken over the whole process: the harness may free a little (a finished test's
    // captured output) while this test measures, which lowers the peak by as much.
    let harness_slack = 64 << 10;
    assert!(d.peak_extra_bytes >= (1 << 20) - harness_slack);
}

#[test]
fn nothing_counted_for_arithmetic() {
    let _serial = exclusive();
    let (_, d) = measure(|| std::hint::black_box(3u64).pow(5));
    assert_eq!(d.allocations, 0);
}
