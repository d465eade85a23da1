//! Between the network and the command: checkpoints to and from a model and its optimiser,
//! data preparation shared by `train` and `eval`, and evaluation over a whole split.

use crate::checkpoint::{Checkpoint, MOMENTUM_PREFIX};
use crate::error::{fail, CliResult};
use densenet::data::{Batches, Dataset, Normalization};
use densenet::train::Sgd;
use densenet::{DenseNet, DenseNetConfig, MemoryPlan, Mode, TrainWorkspace};
use std::path::{Path, PathBuf};

/// The checkpoint file name inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// `path` itself if it is a file, else `path/checkpoint.safetensors`.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Puts the model's tensors (torchvision names), its batch-norm counters and, when given, the
/// optimiser's momentum buffers into `ck`.
pub fn save_model(ck: &mut Checkpoint, model: &DenseNet, sgd: Option<&Sgd>) {
    let store = model.store();
    for name in store.tensor_names() {
        if let Some((shape, values)) = store.tensor(&name) {
            ck.tensors.insert(name, (shape.to_vec(), values.to_vec()));
        }
    }
    for bn in store.bn_names() {
        let tracked = store.batches_tracked(bn).unwrap_or(0);
        ck.counters
            .insert(format!("{bn}.num_batches_tracked"), tracked as i64);
    }
    if let Some(sgd) = sgd {
        let momentum = sgd.momentum();
        for (name, _, range) in store.trainable_ranges() {
            let shape = store
                .tensor(name)
                .map(|(s, _)| s.to_vec())
                .unwrap_or_default();
            ck.tensors.insert(
                format!("{MOMENTUM_PREFIX}{name}"),
                (shape, momentum[range].to_vec()),
            );
        }
        ck.meta.insert("sgd_steps".into(), sgd.steps().to_string());
    }
}

/// Loads every tensor of the model from `ck`; a missing tensor or one of another shape is an
/// error naming it and the model (the checkpoint does not fit the model).
pub fn load_model(model: &mut DenseNet, ck: &Checkpoint, path: &Path) -> CliResult<()> {
    let spec = model.config().spec();
    let store = model.store_mut();
    for name in store.tensor_names() {
        let Some((shape, values)) = ck.tensors.get(&name) else {
            return Err(fail!(
                "{}: does not fit model {spec}: no tensor {name}",
                path.display()
            ));
        };
        let (want, slot) = store.tensor_mut(&name).expect("name listed by the store");
        if shape.as_slice() != want {
            return Err(fail!(
                "{}: does not fit model {spec}: tensor {name} has shape {shape:?}, the model needs {want:?}",
                path.display()
            ));
        }
        slot.copy_from_slice(values);
    }
    let bn_names = store.bn_names().to_vec();
    for bn in bn_names {
        if let Some(&v) = ck.counters.get(&format!("{bn}.num_batches_tracked")) {
            store.set_batches_tracked(&bn, v.max(0) as u64);
        }
    }
    let extra = ck
        .tensors
        .keys()
        .find(|k| !k.starts_with(MOMENTUM_PREFIX) && model.store().tensor(k).is_none());
    if let Some(extra) = extra {
        return Err(fail!(
            "{}: does not fit model {spec}: it has tensor {extra} the model lacks",
            path.display()
        ));
    }
    Ok(())
}

/// Restores the optimiser's momentum buffers and step count from `ck`.
pub fn load_optimizer(
    sgd: &mut Sgd,
    model: &DenseNet,
    ck: &Checkpoint,
    path: &Path,
) -> CliResult<()> {
    let store = model.store();
    let mut momentum = vec![0.0f32; store.num_parameters()];
    for (name, _, range) in store.trainable_ranges() {
        let key = format!("{MOMENTUM_PREFIX}{name}");
        let (_, values) = ck
            .tensors
            .get(&key)
            .ok_or_else(|| fail!("{}: no optimizer state {key}", path.display()))?;
        if values.len() != range.len() {
            return Err(fail!(
                "{}: optimizer state {key} has {} values, expected {}",
                path.display(),
                values.len(),
                range.len()
            ));
        }
        momentum[range].copy_from_slice(values);
    }
    let steps: u64 = ck
        .meta_parse("sgd_steps")
        .map_err(|e| fail!("{}: {e}", path.display()))?;
    sgd.restore(momentum, steps)?;
    Ok(())
}

