/// Stochastic gradient descent settings, as PyTorch's `torch.optim.SGD`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: plain SGD).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum update.
    pub dampening: f32,
    /// L2 penalty added to the gradient as `weight_decay·θ`.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    /// The paper's settings: lr 0.1, momentum 0.9 with Nesterov, weight decay 1e-4.
    fn default() -> Self {
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 1e-4,
            nesterov: true,
        }
    }
}

/// One SGD step over a parameter tensor, exactly as PyTorch defines it:
///
/// ```text
/// g ← grad + weight_decay·θ
/// b ← g                                   on the first step
/// b ← momentum·b + (1 − dampening)·g      afterwards
/// g ← g + momentum·b   (Nesterov)   or   g ← b
/// θ ← θ − lr·g
/// ```
/// With `momentum = 0` the buffer is not touched.
///
/// # Shapes
/// - `param`, `momentum_buf`: updated; `grad`: read; all of one length.
pub fn sgd_step(
    param: &mut [f32],
    momentum_buf: &mut [f32],
    grad: &[f32],
    cfg: &SgdConfig,
    first_step: bool,
) {
    assert_eq!(param.len(), grad.len());
    assert_eq!(param.len(), momentum_buf.len());
    for ((p, b), &g) in param.iter_mut().zip(momentum_buf.iter_mut()).zip(grad) {
        let mut d = g + cfg.weight_decay * *p;
        if cfg.momentum != 0.0 {
            *b = if first_step {
                d
            } else {
                cfg.momentum * *b + (1.0 - cfg.dampening) * d
            };
            d = if cfg.nesterov {
                d + cfg.momentum * *b
            } else {
                *b
            };
        }
        *p -= cfg.lr * d;
    }
}
