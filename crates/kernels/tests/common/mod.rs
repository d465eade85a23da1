//! Helpers shared by the kernel test binaries: tiers, thread pools, seeded data, comparisons.
#![allow(dead_code)]

use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::Isa;

/// Runs `f` once per tier this CPU has, capped to that tier; prints the tiers it cannot run.
pub fn for_each_tier(mut f: impl FnMut(Isa)) {
    for isa in Isa::ALL {
        if isa.is_supported() {
            with_max_isa(isa, || f(isa));
        } else {
            eprintln!("skipped: no {}", isa.name());
        }
    }
}

/// Runs `f` inside a rayon pool of `threads` threads.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// A small seeded generator (SplitMix64), so a proptest case is reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// `len` uniform floats in `[lo, hi)`.
    pub fn floats(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }

    /// `len` small integers in `-8..=8`, stored as `f32`: their sums and products are exact.
    pub fn ints(&mut self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| (self.next_u64() % 17) as f32 - 8.0)
            .collect()
    }

    /// An index in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The two value strategies of the kernel tests.
#[derive(Clone, Copy, Debug)]
pub enum Values {
    /// Small integers `-8..=8` stored as `f32`.
    Ints,
    /// Uniform floats in `[-1, 1)`.
    Floats,
}

impl Values {
    pub fn draw(self, rng: &mut Rng, len: usize) -> Vec<f32> {
        match self {
            Values::Ints => rng.ints(len),
            Values::Floats => rng.floats(len, -1.0, 1.0),
        }
    }
}

/// Asserts `|got − want| <= atol + rtol·|want|` elementwise, reporting the largest absolute and
/// relative differences and where they are.
#[track_caller]
pub fn assert_close(label: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{label}: lengths differ");
    let (mut max_abs, mut max_rel, mut worst) = (0.0f32, 0.0f32, None);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same_nan = g.is_nan() && w.is_nan();
        let abs = if same_nan { 0.0 } else { (g - w).abs() };
        let rel = abs / w.abs().max(f32::MIN_POSITIVE);
        if abs > max_abs || abs.is_nan() {
            max_abs = abs;
        }
        max_rel = max_rel.max(rel.min(1e30));
        // Written so that a NaN difference counts as a mismatch.
        let within = abs <= atol + rtol * w.abs();
        if !within && worst.is_none() {
            worst = Some((i, g, w));
        }
    }
    if let Some((i, g, w)) = worst {
        panic!(
            "{label}: first mismatch at {i}: got {g}, want {w} \
             (max abs diff {max_abs:e}, max rel diff {max_rel:e}, atol {atol:e}, rtol {rtol:e})"
        );
    }
}

/// Asserts exact equality (as `f32 ==`, so `0.0 == -0.0`), naming the first difference.
#[track_caller]
pub fn assert_exact(label: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{label}: lengths differ");
    if let Some((i, (g, w))) = got
        .iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g != w && !(g.is_nan() && w.is_nan()))
    {
        panic!("{label}: first difference at {i}: got {g}, want {w}");
    }
}

/// Asserts two runs produced the same bits.
#[track_caller]
pub fn assert_bits(label: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{label}: lengths differ");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!("{label}: bits differ at {i}: {} vs {}", a[i], b[i]);
    }
}

/// Central-difference check of `grad` (the analytic gradient of `loss` at `x`), over at most
/// `max_checks` coordinates spread across `x`. `loss` is evaluated in `f64` from the kernels'
/// `f32` outputs; the tolerance is `atol + rtol·|numeric|`.
#[track_caller]
pub fn check_grad(
    label: &str,
    x: &[f32],
    grad: &[f32],
    mut loss: impl FnMut(&[f32]) -> f64,
    eps: f32,
    (atol, rtol): (f64, f64),
) {
    assert_eq!(x.len(), grad.len());
    let mut xp = x.to_vec();
    let step = (x.len() / 24).max(1);
    let mut worst = 0.0f64;
    for i in (0..x.len()).step_by(step) {
        xp[i] = x[i] + eps;
        let up = loss(&xp);
        xp[i] = x[i] - eps;
        let down = loss(&xp);
        xp[i] = x[i];
        // The actual step in f32, not the nominal one.
        let h = f64::from(x[i] + eps) - f64::from(x[i] - eps);
        let numeric = (up - down) / h;
        let diff = (numeric - f64::from(grad[i])).abs();
        worst = worst.max(diff);
        assert!(
            diff <= atol + rtol * numeric.abs(),
            "{label}[{i}]: analytic {} vs numeric {numeric} (diff {diff:e})",
            grad[i]
        );
    }
    eprintln!("{label}: max |analytic − numeric| = {worst:e}");
}

/// `Σ w·y` in `f64`: a loss whose upstream gradient is the non-trivial `w`.
pub fn weighted_sum(w: &[f32], y: &[f32]) -> f64 {
    w.iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}
