//! Max, average and global average pooling.
//!
//! PLACEHOLDER: re-exports the reference until the fast kernels land.
pub use crate::reference::{
    avgpool2d_backward, avgpool2d_forward, global_avgpool_backward, global_avgpool_forward,
    maxpool2d_backward, maxpool2d_forward,
};
