//! The bridge between state dicts and the network's [`ParamStore`]: tensors by name, plus the
//! `num_batches_tracked` counters the store keeps as integers.

use std::path::Path;

use crate::params::ParamStore;

use super::file::TensorFile;
use super::{
    canonical_key, load_from, IntTensor, LoadReport, NamedTensors, Source, StateDict, WeightsError,
};

impl NamedTensors for ParamStore {
    fn tensor_names(&self) -> Vec<String> {
        ParamStore::tensor_names(self)
    }

    fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        ParamStore::tensor(self, name)
    }

    fn tensor_mut(&mut self, name: &str) -> Option<(&[usize], &mut [f32])> {
        ParamStore::tensor_mut(self, name)
    }
}

impl StateDict {
    /// Everything torchvision's `model.state_dict()` holds for this network: every parameter and
    /// running statistic as `f32`, and each batch norm's `num_batches_tracked` as an `i64`
    /// scalar, so the saved file loads into PyTorch with `load_state_dict(..., strict=True)`.
    pub fn from_params(store: &ParamStore) -> Result<StateDict, WeightsError> {
        let mut dict = StateDict::from_named(store)?;
        for bn in store.bn_names() {
            let count = store.batches_tracked(bn).unwrap_or(0);
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            dict.insert_int(
                format!("{bn}.num_batches_tracked"),
                IntTensor::from_parts(Vec::new(), vec![count]),
            );
        }
        Ok(dict)
    }
}

/// [`load_into`](super::load_into) for the network's parameter store, also restoring the `num_batches_tracked`
/// counters the file has for the store's batch norms (counters it lacks are left as they were).
/// A counter that is not a single non-negative integer is refused before anything is modified.
pub fn load_params(store: &mut ParamStore, dict: &StateDict) -> Result<LoadReport, WeightsError> {
    load_params_from(store, &mut Source::Dict(dict))
}

/// [`load_params`] reading the safetensors file at `path` tensor by tensor straight into
/// `store`, with no copy of the file in memory. The counters (single integers, read first) and
/// every name and shape are checked before the first weight is read, but a non-finite value
/// or a failed read is only found while reading: on such an error `store` holds part of the file, so load into a store that is
/// discarded on error (as [`DenseNet::from_weights`](crate::DenseNet::from_weights) and
/// [`DenseNet::load_weights`](crate::DenseNet::load_weights) do).
pub(crate) fn load_params_from_file(
    store: &mut ParamStore,
    path: &Path,
) -> Result<LoadReport, WeightsError> {
    load_params_from(store, &mut Source::File(TensorFile::open(path)?))
}

fn load_params_from(
    store: &mut ParamStore,
    source: &mut Source<'_>,
) -> Result<LoadReport, WeightsError> {
    let mut counters = Vec::new();
    for (index, key) in source.int_keys() {
        let canonical = canonical_key(&key);
        let Some(bn) = canonical.strip_suffix(".num_batches_tracked") else {
            continue;
        };
        if store.batches_tracked(bn).is_none() {
            continue;
        }
        match source.read_counter(index)? {
            Some(count) if count >= 0 => counters.push((key.clone(), bn.to_owned(), count as u64)),
            _ => return Err(WeightsError::BadCounter { tensor: key }),
        }
    }
    let mut report = load_from(store, source)?;
    for (key, bn, count) in counters {
        store.set_batches_tracked(&bn, count);
        report.skipped_counters.retain(|k| *k != key);
        report.counters_loaded += 1;
    }
    Ok(report)
}
