//! Dense-block memory traffic: one dense block run standalone in three memory strategies, a
//! one-shot aggregation (OSA) block beside it, the analytic memory access cost of their
//! convolutions, and measurements of what each allocates and copies.
//!
//! The three strategies compute the same function with the same fast kernels and the same
//! parameters; only where the activations live differs:
//!
//! 1. [`Strategy::Naive`] ([`naive`]): as a framework with `torch.cat` does it. Layer `l`
//!    allocates a new tensor and copies the block input and all `l` earlier outputs into it
//!    (`(k0 + l·k)·M` floats), stores it for batch norm's backward, stores `relu(norm1(·))` of
//!    it for the convolution's backward, and the block output is one more concatenation. In
//!    backward each concatenation's gradient is split (copied) back into its pieces.
//! 2. [`Strategy::Shared`] ([`shared`]): the network's own layer code over a preallocated
//!    [`FeatureBuffer`](densenet_kernels::FeatureBuffer): no concatenation, no copy, but each
//!    layer still stores `relu(norm1(prefix))` — quadratic in depth, like Pleiss et al.'s
//!    "shared storage for concatenation" variant.
//! 3. [`Strategy::Efficient`]: the same buffer with memory-efficient backward: `relu(norm(·))`
//!    is fused into the convolutions and recomputed in backward — linear in depth.
//!
//! Byte counts come from measurement: [`measure_block`] runs a pass under
//! [`densenet_kernels::alloc_counter::measure`] (a program must install
//! [`CountingAllocator`](densenet_kernels::alloc_counter::CountingAllocator) as its global
//! allocator, or every figure reads 0), and copies are counted by the runners as they copy
//! ([`CopyCounts`]). [`mac`] holds the analytic formula.

pub mod mac;
pub mod naive;
pub mod osa;
pub mod shared;
pub mod sweep;

use densenet_kernels::alloc_counter::measure;
use densenet_kernels::BatchNormConfig;

use crate::config::{DenseNetConfig, Stem};
use crate::error::{Error, Result};
use crate::init::{init_torchvision, Rng};
use crate::params::{LayerP, ParamStore};

pub use naive::NaiveBlock;
pub use osa::{OsaBlock, OsaShape};
pub use shared::SharedBlock;

/// The shape of one dense block run standalone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// Channels entering the block.
    pub k0: usize,
    /// Dense layers `L`.
    pub layers: usize,
    /// Growth rate `k`.
    pub growth: usize,
    /// Bottleneck factor (the 1×1 conv outputs `bn_size·k`), or `None` for a plain 3×3 layer.
    pub bn_size: Option<usize>,
    /// Batch size `N`.
    pub batch: usize,
    /// Feature-map height and width.
    pub h: usize,
    pub w: usize,
}

impl BlockShape {
    /// DenseNet-BC-100's block (k = 12, 16 bottleneck layers) at CIFAR size: 24 input
    /// channels, 32×32, `batch` images.
    pub fn cifar_bc100(batch: usize) -> Self {
        BlockShape {
            k0: 24,
            layers: 16,
            growth: 12,
            bn_size: Some(4),
            batch,
            h: 32,
            w: 32,
        }
    }

    /// DenseNet-121's block `b` (0-based, 0..4) at a 224×224 input: 6/12/24/16 layers, k = 32,
    /// 56/28/14/7 px, 64/128/256/512 input channels.
    pub fn densenet121(b: usize, batch: usize) -> Self {
        let (layers, hw, k0) = [(6, 56, 64), (12, 28, 128), (24, 14, 256), (16, 7, 512)][b];
        BlockShape {
            k0,
            layers,
            growth: 32,
            bn_size: Some(4),
            batch,
            h: hw,
            w: hw,
        }
    }

    /// Channels leaving the block, `k0 + L·k`.
    pub fn out_channels(&self) -> usize {
        self.k0 + self.layers * self.growth
    }

    /// Values per channel, `M = N·H·W`.
    pub fn per_channel(&self) -> usize {
        self.batch * self.h * self.w
    }

