//! The specification: every op as textbook loops, with the maths in the doc comments.
//!
//! Nothing here is fast, and nothing here is meant to be: these functions are what the fast
//! kernels are tested against, what the fuzz targets compare with, and what a reader can check
//! against the paper line by line. No SIMD, no threads, no `unsafe`. Sums are accumulated in
//! `f64` so that the reference is the more exact side of every comparison.
//!
//! Activations are channel-major (CNHW), as everywhere in this crate; see the crate docs.

mod batchnorm;
mod conv2d;
mod elementwise;
mod linear;
mod loss;
mod pool;
mod sgd;

pub use batchnorm::*;
pub use conv2d::*;
pub use elementwise::*;
pub use linear::*;
pub use loss::*;
pub use pool::*;
pub use sgd::*;
