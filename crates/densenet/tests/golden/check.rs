//! Tensor comparison for the golden test: one line per tensor, even on success, and a clear
//! message with the worst elements at the first divergence.

use densenet::weights::StateDict;

/// How far a tensor may be from PyTorch's, as a fraction of the tensor's largest magnitude:
/// every element must satisfy `|got - want| <= tol · max|want|`. The bound is relative to the
/// tensor's scale, not to each element, because an element-wise relative error is meaningless
/// for entries that are near zero by cancellation (gradients are full of them). The reference
/// is float64 rounded to f32, so every difference is this crate's own f32 rounding.
#[derive(Clone, Copy, Debug)]
pub struct Tol(pub f32);

/// The file's format this test understands; `make_golden.py` writes the same string.
pub const FORMAT_VERSION: &str = "1";

/// The fixture's metadata entry `key`, or a message naming it.
pub fn meta<'a>(fixture: &'a StateDict, name: &str, key: &str) -> &'a str {
    fixture.metadata().get(key).unwrap_or_else(|| {
        panic!("{name}: metadata `{key}` missing; regenerate with scripts/golden/make_golden.py")
    })
}

/// Stops the test unless the fixture has the format this test reads.
pub fn check_version(fixture: &StateDict, name: &str) {
    let found = fixture.metadata().get("format_version").map(String::as_str);
    assert_eq!(
        found,
        Some(FORMAT_VERSION),
        "{name}: golden format version {found:?}, this test reads {FORMAT_VERSION:?}. \
         Regenerate the fixtures: python3 scripts/golden/make_golden.py --out testdata/golden"
    );
}

/// Compares `got` with `want`, printing label, max abs diff and max rel diff. Returns an error
/// naming the tensor and its worst elements if any element is out of tolerance.
pub fn check(label: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{label}: {} values, PyTorch has {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut max_abs = 0f32;
    let mut max_rel = 0f32;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / w.abs().max(f32::MIN_POSITIVE));
        let allowed = tol.0 * scale;
        // NaN in either tensor must fail, hence not `d > allowed`.
        if d.is_nan() || d > allowed {
            bad.push((i, g, w, d));
        }
    }
    println!(
        "  {:<58} n={:<6} max|want|={:<10.3e} max abs diff={:<10.3e} max rel diff={:<10.3e} \
         abs/max|want|={:<10.3e} (tol {:.0e}) {}",
        label,
        want.len(),
        scale,
        max_abs,
        max_rel,
        max_abs / scale.max(f32::MIN_POSITIVE),
        tol.0,
        if bad.is_empty() { "ok" } else { "DIVERGED" }
    );
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort_by(|a, b| b.3.total_cmp(&a.3));
    let worst: Vec<String> = bad
        .iter()
        .take(5)
        .map(|(i, g, w, d)| format!("[{i}] got {g:e} want {w:e} (diff {d:e})"))
        .collect();
    Err(format!(
        "first divergence at `{label}`: {} of {} values differ from PyTorch by more than {:e} x max|want| = {:e}; worst: {}",
        bad.len(),
        want.len(),
        tol.0,
        tol.0 * scale,
        worst.join(", ")
    ))
}
