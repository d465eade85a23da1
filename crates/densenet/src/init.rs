//! A small deterministic random number generator and torchvision's DenseNet initialisation.

use crate::params::{ParamStore, TensorKind};

/// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, passes BigCrush, and any seed works.
/// Enough for weight initialisation and test data; not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_range(&mut self, lo: f32, hi: f32) -> f32 {
        (f64::from(lo) + (f64::from(hi) - f64::from(lo)) * self.uniform()) as f32
    }

    /// Standard normal, by the Box–Muller transform.
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln stays finite
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// Initialises every tensor as torchvision's `DenseNet.__init__` does:
///
/// - conv weights: `kaiming_normal_` with its defaults (`mode='fan_in'`, gain `√2`), so
///   `w ~ N(0, 2/fan_in)` with `fan_in = IC·KH·KW`;
/// - batch norm: γ = 1, β = 0, running mean 0, running variance 1;
/// - linear bias 0; linear weight keeps `nn.Linear`'s default `kaiming_uniform_(a=√5)`, which is
///   `U(−1/√in, 1/√in)`.
///
/// Same seed, same values; the draws come from [`Rng`], not from PyTorch's generator, so the
/// numbers differ from PyTorch's while the distributions match.
pub fn init_torchvision(store: &mut ParamStore, seed: u64) {
    let mut rng = Rng::new(seed);
    for (kind, shape, slot) in store.entries_for_init() {
        match kind {
            TensorKind::ConvWeight => {
                let fan_in: usize = shape[1..].iter().product();
                let std = (2.0 / fan_in.max(1) as f64).sqrt() as f32;
                for v in slot.of_mut(store.params_mut()) {
                    *v = rng.normal() * std;
                }
            }
            TensorKind::LinearWeight => {
                let bound = 1.0 / (shape[1].max(1) as f32).sqrt();
                for v in slot.of_mut(store.params_mut()) {
                    *v = rng.uniform_range(-bound, bound);
                }
            }
            TensorKind::BnWeight => slot.of_mut(store.params_mut()).fill(1.0),
            TensorKind::BnBias | TensorKind::LinearBias => {
                slot.of_mut(store.params_mut()).fill(0.0)
            }
            TensorKind::RunningMean => slot.of_mut(store.buffers_mut()).fill(0.0),
            TensorKind::RunningVar => slot.of_mut(store.buffers_mut()).fill(1.0),
        }
    }
}
