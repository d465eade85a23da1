//! The safetensors file format: parsing with every size checked, serialising, atomic saving.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};

use super::dtype::{bf16_to_f32, decode, f16_to_f32, f64_to_f32};
use super::{IntTensor, StateDict, Tensor, Value, WeightsError};

/// The largest header the safetensors crate accepts.
const MAX_HEADER: u64 = 100_000_000;
/// The header length field: a little-endian u64.
const LEN_FIELD: usize = 8;

/// Parses a whole safetensors file. Nothing is allocated from a size the header claims until
/// that size has been checked against the bytes actually present, so a hostile header cannot
/// make the loader allocate more than a small multiple of the file's length.
pub(crate) fn parse(bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let Some(field) = bytes.first_chunk::<LEN_FIELD>() else {
        return Err(WeightsError::FileTooShort { len: bytes.len() });
    };
    let declared = u64::from_le_bytes(*field);
    let available = bytes.len() - LEN_FIELD;
    if declared > MAX_HEADER {
        return Err(WeightsError::HeaderTooLarge { declared });
    }
    if declared > available as u64 {
        return Err(WeightsError::HeaderPastEnd {
            declared,
            available,
        });
    }
    let (header_len, metadata) = SafeTensors::read_metadata(bytes).map_err(from_safetensors)?;
    let data = bytes
        .get(LEN_FIELD + header_len..)
        .ok_or_else(|| WeightsError::Format("header length out of range".into()))?;

    let mut dict = StateDict::new();
    if let Some(meta) = metadata.metadata() {
        for (key, value) in meta {
            dict.set_metadata(key, value);
        }
    }
    for name in metadata.offset_keys() {
        let info = metadata
            .info(&name)
            .ok_or_else(|| WeightsError::Format(format!("tensor `{name}` listed but not found")))?;
        let width = match info.dtype {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    tensor: name,
                    dtype: other.to_string(),
                })
            }
        };
        // The safetensors crate has already checked these; checking again keeps this function
        // safe on its own should the crate's validation ever change.
        let count = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
            .ok_or_else(|| WeightsError::ShapeOverflow {
                detail: format!("tensor `{name}`, shape {:?}", info.shape),
            })?;
        let (start, end) = info.data_offsets;
        let raw = data
            .get(start..end)
            .ok_or_else(|| WeightsError::BadOffsets {
                tensor: name.clone(),
            })?;
        if count.checked_mul(width) != Some(raw.len()) {
            return Err(WeightsError::DataSize {
                reason: format!(
                    "tensor `{name}`: shape {:?} of {} needs {count} values, the offsets hold {} bytes",
                    info.shape,
                    info.dtype,
                    raw.len()
                ),
            });
        }
        let shape = info.shape.clone();
        let value = match info.dtype {
            Dtype::F32 => Value::F32(Tensor::from_parts(shape, decode(raw, f32::from_le_bytes))),
            Dtype::F16 => Value::F32(Tensor::from_parts(
                shape,
                decode(raw, |b| f16_to_f32(u16::from_le_bytes(b))),
            )),
            Dtype::BF16 => Value::F32(Tensor::from_parts(
                shape,
                decode(raw, |b| bf16_to_f32(u16::from_le_bytes(b))),
            )),
            Dtype::F64 => Value::F32(Tensor::from_parts(
                shape,
                decode(raw, |b| f64_to_f32(f64::from_le_bytes(b))),
            )),
            Dtype::I64 => Value::I64(IntTensor::from_parts(
                shape,
                decode(raw, i64::from_le_bytes),
            )),
            _ => Value::I64(IntTensor::from_parts(
                shape,
                decode(raw, |b| i64::from(i32::from_le_bytes(b))),
            )),
        };
        dict.insert_value(name, value);
    }
    Ok(dict)
}

