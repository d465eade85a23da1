//! Column tasks: the parallel schedule of the convolutions' forward products (and of the
//! stride-1 input gradients with few output rows).
//!
//! The output columns (pixels) are cut into blocks whose packed `B` fits L2. One *task* packs
//! its block of `B` into its own buffer and multiplies every row group of `A` by it into its own
//! scratch `C`, then stores that `C` into the output itself, while it is hot in the core's L2.
//! The tasks are grouped into a few *parts* of consecutive tasks, one scratch each, and each part
//! owns its span of every output row: the rows are split at the parts' first columns into
//! disjoint slices (an array of one slice per output row, so at most [`MAX_OWNED_ROWS`] rows),
//! handed out by recursive `rayon::join`. One parallel region per convolution, and nothing one
//! core computed is read by the other. (Before, waves of tasks wrote into a shared scratch and a
//! second pass, split by output rows, copied it into the output: two regions per wave, and the
//! copy read across cores; 6% of a DenseNet-BC-100 1×1 forward went into that copy, and more
//! into the waits between the waves.) Outputs with more rows keep that schedule.
//!
//! Determinism: a task computes each of its values with the same operations in the same order
//! whichever thread runs it, and the parts only bound the scratch memory, so results do not
//! depend on the number of threads.

use crate::dispatch::Isa;
use crate::gemm::{self, AView, BView, Tile};
use rayon::prelude::*;

/// One block of output columns: image `n` (for the per-image column numbering of the stride-1
/// path; 0 otherwise), columns `[col0, col0 + ncols)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Task {
    pub n: usize,
    pub col0: usize,
    pub ncols: usize,
}

/// Tasks a product is cut into at least, where its columns allow: enough for two threads to
/// share the work evenly when the tasks are uneven (a last, narrow block).
const MIN_TASKS: usize = 4;

/// Columns per task for `images` images of `cols` columns each: an L2-sized block of packed `B`
/// ([`gemm::b_block_cols`]), narrowed until there are [`MIN_TASKS`] tasks if the columns allow.
/// It depends on the shape alone; the column split never changes how a value is summed, so
/// results do not depend on it either.
///
/// Without the cap, a 3×3 growth conv at 14×14 (222 wide-row columns, 96 per L2 block) makes
/// three tasks, and at 7×7 only one: the second core idles.
pub(super) fn block_cols(depth: usize, cols: usize, images: usize, t: Tile) -> usize {
    let per_image = MIN_TASKS.div_ceil(images.max(1));
    let cap = cols.div_ceil(per_image).div_ceil(t.nr) * t.nr;
    gemm::b_block_cols(depth, cols, t).min(cap.max(t.nr))
}

/// Below this many output floats (256 KB) the store pass runs on the calling thread: waking the
/// pool for a second region costs more than copying (3×3 128→32 at 7×7 stores 6 KB).
const PARALLEL_STORE_MIN_FLOATS: usize = 1 << 16;

/// Scratch floats one wave of tasks (or all parts together) may hold (1 MB), though a wave
/// always has at least [`MIN_TASKS`] tasks (when there are that many) so that both threads have
/// work. The scratch of a convolution is then about the size of a few tasks' output, not of the
/// whole output: the 7×7 stem at 224² needed 3.3 MB for its 15 tasks, now 0.9 MB.
const WAVE_FLOATS: usize = 1 << 18;

/// Where a task's block of `B` comes from.
#[derive(Clone, Copy)]
pub(super) enum BSource<'e> {
    /// `pack(task, scratch)` packs it into the task's own scratch.
    Packed(&'e (dyn Fn(&Task, &mut [f32]) + Sync)),
    /// Read in place, no scratch ([`BView::Rows`]): `B[k, j] = data[task.n·image_len + task.col0
    /// + row_start(k) + j]`.
    InPlace {
        data: &'e [f32],
        image_len: usize,
        row_start: &'e (dyn Fn(usize) -> usize + Sync),
    },
}

/// Per-task scratch: packed `B` of one block (none when read in place) and the block's `C`.
fn per_task(rows: usize, depth: usize, block: usize, t: Tile, packs_b: bool) -> (usize, usize) {
    let b = if packs_b {
        gemm::packed_b_len(depth, block, t)
    } else {
        0
    };
    (b, rows.div_ceil(t.mr) * t.mr * block)
}

