//! Trains a small DenseNet-BC on the bundled 8×8 digits for a few epochs and reports the test
//! accuracy: the whole training loop (batches, forward, loss, backward, SGD) in one page.
//!
//! `cargo run --release --example train_digits`. The `densenet train` command does the same
//! with checkpoints, schedules, augmentation and plots.

use densenet::data::{digits::load_digits, Augment, Batches, Normalization, Rng};
use densenet::train::{train_step, Sgd};
use densenet::{DenseNet, DenseNetConfig, Mode};
use densenet_kernels::sgd::SgdConfig;

/// Per-epoch mean training loss, and the final test accuracy in [0, 1].
struct Outcome {
    epoch_losses: Vec<f32>,
    test_accuracy: f32,
}

fn train(epochs: usize) -> Result<Outcome, Box<dyn std::error::Error>> {
    let splits = load_digits();
    let (train, test) = (&splits.train, &splits.test);
    // Two blocks of two bottleneck layers with growth rate 8; CIFAR stem (a single 3x3 conv).
    let mut cfg: DenseNetConfig = "bc:k=8,blocks=2-2".parse()?;
    cfg.num_classes = train.num_classes();
    cfg.in_channels = train.channels();
    let mut model = DenseNet::new(cfg, 0)?;
    let norm = Normalization::fit(train);
    let batch = 64;
    let (h, w) = (train.height(), train.width());
    let mut ws = model.workspace(batch, h, w, true)?;
    let mut sgd = Sgd::new(
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
        model.store(),
    );
    let mut epoch_losses = Vec::new();
    for epoch in 0..epochs {
        let mut sum = 0.0;
        let mut steps = 0;
        for b in Batches::train(train, batch, &norm, Augment::NONE, Rng::new(epoch as u64))? {
            sum += train_step(&mut model, &mut ws, &mut sgd, &b.images, &b.labels)?;
            steps += 1;
        }
        let mean = sum / steps.max(1) as f32;
        println!("epoch {}: mean training loss {mean:.4}", epoch + 1);
        epoch_losses.push(mean);
    }
    // Evaluation: running batch-norm statistics, one workspace per batch size met.
    let mut correct = 0;
    for b in Batches::eval(test, batch, &norm)? {
        let mut ws = model.workspace(b.n, h, w, true)?;
        let logits = model.forward(&mut ws, &b.images, Mode::Eval)?;
        let classes = logits.len() / b.n;
        for (row, &label) in logits.chunks_exact(classes).zip(&b.labels) {
            let best = (0..classes).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            correct += usize::from(best == label);
        }
    }
    let test_accuracy = correct as f32 / test.len() as f32;
    println!(
        "test accuracy {:.1}% ({correct}/{})",
        100.0 * test_accuracy,
        test.len()
    );
    Ok(Outcome {
        epoch_losses,
        test_accuracy,
    })
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = train(5)?;
    let first = out.epoch_losses.first().copied().unwrap_or(f32::NAN);
    let last = out.epoch_losses.last().copied().unwrap_or(f32::NAN);
    println!(
        "loss {first:.4} -> {last:.4}, test accuracy {:.1}%",
        100.0 * out.test_accuracy
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn learns_the_digits() {
        let out = super::train(3).unwrap();
        let l = &out.epoch_losses;
        // ln(10) = 2.30 is the loss of a uniform guess over 10 classes.
        assert!(l[2] < l[0] && l[2] < 1.5, "losses {l:?}");
        assert!(out.test_accuracy > 0.5, "accuracy {}", out.test_accuracy);
    }
}
