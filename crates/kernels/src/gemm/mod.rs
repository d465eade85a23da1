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

mod dot;
mod pack;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx512;

pub use dot::{gemm_abt, gemm_abt_scratch_len, gemm_abt_serial_scratch_len, BRows, Rows};
pub(crate) use pack::PACK_ROWS;
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

/// How a product's values meet `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CStore {
    /// `C = A·B`.
    Write,
    /// `C += A·B`.
    Add,
    /// `C = A·B` through non-temporal stores (AVX-512, rows 64-byte aligned; otherwise as
    /// [`CStore::Write`]): each full cache line goes to memory without first being read, and
    /// without evicting what the caches hold. For outputs far larger than the last-level cache,
    /// which the next pass streams from memory anyway (a training step's input gradient: the 1×1
    /// backward at DenseNet-BC-100 batch 64, 216 channels, went 66 → 85 GFLOP/s, where storing
    /// had read every line of a 56 MB output first). Wrong for outputs the next layer reads from
    /// cache.
    Stream,
}

impl CStore {
    /// `Add` if `accumulate`, else `Write`.
    pub fn from_accumulate(accumulate: bool) -> CStore {
        if accumulate {
            CStore::Add
        } else {
            CStore::Write
        }
    }
}

/// The largest `mr·nr` of any tile (sizes the scratch tile used for partial edges).
const MAX_TILE: usize = 12 * 32;

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

