//! Softmax cross-entropy over `[N, K]` logits.
//!
//! The work is `N·K` exponentials (a batch of 64 over 1000 classes is 64 000): small enough that
//! one thread and scalar `exp` are right, and that rayon and SIMD tiers would only add noise.
//! Row sums are accumulated in `f64`, as the loss is the quantity a training log compares.

/// Softmax cross-entropy forward, the mean over the batch (PyTorch's `cross_entropy`):
///
/// ```text
/// p[n, j] = exp(z[n, j] − max_j z[n, ·]) / Σ_j exp(z[n, j] − max_j z[n, ·])
/// loss    = −(1/N) Σ_n ln p[n, label_n]
/// ```
///
/// Subtracting the row maximum keeps `exp` from overflowing. The probabilities are written for
/// the backward pass.
///
/// # Shapes
/// - `probs`: `[N, K]` written; `logits`: `[N, K]` read; `labels`: `[N]`, each `< K`.
///
/// # Panics
/// On an empty batch, length mismatches or a label `>= K` (callers validate user labels).
pub fn softmax_cross_entropy_forward(probs: &mut [f32], logits: &[f32], labels: &[usize]) -> f32 {
    let batch = labels.len();
    assert!(batch > 0, "empty batch");
    let classes = logits.len() / batch;
    assert_eq!(logits.len(), batch * classes);
    assert_eq!(probs.len(), logits.len());
    let mut loss = 0.0f64;
    for ((z, p), &label) in logits
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(labels)
    {
        assert!(
            label < classes,
            "label {label} out of range for {classes} classes"
        );
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f64;
        for (p, &v) in p.iter_mut().zip(z) {
            *p = (v - max).exp();
            sum += f64::from(*p);
        }
        let inv = (1.0 / sum) as f32;
        for p in p.iter_mut() {
            *p *= inv;
        }
        loss += sum.ln() - f64::from(z[label] - max);
    }
    (loss / batch as f64) as f32
}

/// Softmax cross-entropy backward (accumulates): `d_z[n, j] += d_loss·(p[n, j] − [j = label_n])/N`.
///
/// # Shapes
/// - `d_logits`: `[N, K]` accumulated; `probs`: `[N, K]` read; `labels`: `[N]`.
pub fn softmax_cross_entropy_backward(
    d_logits: &mut [f32],
    probs: &[f32],
    labels: &[usize],
    d_loss: f32,
) {
    let batch = labels.len();
    if batch == 0 {
        return;
    }
    let classes = probs.len() / batch;
    assert_eq!(probs.len(), batch * classes);
    assert_eq!(d_logits.len(), probs.len());
    let scale = d_loss / batch as f32;
    for ((d, p), &label) in d_logits
        .chunks_exact_mut(classes)
        .zip(probs.chunks_exact(classes))
        .zip(labels)
    {
        assert!(
            label < classes,
            "label {label} out of range for {classes} classes"
        );
        for (j, (d, &p)) in d.iter_mut().zip(p).enumerate() {
            let onehot = if j == label { 1.0 } else { 0.0 };
            *d += scale * (p - onehot);
        }
    }
}
