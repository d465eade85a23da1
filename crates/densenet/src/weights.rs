//! Weight interchange with PyTorch: safetensors files holding torchvision state dicts.
//!
//! A [`StateDict`] is an ordered map from a tensor's name to its shape and `f32` values (plus
//! `i64` tensors such as BN's `num_batches_tracked`), read from and written to the
//! [safetensors](https://github.com/huggingface/safetensors) format that PyTorch writes with
//! `safetensors.torch.save_file(model.state_dict(), path)`. Tensors keep PyTorch's layouts:
//! convolution weights `OIHW`, linear weights `[out, in]`, activations NCHW.
//!
//! - [`StateDict::load`] / [`StateDict::from_bytes`] read F32, F16, BF16 and F64 tensors as
//!   `f32` (exact conversions for F16/BF16; F64 rounds to nearest) and I64/I32 tensors as
//!   `i64`. Every size in the header is checked against the file before anything is allocated.
//! - [`StateDict::save`] writes atomically: a temporary file in the same folder, then a rename,
//!   so a crash or a full disk never leaves a half-written file.
//! - [`load_into`] copies a dict into a model through the [`NamedTensors`] trait. It accepts the
//!   key spellings of older torchvision checkpoints, of efficient_densenet_pytorch and of
//!   `nn.DataParallel` (see [`canonical_key`]), treats `num_batches_tracked` as optional, and
//!   reports every missing, unexpected and mis-shaped tensor at once, modifying nothing unless
//!   everything fits.
//! - For the network's [`ParamStore`](crate::ParamStore), [`load_params`] also restores the
//!   `num_batches_tracked` counters, and [`StateDict::from_params`] writes a complete torchvision
//!   state dict (counters included) that PyTorch loads with `strict=True`.
//!
//! ```
//! use densenet::weights::{load_into, StateDict, Tensor};
//!
//! let mut file = StateDict::new();
//! file.insert("module.classifier.bias", Tensor::new(vec![2], vec![0.5, -0.5])?);
//! let bytes = file.to_bytes()?;
//!
//! let mut model = StateDict::new();
//! model.insert("classifier.bias", Tensor::zeros(vec![2]));
//! let report = load_into(&mut model, &StateDict::from_bytes(&bytes)?)?;
//! assert_eq!(report.loaded, 1);
//! assert_eq!(model.get("classifier.bias").unwrap().data(), &[0.5, -0.5]);
//! # Ok::<(), densenet::weights::WeightsError>(())
//! ```

mod dtype;
mod error;
mod file;
mod keys;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

pub use dtype::{bf16_to_f32, f16_to_f32, f64_to_f32};
pub use error::{MismatchReport, ShapeMismatch, WeightsError};
pub use keys::canonical_key;
pub use store::load_params;
pub(crate) use store::load_params_from_file;

/// The number of elements a shape holds, or `None` if the product overflows `usize`.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
}

/// A row-major `f32` tensor: a shape and exactly `shape.iter().product()` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of the given shape and values; an error if their sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, WeightsError> {
        if element_count(&shape) != Some(data.len()) {
            return Err(WeightsError::InvalidTensor {
                tensor: String::new(),
                found: data.len(),
                shape,
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    ///
    /// # Panics
    /// If the shape's product overflows `usize` (no real tensor comes close).
    pub fn zeros(shape: Vec<usize>) -> Self {
        let count = element_count(&shape).expect("tensor shape overflows usize");
        Tensor {
            shape,
            data: vec![0.0; count],
        }
    }

    /// Internal constructor for callers that have already checked the sizes.
    fn from_parts(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(element_count(&shape), Some(data.len()));
        Tensor { shape, data }
    }

    /// The shape, PyTorch order (`[OC, IC, KH, KW]`, `[N, C, H, W]`, ...).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, for modification in place (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Shape and values, by value.
    pub fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (self.shape, self.data)
    }
}

/// A row-major `i64` tensor: BN's `num_batches_tracked` counters, class labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntTensor {
    shape: Vec<usize>,
    data: Vec<i64>,
}

