//! The safetensors file format: parsing with every size checked, serialising, atomic saving.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, Metadata, SafeTensorError, TensorInfo, View};

use super::dtype::{bf16_to_f32, decode, decode_into, f16_to_f32, f64_to_f32};
use super::{element_count, IntTensor, StateDict, Tensor, Value, WeightsError};

/// The largest header the safetensors crate accepts.
const MAX_HEADER: u64 = 100_000_000;
/// The header length field: a little-endian u64.
const LEN_FIELD: usize = 8;

/// How one tensor's values are stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    F16,
    BF16,
    F32,
    F64,
    I32,
    I64,
}

impl Stored {
    fn of(tensor: &str, dtype: Dtype) -> Result<Stored, WeightsError> {
        Ok(match dtype {
            Dtype::F16 => Stored::F16,
            Dtype::BF16 => Stored::BF16,
            Dtype::F32 => Stored::F32,
            Dtype::F64 => Stored::F64,
            Dtype::I32 => Stored::I32,
            Dtype::I64 => Stored::I64,
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    tensor: tensor.to_owned(),
                    dtype: other.to_string(),
                })
            }
        })
    }

    /// Bytes per element.
    fn width(self) -> usize {
        match self {
            Stored::F16 | Stored::BF16 => 2,
            Stored::F32 | Stored::I32 => 4,
            Stored::F64 | Stored::I64 => 8,
        }
    }

    /// Integers become `i64` tensors, floating-point values `f32` ones.
    pub(crate) fn is_int(self) -> bool {
        matches!(self, Stored::I32 | Stored::I64)
    }

    /// Decodes whole elements of `raw` into `out` (`raw.len() == out.len() * width`).
    fn decode_f32(self, raw: &[u8], out: &mut [f32]) {
        debug_assert_eq!(raw.len(), out.len() * self.width());
        match self {
            Stored::F32 => decode_into(raw, out, f32::from_le_bytes),
            Stored::F16 => decode_into(raw, out, |b| f16_to_f32(u16::from_le_bytes(b))),
            Stored::BF16 => decode_into(raw, out, |b| bf16_to_f32(u16::from_le_bytes(b))),
            Stored::F64 => decode_into(raw, out, |b| f64_to_f32(f64::from_le_bytes(b))),
            // An integer tensor the model holds as f32 (a counter saved as a buffer).
            Stored::I64 => decode_into(raw, out, |b| i64::from_le_bytes(b) as f32),
            Stored::I32 => decode_into(raw, out, |b| i32::from_le_bytes(b) as f32),
        }
    }

    /// The whole tensor `raw` as a state-dict value of `shape`.
    fn decode_value(self, shape: Vec<usize>, raw: &[u8]) -> Value {
        match self {
            Stored::I64 => Value::I64(IntTensor::from_parts(
                shape,
                decode(raw, i64::from_le_bytes),
            )),
            Stored::I32 => Value::I64(IntTensor::from_parts(
                shape,
                decode(raw, |b| i64::from(i32::from_le_bytes(b))),
            )),
            _ => {
                let mut values = vec![0.0; raw.len() / self.width()];
                self.decode_f32(raw, &mut values);
                Value::F32(Tensor::from_parts(shape, values))
            }
        }
    }
}

/// One tensor the header lists.
#[derive(Clone, Debug)]
pub(crate) struct HeaderEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: Stored,
    /// Where its bytes lie, counted from the start of the data section.
    pub bytes: Range<usize>,
}

impl HeaderEntry {
    /// The number of elements (checked against the byte range when the header was parsed).
    pub(crate) fn count(&self) -> usize {
        self.bytes.len() / self.stored.width()
    }
}

/// A parsed and checked safetensors header.
#[derive(Debug)]
pub(crate) struct Header {
    /// The tensors in the order of their data.
    pub entries: Vec<HeaderEntry>,
    /// The string map under `__metadata__`.
    pub metadata: HashMap<String, String>,
}

