//! # densenet
//!
//! DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017) on the CPU,
//! with concat-free dense blocks and the memory-efficient training of Pleiss et al. (2017).

pub mod config;
pub mod error;
pub mod init;
pub mod params;
pub mod summary;

pub use config::{DenseNetConfig, Stem};
pub use error::{Error, Result};
pub use params::ParamStore;
