//! Training: SGD over every trainable parameter, learning-rate schedules, and one full step.

use densenet_kernels::sgd::{sgd_step, SgdConfig};

use crate::error::{Error, Result};
use crate::model::DenseNet;
use crate::params::ParamStore;
use crate::plan::TrainWorkspace;

/// Stochastic gradient descent with momentum buffers for every trainable parameter (PyTorch's
/// `torch.optim.SGD` over `model.parameters()`: weight decay applies to all of them, batch-norm
/// γ and β included, as torchvision's and the paper's training do).
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Settings; `lr` is overwritten by [`Sgd::set_lr`] when a schedule drives it.
    pub config: SgdConfig,
    momentum: Vec<f32>,
    steps: u64,
}

impl Sgd {
    /// An optimiser for the parameters of `store`.
    pub fn new(config: SgdConfig, store: &ParamStore) -> Self {
        Sgd {
            config,
            momentum: vec![0.0; store.num_parameters()],
            steps: 0,
        }
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Bytes of momentum buffers.
    pub fn bytes(&self) -> usize {
        self.momentum.len() * 4
    }

    /// The momentum buffer of a trainable tensor, by name.
    pub fn momentum_buffer<'a>(&'a self, store: &ParamStore, name: &str) -> Option<&'a [f32]> {
        store
            .trainable_ranges()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, r)| &self.momentum[r])
    }

    /// The whole momentum state, flat in the layout of [`ParamStore::params`] (for checkpoints).
    pub fn momentum(&self) -> &[f32] {
        &self.momentum
    }

    /// Restores a state saved from [`Sgd::momentum`] and [`Sgd::steps`], so that a resumed run
    /// continues exactly as an uninterrupted one.
    pub fn restore(&mut self, momentum: Vec<f32>, steps: u64) -> Result<()> {
        if momentum.len() != self.momentum.len() {
            return Err(Error::Shape(format!(
                "momentum state has {} values, the optimiser {}",
                momentum.len(),
                self.momentum.len()
            )));
        }
        self.momentum = momentum;
        self.steps = steps;
        Ok(())
    }

    /// One update of every trainable parameter from its accumulated gradient. Gradients are not
    /// cleared (call [`ParamStore::zero_grads`]).
    pub fn step(&mut self, store: &mut ParamStore) -> Result<()> {
        if self.momentum.len() != store.num_parameters() {
            return Err(Error::Shape(format!(
                "optimiser made for {} parameters, model has {}",
                self.momentum.len(),
                store.num_parameters()
            )));
        }
        let (params, grads, _) = store.split_mut();
        // The update is elementwise, so one call over the flat vector equals one per tensor.
        sgd_step(
            params,
            &mut self.momentum,
            grads,
            &self.config,
            self.steps == 0,
        );
        self.steps += 1;
        Ok(())
    }
}

/// A learning-rate schedule over epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The same rate throughout.
    Constant { lr: f32 },
    /// The paper's: `lr`, divided by 10 at 50% and again at 75% of `epochs`.
    Step { lr: f32, epochs: usize },
    /// Cosine annealing from `lr` to 0 over `epochs`: `lr·(1 + cos(π·e/epochs))/2`.
    Cosine { lr: f32, epochs: usize },
}

impl LrSchedule {
    /// The paper's schedule with its base rate 0.1.
    pub fn paper(epochs: usize) -> Self {
        LrSchedule::Step { lr: 0.1, epochs }
    }

    /// The rate for (0-based) `epoch`; `epoch` may be fractional for per-step schedules.
    pub fn lr_at(&self, epoch: f64) -> f32 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::Step { lr, epochs } => {
                let e = epochs as f64;
                if epoch < 0.5 * e {
                    lr
                } else if epoch < 0.75 * e {
                    lr * 0.1
                } else {
                    lr * 0.01
                }
            }
            LrSchedule::Cosine { lr, epochs } => {
                let t = (epoch / epochs.max(1) as f64).clamp(0.0, 1.0);
                (f64::from(lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

/// One training step: zero gradients, forward in training mode, loss, backward, SGD update.
/// Returns the loss before the update.
pub fn train_step(
    model: &mut DenseNet,
    ws: &mut TrainWorkspace,
    sgd: &mut Sgd,
    input: &[f32],
    labels: &[usize],
) -> Result<f32> {
    crate::on_pool(|| {
        model.store_mut().zero_grads();
        let loss = model.forward_train(ws, input, labels)?;
        model.backward(ws)?;
        sgd.step(model.store_mut())?;
        Ok(loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_schedule_divides_at_half_and_three_quarters() {
        let s = LrSchedule::paper(300);
        assert_eq!(s.lr_at(0.0), 0.1);
        assert_eq!(s.lr_at(149.0), 0.1);
        assert!((s.lr_at(150.0) - 0.01).abs() < 1e-9);
        assert!((s.lr_at(224.0) - 0.01).abs() < 1e-9);
        assert!((s.lr_at(225.0) - 0.001).abs() < 1e-9);
    }

    #[test]
    fn cosine_goes_from_lr_to_zero() {
        let s = LrSchedule::Cosine {
            lr: 0.1,
            epochs: 10,
        };
        assert_eq!(s.lr_at(0.0), 0.1);
        assert!((s.lr_at(5.0) - 0.05).abs() < 1e-7);
        assert!(s.lr_at(10.0).abs() < 1e-7);
    }
}