/// The header length the 8-byte length field declares, checked against the `available` bytes
/// after the field.
fn header_len(field: [u8; LEN_FIELD], available: u64) -> Result<usize, WeightsError> {
    let declared = u64::from_le_bytes(field);
    if declared > MAX_HEADER {
        return Err(WeightsError::HeaderTooLarge { declared });
    }
    if declared > available {
        return Err(WeightsError::HeaderPastEnd {
            declared,
            available: usize::try_from(available).unwrap_or(usize::MAX),
        });
    }
    // At most MAX_HEADER, so it fits any usize of 32 bits or more.
    usize::try_from(declared).map_err(|_| WeightsError::HeaderTooLarge { declared })
}

/// The JSON header as the safetensors crate reads it (the same fields, so the same files are
/// accepted: `__metadata__` optional and null allowed, given twice refused, tensors in any
/// order).
#[derive(serde::Deserialize)]
struct HeaderJson {
    #[serde(rename = "__metadata__")]
    metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, TensorInfo>,
}

/// Parses the JSON header of a file whose data section (everything after the header) holds
/// `data_len` bytes. The safetensors crate checks that the tensors' byte ranges follow one
/// another from offset 0 and match their shapes and dtypes; this also checks that they end
/// exactly at the end of the file and that every dtype is one the loader converts.
fn parse_header(json: &[u8], data_len: u64) -> Result<Header, WeightsError> {
    let text = std::str::from_utf8(json).map_err(|e| WeightsError::InvalidHeader {
        reason: format!("not UTF-8: {e}"),
    })?;
    let header: HeaderJson =
        serde_json::from_str(text).map_err(|e| WeightsError::InvalidHeader {
            reason: format!("not a safetensors JSON header: {e}"),
        })?;
    let mut tensors: Vec<(String, TensorInfo)> = header.tensors.into_iter().collect();
    // The crate's own parser does the same: files may list tensors in any order.
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let checked = Metadata::new(header.metadata, tensors).map_err(from_safetensors)?;
    if checked.data_len() as u64 != data_len {
        return Err(from_safetensors(SafeTensorError::MetadataIncompleteBuffer));
    }

    let mut entries = Vec::new();
    for name in checked.offset_keys() {
        let info = checked
            .info(&name)
            .ok_or_else(|| WeightsError::Format(format!("tensor `{name}` listed but not found")))?;
        let stored = Stored::of(&name, info.dtype)?;
        // The safetensors crate has already checked these; checking again keeps this function
        // safe on its own should the crate's validation ever change.
        let count = element_count(&info.shape).ok_or_else(|| WeightsError::ShapeOverflow {
            detail: format!("tensor `{name}`, shape {:?}", info.shape),
        })?;
        let (start, end) = info.data_offsets;
        if start > end || end as u64 > data_len {
            return Err(WeightsError::BadOffsets { tensor: name });
        }
        if count.checked_mul(stored.width()) != Some(end - start) {
            return Err(WeightsError::DataSize {
                reason: format!(
                    "tensor `{name}`: shape {:?} of {} needs {count} values, the offsets hold {} bytes",
                    info.shape,
                    info.dtype,
                    end - start
                ),
            });
        }
        entries.push(HeaderEntry {
            shape: info.shape.clone(),
            name,
            stored,
            bytes: start..end,
        });
    }
    Ok(Header {
        entries,
        metadata: checked.metadata().clone().unwrap_or_default(),
    })
}

/// Parses a whole safetensors file held in memory. Nothing is allocated from a size the
/// header claims until that size has been checked against the bytes actually present, so a
/// hostile file cannot make the loader allocate more than a multiple of its own length (about
/// 20× for a header of nothing but tensor entries, whose size the format caps at 100 MB).
pub(crate) fn parse(bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let Some(field) = bytes.first_chunk::<LEN_FIELD>() else {
        return Err(WeightsError::FileTooShort { len: bytes.len() });
    };
    let rest = &bytes[LEN_FIELD..];
    let len = header_len(*field, rest.len() as u64)?;
    let (json, data) = rest.split_at(len);
    let header = parse_header(json, data.len() as u64)?;

    let mut dict = StateDict::new();
    for (key, value) in header.metadata {
        dict.set_metadata(key, value);
    }
    for entry in header.entries {
        let raw = data
            .get(entry.bytes.clone())
            .ok_or_else(|| WeightsError::BadOffsets {
                tensor: entry.name.clone(),
            })?;
        let value = entry.stored.decode_value(entry.shape, raw);
        dict.insert_value(entry.name, value);
    }
    Ok(dict)
}

