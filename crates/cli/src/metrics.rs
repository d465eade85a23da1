//! Per-epoch metrics: the `metrics.csv` of a run (rewritten atomically after every epoch).

use crate::error::{fail, CliResult};
use std::path::Path;

/// The CSV header, one column per [`EpochMetrics`] field.
pub const CSV_HEADER: &str =
    "epoch,lr,train_loss,train_acc,test_loss,test_acc,seconds,images_per_second";

/// What one epoch measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy (fraction) over the epoch, measured in training mode.
    pub train_acc: f64,
    /// Mean loss on the held-out split.
    pub test_loss: f64,
    /// Accuracy (fraction) on the held-out split.
    pub test_acc: f64,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// The CSV text for `rows`, header first.
pub fn to_csv(rows: &[EpochMetrics]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1}\n",
            r.epoch,
            crate::commands::train::short_float(r.lr),
            r.train_loss,
            r.train_acc,
            r.test_loss,
            r.test_acc,
            r.seconds,
            r.images_per_second
        ));
    }
    out
}

/// Parses a CSV written by [`to_csv`]; `path` names the file in errors.
pub fn parse_csv(text: &str, path: &Path) -> CliResult<Vec<EpochMetrics>> {
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err(fail!(
            "{}: not a metrics file (unexpected header)",
            path.display()
        ));
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || fail!("{}: line {} is not a metrics row", path.display(), i + 2);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 8 {
            return Err(bad());
        }
        let num = |k: usize| f[k].parse::<f64>().map_err(|_| bad());
        rows.push(EpochMetrics {
            epoch: f[0].parse().map_err(|_| bad())?,
            lr: num(1)?,
            train_loss: num(2)?,
            train_acc: num(3)?,
            test_loss: num(4)?,
            test_acc: num(5)?,
            seconds: num(6)?,
            images_per_second: num(7)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips() {
        let rows = vec![
            EpochMetrics {
                epoch: 1,
                lr: 0.1,
                train_loss: 2.0,
                train_acc: 0.5,
                test_loss: 1.5,
                test_acc: 0.625,
                seconds: 3.25,
                images_per_second: 400.5,
            },
            EpochMetrics {
                epoch: 2,
                lr: 0.01,
                train_loss: 0.5,
                train_acc: 0.875,
                test_loss: 0.25,
                test_acc: 0.9375,
                seconds: 3.0,
                images_per_second: 410.0,
            },
        ];
        let text = to_csv(&rows);
        assert!(text.starts_with(CSV_HEADER));
        assert_eq!(parse_csv(&text, Path::new("m.csv")).unwrap(), rows);
        assert!(parse_csv("a,b\n", Path::new("m.csv"))
            .unwrap_err()
            .0
            .contains("m.csv"));
        let broken = text.replace("0.875", "x");
        assert!(parse_csv(&broken, Path::new("m.csv"))
            .unwrap_err()
            .0
            .contains("line 3"));
    }
}
