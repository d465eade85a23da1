//! The SGD update.
//!
//! PLACEHOLDER: re-exports the reference until the fast kernels land.
pub use crate::reference::{sgd_step, SgdConfig};