/// The tile for a product of `rows` rows of `C` whose `A` is read in place: the tier's own,
/// except on AVX-512 for a multiple of 12 rows that 8-row groups would pad (12, 36, 60…:
/// DenseNet-BC's growth rate 12), where a 12×32 tile leaves no row empty. (A packed `A` is laid
/// out for the tier's tile, so it keeps that one.)
pub fn tile_for_rows(isa: Isa, rows: usize) -> Tile {
    let t = tile(isa);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512
        && rows.is_multiple_of(x86_64_avx512::MR_NARROW)
        && !rows.is_multiple_of(t.mr)
    {
        return Tile {
            mr: x86_64_avx512::MR_NARROW,
            nr: t.nr,
        };
    }
    let _ = rows;
    t
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

/// Below this many multiply-adds (a few µs of one core's work) a product runs on the calling
/// thread. What a parallel region costs depends on where it starts: from outside the pool the
/// caller sleeps and a worker wakes for each one (tens of µs on a virtual machine; this was
/// 2²¹ then); from a worker, which is where `train_step` and `InferencePlan::forward` now run
/// their loops, the worker starts at once. Measured with 2 threads, from a worker, medians of
/// 30 passes, two runs each (`densenet bench --threads 2`): DenseNet-BC-100 batch 1
/// 6.6 / 6.7 ms at 2²¹, 6.1 / 6.2 at 2¹⁹, 5.8 / 6.1 at 2¹⁸, 6.0 / 5.9 at 2¹⁷; densenet121
/// batch 1 38.1 / 41.1, 38.0 / 39.6, 38.4 / 37.6, 38.2 / 37.6.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Whether work of this size is worth handing to the thread pool.
pub fn worth_parallel(macs: usize) -> bool {
    macs >= PARALLEL_MIN_MACS && rayon::current_num_threads() > 1
}

/// The `A` operand of a product.
#[derive(Clone, Copy)]
pub enum AView<'a> {
    /// Packed by [`pack_a`] (any strides, any source).
    Packed(&'a [f32]),
    /// Row-major, `A[r, k] = data[r·ld + k]`, read in place: the micro-kernel broadcasts from
    /// `MR` row streams, so a weight matrix needs no packing at all (packing `A` costs as much
    /// as the whole product when `M` is small, as at 7×7).
    RowMajor { data: &'a [f32], ld: usize },
    /// `A[r, k] = data[row_start(r) + k]`: rows anywhere in `data` (e.g. the rows of an
    /// implicit im2col matrix, each a contiguous run of a padded input), read in place.
    Gathered {
        data: &'a [f32],
        row_start: &'a (dyn Fn(usize) -> usize + Sync),
    },
}

/// The `B` operand of a product over one column block.
#[derive(Clone, Copy)]
pub enum BView<'a> {
    /// Packed (see the module docs): `cols.div_ceil(NR)` panels of `depth·NR` floats.
    Packed(&'a [f32]),
    /// Read in place, row by row: `B[k, j] = data[row_start(k) + j]`. Every row is read as a
    /// contiguous run of the block's columns rounded up to `NR` (the values past the last column
    /// are read, and their results dropped), so `data` must hold those rounded-up runs for every
    /// row (checked; a short `data` panics). This is how the wide rows of a stride-1 convolution are multiplied
    /// without packing: each row of `col` is already a contiguous run of the padded input.
    Rows {
        data: &'a [f32],
        row_start: &'a (dyn Fn(usize) -> usize + Sync),
    },
}

/// `C[rows, cols] (+)= A · B` for one column block, from packed `B`.
///
/// # Shapes
/// - `a`: `A` of `rows × depth` ([`AView`]), read.
/// - `b`: packed `B` of `depth × cols` (one block, `cols.div_ceil(NR)` panels), read.
/// - `c`: row-major with leading dimension `ldc`, starting at the block's first column; element
///   `(r, j)` is `c[r·ldc + j]`; written, accumulated (`+=`) or streamed as `store` says.
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
    a: AView<'_>,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    store: CStore,
    parallel: bool,
) {
    let t = tile(isa);
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(ldc >= cols, "gemm: ldc {ldc} < cols {cols}");
    let span = c_span(rows, ldc, cols).filter(|&n| n <= c.len());
    let c = &mut c[..span.expect("gemm: C too short")];
    // Tasks of a few row groups each, so a `B` panel is reused from L1 by several groups
    // (see [`gemm_block`]); the split depends on the shape only.
    let groups = rows.div_ceil(t.mr);
    let per_task = (groups / 4).clamp(1, 4);
    let task = |(i, c_task): (usize, &mut [f32])| {
        let row0 = i * per_task * t.mr;
        let rows_here = (per_task * t.mr).min(rows - row0);
        gemm_block(
            isa,
            row0,
            rows_here,
            cols,
            depth,
            a,
            BView::Packed(b),
            c_task,
            ldc,
            store,
        );
    };
    if parallel {
        c.par_chunks_mut(per_task * t.mr * ldc)
            .enumerate()
            .for_each(task);
    } else {
        gemm_block(
            isa,
            0,
            rows,
            cols,
            depth,
            a,
            BView::Packed(b),
            c,
            ldc,
            store,
        );
    }
}

impl<'a> AView<'a> {
    /// `A[r, k]`.
    fn at(&self, depth: usize, mr: usize, r: usize, k: usize) -> f32 {
        match *self {
            AView::Packed(p) => p[((r / mr) * depth + k) * mr + r % mr],
            AView::RowMajor { data, ld } => data[r * ld + k],
            AView::Gathered { data, row_start } => data[row_start(r) + k],
        }
    }

    /// The sliver of rows `row0 .. row0 + MR` (all present, or zero-padded when packed), depth
    /// `p0 .. p0 + kc`.
    fn full_sliver(&self, t: Tile, depth: usize, row0: usize, p0: usize, kc: usize) -> ASliver<'a> {
        match *self {
            AView::Packed(p) => ASliver::Packed(&p[row0 * depth + p0 * t.mr..][..kc * t.mr]),
            // Only the tile's `t.mr` starts are computed (and read by the kernels).
            AView::RowMajor { data, ld } => ASliver::Rows(
                data,
                std::array::from_fn(|i| if i < t.mr { (row0 + i) * ld + p0 } else { 0 }),
            ),
            AView::Gathered { data, row_start } => ASliver::Rows(
                data,
                std::array::from_fn(|i| {
                    if i < t.mr {
                        row_start(row0 + i) + p0
                    } else {
                        0
                    }
                }),
            ),
        }
    }
}