/// Sets the configuration's classes and input channels from the data set, and checks that the
/// images are large enough for the network's downsampling.
pub fn fit_config_to_data(cfg: &mut DenseNetConfig, set: &Dataset) -> CliResult<()> {
    cfg.num_classes = set.num_classes();
    cfg.in_channels = set.channels();
    cfg.validate()?;
    cfg.block_sizes(set.height(), set.width()).map_err(|e| {
        fail!(
            "{}x{} images do not fit this model: {e}",
            set.height(),
            set.width()
        )
    })?;
    Ok(())
}

/// The network's mean loss and its number of correct predictions over `set` (evaluation mode:
/// running batch-norm statistics, no dropout, no augmentation). Full batches run in `reuse` when
/// given (a training workspace of `batch` images: evaluating between epochs then allocates no
/// second workspace beside it, which a memory budget would not cover), else in one workspace
/// built under `plan`; a partial last batch in its own, under `plan`. Workspaces built here run
/// the 3×3 convolutions by Winograd where faster if `winograd_3x3`
/// (`TrainWorkspace::set_winograd_3x3`); `reuse` runs them as it is set.
pub fn evaluate(
    model: &mut DenseNet,
    set: &Dataset,
    norm: &Normalization,
    batch: usize,
    plan: MemoryPlan,
    winograd_3x3: bool,
    mut reuse: Option<&mut TrainWorkspace>,
) -> CliResult<(f64, usize)> {
    let (h, w) = (set.height(), set.width());
    let workspace = |model: &DenseNet, n: usize| -> CliResult<TrainWorkspace> {
        let mut ws = model.workspace_with_plan(n, h, w, plan)?;
        ws.set_winograd_3x3(winograd_3x3);
        Ok(ws)
    };
    let mut full = None;
    let mut loss_sum = 0.0f64;
    let mut correct = 0usize;
    for b in Batches::eval(set, batch, norm)? {
        let mut partial;
        let ws = match reuse.as_deref_mut() {
            Some(ws) if b.n == batch => ws,
            _ if b.n == batch => full.get_or_insert(workspace(model, batch)?),
            _ => {
                partial = workspace(model, b.n)?;
                &mut partial
            }
        };
        let logits = model.forward(ws, &b.images, Mode::Eval)?;
        correct += count_correct(logits, &b.labels);
        loss_sum += f64::from(model.loss(ws, &b.labels)?) * b.n as f64;
    }
    Ok((loss_sum / set.len().max(1) as f64, correct))
}

/// How many rows of `logits` (`[N, classes]`) have their largest value at the label
/// (the first one on ties, as `argmax` does).
pub fn count_correct(logits: &[f32], labels: &[usize]) -> usize {
    let classes = logits.len() / labels.len().max(1);
    logits
        .chunks_exact(classes.max(1))
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, &v)| if v > row[best] { i } else { best });
            best == label
        })
        .count()
}

/// A list of floats as `a,b,c` (Rust prints `f32` so that it parses back to the same bits).
pub fn join_floats(values: &[f32]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`join_floats`] output.
pub fn split_floats(text: &str) -> Option<Vec<f32>> {
    text.split(',').map(|t| t.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_counts_first_maximum() {
        let logits = [0.1, 0.9, 0.0, 0.5, 0.5, 0.2, 1.0, 1.0, 1.0];
        assert_eq!(super::count_correct(&logits, &[1, 0, 0]), 3);
        assert_eq!(super::count_correct(&logits, &[0, 1, 2]), 0);
    }

    #[test]
    fn floats_round_trip_exactly() {
        let v = [0.1f32, 1.0 / 3.0, 1e-20, 123456.79];
        let back = super::split_floats(&super::join_floats(&v)).unwrap();
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }
}
