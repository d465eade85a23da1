//! Our own packed, cache-blocked single-precision matrix product, the engine under every
//! convolution (and usable by any op that multiplies matrices).
//!
//! # The algorithm (Goto / BLIS)
//!
//! `C[rows, cols] (+)= A[rows, depth] · B[depth, cols]` is cut into *micro-tiles* of `MR × NR`
//! values of `C`, each computed by a register-resident micro-kernel from an `MR`-row sliver of
//! `A` and an `NR`-column sliver of `B`. Both operands are first *packed* so the micro-kernel
//! reads them as two unit-stride streams:
//!
//! ```text
//! packed A, row group g (rows g·MR .. g·MR+MR), depth index k, lane i:
//!     a_packed[(g·depth + k)·MR + i] = A[g·MR + i, k]        (0 past the last row)
//! packed B, panel j (cols j·NR .. j·NR+NR of the block), depth index k, lane t:
//!     b_packed[(j·depth + k)·NR + t] = B[k, col0 + j·NR + t] (0 past the last column)
//! ```
//!
//! A caller packs all of `A` once, then walks the columns in blocks whose packed `B` fits the
//! L2 cache (see [`b_block_cols`]), packing each block and calling [`gemm_packed`]. Inside, the
//! depth is cut in slices of [`KC`] so that one `MR × KC` sliver of `A` stays in L1 while the
//! `B` panels stream past it from L2.
//!
//! # Threads and determinism
//!
//! Work is split into fixed tasks, one per `MR`-row group of `C` and column block, regardless of
//! how many threads run them, and the depth (the reduction) is never split: every value of `C`
//! is summed in the same order on 1 thread or 64, so results are bit-identical.
//!
//! # Tiers
//!
//! Each tier has its own micro-kernel and tile shape ([`Tile`]); the tier is chosen once by the
//! caller ([`crate::active_isa`]) and passed down.

mod pack;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx512;

pub use pack::{pack_a, pack_a_with, pack_b_matrix};

use crate::dispatch::Isa;

use rayon::prelude::*;

/// The micro-tile shape of a tier: the micro-kernel computes `mr × nr` values of `C` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Rows of `C` (and of packed `A`) per micro-tile.
    pub mr: usize,
    /// Columns of `C` (and of packed `B`) per micro-tile.
    pub nr: usize,
}

/// The largest `mr·nr` of any tier (sizes the scratch tile used for partial edges).
const MAX_TILE: usize = 8 * 32;