/// The bytes of the regular file at `path`, at most as many as its length when opened (so a
/// file growing meanwhile, or a device such as `/dev/zero`, cannot make the read endless).
pub(crate) fn read_regular_file(path: &Path) -> Result<Vec<u8>, WeightsError> {
    let io_error = |source| WeightsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(WeightsError::NotAFile {
            path: path.to_owned(),
        });
    }
    let len = meta.len();
    let capacity =
        usize::try_from(len).map_err(|_| WeightsError::HeaderTooLarge { declared: len })?;
    let mut bytes = Vec::with_capacity(capacity);
    file.take(len).read_to_end(&mut bytes).map_err(io_error)?;
    Ok(bytes)
}

/// Maps the safetensors crate's errors onto named ones.
fn from_safetensors(error: SafeTensorError) -> WeightsError {
    match error {
        SafeTensorError::HeaderTooSmall => WeightsError::FileTooShort { len: 0 },
        SafeTensorError::InvalidHeader(e) => WeightsError::InvalidHeader {
            reason: format!("not UTF-8: {e}"),
        },
        SafeTensorError::InvalidHeaderDeserialization(e) | SafeTensorError::JsonError(e) => {
            WeightsError::InvalidHeader {
                reason: format!("not a safetensors JSON header: {e}"),
            }
        }
        SafeTensorError::InvalidOffset(tensor) => WeightsError::BadOffsets { tensor },
        SafeTensorError::ValidationOverflow => WeightsError::ShapeOverflow {
            detail: "a tensor's element count times its dtype size exceeds usize".into(),
        },
        SafeTensorError::TensorInvalidInfo => WeightsError::DataSize {
            reason: "a tensor's byte range does not match its shape and dtype".into(),
        },
        SafeTensorError::MetadataIncompleteBuffer => WeightsError::DataSize {
            reason: "the tensors do not end exactly at the end of the file (truncated or padded)"
                .into(),
        },
        other => WeightsError::Format(other.to_string()),
    }
}

/// A state-dict entry seen through the safetensors crate's serialisation trait.
struct EntryView<'a>(&'a Value);

impl View for EntryView<'_> {
    fn dtype(&self) -> Dtype {
        match self.0 {
            Value::F32(_) => Dtype::F32,
            Value::I64(_) => Dtype::I64,
        }
    }

    fn shape(&self) -> &[usize] {
        match self.0 {
            Value::F32(t) => t.shape(),
            Value::I64(t) => t.shape(),
        }
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.0 {
            Value::F32(t) => Cow::Owned(t.data().iter().flat_map(|v| v.to_le_bytes()).collect()),
            Value::I64(t) => Cow::Owned(t.data().iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    fn data_len(&self) -> usize {
        match self.0 {
            Value::F32(t) => t.data().len() * 4,
            Value::I64(t) => t.data().len() * 8,
        }
    }
}

/// Serialises `dict` to the bytes of a safetensors file.
pub(crate) fn serialize(dict: &StateDict) -> Result<Vec<u8>, WeightsError> {
    let views = dict
        .entries
        .iter()
        .map(|(name, value)| (name.as_str(), EntryView(value)));
    let metadata: HashMap<String, String> = dict
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize(views, metadata).map_err(|e| WeightsError::Format(e.to_string()))
}

/// Distinguishes temporary files of concurrent saves within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that `path` afterwards holds either its old content or all of
/// `bytes`, never a mixture: the bytes go to a temporary file in the same folder (so the final
/// rename stays on one file system, where it is atomic), are flushed to disk, and only then
/// renamed over `path`. On failure the temporary file is removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let Some(file_name) = path.file_name() else {
        return Err(WeightsError::NoFileName {
            path: path.to_owned(),
        });
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = folder.join(temp_name);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| WeightsError::Io { path, source }
    };

    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
    if let Err(e) = written {
        // The temporary file may not exist (if creating it failed); nothing else to clean.
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp)(e));
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error(path)(e));
    }
    Ok(())
}