impl IntTensor {
    /// A tensor of the given shape and values; an error if their sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, WeightsError> {
        if element_count(&shape) != Some(data.len()) {
            return Err(WeightsError::InvalidTensor {
                tensor: String::new(),
                found: data.len(),
                shape,
            });
        }
        Ok(IntTensor { shape, data })
    }

    fn from_parts(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(element_count(&shape), Some(data.len()));
        IntTensor { shape, data }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[i64] {
        &self.data
    }
}

/// One entry of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    F32(Tensor),
    I64(IntTensor),
}

/// An ordered map from tensor names to tensors, with the file's string metadata.
///
/// Order is insertion order; a loaded dict lists its tensors in file order (PyTorch's
/// safetensors writer sorts them by dtype, then name). Names are kept exactly as given; key
/// normalisation happens in [`load_into`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a safetensors file (a regular file: devices and pipes, which could stream without
    /// end, are refused). The header is checked against the file's length first; then each
    /// tensor is read and converted on its own, so the dict is the only copy of the data in
    /// memory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let mut file = file::TensorFile::open(path.as_ref())?;
        let mut dict = StateDict::new();
        for (key, value) in file.metadata() {
            dict.set_metadata(key.clone(), value.clone());
        }
        for index in 0..file.entries().len() {
            let value = file.read_value(index)?;
            dict.insert_value(file.entries()[index].name.clone(), value);
        }
        Ok(dict)
    }

    /// Parses the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        file::parse(bytes)
    }

    /// The bytes of a safetensors file holding this dict: `f32` tensors as F32, `i64` ones as
    /// I64, the metadata in the header's `__metadata__`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WeightsError> {
        file::serialize(self)
    }

    /// Writes a safetensors file atomically: `path` ends up holding either its previous
    /// content or the whole new file, never part of it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        file::write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// A dict holding a copy of every tensor of `source`, in its order.
    pub fn from_named(source: &impl NamedTensors) -> Result<Self, WeightsError> {
        let mut dict = StateDict::new();
        for name in source.tensor_names() {
            let (shape, data) =
                source
                    .tensor(&name)
                    .ok_or_else(|| WeightsError::TargetInconsistent {
                        tensor: name.clone(),
                        reason: "listed by tensor_names() but not returned by tensor()".into(),
                    })?;
            let tensor = Tensor::new(shape.to_vec(), data.to_vec())
                .map_err(|_| inconsistent(&name, shape, data.len()))?;
            dict.insert(name, tensor);
        }
        Ok(dict)
    }

    fn insert_value(&mut self, name: String, value: Value) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }

    /// Inserts or replaces an `f32` tensor (a replaced entry keeps its position).
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.insert_value(name.into(), Value::F32(tensor));
    }

    /// Inserts or replaces an `i64` tensor (a replaced entry keeps its position).
    pub fn insert_int(&mut self, name: impl Into<String>, tensor: IntTensor) {
        self.insert_value(name.into(), Value::I64(tensor));
    }

    /// Removes an entry of either kind; true if it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.index.remove(name) else {
            return false;
        };
        self.entries.remove(i);
        for (j, (n, _)) in self.entries.iter().enumerate().skip(i) {
            self.index.insert(n.clone(), j);
        }
        true
    }

    /// The `f32` tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        match &self.entries[*self.index.get(name)?].1 {
            Value::F32(t) => Some(t),
            Value::I64(_) => None,
        }
    }

    /// The `f32` tensor called `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        match &mut self.entries[*self.index.get(name)?].1 {
            Value::F32(t) => Some(t),
            Value::I64(_) => None,
        }
    }

    /// The `i64` tensor called `name`.
    pub fn get_int(&self, name: &str) -> Option<&IntTensor> {
        match &self.entries[*self.index.get(name)?].1 {
            Value::I64(t) => Some(t),
            Value::F32(_) => None,
        }
    }

    /// True if an entry of either kind is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All names, both kinds, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The `f32` tensors, in order.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().filter_map(|(n, v)| match v {
            Value::F32(t) => Some((n.as_str(), t)),
            Value::I64(_) => None,
        })
    }

    /// The `i64` tensors, in order.
    pub fn int_tensors(&self) -> impl Iterator<Item = (&str, &IntTensor)> {
        self.entries.iter().filter_map(|(n, v)| match v {
            Value::I64(t) => Some((n.as_str(), t)),
            Value::F32(_) => None,
        })
    }

    /// The number of entries of both kinds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The header's string metadata (safetensors `__metadata__`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Sets one metadata entry.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// A copy of the entries whose names satisfy `keep` (metadata copied too).
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> StateDict {
        let mut out = StateDict {
            metadata: self.metadata.clone(),
            ..StateDict::default()
        };
        for (name, value) in &self.entries {
            if keep(name) {
                out.insert_value(name.clone(), value.clone());
            }
        }
        out
    }

    /// A copy of the entries whose names start with `prefix`, with the prefix removed
    /// (`strip_prefix("step3.")` turns a golden file's updated parameters into a state dict).
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let mut out = StateDict {
            metadata: self.metadata.clone(),
            ..StateDict::default()
        };
        for (name, value) in &self.entries {
            if let Some(rest) = name.strip_prefix(prefix) {
                out.insert_value(rest.to_owned(), value.clone());
            }
        }
        out
    }
}

