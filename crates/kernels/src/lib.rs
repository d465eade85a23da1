//! # densenet-kernels
//!
//! From-scratch CPU kernels for DenseNet, each with its forward and backward pass.
//!
//! ## Notation
//!
//! | symbol | meaning |
//! |---|---|
//! | `N` | batch size (images) |
//! | `C`, `IC`, `OC` | channels; input and output channels of a convolution |
//! | `H`, `W`, `OH`, `OW` | input and output height and width |
//! | `KH`, `KW` | kernel height and width |
//! | `M` | `N·H·W`, the number of values one channel holds across the batch |
//! | `k` | the DenseNet growth rate |
//!
//! ## Layout: channel-major activations (CNHW)
//!
//! Every activation tensor is `f32`, stored **channel-major**: the value of channel `c`, image
//! `n`, row `y`, column `x` sits at
//!
//! ```text
//! index(c, n, y, x) = ((c·N + n)·H + y)·W + x
//! ```
//!
//! For a batch of one this is exactly PyTorch's NCHW. For larger batches it differs, and that is
//! deliberate: a *channel prefix* `[0, c)` of a tensor is then one contiguous slice of
//! `c·M` floats, and the `k` channels after it are the next contiguous slice. A dense layer reads
//! the prefix and writes its new channels right after it, and `split_at_mut` proves the two
//! disjoint, with no copy and no `unsafe`. It also turns a 1×1 convolution over the whole batch
//! into one matrix product `out[OC, M] = W[OC, IC] · in[IC, M]`. See `docs/architecture.md`.
//!
//! Weights keep PyTorch's layouts: convolution `OIHW` (`[OC, IC, KH, KW]`), linear
//! `[out_features, in_features]`, so state dicts interchange without transposes.
//!
//! ## Conventions
//!
//! - Each op is a pair of plain functions, `op_forward` and `op_backward*`, taking outputs first,
//!   then inputs, then saved tensors, then one geometry struct (see [`geom`]).
//! - Forward functions overwrite their output. Backward functions **accumulate** (`+=`) into
//!   their gradients; zeroing is the caller's explicit choice.
//! - [`mod@reference`] is the specification: textbook loops, no SIMD, no `unsafe`. Every fast kernel
//!   is tested against it. It is not the fallback: the fallback is the portable tier.
//! - Kernels never allocate on the hot path; scratch memory comes from a caller-owned
//!   [`Workspace`].
//!
//! ## SIMD tiers
//!
//! [`dispatch`] detects the CPU once: AVX-512, AVX2+FMA or the portable tier (`wide` vectors,
//! which compile to SSE on x86-64 and NEON on Arm). The environment variable
//! `DENSENET_MAX_ISA=portable|avx2|avx512` caps the tier; [`dispatch::active_isa`] names the tier
//! in use.
//!
//! ## Unsafe policy
//!
//! `unsafe` appears only inside the ISA-specific micro-kernels and the counting allocator of
//! [`alloc_counter`] (a `GlobalAlloc` cannot be written without it), each block with a `// SAFETY:`
//! comment naming the invariant it relies on.

pub mod alloc_counter;
pub mod batchnorm;
pub mod conv2d;
pub mod dispatch;
pub mod elementwise;
pub mod feature_buffer;
pub mod gemm;
pub mod geom;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod reference;
pub mod sgd;
mod simd;
pub mod winograd;
pub mod workspace;

pub use dispatch::{active_isa, Isa};
pub use feature_buffer::FeatureBuffer;
pub use geom::{BatchNormConfig, BatchNormGeom, ChannelAffine, Conv2dGeom, Pool2dGeom};
pub use simd::on_tier;
pub use workspace::Workspace;
