//! Batch norm (and fused batch norm + ReLU), forward and backward.
//!
//! PLACEHOLDER: re-exports the reference until the fast kernels land; the signatures are the
//! public contract.
pub use crate::reference::{
    batchnorm_backward, batchnorm_forward_infer, batchnorm_forward_train, batchnorm_relu_backward,
    batchnorm_relu_forward_train, batchnorm_statistics, batchnorm_update_running,
};