fn inconsistent(name: &str, shape: &[usize], len: usize) -> WeightsError {
    WeightsError::TargetInconsistent {
        tensor: name.to_owned(),
        reason: format!("shape {shape:?} but {len} values"),
    }
}

/// Named `f32` tensors a state dict can be copied into or out of: the model's parameter store
/// (weights, biases and BN running statistics, under torchvision's names).
pub trait NamedTensors {
    /// Every tensor name, in the model's order.
    fn tensor_names(&self) -> Vec<String>;
    /// Shape (PyTorch order) and values of the tensor called `name`.
    fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])>;
    /// Shape and mutable values of the tensor called `name`.
    fn tensor_mut(&mut self, name: &str) -> Option<(&[usize], &mut [f32])>;
}

impl NamedTensors for StateDict {
    fn tensor_names(&self) -> Vec<String> {
        self.tensors().map(|(n, _)| n.to_owned()).collect()
    }

    fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.get(name).map(|t| (t.shape(), t.data()))
    }

    fn tensor_mut(&mut self, name: &str) -> Option<(&[usize], &mut [f32])> {
        self.get_mut(name)
            .map(|t| (t.shape.as_slice(), t.data.as_mut_slice()))
    }
}

/// What [`load_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors copied into the model.
    pub loaded: usize,
    /// Keys that were read under another name: `(key in the file, model name)`.
    pub renamed: Vec<(String, String)>,
    /// `num_batches_tracked` counters in the file the model has no tensor for (ignored).
    pub skipped_counters: Vec<String>,
    /// `num_batches_tracked` tensors of the model the file lacks (left as they were).
    pub counters_not_in_file: Vec<String>,
    /// `num_batches_tracked` counters restored by [`load_params`].
    pub counters_loaded: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} tensors and {} batch counters ({} renamed, {} counters ignored, {} not in file)",
            self.loaded,
            self.counters_loaded,
            self.renamed.len(),
            self.skipped_counters.len(),
            self.counters_not_in_file.len()
        )
    }
}

/// Where a load reads tensors from: a state dict in memory, or a file read tensor by tensor.
pub(crate) enum Source<'a> {
    Dict(&'a StateDict),
    File(file::TensorFile),
}

/// What matching a source against a target needs to know of one source tensor.
struct Described {
    key: String,
    shape: Vec<usize>,
    is_int: bool,
}

