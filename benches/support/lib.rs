//! Helpers shared by the criterion benches in `benches/` and the examples in `examples/`.

/// GFLOP/s of an op that does `macs` multiply-adds (two FLOPs each) in `seconds`.
pub fn gflops(macs: u64, seconds: f64) -> f64 {
    2.0 * macs as f64 / seconds / 1e9
}
