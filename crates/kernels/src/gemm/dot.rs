//! `C += A·Bᵀ` for operands whose rows run along the depth: the engine of the weight gradients.
//!
//! A convolution's weight gradient sums over the `M = N·OH·OW` output positions,
//! `dW[oc, k] = Σ_m d_out[oc, m] · col[k, m]`, and in CNHW both factors are rows contiguous
//! along `m`, the depth of the product. The packed GEMM ([`super::gemm_packed`]) wants the
//! columns of `B` contiguous instead, so it had to transpose every value of `col` while packing
//! (9% of a DenseNet-BC-100 training step), and the growth convolutions' 12 output channels
//! filled 12 of its 32 lanes. Here every output is a dot product of an `A` row and a `B` row,
//! both read as they lie:
//!
//! ```text
//! for each chunk of the depth, in order:
//!     for each register tile of NR rows of B (mapped into scratch, or in place):
//!         for each register tile of MR rows of A:
//!             acc[r][s] += A[r, m .. m+16] ⊙ B[s, m .. m+16]   (16 lanes, m in the chunk, step 16)
//! C[i, j] += Σ_lanes acc[i][j]                                 (once, at the end)
//! ```
//!
//! The AVX-512 tile is 4×6: 24 accumulators, 10 vector loads per 24 FMAs, and it runs at the
//! FMA peak (perf: the loop is nothing but those 34 instructions). Between chunks the lane
//! partials wait in the task's scratch: one load and one store per accumulator per chunk,
//! against `chunk / 16` FMAs each. A task is a block of `B` rows: at least one per thread,
//! otherwise as large as a bound on its partials allows, since every task reads all of `A`
//! again (the cut changes no sum). `A`'s rows are read in place: copying each chunk to a
//! padded stride (rows of a channel-major tensor lie a multiple of 4 KiB apart and share cache
//! sets) measured no faster, 0.9–1.08× on BC-100's and DenseNet-121's shapes.
//!
//! What limits it on a large batch is memory, not arithmetic: reading `A` and mapping `B` from
//! DRAM alternate with the compute. Measured one thread, DenseNet-BC-100 shapes
//! at batch 64 (`examples/bc100_convs.rs`): 66–78 GFLOP/s where the same shapes at batch 4,
//! cache-resident, reach 79–95; longer chunks helped (512 → 4096 values: 57 → 69 on the
//! 216→48 1×1), software prefetching of the next chunk did not.
//!
//! `B` rows are read in place ([`BRows::InPlace`], e.g. the padded input of a 3×3 convolution,
//! where each tap's row is a shifted run of one channel) or produced chunk by chunk into the
//! task's scratch ([`BRows::Mapped`], e.g. batch norm + ReLU applied to a 1×1 convolution's
//! input on the fly, so the mapped input is never stored whole).
//!
//! # Order of the sums
//!
//! Lane `l` of `acc[i][j]` adds the products at depths `m ≡ l (mod 16)` in increasing `m`, one
//! fused multiply-add each (the last partial group padded with zeros); the sixteen lanes are then
//! added in a fixed tree and the result added to `C`. Neither the thread count, nor the chunk
//! length, nor how the rows are grouped into tasks changes any of it: results are bit-identical
//! on any pool. The portable lanes multiply and add separately (see [`Lanes::mul_add`]), so that
//! tier differs from the x86 ones in the last bits.

use rayon::prelude::*;

use crate::dispatch::{detected_isa, Isa};
use crate::simd::lanes::{with_lanes, Lanes, LanesBody};
use crate::simd::LANES;

/// Floats of `A` in one depth chunk (768 KiB, most of a 1 MiB L2, read again by every tile of
/// `B` rows). The chunk length follows: `A_CHUNK_FLOATS / rows of A`, 4096 for DenseNet-BC's
/// 12 or 48 output channels, 1536 for DenseNet-121's 128. Measured (one thread, 1×1 216→48 at
/// 32×32, batch 64): a 64 Ki-float chunk 59 GFLOP/s, 192 Ki 67–69, 256 Ki and 512 Ki with
/// chunks up to 8192 no better (70–71).
const A_CHUNK_FLOATS: usize = 192 * 1024;

/// Bounds on the depth chunk: long enough that the per-chunk work (loading and storing the
/// partials, mapping rows) is small beside the `chunk / 16` FMAs per accumulator, and long
/// contiguous runs from memory.
const MIN_CHUNK: usize = 512;
const MAX_CHUNK: usize = 4096;