    /// A short label, e.g. `k0=24 L=16 k=12 bc 32x32 n=64`.
    pub fn label(&self) -> String {
        format!(
            "k0={} L={} k={} {} {}x{} n={}",
            self.k0,
            self.layers,
            self.growth,
            if self.bn_size.is_some() {
                "bc"
            } else {
                "plain"
            },
            self.h,
            self.w,
            self.batch
        )
    }

    /// Checks the shape can be trained: positive sizes, more than one value per channel.
    pub fn validate(&self) -> Result<()> {
        if self.k0 == 0 || self.layers == 0 || self.growth == 0 || self.bn_size == Some(0) {
            return Err(Error::Shape(format!(
                "dense block {}: channels, layers and growth must be positive",
                self.label()
            )));
        }
        if self.per_channel() <= 1 {
            return Err(Error::Shape(format!(
                "dense block {}: training batch norm needs N*H*W > 1",
                self.label()
            )));
        }
        Ok(())
    }

    /// The single-block network configuration whose parameters the runners use.
    fn config(&self) -> DenseNetConfig {
        DenseNetConfig {
            growth_rate: self.growth,
            block_config: vec![self.layers],
            init_features: self.k0,
            bn_size: self.bn_size,
            compression: 1.0,
            drop_rate: 0.0,
            num_classes: 1,
            in_channels: 1,
            stem: Stem::Cifar,
        }
    }
}

/// A block's memory strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A new tensor and a copy per layer (`torch.cat`), every intermediate stored.
    Naive,
    /// The preallocated feature buffer; batch-norm outputs stored.
    Shared,
    /// The preallocated feature buffer; batch-norm outputs recomputed in backward.
    Efficient,
}

impl Strategy {
    /// All three, in the order of the module docs.
    pub const ALL: [Strategy; 3] = [Strategy::Naive, Strategy::Shared, Strategy::Efficient];

    /// `naive`, `shared` or `efficient`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Shared => "shared",
            Strategy::Efficient => "efficient",
        }
    }
}

/// The parameters of one dense block (torchvision's initialisation), shared by all runners so
/// that the three strategies compute the same function.
#[derive(Clone, Debug)]
pub struct BlockParams {
    pub(crate) shape: BlockShape,
    pub(crate) store: ParamStore,
    pub(crate) layers: Vec<LayerP>,
    pub(crate) bn: BatchNormConfig,
}

impl BlockParams {
    /// Parameters for `shape`, drawn from `seed`.
    pub fn new(shape: BlockShape, seed: u64) -> Result<Self> {
        shape.validate()?;
        let (mut store, arch) = ParamStore::build(&shape.config());
        init_torchvision(&mut store, seed);
        let layers = arch.blocks.into_iter().next().unwrap_or_default();
        Ok(BlockParams {
            shape,
            store,
            layers,
            bn: BatchNormConfig::default(),
        })
    }

    /// The block shape.
    pub fn shape(&self) -> BlockShape {
        self.shape
    }

    /// The parameters and their gradients, named `features.denseblock1.denselayer{l}.*`.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }
}

/// Bytes the runners copied, counted as they copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    /// Forward: concatenations (naive) or loading the block input into the buffer (shared).
    pub forward_bytes: u64,
    /// Backward: splitting concatenation gradients into their pieces (naive) or loading the
    /// upstream gradient into the gradient buffer (shared).
    pub backward_bytes: u64,
}

impl CopyCounts {
    /// Forward plus backward.
    pub fn total(&self) -> u64 {
        self.forward_bytes + self.backward_bytes
    }
}

/// A dense block in one of the three strategies. (One lives per benchmark or sweep point, so
/// the size difference between the variants costs nothing worth a box.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum BlockRunner {
    /// [`Strategy::Naive`].
    Naive(Box<NaiveBlock>),
    /// [`Strategy::Shared`] or [`Strategy::Efficient`].
    Shared(Box<SharedBlock>),
}