/// `C[rows, cols] (+)= A · B` for one column block on this thread, sweeping every row group
/// of `A` past each `B` panel: one `KC × NR` slice of `B` (32 KB for 256×32) stays in L1 while
/// `A` streams from L2, 8 floats per depth step instead of `B`'s 32. Every value is summed over
/// the depth in the same order whichever rows or columns a call covers, so callers may split the
/// work any way and get identical results.
///
/// # Shapes
/// As [`gemm_packed`], with `B` packed or read in place ([`BView`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_block(
    isa: Isa,
    row0: usize,
    rows: usize,
    cols: usize,
    depth: usize,
    a: AView<'_>,
    b: BView<'_>,
    c: &mut [f32],
    ldc: usize,
    store: CStore,
) {
    gemm_block_with(isa, tile(isa), row0, rows, cols, depth, a, b, c, ldc, store);
}

/// [`gemm_block`] with the tile `t`: the tier's own ([`tile`]), or, with `A` read in place,
/// AVX-512's 12-row tile (what [`tile_for_rows`] gives for 12, 36, 60… rows; any row count
/// works, `row0` a multiple of 12).
///
/// # Panics
/// As [`gemm_block`]; also if `t` is neither, or a packed `A` meets a tile it was not packed for.
#[allow(clippy::too_many_arguments)]
pub fn gemm_block_with(
    isa: Isa,
    t: Tile,
    row0: usize,
    rows: usize,
    cols: usize,
    depth: usize,
    a: AView<'_>,
    b: BView<'_>,
    c: &mut [f32],
    ldc: usize,
    store: CStore,
) {
    let own = tile(isa);
    assert!(
        t == own || (t.nr == own.nr && t == tile_for_rows(isa, t.mr)),
        "gemm: tile {t:?} is not one of {isa}'s"
    );
    assert!(
        t == own || !matches!(a, AView::Packed(_)),
        "gemm: a packed A is laid out for the tier's own tile"
    );
    assert!(
        row0.is_multiple_of(t.mr),
        "gemm: row0 must start a row group"
    );
    if let BView::Packed(b) = b {
        assert!(
            b.len() >= packed_b_len(depth, cols, t),
            "gemm: packed B too short"
        );
    }
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ldc >= cols && c_span(rows, ldc, cols).is_some_and(|n| n <= c.len()),
        "gemm: C too short"
    );
    if depth == 0 {
        if store != CStore::Add {
            for row in c.chunks_mut(ldc).take(rows) {
                row[..cols].fill(0.0);
            }
        }
        return;
    }
    let groups = rows.div_ceil(t.mr);
    let last_rows = rows - (groups - 1) * t.mr;
    // A partial last group of an unpacked A is copied into a zero-padded packed sliver, so the
    // kernel never reads a row that does not exist.
    let pad_last = last_rows < t.mr && !matches!(a, AView::Packed(_));
    // Only a call with a partial last group pays for clearing the 12 KiB sliver.
    let mut edge_store: Option<[f32; MAX_MR * KC]> = None;
    if pad_last {
        edge_store = Some([0.0; MAX_MR * KC]);
    }
    let mut starts = [0usize; KC];
    for p0 in (0..depth).step_by(KC) {
        let kc = KC.min(depth - p0);
        // Later depth slices add to what the first wrote; a streamed first slice would be read
        // straight back from memory, so it is only streamed when it is the only one.
        let slice_store = match store {
            _ if p0 > 0 => CStore::Add,
            CStore::Stream if depth > KC => CStore::Write,
            other => other,
        };
        if let Some(edge) = edge_store.as_mut() {
            let r0 = row0 + (groups - 1) * t.mr;
            for (k, lanes) in edge[..kc * t.mr].chunks_exact_mut(t.mr).enumerate() {
                for (i, lane) in lanes.iter_mut().enumerate() {
                    *lane = if i < last_rows {
                        a.at(depth, t.mr, r0 + i, p0 + k)
                    } else {
                        0.0
                    };
                }
            }
        }
        let row_starts = match b {
            BView::Rows { row_start, .. } => {
                for (k, start) in starts[..kc].iter_mut().enumerate() {
                    *start = row_start(p0 + k);
                }
                Some(RowStarts::new(&starts[..kc]))
            }
            BView::Packed(_) => None,
        };
        let edge = edge_store.as_ref().map(|e| &e[..kc * t.mr]);
        for j in 0..cols.div_ceil(t.nr) {
            let cols_here = t.nr.min(cols - j * t.nr);
            let b_sub = match b {
                BView::Packed(b) => {
                    let panel = &b[j * depth * t.nr..(j + 1) * depth * t.nr];
                    BSliver::Packed(&panel[p0 * t.nr..(p0 + kc) * t.nr])
                }
                BView::Rows { data, .. } => BSliver::Rows {
                    data: &data[j * t.nr..],
                    starts: row_starts.expect("row starts of an in-place B"),
                },
            };
            for g in 0..groups {
                let rows_here = t.mr.min(rows - g * t.mr);
                let sliver = match edge {
                    Some(edge) if g == groups - 1 => ASliver::Packed(edge),
                    _ => a.full_sliver(t, depth, row0 + g * t.mr, p0, kc),
                };
                micro_tile(
                    isa,
                    t,
                    kc,
                    sliver,
                    b_sub,
                    &mut c[g * t.mr * ldc + j * t.nr..],
                    ldc,
                    rows_here,
                    cols_here,
                    slice_store,
                );
            }
        }
    }
}