/// Upper bound on one task's lane partials, in floats (2 MiB). Each partial is loaded and
/// stored once per chunk, in order (from L2 or L3: a few bytes per hundred FMAs); the bound
/// sets how many rows of `B` a task can take, and every task reads all of `A` again, so larger
/// is better up to the point where the partials crowd the chunk out of the caches. Measured
/// (GFLOP/s, one / two threads) at 128 Ki and 512 Ki floats: DenseNet-121's 1×1 256→128 @56,
/// batch 8, 62 / 123 and 75 / 150; BC-100's 1×1 216→48 @32, batch 64, 63 / 125 and 67 / 134.
const PARTIALS_FLOATS: usize = 512 * 1024;

/// The depth chunk for `a_count` rows of `A`: a multiple of 16 in `[MIN_CHUNK, MAX_CHUNK]`.
fn chunk_len(a_count: usize) -> usize {
    (A_CHUNK_FLOATS / a_count.max(1)).clamp(MIN_CHUNK, MAX_CHUNK) / LANES * LANES
}

/// Row stride of the mapped `B` rows in a task's scratch: the chunk plus one cache line, so
/// that the rows of a tile fall into different cache sets.
fn row_stride(chunk: usize) -> usize {
    chunk + LANES
}

/// Rows of an operand read in place: row `r` is `data[start(r) ..][.. depth]`.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// The storage every row lies in.
    pub data: &'a [f32],
    /// Number of rows.
    pub count: usize,
    /// Offset of row `r` in `data`.
    pub start: &'a (dyn Fn(usize) -> usize + Sync),
}

impl Rows<'_> {
    /// Depth values `[m0, m0 + len)` of row `r`.
    #[inline]
    fn chunk(&self, r: usize, m0: usize, len: usize) -> &[f32] {
        &self.data[(self.start)(r) + m0..][..len]
    }

    /// Panics unless every row holds `depth` values inside `data`.
    fn check(&self, depth: usize, what: &str) {
        for r in 0..self.count {
            let end = (self.start)(r).checked_add(depth);
            assert!(
                end.is_some_and(|end| end <= self.data.len()),
                "gemm_abt: row {r} of {what} runs past its data"
            );
        }
    }
}

/// The `B` operand of [`gemm_abt`].
pub enum BRows<'a> {
    /// Rows read in place.
    InPlace(Rows<'a>),
    /// `count` rows computed on demand: `fill(r, m0, dst)` writes depth values
    /// `[m0, m0 + dst.len())` of row `r` into `dst`.
    Mapped {
        count: usize,
        fill: &'a (dyn Fn(usize, usize, &mut [f32]) + Sync),
    },
}

impl BRows<'_> {
    /// Number of rows.
    pub fn count(&self) -> usize {
        match self {
            BRows::InPlace(rows) => rows.count,
            BRows::Mapped { count, .. } => *count,
        }
    }

    /// Whether the rows are computed into scratch.
    pub fn is_mapped(&self) -> bool {
        matches!(self, BRows::Mapped { .. })
    }
}

/// The register tile of a tier: `(MR, NR)`, rows of `A` × rows of `B`. Sixteen lanes are one
/// `zmm` on AVX-512 (24 accumulators of 32 registers) but two `ymm` on AVX2 (12 of 16).
fn tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (4, 6),
        Isa::Avx2 | Isa::Portable => (2, 3),
    }
}

/// How [`gemm_abt`] cuts a product into tasks.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mr: usize,
    nr: usize,
    /// Rows of `A` rounded up to whole tiles.
    a_rows: usize,
    /// Depth chunk and the row stride of mapped `B` rows.
    chunk: usize,
    stride: usize,
    /// `B` rows per task (whole tiles).
    block: usize,
    tasks: usize,
    /// Floats of one slot: sums, lane partials, one tile of mapped `B` rows.
    slot_len: usize,
}

impl Plan {
    /// The cut for a pool of `threads` (1 when the product runs on the calling thread): one
    /// block of `B` tiles per thread, or, where that block would hold more partials than
    /// `PARTIALS_FLOATS`, as few blocks of equal size as fit under it (each task reads all of
    /// `A` again). More threads never give larger blocks, so the one-thread plan's slot bounds
    /// every pool's, which [`gemm_abt_scratch_len`] relies on (a unit test checks it). The cut
    /// changes no result: each output's sum does not depend on it.
    fn new(isa: Isa, a_count: usize, b_count: usize, mapped: bool, threads: usize) -> Plan {
        let (mr, nr) = tile(isa.min(detected_isa()));
        let a_rows = a_count.div_ceil(mr).max(1) * mr;
        let chunk = chunk_len(a_count);
        let stride = row_stride(chunk);
        let b_tiles = b_count.div_ceil(nr).max(1);
        let cap = (PARTIALS_FLOATS / (a_rows * LANES) / nr).max(1);
        let per_thread = b_tiles.div_ceil(threads.max(1));
        let tiles = if per_thread <= cap {
            per_thread
        } else {
            // Equal blocks under the cap: 42 + 1 tiles would hold twice the partials of 22 + 21.
            b_tiles.div_ceil(b_tiles.div_ceil(cap))
        };
        let block = tiles * nr;
        let tasks = b_count.div_ceil(block);
        let b_tile = if mapped { nr * stride } else { 0 };
        let slot_len = a_rows * block * (1 + LANES) + b_tile;
        Plan {
            mr,
            nr,
            a_rows,
            chunk,
            stride,
            block,
            tasks,
            slot_len,
        }
    }
}