/// Bytes read from the file at a time when a tensor is decoded straight into its destination.
const READ_CHUNK: usize = 1 << 16;

/// A safetensors file opened for reading tensor by tensor: the header is read and checked when
/// it is opened (every byte range against the file's length), the data only when asked for, so
/// loading needs no copy of the file in memory.
pub(crate) struct TensorFile {
    path: PathBuf,
    file: fs::File,
    /// The file offset of the data section.
    data_start: u64,
    header: Header,
}

impl TensorFile {
    /// Opens the regular file at `path` (devices and pipes are refused) and checks its header.
    pub(crate) fn open(path: &Path) -> Result<TensorFile, WeightsError> {
        let io_error = |source| WeightsError::Io {
            path: path.to_owned(),
            source,
        };
        // Checked before opening too: opening a named pipe blocks until a writer comes.
        if !fs::metadata(path).map_err(io_error)?.is_file() {
            return Err(WeightsError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mut file = fs::File::open(path).map_err(io_error)?;
        // And after: the path may have been replaced in between.
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            return Err(WeightsError::NotAFile {
                path: path.to_owned(),
            });
        }
        let file_len = meta.len();
        let mut field = [0u8; LEN_FIELD];
        if file_len < LEN_FIELD as u64 {
            return Err(WeightsError::FileTooShort {
                len: file_len as usize,
            });
        }
        file.read_exact(&mut field).map_err(io_error)?;
        let len = header_len(field, file_len - LEN_FIELD as u64)?;
        let mut json = vec![0u8; len];
        file.read_exact(&mut json).map_err(io_error)?;
        let data_start = (LEN_FIELD + len) as u64;
        let header = parse_header(&json, file_len - data_start)?;
        Ok(TensorFile {
            path: path.to_owned(),
            file,
            data_start,
            header,
        })
    }

    /// The tensors the header lists, in the order of their data.
    pub(crate) fn entries(&self) -> &[HeaderEntry] {
        &self.header.entries
    }

    /// The string metadata of the header.
    pub(crate) fn metadata(&self) -> &HashMap<String, String> {
        &self.header.metadata
    }

    fn io_error(&self, source: std::io::Error) -> WeightsError {
        WeightsError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn seek_to(&mut self, entry: usize) -> Result<(), WeightsError> {
        let offset = self.data_start + self.header.entries[entry].bytes.start as u64;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.io_error(e))?;
        Ok(())
    }

    /// Reads entry `entry` into `out` as `f32` (`out.len()` must be its element count),
    /// [`READ_CHUNK`] bytes at a time.
    pub(crate) fn read_f32(&mut self, entry: usize, out: &mut [f32]) -> Result<(), WeightsError> {
        let stored = self.header.entries[entry].stored;
        assert_eq!(
            out.len(),
            self.header.entries[entry].count(),
            "read_f32: destination of the wrong length"
        );
        self.seek_to(entry)?;
        let per_chunk = READ_CHUNK / stored.width();
        let mut raw = vec![0u8; per_chunk.min(out.len()) * stored.width()];
        for values in out.chunks_mut(per_chunk) {
            let bytes = &mut raw[..values.len() * stored.width()];
            self.file.read_exact(bytes).map_err(|e| self.io_error(e))?;
            stored.decode_f32(bytes, values);
        }
        Ok(())
    }

    /// Reads entry `entry` as a state-dict value.
    pub(crate) fn read_value(&mut self, entry: usize) -> Result<Value, WeightsError> {
        let HeaderEntry {
            shape,
            stored,
            bytes,
            ..
        } = self.header.entries[entry].clone();
        if stored.is_int() {
            self.seek_to(entry)?;
            let mut raw = vec![0u8; bytes.len()];
            self.file
                .read_exact(&mut raw)
                .map_err(|e| self.io_error(e))?;
            Ok(stored.decode_value(shape, &raw))
        } else {
            let mut values = vec![0.0; bytes.len() / stored.width()];
            self.read_f32(entry, &mut values)?;
            Ok(Value::F32(Tensor::from_parts(shape, values)))
        }
    }
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
