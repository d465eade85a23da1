//! The linear (fully connected) layer.
//!
//! PLACEHOLDER: re-exports the reference until the fast kernels land.
pub use crate::reference::{linear_backward_input, linear_backward_weight, linear_forward};
