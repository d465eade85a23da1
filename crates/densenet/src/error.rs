//! The crate's error type: every way a user's input can be wrong, each naming the problem.

use std::path::PathBuf;

/// Everything that can go wrong in the `densenet` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration or model specification that cannot describe a DenseNet.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A tensor, batch or input size that does not fit what it is given to.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An input image holds NaN or an infinity (refused, see docs/robustness.md).
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// A data set that cannot be read (names the file and the problem).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A weights file that cannot be read or does not fit the model (see
    /// [`WeightsError`](crate::weights::WeightsError)).
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