/// The micro-tile shape the given tier uses.
pub fn tile(isa: Isa) -> Tile {
    match isa {
        Isa::Portable => Tile {
            mr: portable::MR,
            nr: portable::NR,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Tile {
            mr: x86_64_avx2::MR,
            nr: x86_64_avx2::NR,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Tile {
            mr: x86_64_avx512::MR,
            nr: x86_64_avx512::NR,
        },
        #[cfg(not(target_arch = "x86_64"))]
        _ => tile(Isa::Portable),
    }
}

/// The name of the micro-kernel a tier uses (for logs, test labels and bench IDs).
pub fn kernel_name(isa: Isa) -> &'static str {
    match isa {
        Isa::Portable => portable::NAME,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_64_avx2::NAME,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_64_avx512::NAME,
        #[cfg(not(target_arch = "x86_64"))]
        _ => portable::NAME,
    }
}

/// Depth slice: one `MR × KC` sliver of packed `A` (8 KB for 8×256) stays in L1 while the
/// `B` panels stream past it.
pub const KC: usize = 256;

/// Floats of packed `B` one column block may hold: 512 KB, half of this machine's L2 (Zen4,
/// 1 MB), so a block stays in L2 while every row group of `A` sweeps it.
pub const B_BLOCK_FLOATS: usize = 128 * 1024;

/// Floats that packed `A` of `rows × depth` takes for tile `t`.
pub fn packed_a_len(rows: usize, depth: usize, t: Tile) -> usize {
    rows.div_ceil(t.mr) * t.mr * depth
}

/// Columns per block of packed `B` for a product of this depth: as many whole `NR` panels as fit
/// in [`B_BLOCK_FLOATS`] (at least one), and no more than the columns there are.
pub fn b_block_cols(depth: usize, cols: usize, t: Tile) -> usize {
    let panels = (B_BLOCK_FLOATS / (depth.max(1) * t.nr)).max(1);
    (panels * t.nr).min(cols.div_ceil(t.nr) * t.nr).max(t.nr)
}

/// Floats that packed `B` of one block of `block_cols` columns takes.
pub fn packed_b_len(depth: usize, block_cols: usize, t: Tile) -> usize {
    block_cols.div_ceil(t.nr) * t.nr * depth
}

/// Below this many multiply-adds a product runs on the calling thread: waking the pool costs
/// more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Whether work of this size is worth handing to the thread pool.
pub fn worth_parallel(macs: usize) -> bool {
    macs >= PARALLEL_MIN_MACS && rayon::current_num_threads() > 1
}

/// `C[rows, cols] (+)= A · B` for one column block, from packed operands.
///
/// # Shapes
/// - `a`: packed `A` of `rows × depth` (layout in the module doc), read.
/// - `b`: packed `B` of `depth × cols` (one block, `cols.div_ceil(NR)` panels), read.
/// - `c`: row-major with leading dimension `ldc`, starting at the block's first column; element
///   `(r, j)` is `c[r·ldc + j]`; written (`accumulate == false`) or accumulated (`+=`).
///
/// Each `MR`-row group is one task; with `parallel` the tasks run on the rayon pool, otherwise
/// on this thread, with bit-identical results either way.
///
/// # Panics
/// If a buffer is shorter than its shape requires, or `c` overlaps itself (`ldc < cols`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
    isa: Isa,
    rows: usize,
    cols: usize,
    depth: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let t = tile(isa);
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(ldc >= cols, "gemm: ldc {ldc} < cols {cols}");
    assert!(
        a.len() >= packed_a_len(rows, depth, t),
        "gemm: packed A too short"
    );
    assert!(
        b.len() >= packed_b_len(depth, cols, t),
        "gemm: packed B too short"
    );
    assert!(c.len() >= (rows - 1) * ldc + cols, "gemm: C too short");
    if depth == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(rows) {
                row[..cols].fill(0.0);
            }
        }
        return;
    }
    let c = &mut c[..(rows - 1) * ldc + cols];
    let group = |(g, c_group): (usize, &mut [f32])| {
        let rows_here = t.mr.min(rows - g * t.mr);
        let a_group = &a[g * t.mr * depth..(g + 1) * t.mr * depth];
        gemm_row_group(
            isa, rows_here, cols, depth, a_group, b, c_group, ldc, accumulate,
        );
    };
    if parallel {
        c.par_chunks_mut(t.mr * ldc).enumerate().for_each(group);
    } else {
        c.chunks_mut(t.mr * ldc).enumerate().for_each(group);
    }
}

/// One task of [`gemm_packed`]: the `rows ≤ MR` rows of one row group,
/// `C[rows, cols] (+)= A_g · B`, for callers that run their own parallel loop (and, say, copy
/// the group's result somewhere right after).
///
/// # Shapes
/// - `a_group`: the group's packed `A`, `MR·depth` floats, read.
/// - `b`: packed `B`, `cols.div_ceil(NR)` panels of `depth·NR`, read.
/// - `c`: `C[r, j] = c[r·ldc + j]`, written or accumulated.
#[allow(clippy::too_many_arguments)]
pub fn gemm_row_group(
    isa: Isa,
    rows: usize,
    cols: usize,
    depth: usize,
    a_group: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let t = tile(isa);
    assert!(rows <= t.mr && a_group.len() >= t.mr * depth);
    assert!(b.len() >= packed_b_len(depth, cols, t));
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(c.len() >= (rows - 1) * ldc + cols, "gemm: C too short");
    if depth == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(rows) {
                row[..cols].fill(0.0);
            }
        }
        return;
    }
    for p0 in (0..depth).step_by(KC) {
        let kc = KC.min(depth - p0);
        let a_sliver = &a_group[p0 * t.mr..(p0 + kc) * t.mr];
        for (j, b_panel) in b
            .chunks_exact(depth * t.nr)
            .take(cols.div_ceil(t.nr))
            .enumerate()
        {
            let cols_here = t.nr.min(cols - j * t.nr);
            micro_tile(
                isa,
                t,
                kc,
                a_sliver,
                &b_panel[p0 * t.nr..(p0 + kc) * t.nr],
                &mut c[j * t.nr..],
                ldc,
                rows,
                cols_here,
                accumulate || p0 > 0,
            );
        }
    }
}