impl Source<'_> {
    fn describe(&self) -> Vec<Described> {
        match self {
            Source::Dict(dict) => dict
                .entries
                .iter()
                .map(|(key, value)| Described {
                    key: key.clone(),
                    shape: match value {
                        Value::F32(t) => t.shape().to_vec(),
                        Value::I64(t) => t.shape().to_vec(),
                    },
                    is_int: matches!(value, Value::I64(_)),
                })
                .collect(),
            Source::File(file) => file
                .entries()
                .iter()
                .map(|e| Described {
                    key: e.name.clone(),
                    shape: e.shape.clone(),
                    is_int: e.stored.is_int(),
                })
                .collect(),
        }
    }

    /// Source tensor `index` written into `out` as `f32` (integers converted).
    fn read_f32(&mut self, index: usize, out: &mut [f32]) -> Result<(), WeightsError> {
        match self {
            Source::Dict(dict) => {
                match &dict.entries[index].1 {
                    Value::F32(t) => out.copy_from_slice(t.data()),
                    Value::I64(t) => {
                        for (o, &v) in out.iter_mut().zip(t.data()) {
                            *o = v as f32;
                        }
                    }
                }
                Ok(())
            }
            Source::File(file) => file.read_f32(index, out),
        }
    }

    /// The value of source tensor `index` if it is a single integer (a `num_batches_tracked`
    /// counter); `None` for any other tensor, which is not read.
    pub(crate) fn read_counter(&mut self, index: usize) -> Result<Option<i64>, WeightsError> {
        let value = match self {
            Source::Dict(dict) => match &dict.entries[index].1 {
                Value::I64(t) if t.data().len() == 1 => Some(t.data()[0]),
                _ => None,
            },
            Source::File(file) => {
                let entry = &file.entries()[index];
                // The size is checked before reading: a hostile file may claim gigabytes.
                if !entry.stored.is_int() || entry.count() != 1 {
                    None
                } else {
                    match file.read_value(index)? {
                        Value::I64(t) => t.data.first().copied(),
                        Value::F32(_) => None,
                    }
                }
            }
        };
        Ok(value)
    }

    /// `(index, key)` of every integer tensor.
    pub(crate) fn int_keys(&self) -> Vec<(usize, String)> {
        self.describe()
            .into_iter()
            .enumerate()
            .filter(|(_, d)| d.is_int)
            .map(|(i, d)| (i, d.key))
            .collect()
    }
}

/// The first non-finite value of `values`, as the error naming `key`.
fn first_non_finite(key: &str, values: &[f32]) -> Result<(), WeightsError> {
    match values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => Err(WeightsError::NonFinite {
            tensor: key.to_owned(),
            index,
            value,
        }),
        None => Ok(()),
    }
}

/// Copies `dict` into `target`, matching names after [`canonical_key`].
///
/// Every check runs before the first copy: if any model tensor is missing from the file, any
/// file key names nothing in the model, or any shape differs, the returned
/// [`WeightsError::Mismatch`] lists all of them and `target` is untouched. `num_batches_tracked`
/// entries are optional on both sides. An `i64` tensor the model holds as `f32` is converted.
/// A tensor holding NaN or an infinity is refused with [`WeightsError::NonFinite`], also before
/// anything is copied.
pub fn load_into(
    target: &mut impl NamedTensors,
    dict: &StateDict,
) -> Result<LoadReport, WeightsError> {
    load_from(target, &mut Source::Dict(dict))
}

