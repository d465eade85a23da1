//! Everything that can go wrong when reading, writing or loading a weight file.

use std::fmt;
use std::path::PathBuf;

/// An error of the weights module. Each variant names the file, tensor or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// Reading, writing or renaming a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The path to load names a folder, device or pipe, not a regular file.
    #[error("{}: not a regular file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// The path to save to has no file name (it is empty, `/` or ends in `..`).
    #[error("cannot save to {}: the path names no file", path.display())]
    NoFileName {
        /// The path given.
        path: PathBuf,
    },
    /// Fewer than the 8 bytes that hold the header length: not a safetensors file.
    #[error("truncated file: {len} bytes, shorter than the 8-byte header length field")]
    FileTooShort {
        /// The length of the file in bytes.
        len: usize,
    },
    /// The header length field exceeds the 100 MB safetensors allows.
    #[error("header length field says {declared} bytes, more than the 100 MB limit")]
    HeaderTooLarge {
        /// The header length the file declares.
        declared: u64,
    },
    /// The header length field points past the end of the file.
    #[error("header length field says {declared} bytes but only {available} bytes follow it (truncated file?)")]
    HeaderPastEnd {
        /// The header length the file declares.
        declared: u64,
        /// The bytes actually present after the length field.
        available: usize,
    },
    /// The header is not UTF-8, not JSON, or not the JSON safetensors expects.
    #[error("invalid header: {reason}")]
    InvalidHeader {
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor's byte range does not start where the previous one ended or runs backwards.
    #[error("tensor `{tensor}`: data offsets out of order or out of range")]
    BadOffsets {
        /// The tensor, as named in the file.
        tensor: String,
    },
    /// A tensor's byte range does not match its shape and dtype, or the tensors do not cover
    /// exactly the data section of the file.
    #[error("data offsets do not match the shapes and dtypes, or do not cover the file exactly: {reason}")]
    DataSize {
        /// Which check failed.
        reason: String,
    },
    /// A tensor's shape multiplies out past `usize`.
    #[error("a shape overflows the address space: {detail}")]
    ShapeOverflow {
        /// The tensor and its shape, when known (the safetensors parser does not say which).
        detail: String,
    },
    /// A dtype the loader does not convert (only F32, F16, BF16, F64, I64 and I32 are read).
    #[error(
        "tensor `{tensor}`: unsupported dtype {dtype} (expected F32, F16, BF16, F64, I64 or I32)"
    )]
    UnsupportedDtype {
        /// The tensor, as named in the file.
        tensor: String,
        /// The dtype the file declares.
        dtype: String,
    },
    /// A tensor's data does not have as many elements as its shape says.
    #[error("tensor `{tensor}`: shape {shape:?} does not hold {found} values")]
    InvalidTensor {
        /// The tensor's name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The number of values given.
        found: usize,
    },
    /// A tensor holds NaN or an infinity. [`crate::weights::load_into`] refuses such values
    /// rather than load a model whose every output would be NaN (see docs/robustness.md).
    #[error("tensor `{tensor}`: value {value} at flat index {index} is not finite")]
    NonFinite {
        /// The tensor, as named in the file.
        tensor: String,
        /// The row-major index of the first non-finite value.
        index: usize,
        /// That value (NaN, inf or -inf).
        value: f32,
    },
    /// A `num_batches_tracked` counter that is not one non-negative integer.
    #[error("tensor `{tensor}`: a num_batches_tracked counter must be one non-negative integer")]
    BadCounter {
        /// The counter, as named in the file.
        tensor: String,
    },
    /// Two keys in one file mean the same tensor once normalised (for example `norm.1.weight`
    /// and `norm1.weight`).
    #[error("keys `{first}` and `{second}` both name `{canonical}`")]
    DuplicateKey {
        /// The torchvision name both map to.
        canonical: String,
        /// The first key, as in the file.
        first: String,
        /// The second key, as in the file.
        second: String,
    },
    /// The file's tensors do not fit the model: see the report for every problem at once.
    #[error("{0}")]
    Mismatch(MismatchReport),
    /// The model's tensor store contradicts itself (lists a name it then does not return, or a
    /// shape that does not match its data). A bug in the model, not in the file.
    #[error("the model's tensor `{tensor}` is inconsistent: {reason}")]
    TargetInconsistent {
        /// The tensor's name.
        tensor: String,
        /// What is inconsistent.
        reason: String,
    },
    /// A safetensors error with no more specific variant.
    #[error("safetensors: {0}")]
    Format(String),
}

/// One tensor whose shape in the file differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The model's (torchvision) name of the tensor.
    pub name: String,
    /// The shape the model expects.
    pub expected: Vec<usize>,
    /// The shape found in the file.
    pub found: Vec<usize>,
}

/// Every way a state dict failed to fit a model, gathered in one pass so a user sees all
/// problems at once rather than fixing them one run at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// Names the model has that the file lacks.
    pub missing: Vec<String>,
    /// Keys of the file (as written there) that name nothing in the model.
    pub unexpected: Vec<String>,
    /// Tensors present in both with different shapes.
    pub wrong_shape: Vec<ShapeMismatch>,
}

impl MismatchReport {
    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weights do not fit the model: {} missing, {} unexpected, {} with the wrong shape",
            self.missing.len(),
            self.unexpected.len(),
            self.wrong_shape.len()
        )?;
        for name in &self.missing {
            write!(f, "\n  missing: {name}")?;
        }
        for name in &self.unexpected {
            write!(f, "\n  unexpected: {name}")?;
        }
        for m in &self.wrong_shape {
            write!(
                f,
                "\n  wrong shape: {} expected {:?}, found {:?}",
                m.name, m.expected, m.found
            )?;
        }
        Ok(())
    }
}