/// Floats of scratch for [`gemm_abt`] on these operands and the tier `isa` (capped, as
/// `gemm_abt` caps it, by what the CPU has): a slot for each task the current pool runs at
/// once, and never less than the one-thread plan's single slot. So it serves every pool: in a
/// larger one than it was sized in, fewer tasks run at a time (same results, less parallel).
pub fn gemm_abt_scratch_len(isa: Isa, a_count: usize, b_count: usize, mapped: bool) -> usize {
    let threads = rayon::current_num_threads();
    let here = Plan::new(isa, a_count, b_count, mapped, threads);
    let alone = Plan::new(isa, a_count, b_count, mapped, 1);
    (here.tasks.min(threads) * here.slot_len).max(alone.slot_len)
}

/// Floats of scratch for [`gemm_abt`] called with `parallel = false`: the one-thread plan's
/// single slot, whatever the pool (for callers that are already one task of a parallel loop).
pub fn gemm_abt_serial_scratch_len(
    isa: Isa,
    a_count: usize,
    b_count: usize,
    mapped: bool,
) -> usize {
    Plan::new(isa, a_count, b_count, mapped, 1).slot_len
}

/// `C[i, j] += Σ_m A[i, m] · B[j, m]` for `i < a.count`, `j < b.count`, `m < depth`, with
/// `C[i, j] = c[i·ldc + j]`. Both operands are rows along the depth (see the module doc).
///
/// `scratch` holds [`gemm_abt_scratch_len`] floats (same arguments, any pool). With `parallel`
/// the blocks of `B` rows run as rayon tasks, up to as many at once as the pool has threads and
/// the scratch has room for; the result is the same bits either way.
///
/// # Panics
/// If a row of `A` or an in-place row of `B` runs past its data, `c` is too short, or `scratch`
/// cannot hold one task's slot.
#[allow(clippy::too_many_arguments)]
pub fn gemm_abt(
    isa: Isa,
    c: &mut [f32],
    ldc: usize,
    a: Rows<'_>,
    b: &BRows<'_>,
    depth: usize,
    scratch: &mut [f32],
    parallel: bool,
) {
    let isa = isa.min(detected_isa());
    let b_count = b.count();
    if a.count == 0 || b_count == 0 || depth == 0 {
        return;
    }
    assert!(ldc >= b_count, "gemm_abt: ldc shorter than a row of C");
    assert!(
        c.len() >= (a.count - 1) * ldc + b_count,
        "gemm_abt: C too short"
    );
    a.check(depth, "A");
    if let BRows::InPlace(rows) = b {
        rows.check(depth, "B");
    }
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let plan = Plan::new(isa, a.count, b_count, b.is_mapped(), threads);
    let room = scratch.len() / plan.slot_len;
    assert!(
        room >= 1,
        "gemm_abt: scratch of {} floats, one task needs {}",
        scratch.len(),
        plan.slot_len
    );
    let wave = plan.tasks.min(threads).min(room);
    for first in (0..plan.tasks).step_by(wave) {
        let in_flight = wave.min(plan.tasks - first);
        let slots = &mut scratch[..in_flight * plan.slot_len];
        let run = |(i, slot): (usize, &mut [f32])| task(isa, &plan, first + i, a, b, depth, slot);
        if parallel && in_flight > 1 {
            slots
                .par_chunks_mut(plan.slot_len)
                .enumerate()
                .for_each(run);
        } else {
            slots.chunks_mut(plan.slot_len).enumerate().for_each(run);
        }
        // Each task left its block's sums at the head of its slot; adding them into `C` here,
        // on one thread, keeps the tasks free of shared writes.
        for (i, slot) in slots.chunks(plan.slot_len).enumerate() {
            let j0 = (first + i) * plan.block;
            let width = plan.block.min(b_count - j0);
            for (row, sums) in c.chunks_mut(ldc).zip(slot.chunks(plan.block)).take(a.count) {
                for (cv, &s) in row[j0..j0 + width].iter_mut().zip(sums) {
                    *cv += s;
                }
            }
        }
    }
}