/// The `MR × kc` part of `A` one micro-kernel call reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ASliver<'a> {
    /// `A[r, k] = a[k·MR + r]`.
    Packed(&'a [f32]),
    /// `A[r, k] = data[starts[r] + k]` (all `MR` rows exist).
    Rows(&'a [f32], [usize; MAX_MR]),
}

/// The `kc × NR` part of `B` one micro-kernel call reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BSliver<'a> {
    /// `B[k, t] = b[k·NR + t]`.
    Packed(&'a [f32]),
    /// `B[k, t] = data[starts[k] + t]`.
    Rows {
        data: &'a [f32],
        starts: RowStarts<'a>,
    },
}

/// The row starts of an in-place `B` slice with their maximum, taken once per depth slice, so
/// a kernel bounds all `kc` rows with one comparison.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowStarts<'a> {
    starts: &'a [usize],
    max: usize,
}

impl<'a> RowStarts<'a> {
    fn new(starts: &'a [usize]) -> Self {
        let max = starts.iter().copied().max().unwrap_or(0);
        RowStarts { starts, max }
    }

    /// The start of each row.
    pub(crate) fn starts(&self) -> &'a [usize] {
        self.starts
    }
}

impl BSliver<'_> {
    /// For a kernel of `nr` columns over depth `kc`: the base pointer, and the row starts (null
    /// when packed), after checking that every one of the `kc·nr` reads is in bounds.
    ///
    /// # Panics
    /// If a read would fall outside the sliver.
    pub(crate) fn checked(&self, kc: usize, nr: usize) -> (*const f32, *const usize) {
        match *self {
            BSliver::Packed(b) => {
                assert!(b.len() >= kc * nr, "gemm: packed B sliver too short");
                (b.as_ptr(), std::ptr::null())
            }
            BSliver::Rows { data, starts } => {
                // `checked_add`: a caller's `row_start` near `usize::MAX` must not wrap past
                // the check.
                assert!(
                    starts.starts.len() >= kc
                        && starts
                            .max
                            .checked_add(nr)
                            .is_some_and(|end| end <= data.len()),
                    "gemm: in-place B row out of bounds"
                );
                (data.as_ptr(), starts.starts.as_ptr())
            }
        }
    }
}