fn wave_len(ntasks: usize, per_task: usize) -> usize {
    let ntasks = ntasks.max(1);
    (WAVE_FLOATS / per_task.max(1)).clamp(MIN_TASKS.min(ntasks), ntasks)
}

/// The lengths of the two scratch buffers [`run`] needs (packed `B`s, `C`s).
pub(super) fn scratch_lens(
    rows: usize,
    depth: usize,
    block: usize,
    ntasks: usize,
    t: Tile,
    packs_b: bool,
) -> [usize; 2] {
    let (b, c) = per_task(rows, depth, block, t, packs_b);
    let wave = wave_len(ntasks, b + c);
    [wave * b, wave * c]
}

/// Output rows up to which the tasks store their own results (the array of row slices a part
/// owns lives on the stack: 2 KiB per level of the split).
pub(super) const MAX_OWNED_ROWS: usize = 128;

/// Runs `ntasks` column tasks of `out[rows, ·] (store)= A · B`.
///
/// - `a`: `A` (`rows × depth`), read.
/// - `source`: where each task's `B` (`depth × task.ncols`) comes from.
/// - `span_start(task)`: the first position of an output row (`out_row_len` floats) that the
///   task writes; it must not decrease from one task to the next, and a task must write only
///   positions before the next task's start. (A write past the end of the task's *part*
///   panics; tasks of one part run one after the other on one thread, so an overlap inside a
///   part would go unnoticed: with `Accumulate` it would add twice.)
/// - `store(task, row, values, window, start)`: moves the task's `values` (`task.ncols` floats)
///   of output row `row` into that row, of which `window` holds the positions `start..` (at
///   least the task's own).
/// - `b_scratch`, `c_scratch`: at least [`scratch_lens`].
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    isa: Isa,
    rows: usize,
    depth: usize,
    a: AView<'_>,
    block: usize,
    ntasks: usize,
    task_at: impl Fn(usize) -> Task + Sync,
    source: BSource<'_>,
    span_start: impl Fn(&Task) -> usize + Sync,
    store: impl Fn(&Task, usize, &[f32], &mut [f32], usize) + Sync,
    out: &mut [f32],
    out_row_len: usize,
    b_scratch: &mut [f32],
    c_scratch: &mut [f32],
    parallel: bool,
) {
    // The scratch is laid out for the tier's tile (rows rounded up to its `MR`, which holds
    // the narrow tile's rows too); the product may use the narrow tile when `A` is in place.
    let t = gemm::tile(isa);
    let kernel_tile = match a {
        AView::Packed(_) => t,
        _ => gemm::tile_for_rows(isa, rows),
    };
    let packs_b = matches!(source, BSource::Packed(_));
    let (per_b, per_c) = per_task(rows, depth, block, t, packs_b);
    let wave = wave_len(ntasks, per_b + per_c);
    // Task `i`'s product into its scratch `c` (`block` floats per row), from its own `B`.
    let compute = |i: usize, b: &mut [f32], c: &mut [f32]| {
        let task = task_at(i);
        let b = match source {
            BSource::Packed(pack) => {
                pack(&task, b);
                BView::Packed(b)
            }
            BSource::InPlace {
                data,
                image_len,
                row_start,
            } => BView::Rows {
                data: &data[task.n * image_len + task.col0..],
                row_start,
            },
        };
        gemm::gemm_block_with(
            isa,
            kernel_tile,
            0,
            rows,
            task.ncols,
            depth,
            a,
            b,
            c,
            block,
            gemm::CStore::Write,
        );
        task
    };
    if rows <= MAX_OWNED_ROWS && ntasks > 0 {
        // Parts of consecutive tasks, one scratch each (the scratch of one wave).
        let parts = if parallel { wave } else { 1 };
        let first_task = |p: usize| p * ntasks / parts;
        let part_start = |p: usize| {
            if p == parts {
                out_row_len
            } else {
                span_start(&task_at(first_task(p)))
            }
        };
        let run_part = |p: usize, windows: &mut [&mut [f32]], b: &mut [f32], c: &mut [f32]| {
            let start = part_start(p);
            for i in first_task(p)..first_task(p + 1) {
                let task = compute(i, b, c);
                for (row, window) in windows.iter_mut().enumerate() {
                    store(&task, row, &c[row * block..][..task.ncols], window, start);
                }
            }
        };
        let mut windows: [&mut [f32]; MAX_OWNED_ROWS] = std::array::from_fn(|_| Default::default());
        for (window, row) in windows
            .iter_mut()
            .zip(out.chunks_mut(out_row_len).take(rows))
        {
            // Positions before the first task's span are no task's.
            *window = &mut row[part_start(0)..];
        }
        let scratch = (
            &mut b_scratch[..parts * per_b],
            &mut c_scratch[..parts * per_c],
        );
        split_parts(
            &mut windows[..rows],
            0..parts,
            scratch,
            (per_b, per_c),
            &part_start,
            &run_part,
        );
        return;
    }
    for w0 in (0..ntasks).step_by(wave) {
        let nw = wave.min(ntasks - w0);
        let c_wave = &mut c_scratch[..nw * per_c];
        match (packs_b, parallel) {
            (false, true) => c_wave.par_chunks_mut(per_c).enumerate().for_each(|(i, c)| {
                compute(w0 + i, &mut [], c);
            }),
            (false, false) => c_wave.chunks_mut(per_c).enumerate().for_each(|(i, c)| {
                compute(w0 + i, &mut [], c);
            }),
            (true, true) => b_scratch[..nw * per_b]
                .par_chunks_mut(per_b)
                .zip(c_wave.par_chunks_mut(per_c))
                .enumerate()
                .for_each(|(i, (b, c))| {
                    compute(w0 + i, b, c);
                }),
            (true, false) => b_scratch[..nw * per_b]
                .chunks_mut(per_b)
                .zip(c_wave.chunks_mut(per_c))
                .enumerate()
                .for_each(|(i, (b, c))| {
                    compute(w0 + i, b, c);
                }),
        }
        let c_wave = &*c_wave;
        let store_row = |(row, out_row): (usize, &mut [f32])| {
            for i in 0..nw {
                let task = task_at(w0 + i);
                let values = &c_wave[i * per_c + row * block..][..task.ncols];
                store(&task, row, values, out_row, 0);
            }
        };
        if parallel && out.len() >= PARALLEL_STORE_MIN_FLOATS {
            out.par_chunks_mut(out_row_len)
                .enumerate()
                .for_each(store_row);
        } else {
            out.chunks_mut(out_row_len).enumerate().for_each(store_row);
        }
    }
}