/// One block of `B` rows against every row of `A`, over the whole depth. Leaves
/// `sums[i·block + jj] = Σ_m A[i, m]·B[j0 + jj, m]` at the head of `slot`.
///
/// Per depth chunk, each register tile of `B` rows (mapped into the slot, or in place) meets
/// every tile of `A` rows, whose chunk stays in L2 across the `B` tiles.
fn task(isa: Isa, p: &Plan, t: usize, a: Rows<'_>, b: &BRows<'_>, depth: usize, slot: &mut [f32]) {
    let j0 = t * p.block;
    let width = p.block.min(b.count() - j0);
    let (sums, rest) = slot.split_at_mut(p.a_rows * p.block);
    let (partials, rest) = rest.split_at_mut(p.a_rows * p.block * LANES);
    let b_tile = rest;
    let tile_len = p.mr * p.nr * LANES;
    let a_tiles = p.a_rows / p.mr;
    for m0 in (0..depth).step_by(p.chunk) {
        let len = p.chunk.min(depth - m0);
        for (bt, jt) in (0..width).step_by(p.nr).enumerate() {
            let rows_here = p.nr.min(width - jt);
            if let BRows::Mapped { fill, .. } = b {
                for (s, row) in b_tile
                    .chunks_exact_mut(p.stride)
                    .take(rows_here)
                    .enumerate()
                {
                    fill(j0 + jt + s, m0, &mut row[..len]);
                }
            }
            let b_tile = &*b_tile;
            // Rows past the end repeat the last one; their sums are never read.
            let b_row = |s: usize| -> &[f32] {
                let s = s.min(rows_here - 1);
                match b {
                    BRows::InPlace(rows) => rows.chunk(j0 + jt + s, m0, len),
                    BRows::Mapped { .. } => &b_tile[s * p.stride..][..len],
                }
            };
            for at in 0..a_tiles {
                let a_row = |r: usize| {
                    let i = (at * p.mr + r).min(a.count - 1);
                    a.chunk(i, m0, len)
                };
                let acc = &mut partials[(bt * a_tiles + at) * tile_len..][..tile_len];
                let fresh = m0 == 0;
                match (p.mr, p.nr) {
                    (4, 6) => with_lanes(isa, TileBody::<4, 6>::new(a_row, b_row, acc, fresh)),
                    _ => with_lanes(isa, TileBody::<2, 3>::new(a_row, b_row, acc, fresh)),
                }
            }
        }
    }
    // Lane partials to sums, in a fixed tree, compiled for the tier (each add is the same pair
    // of values whatever the code: the same bits).
    let partials = &*partials;
    crate::simd::on_tier(
        isa,
        #[inline(always)]
        || {
            for (bt, jt) in (0..width).step_by(p.nr).enumerate() {
                for at in 0..a_tiles {
                    let acc = &partials[(bt * a_tiles + at) * tile_len..][..tile_len];
                    // `acc` is `[MR][NR][LANES]`: rows of the tile, then columns (nested loops,
                    // not a division by `NR` per output, which cost about 1% of a training
                    // step).
                    for (r, row) in acc.chunks_exact(p.nr * LANES).enumerate() {
                        let at_row = (at * p.mr + r) * p.block + jt;
                        for (s, lanes) in row.chunks_exact(LANES).enumerate() {
                            sums[at_row + s] = lane_tree_sum(lanes);
                        }
                    }
                }
            }
        },
    );
}

/// `Σ lanes` as `((l0 + l8) + (l4 + l12)) + …`: halving pairwise, the same on every tier.
#[inline(always)]
fn lane_tree_sum(lanes: &[f32]) -> f32 {
    let mut v: [f32; LANES] = lanes.try_into().expect("LANES lanes");
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    v[0]
}