impl BlockRunner {
    /// A runner for `params`' shape in `strategy`; allocates what the strategy preallocates.
    pub fn new(params: &BlockParams, strategy: Strategy) -> Result<Self> {
        Ok(match strategy {
            Strategy::Naive => BlockRunner::Naive(Box::new(NaiveBlock::new(params.shape))),
            Strategy::Shared => {
                BlockRunner::Shared(Box::new(SharedBlock::new(params.shape, false)?))
            }
            Strategy::Efficient => {
                BlockRunner::Shared(Box::new(SharedBlock::new(params.shape, true)?))
            }
        })
    }

    /// Training-mode forward of `input` (`[k0, N, H, W]`, CNHW); returns the block output
    /// `[k0 + L·k, N, H, W]`.
    pub fn forward(&mut self, params: &mut BlockParams, input: &[f32]) -> &[f32] {
        match self {
            BlockRunner::Naive(b) => b.forward(params, input),
            BlockRunner::Shared(b) => b.forward(params, input),
        }
    }

    /// Backward of the last forward from the output gradient `d_out` (`[k0 + L·k, N, H, W]`):
    /// zeroes and fills `params`' gradients; returns the input gradient `[k0, N, H, W]`.
    pub fn backward(&mut self, params: &mut BlockParams, d_out: &[f32]) -> &[f32] {
        match self {
            BlockRunner::Naive(b) => b.backward(params, d_out),
            BlockRunner::Shared(b) => b.backward(params, d_out),
        }
    }

    /// Bytes copied since the runner was made.
    pub fn copies(&self) -> CopyCounts {
        match self {
            BlockRunner::Naive(b) => b.copies(),
            BlockRunner::Shared(b) => b.copies(),
        }
    }
}

/// Which passes a measurement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Training-mode forward only.
    Forward,
    /// Forward then backward.
    ForwardBackward,
}

/// What one instrumented pass of a block cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Heap allocations made (runner creation included).
    pub allocations: u64,
    /// Bytes allocated, frees not subtracted.
    pub allocated_bytes: u64,
    /// Peak bytes live above what was live before.
    pub peak_bytes: u64,
    /// Bytes copied, from the runner's counters.
    pub copies: CopyCounts,
}

/// Deterministic test data: `len` standard normal values.
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.normal()).collect()
}

/// Runs one pass of `strategy` on `params`' block under the counting allocator: the runner is
/// created inside the measurement (its preallocated buffers count), the input and output
/// gradient are made outside it.
pub fn measure_block(params: &mut BlockParams, strategy: Strategy, pass: Pass) -> Result<Traffic> {
    let s = params.shape;
    let input = random_values(s.k0 * s.per_channel(), 11);
    let d_out = match pass {
        Pass::Forward => Vec::new(),
        Pass::ForwardBackward => random_values(s.out_channels() * s.per_channel(), 12),
    };
    let (copies, delta) = measure(|| -> Result<CopyCounts> {
        let mut r = BlockRunner::new(params, strategy)?;
        r.forward(params, &input);
        if pass == Pass::ForwardBackward {
            r.backward(params, &d_out);
        }
        Ok(r.copies())
    });
    Ok(Traffic {
        allocations: delta.allocations,
        allocated_bytes: delta.allocated_bytes,
        peak_bytes: delta.peak_extra_bytes,
        copies: copies?,
    })
}

/// The naive strategy's bytes copied in closed form. Layer `l` (0-based) concatenates the block
/// input and `l` outputs, `(k0 + l·k)·M` floats, and the block output is a last concatenation
/// of `k0 + L·k` channels, so forward copies
///
/// ```text
/// Σ_{l=0..L} (k0 + l·k)·M·4 = ((L+1)·k0 + k·L(L+1)/2)·M·4 bytes,
/// ```
///
/// quadratic in `L`; backward splits each of those gradients back once, the same amount again.
pub fn naive_copy_bytes_closed_form(s: &BlockShape, pass: Pass) -> u64 {
    let (l, k0, k, m) = (
        s.layers as u64,
        s.k0 as u64,
        s.growth as u64,
        s.per_channel() as u64,
    );
    let forward = ((l + 1) * k0 + k * l * (l + 1) / 2) * m * 4;
    match pass {
        Pass::Forward => forward,
        Pass::ForwardBackward => 2 * forward,
    }
}
