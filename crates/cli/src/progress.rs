//! The progress bar of a training epoch (indicatif): loss, accuracy, images/s and the time left
//! for the whole run. Hidden automatically when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Tracks one epoch's running loss and accuracy and draws them.
pub struct EpochBar {
    bar: ProgressBar,
    started: Instant,
    images: usize,
    loss_sum: f64,
    correct: usize,
    batches_left_after: usize,
}

impl EpochBar {
    /// A bar for epoch `epoch` of `epochs`, with `batches` steps; `batches_after` steps remain
    /// in the later epochs (for the time-left estimate).
    pub fn new(epoch: usize, epochs: usize, batches: usize, batches_after: usize) -> Self {
        let bar = ProgressBar::new(batches as u64);
        let style = ProgressStyle::with_template("{prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            started: Instant::now(),
            images: 0,
            loss_sum: 0.0,
            correct: 0,
            batches_left_after: batches_after,
        }
    }

    /// Records one training batch: its mean loss, how many of its `n` images were right.
    pub fn step(&mut self, n: usize, mean_loss: f64, correct: usize) {
        self.images += n;
        self.loss_sum += mean_loss * n as f64;
        self.correct += correct;
        self.bar.inc(1);
        let done = self.bar.position() as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let per_batch = elapsed / done.max(1.0);
        let left = per_batch
            * ((self.bar.length().unwrap_or(0) as f64 - done) + self.batches_left_after as f64);
        self.bar.set_message(format!(
            "loss {:.4} acc {:.1}% {:.0} img/s, {} left",
            self.mean_loss(),
            100.0 * self.accuracy(),
            self.images_per_second(),
            format_duration(left)
        ));
    }

    /// Mean loss over the images so far.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }

    /// Accuracy over the images so far.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }

    /// Training throughput so far.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// Shows that evaluation is running.
    pub fn evaluating(&self) {
        self.bar.set_message(format!(
            "loss {:.4} acc {:.1}%, evaluating",
            self.mean_loss(),
            100.0 * self.accuracy()
        ));
    }

    /// Removes the bar (the caller prints the epoch's summary line).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1h02m`, `3m05s` or `42s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