/// One register tile over one chunk: `acc[r][s] += A_r ⊙ B_s` lane-wise, the partials loaded
/// from (unless `fresh`: the first chunk starts from zero) and stored back to `acc`
/// (`[MR][NR][LANES]`).
struct TileBody<'d, 'p, const MR: usize, const NR: usize> {
    a: [&'d [f32]; MR],
    b: [&'d [f32]; NR],
    acc: &'p mut [f32],
    fresh: bool,
}

impl<'d, 'p, const MR: usize, const NR: usize> TileBody<'d, 'p, MR, NR> {
    fn new(
        a_row: impl Fn(usize) -> &'d [f32],
        b_row: impl Fn(usize) -> &'d [f32],
        acc: &'p mut [f32],
        fresh: bool,
    ) -> Self {
        TileBody {
            a: std::array::from_fn(a_row),
            b: std::array::from_fn(b_row),
            acc,
            fresh,
        }
    }
}

impl<const MR: usize, const NR: usize> LanesBody for TileBody<'_, '_, MR, NR> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self) {
        let len = self.a[0].len();
        let groups = len / LANES;
        // Whole 16-lane groups of every row, as arrays: indexing them below needs no length
        // checks beyond `v < groups`.
        let mut a_groups: [&[[f32; LANES]]; MR] = [&[]; MR];
        for (g, row) in a_groups.iter_mut().zip(self.a) {
            *g = &row.as_chunks::<LANES>().0[..groups];
        }
        let mut b_groups: [&[[f32; LANES]]; NR] = [&[]; NR];
        for (g, row) in b_groups.iter_mut().zip(self.b) {
            *g = &row.as_chunks::<LANES>().0[..groups];
        }
        let (acc_groups, _) = self.acc.as_chunks_mut::<LANES>();
        let mut acc = [[L::splat(0.0); NR]; MR];
        if !self.fresh {
            for r in 0..MR {
                for s in 0..NR {
                    acc[r][s] = L::load(&acc_groups[r * NR + s]);
                }
            }
        }
        for v in 0..groups {
            let mut av = [L::splat(0.0); MR];
            for r in 0..MR {
                av[r] = L::load(&a_groups[r][v]);
            }
            let mut bv = [L::splat(0.0); NR];
            for s in 0..NR {
                bv[s] = L::load(&b_groups[s][v]);
            }
            fma_tile(&mut acc, &av, &bv);
        }
        if groups * LANES < len {
            // The last partial group, zero-padded in both operands: the padded products are 0.
            let mut av = [L::splat(0.0); MR];
            for (lanes, row) in av.iter_mut().zip(self.a) {
                *lanes = load_padded(&row[groups * LANES..]);
            }
            let mut bv = [L::splat(0.0); NR];
            for (lanes, row) in bv.iter_mut().zip(self.b) {
                *lanes = load_padded(&row[groups * LANES..]);
            }
            fma_tile(&mut acc, &av, &bv);
        }
        for r in 0..MR {
            for s in 0..NR {
                acc_groups[r * NR + s] = acc[r][s].to_array();
            }
        }
    }
}

/// `acc[r][s] += av[r] ⊙ bv[s]`: the tile's `MR·NR` fused multiply-adds of one depth step.
#[inline(always)]
fn fma_tile<L: Lanes, const MR: usize, const NR: usize>(
    acc: &mut [[L; NR]; MR],
    av: &[L; MR],
    bv: &[L; NR],
) {
    for (acc_row, &a) in acc.iter_mut().zip(av) {
        for (acc, &b) in acc_row.iter_mut().zip(bv) {
            *acc = acc.mul_add(a, b);
        }
    }
}

/// Fewer than sixteen values as lanes, zero-padded.
#[inline(always)]
fn load_padded<L: Lanes>(rest: &[f32]) -> L {
    let mut lanes = [0.0f32; LANES];
    lanes[..rest.len()].copy_from_slice(rest);
    L::load(&lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `gemm_abt_scratch_len` relies on: more threads never give a larger slot, every task
    /// holds rows, and scratch sized in any pool holds a slot of any other pool's plan.
    #[test]
    fn plan_slots_shrink_with_threads() {
        let a_counts = [1, 2, 3, 5, 12, 13, 32, 48, 128, 129, 512, 4096, 20_000];
        let b_counts = [1, 2, 5, 6, 7, 36, 43, 216, 256, 257, 1152, 4608, 10_007];
        for isa in Isa::ALL {
            for a in a_counts {
                for b in b_counts {
                    for mapped in [false, true] {
                        let plans: Vec<Plan> = (1..=9)
                            .map(|threads| Plan::new(isa, a, b, mapped, threads))
                            .collect();
                        for (t, p) in plans.iter().enumerate() {
                            let label = format!("{isa} a={a} b={b} mapped={mapped} t={}", t + 1);
                            assert!(p.block >= p.nr && p.block % p.nr == 0, "{label}: {p:?}");
                            assert!((p.tasks - 1) * p.block < b, "{label}: empty task {p:?}");
                            assert!(p.slot_len <= plans[0].slot_len, "{label}: {p:?}");
                            if t > 0 {
                                assert!(p.slot_len <= plans[t - 1].slot_len, "{label}");
                            }
                        }
                    }
                }
            }
        }
    }
}
