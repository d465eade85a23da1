//! # densenet
//!
//! DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017) on the CPU,
//! with concat-free dense blocks and the memory-efficient training of Pleiss et al. (2017).
//!
//! - [`config`]: configurations, presets and the spec parser;
//! - [`params`]: the parameter store, named as torchvision's state dict;
//! - [`model`] and [`backward`]: forward and hand-written backward passes over
//!   [`plan::TrainWorkspace`], whose dense blocks never concatenate (see [`block`]);
//! - [`train`]: SGD over all parameters and learning-rate schedules;
//! - [`data`]: data sets (bundled digits, CIFAR, IDX, image folders), normalisation, augmentation;
//! - [`heatmap`]: the paper's Figure 5, connection strengths inside each dense block;
//! - [`weights`]: safetensors state dicts, interchangeable with PyTorch/torchvision;
//! - [`memory`]: dense-block memory traffic: naive, shared-buffer and memory-efficient blocks
//!   side by side, an OSA block, MAC formulas, measured allocations and copies.

pub mod backward;
pub mod block;
pub mod config;
pub mod data;
pub mod error;
pub mod heatmap;
pub mod infer;
pub mod init;
pub mod memory;
pub mod model;
pub mod params;
pub mod plan;
pub mod summary;
pub mod train;
pub mod weights;

pub use config::{DenseNetConfig, Stem};
pub use error::{Error, Result};
pub use model::{DenseNet, Mode, TracedTensor};
pub use params::ParamStore;
pub use plan::{MemoryPlan, TrainWorkspace};

/// Runs `f` on a thread of rayon's current pool (on this one if it is already a worker).
///
/// A parallel loop started from outside the pool hands its work to the pool and puts the
/// calling thread to sleep until it is done, a sleep and a wake-up per loop; started from a
/// worker, the worker runs its share at once and the other workers steal the rest. A training
/// step runs hundreds of parallel loops.
///
/// The caller's SIMD tier cap (`densenet_kernels::dispatch::with_max_isa`, kept per thread)
/// goes along to the worker.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let isa = densenet_kernels::active_isa();
    let mut out = None;
    rayon::scope(|_| out = Some(densenet_kernels::dispatch::with_max_isa(isa, f)));
    out.expect("the scope ran its body")
}
