//! # densenet
//!
//! DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017) on the CPU,
//! with concat-free dense blocks and the memory-efficient training of Pleiss et al. (2017).

pub mod data;
pub mod error;

pub use error::{Error, Result};
