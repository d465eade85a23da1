//! Peak training memory of a whole network's dense blocks, per strategy, measured: the figures
//! behind `densenet memory`.
//!
//! [`dense_blocks_peak`] trains every dense block of a configuration at once, as a network
//! holds them: all blocks forward (each keeping what its strategy keeps), then all blocks
//! backward in reverse, under the counting allocator. Stem, transitions and head are left out:
//! they cost the same in every strategy. [`model_train_peak`] measures the real network's
//! training step ([`DenseNet::forward_train`] + [`DenseNet::backward`]), which has only the
//! shared and memory-efficient modes.

use densenet_kernels::alloc_counter::measure;

use super::{random_values, BlockParams, BlockRunner, BlockShape, Strategy};
use crate::config::DenseNetConfig;
use crate::error::{Error, Result};
use crate::model::DenseNet;

/// The dense blocks of `cfg` at `batch` images of `h×w`, as standalone block shapes.
pub fn block_shapes(
    cfg: &DenseNetConfig,
    batch: usize,
    h: usize,
    w: usize,
) -> Result<Vec<BlockShape>> {
    cfg.validate()?;
    let sizes = cfg.block_sizes(h, w)?;
    let shapes: Vec<BlockShape> = sizes
        .iter()
        .enumerate()
        .map(|(b, &(bh, bw))| BlockShape {
            k0: cfg.block_in_channels(b),
            layers: cfg.block_config[b],
            growth: cfg.growth_rate,
            bn_size: cfg.bn_size,
            batch,
            h: bh,
            w: bw,
        })
        .collect();
    for s in &shapes {
        s.validate()?;
    }
    Ok(shapes)
}

/// Peak bytes live while training all dense blocks of `cfg` in `strategy` (forward through
/// every block, then backward through every block), above what was live before; the runners
/// are created inside the measurement, parameters and inputs outside.
pub fn dense_blocks_peak(
    cfg: &DenseNetConfig,
    batch: usize,
    h: usize,
    w: usize,
    strategy: Strategy,
) -> Result<u64> {
    let shapes = block_shapes(cfg, batch, h, w)?;
    let mut params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| BlockParams::new(*s, 7 + i as u64))
        .collect::<Result<Vec<_>>>()?;
    let inputs: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| random_values(s.k0 * s.per_channel(), 3))
        .collect();
    let d_outs: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| random_values(s.out_channels() * s.per_channel(), 4))
        .collect();
    let (r, delta) = measure(|| -> Result<()> {
        let mut runners = params
            .iter()
            .map(|p| BlockRunner::new(p, strategy))
            .collect::<Result<Vec<_>>>()?;
        for ((r, p), x) in runners.iter_mut().zip(&mut params).zip(&inputs) {
            r.forward(p, x);
        }
        for ((r, p), d) in runners.iter_mut().zip(&mut params).zip(&d_outs).rev() {
            r.backward(p, d);
        }
        Ok(())
    });
    r?;
    Ok(delta.peak_extra_bytes)
}

/// Peak bytes live during one training step of the real network (workspace creation, forward
/// with loss, backward), above what was live before; the model and inputs are made outside.
pub fn model_train_peak(
    cfg: &DenseNetConfig,
    batch: usize,
    h: usize,
    w: usize,
    memory_efficient: bool,
) -> Result<u64> {
    let mut model = DenseNet::new(cfg.clone(), 1)?;
    let x = random_values(batch * cfg.in_channels * h * w, 5);
    let y: Vec<usize> = (0..batch).map(|i| i % cfg.num_classes).collect();
    let (r, delta) = measure(|| -> Result<()> {
        let mut ws = model.workspace(batch, h, w, memory_efficient)?;
        model.forward_train(&mut ws, &x, &y)?;
        model.backward(&mut ws)
    });
    r.map_err(|e| Error::Shape(format!("training step for the memory sweep failed: {e}")))?;
    Ok(delta.peak_extra_bytes)
}
