//! ReLU and dropout.
//!
//! PLACEHOLDER: re-exports the reference until the fast kernels land.
pub use crate::reference::{
    dropout_backward, dropout_forward, dropout_keep, relu_backward, relu_forward,
};