/// Floats a `rows × cols` block of `C` with leading dimension `ldc` spans, `(rows−1)·ldc + cols`
/// (`rows ≥ 1`), or `None` if that overflows: a wrapped product would let a bounds check pass
/// for a buffer the block does not fit.
pub(crate) fn c_span(rows: usize, ldc: usize, cols: usize) -> Option<usize> {
    rows.checked_sub(1)?.checked_mul(ldc)?.checked_add(cols)
}

/// Largest `MR` of any tile.
pub(crate) const MAX_MR: usize = 12;

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
    a: ASliver<'_>,
    b: BSliver<'_>,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    store: CStore,
) {
    if rows == t.mr && cols == t.nr {
        micro_kernel::<2>(isa, t.mr, kc, a, b, c, ldc, store);
        return;
    }
    let mut scratch = [0.0f32; MAX_TILE];
    let tile = &mut scratch[..t.mr * t.nr];
    // A tail of at most 16 columns takes half the AVX-512 tile (the same sums): the last panel
    // of a 14×14 map's 196 columns holds 4.
    if cols <= 16 {
        micro_kernel::<1>(isa, t.mr, kc, a, b, tile, t.nr, CStore::Write);
    } else {
        micro_kernel::<2>(isa, t.mr, kc, a, b, tile, t.nr, CStore::Write);
    }
    let accumulate = store == CStore::Add;
    for (r, tile_row) in scratch.chunks_exact(t.nr).take(rows).enumerate() {
        let c_row = &mut c[r * ldc..r * ldc + cols];
        if accumulate {
            c_row.iter_mut().zip(tile_row).for_each(|(c, &v)| *c += v);
        } else {
            c_row.copy_from_slice(&tile_row[..cols]);
        }
    }
}

/// A full `mr × NR` tile on the given tier: `C (+)= Σ_k A[·, k] ⊗ b[k]`. `mr` is the tier's
/// own, or AVX-512's narrow 12 (see [`tile_for_rows`]). With `VECS = 1` the AVX-512 kernel
/// computes only the tile's first 16 columns (one vector); the other tiers compute the whole
/// tile either way, so `c` must hold a whole tile.
#[inline]
#[allow(clippy::too_many_arguments)]
fn micro_kernel<const VECS: usize>(
    isa: Isa,
    mr: usize,
    kc: usize,
    a: ASliver<'_>,
    b: BSliver<'_>,
    c: &mut [f32],
    ldc: usize,
    store: CStore,
) {
    let accumulate = store == CStore::Add;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if mr == x86_64_avx512::MR_NARROW => {
            x86_64_avx512::kernel::<{ x86_64_avx512::MR_NARROW }, VECS>(kc, a, b, c, ldc, store)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            x86_64_avx512::kernel::<{ x86_64_avx512::MR }, VECS>(kc, a, b, c, ldc, store)
        }
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
        pack_b_matrix(isa, b_packed, b, ldb, depth, col0, ncols);
        gemm_packed(
            isa,
            rows,
            ncols,
            depth,
            AView::Packed(a_packed),
            b_packed,
            &mut c[col0..],
            ldc,
            CStore::from_accumulate(accumulate),
            parallel,
        );
    }
}

/// Floats to request from a workspace for buffers of `lens` floats, each 64-byte aligned.
pub fn aligned_len(lens: &[usize]) -> usize {
    lens.iter().map(|l| l.div_ceil(16) * 16).sum::<usize>() + 16
}

/// Borrows two 64-byte-aligned buffers of `a_len` and `b_len` floats from the workspace.
pub fn split_aligned<'w>(
    ws: &'w mut crate::Workspace<'_>,
    a_len: usize,
    b_len: usize,
) -> (&'w mut [f32], &'w mut [f32]) {
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
pub fn carve<'w, const N: usize>(
    ws: &'w mut crate::Workspace<'_>,
    lens: [usize; N],
) -> [&'w mut [f32]; N] {
    let mut rest = align64(ws.get(aligned_len(&lens)));
    lens.map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len.div_ceil(16) * 16);
        rest = tail;
        &mut head[..len]
    })
}
