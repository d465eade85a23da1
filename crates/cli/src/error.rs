//! The command's error: one line that names the problem, printed as `error: ...`.

use std::fmt;

/// A failure the user can act on; `main` prints it as `error: <message>` and exits with 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<densenet::Error> for CliError {
    fn from(e: densenet::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<densenet::data::DataError> for CliError {
    fn from(e: densenet::data::DataError) -> Self {
        CliError(e.to_string())
    }
}

/// The command's result type.
pub type CliResult<T> = Result<T, CliError>;

/// Builds a [`CliError`] from a format string.
macro_rules! fail {
    ($($arg:tt)*) => { $crate::error::CliError(format!($($arg)*)) };
}
pub(crate) use fail;
