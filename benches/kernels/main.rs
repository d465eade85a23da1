//! Kernel benchmarks at DenseNet's real layer shapes: `cargo bench --bench kernels`.
//!
//! Each group is one op at one shape; its functions are the tiers side by side (`reference`,
//! `portable`, `avx2`, `avx512`), so speed-ups read straight off the report.

use criterion::{criterion_group, criterion_main, Criterion};

mod conv;
mod elementwise;

fn all(c: &mut Criterion) {
    conv::benches(c);
    elementwise::benches(c);
}

criterion_group!(kernels, all);
criterion_main!(kernels);
