use criterion::Criterion;

/// Placeholder until the conv benches land.
pub fn benches(_c: &mut Criterion) {}