/// [`load_into`] from either source. From a dict every check, non-finite values included, runs
/// before the first copy. From a file the names and shapes are checked before the first read,
/// but values are checked as they are read into `target`: a non-finite value or a failed read
/// leaves `target` partly written, so callers load files into a target they can discard.
pub(crate) fn load_from(
    target: &mut impl NamedTensors,
    source: &mut Source<'_>,
) -> Result<LoadReport, WeightsError> {
    let described = source.describe();
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(described.len());
    let mut report = LoadReport::default();
    for (index, d) in described.iter().enumerate() {
        let canonical = canonical_key(&d.key);
        if let Some(&first) = by_name.get(&canonical) {
            return Err(WeightsError::DuplicateKey {
                canonical,
                first: described[first].key.clone(),
                second: d.key.clone(),
            });
        }
        if canonical != d.key {
            report.renamed.push((d.key.clone(), canonical.clone()));
        }
        by_name.insert(canonical, index);
    }

    let names = target.tensor_names();
    let mut mismatch = MismatchReport::default();
    let mut plan = Vec::with_capacity(names.len());
    for name in &names {
        let (shape, len) = match target.tensor_mut(name) {
            Some((shape, data)) => (shape.to_vec(), data.len()),
            None => {
                return Err(WeightsError::TargetInconsistent {
                    tensor: name.clone(),
                    reason: "listed by tensor_names() but not returned by tensor_mut()".into(),
                })
            }
        };
        if element_count(&shape) != Some(len) {
            return Err(inconsistent(name, &shape, len));
        }
        let Some(&index) = by_name.get(name) else {
            if keys::is_batch_counter(name) {
                report.counters_not_in_file.push(name.clone());
            } else {
                mismatch.missing.push(name.clone());
            }
            continue;
        };
        let found = &described[index].shape;
        if *found != shape {
            mismatch.wrong_shape.push(ShapeMismatch {
                name: name.clone(),
                expected: shape,
                found: found.clone(),
            });
            continue;
        }
        plan.push((name, index));
    }
    let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for d in &described {
        let canonical = canonical_key(&d.key);
        if !wanted.contains(canonical.as_str()) {
            if keys::is_batch_counter(&canonical) {
                report.skipped_counters.push(d.key.clone());
            } else {
                mismatch.unexpected.push(d.key.clone());
            }
        }
    }
    if !mismatch.is_empty() {
        return Err(WeightsError::Mismatch(mismatch));
    }
    // A dict's values are all checked before anything is copied; a file's as they are read.
    let checked_before = matches!(source, Source::Dict(_));
    if let Source::Dict(dict) = source {
        for &(_, index) in &plan {
            if let (key, Value::F32(t)) = &dict.entries[index] {
                first_non_finite(key, t.data())?;
            }
        }
    }

    for (name, index) in plan {
        let Some((_, data)) = target.tensor_mut(name) else {
            return Err(WeightsError::TargetInconsistent {
                tensor: name.clone(),
                reason: "disappeared between checking and copying".into(),
            });
        };
        if element_count(&described[index].shape) != Some(data.len()) {
            return Err(WeightsError::TargetInconsistent {
                tensor: name.clone(),
                reason: "changed size between checking and copying".into(),
            });
        }
        source.read_f32(index, data)?;
        if !checked_before && !described[index].is_int {
            first_non_finite(&described[index].key, data)?;
        }
        report.loaded += 1;
    }
    Ok(report)
}

impl crate::model::DenseNet {
    /// Loads a safetensors state dict (torchvision names, or the legacy spellings
    /// [`canonical_key`] accepts) into the model. On any missing, unexpected or mis-shaped
    /// tensor the error lists them all; on any error the model is unchanged.
    /// `num_batches_tracked` counters are restored (see [`load_params`]).
    ///
    /// The file is read tensor by tensor into a second parameter store that replaces the
    /// model's only once everything has been read and checked, so a load needs memory for two
    /// copies of the parameters (not three, as a [`StateDict`] in between would). To build a
    /// model from a file with one copy, use [`DenseNet::from_weights`](crate::DenseNet::from_weights).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, WeightsError> {
        let mut staged = self.store().empty_like();
        let report = load_params_from_file(&mut staged, path.as_ref())?;
        self.store_mut().take_values(staged);
        Ok(report)
    }

    /// Writes the model's weights, running statistics and `num_batches_tracked` counters as a
    /// safetensors file with torchvision's names (atomically), loadable by PyTorch with
    /// `load_state_dict(..., strict=True)`.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        StateDict::from_params(self.store())?.save(path)
    }
}
