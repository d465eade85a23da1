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
pub fn softmax_cross_entropy_forward(probs: &mut [f32], logits: &[f32], labels: &[usize]) -> f32 {
    let batch = labels.len();
    assert!(batch > 0, "empty batch");
    let classes = logits.len() / batch;
    assert_eq!(logits.len(), batch * classes);
    assert_eq!(probs.len(), logits.len());
    let mut loss = 0.0f64;
    for (n, &label) in labels.iter().enumerate() {
        assert!(
            label < classes,
            "label {label} out of range for {classes} classes"
        );
        let z = &logits[n * classes..(n + 1) * classes];
        let max = z
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = z.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        for (p, &v) in probs[n * classes..(n + 1) * classes].iter_mut().zip(z) {
            *p = ((f64::from(v) - max).exp() / sum) as f32;
        }
        loss += sum.ln() - (f64::from(z[label]) - max);
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
    let classes = probs.len() / batch.max(1);
    assert_eq!(d_logits.len(), probs.len());
    let scale = d_loss / batch as f32;
    for (n, &label) in labels.iter().enumerate() {
        for j in 0..classes {
            let onehot = if j == label { 1.0 } else { 0.0 };
            d_logits[n * classes + j] += scale * (probs[n * classes + j] - onehot);
        }
    }
}