/// One micro-tile of `rows × cols` (at most `MR × NR`) at the start of `c`.
///
/// Full tiles go straight to the tier's kernel; edge tiles are computed whole into a scratch
/// tile and only their valid part is stored, so the kernels never see a partial tile. Both
/// paths sum the depth first and add that sum to `C` last, so they round identically.
#[allow(clippy::too_many_arguments)]
#[inline]
fn micro_tile(
    isa: Isa,
    t: Tile,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    if rows == t.mr && cols == t.nr {
        micro_kernel(isa, kc, a, b, c, ldc, accumulate);
        return;
    }
    let mut scratch = [0.0f32; MAX_TILE];
    micro_kernel(isa, kc, a, b, &mut scratch[..t.mr * t.nr], t.nr, false);
    for (r, tile_row) in scratch.chunks_exact(t.nr).take(rows).enumerate() {
        let c_row = &mut c[r * ldc..r * ldc + cols];
        if accumulate {
            c_row.iter_mut().zip(tile_row).for_each(|(c, &v)| *c += v);
        } else {
            c_row.copy_from_slice(&tile_row[..cols]);
        }
    }
}

/// A full `MR × NR` tile on the given tier: `C (+)= Σ_k a[k] ⊗ b[k]`.
#[inline]
fn micro_kernel(
    isa: Isa,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_64_avx512::kernel(kc, a, b, c, ldc, accumulate),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_64_avx2::kernel(kc, a, b, c, ldc, accumulate),
        _ => portable::kernel(kc, a, b, c, ldc, accumulate),
    }
}

/// `C[rows, cols] (+)= A[rows, depth] · B[depth, cols]` for plain strided matrices, packing
/// both operands through `scratch` (grown as needed, never shrunk).
///
/// `A[r, k] = a[r·a_rs + k·a_cs]`, `B[k, j] = b[k·ldb + j]`, `C[r, j] = c[r·ldc + j]`.
///
/// # Shapes
/// - `c`: written (`accumulate == false`) or accumulated.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    rows: usize,
    cols: usize,
    depth: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    scratch: &mut crate::Workspace,
) {
    let t = tile(isa);
    let block = b_block_cols(depth, cols, t);
    let a_len = packed_a_len(rows, depth, t);
    let (a_packed, b_packed) = split_aligned(scratch, a_len, packed_b_len(depth, block, t));
    pack_a(a_packed, a, rows, depth, a_rs, a_cs, t);
    let parallel = worth_parallel(rows * cols * depth);
    for col0 in (0..cols).step_by(block) {
        let ncols = block.min(cols - col0);
        pack_b_matrix(b_packed, b, ldb, depth, col0, ncols, t);
        gemm_packed(
            isa,
            rows,
            ncols,
            depth,
            a_packed,
            b_packed,
            &mut c[col0..],
            ldc,
            accumulate,
            parallel,
        );
    }
}

/// Floats to request from a workspace for buffers of `lens` floats, each 64-byte aligned.
pub fn aligned_len(lens: &[usize]) -> usize {
    lens.iter().map(|l| l.div_ceil(16) * 16).sum::<usize>() + 16
}

/// Borrows two 64-byte-aligned buffers of `a_len` and `b_len` floats from the workspace.
pub fn split_aligned(
    ws: &mut crate::Workspace,
    a_len: usize,
    b_len: usize,
) -> (&mut [f32], &mut [f32]) {
    let buf = align64(ws.get(aligned_len(&[a_len, b_len])));
    let (a, rest) = buf.split_at_mut(a_len.div_ceil(16) * 16);
    (&mut a[..a_len], &mut rest[..b_len])
}

/// The longest 64-byte-aligned tail of `buf` (full-width vector loads then never straddle two
/// cache lines).
pub fn align64(buf: &mut [f32]) -> &mut [f32] {
    let skip = buf.as_ptr().align_offset(64).min(buf.len());
    &mut buf[skip..]
}

/// Borrows `N` 64-byte-aligned buffers of the given lengths from one workspace request of
/// [`aligned_len`]`(&lens)` floats.
pub fn carve<const N: usize>(ws: &mut crate::Workspace, lens: [usize; N]) -> [&mut [f32]; N] {
    let mut rest = align64(ws.get(aligned_len(&lens)));
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len.div_ceil(16) * 16);
        rest = tail;
        &mut head[..len]
    })
}
