//! Runtime selection of the SIMD tier.
//!
//! The CPU is probed once. The tier in use is the best one the CPU has, capped by the
//! environment variable `DENSENET_MAX_ISA` (`portable`, `avx2` or `avx512`), and capped again on
//! the current thread by [`with_max_isa`], which is how the tests run every tier in one process.
//! A kernel reads [`active_isa`] once on entry and passes the tier down to its worker threads, so
//! one call never mixes tiers.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

/// A SIMD tier, ordered from the most portable to the widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// `wide` vectors: SSE2 on any x86-64, NEON on Arm. Always available.
    Portable,
    /// x86-64 AVX2 with FMA (256-bit vectors).
    Avx2,
    /// x86-64 AVX-512F (512-bit vectors).
    Avx512,
}

impl Isa {
    /// Every tier, most portable first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name used by `DENSENET_MAX_ISA`, logs, test labels and bench IDs.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a tier name as `DENSENET_MAX_ISA` spells it.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" | "generic" | "neon" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run the tier.
    pub fn is_supported(self) -> bool {
        self <= detected_isa()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The best tier this CPU supports, probed once.
pub fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(probe_cpu)
}

#[cfg(target_arch = "x86_64")]
fn probe_cpu() -> Isa {
    if std::arch::is_x86_feature_detected!("avx512f") {
        Isa::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe_cpu() -> Isa {
    Isa::Portable
}

/// The cap set by `DENSENET_MAX_ISA`, read once. An unknown value is ignored with a warning on
/// standard error rather than silently running an unexpected tier.
fn env_cap() -> Isa {
    static CAP: OnceLock<Isa> = OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("DENSENET_MAX_ISA") {
        Ok(value) => Isa::from_name(&value).unwrap_or_else(|| {
            eprintln!(
                "densenet-kernels: ignoring DENSENET_MAX_ISA={value:?} \
                 (expected portable, avx2 or avx512)"
            );
            Isa::Avx512
        }),
        Err(_) => Isa::Avx512,
    })
}

thread_local! {
    static THREAD_CAP: Cell<Isa> = const { Cell::new(Isa::Avx512) };
}

/// The tier kernels called from this thread use now: the detected tier, capped by
/// `DENSENET_MAX_ISA` and by [`with_max_isa`].
pub fn active_isa() -> Isa {
    detected_isa()
        .min(env_cap())
        .min(THREAD_CAP.with(Cell::get))
}

/// Runs `f` with kernels on this thread capped at `cap` (restored afterwards, even on panic).
///
/// ```
/// use densenet_kernels::{dispatch::with_max_isa, Isa, active_isa};
/// with_max_isa(Isa::Portable, || assert_eq!(active_isa(), Isa::Portable));
/// ```
pub fn with_max_isa<R>(cap: Isa, f: impl FnOnce() -> R) -> R {
    struct Restore(Isa);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_CAP.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(THREAD_CAP.with(|c| c.replace(cap)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("sse9"), None);
    }

    #[test]
    fn thread_cap_applies_and_restores() {
        let before = active_isa();
        with_max_isa(Isa::Portable, || assert_eq!(active_isa(), Isa::Portable));
        assert_eq!(active_isa(), before);
    }
}