/// Runs `run_part(p, windows, b, c)` for every part `p` of `parts`, in parallel: each part gets
/// its own span of every output row (`windows`, split at `part_start(p)`; `windows` begins at
/// `part_start(parts.start)`) and its own `per` floats of each scratch.
pub(super) fn split_parts(
    windows: &mut [&mut [f32]],
    parts: std::ops::Range<usize>,
    (b, c): (&mut [f32], &mut [f32]),
    per: (usize, usize),
    part_start: &(impl Fn(usize) -> usize + Sync),
    run_part: &(impl Fn(usize, &mut [&mut [f32]], &mut [f32], &mut [f32]) + Sync),
) {
    if parts.len() == 1 {
        run_part(parts.start, windows, b, c);
        return;
    }
    let mid = parts.start + parts.len() / 2;
    let at = part_start(mid) - part_start(parts.start);
    let mut left: [&mut [f32]; MAX_OWNED_ROWS] = std::array::from_fn(|_| Default::default());
    for (l, w) in left.iter_mut().zip(windows.iter_mut()) {
        let (head, tail) = std::mem::take(w).split_at_mut(at);
        (*l, *w) = (head, tail);
    }
    let left = &mut left[..windows.len()];
    let (b_left, b_right) = b.split_at_mut((mid - parts.start) * per.0);
    let (c_left, c_right) = c.split_at_mut((mid - parts.start) * per.1);
    rayon::join(
        || {
            split_parts(
                left,
                parts.start..mid,
                (b_left, c_left),
                per,
                part_start,
                run_part,
            )
        },
        || {
            split_parts(
                windows,
                mid..parts.end,
                (b_right, c_right),
                per,
                part_start,
                run_part,
            )
        },
    );
}
