//! Packing of plain strided matrices into the panel layouts the micro-kernels read (the index
//! formulas are in the parent module's doc).

use super::Tile;
use crate::dispatch::Isa;
use crate::simd::on_tier;

/// Packs `A[rows, depth]`, `A[r, k] = src[r·row_stride + k·col_stride]`, into `MR`-row groups.
///
/// # Shapes
/// - `dst`: at least [`super::packed_a_len`]`(rows, depth, t)` floats, written; rows past
///   `rows` are zero.
pub fn pack_a(
    dst: &mut [f32],
    src: &[f32],
    rows: usize,
    depth: usize,
    row_stride: usize,
    col_stride: usize,
    t: Tile,
) {
    if rows > 0 && depth > 0 {
        assert!(
            src.len() > (rows - 1) * row_stride + (depth - 1) * col_stride,
            "pack_a: src too short"
        );
    }
    pack_a_with(dst, rows, depth, t, |r, k| {
        src[r * row_stride + k * col_stride]
    });
}

/// Packs `A[rows, depth]` given element by element, `A[r, k] = at(r, k)` (for operands that
/// are not a strided matrix, e.g. a flipped, transposed convolution weight).
///
/// # Shapes
/// - `dst`: at least [`super::packed_a_len`]`(rows, depth, t)` floats, written; rows past
///   `rows` are zero.
pub fn pack_a_with(
    dst: &mut [f32],
    rows: usize,
    depth: usize,
    t: Tile,
    at: impl Fn(usize, usize) -> f32,
) {
    let groups = rows.div_ceil(t.mr);
    assert!(dst.len() >= groups * t.mr * depth, "pack_a: dst too short");
    if depth == 0 {
        return;
    }
    for (g, group) in dst.chunks_exact_mut(t.mr * depth).take(groups).enumerate() {
        let rows_here = t.mr.min(rows - g * t.mr);
        for (k, lanes) in group.chunks_exact_mut(t.mr).enumerate() {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = if i < rows_here {
                    at(g * t.mr + i, k)
                } else {
                    0.0
                };
            }
        }
    }
}

/// Packs the columns `[col0, col0 + ncols)` of the row-major `B[depth, ·]`,
/// `B[k, j] = src[k·ld + j]`, into the `NR`-column panels of `isa`'s tile.
///
/// # Shapes
/// - `dst`: at least [`super::packed_b_len`]`(depth, ncols, tile(isa))` floats, written;
///   columns past `ncols` are zero.
pub fn pack_b_matrix(
    isa: Isa,
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    depth: usize,
    col0: usize,
    ncols: usize,
) {
    let t = super::tile(isa);
    let panels = ncols.div_ceil(t.nr);
    assert!(dst.len() >= panels * t.nr * depth, "pack_b: dst too short");
    if depth == 0 {
        return;
    }
    // Compiled for the tier: on the baseline target a 32-float panel row is eight 16-byte
    // moves.
    match t.nr {
        32 => on_tier(
            isa,
            #[inline(always)]
            || pack_b_rows::<32>(dst, src, ld, depth, col0, ncols),
        ),
        16 => on_tier(
            isa,
            #[inline(always)]
            || pack_b_rows::<16>(dst, src, ld, depth, col0, ncols),
        ),
        8 => on_tier(
            isa,
            #[inline(always)]
            || pack_b_rows::<8>(dst, src, ld, depth, col0, ncols),
        ),
        _ => {
            for (j, panel) in dst.chunks_exact_mut(t.nr * depth).take(panels).enumerate() {
                let c0 = col0 + j * t.nr;
                let w = t.nr.min(ncols - j * t.nr);
                for (k, lanes) in panel.chunks_exact_mut(t.nr).enumerate() {
                    let row = &src[k * ld + c0..k * ld + c0 + w];
                    lanes[..w].copy_from_slice(row);
                    lanes[w..].fill(0.0);
                }
            }
        }
    }
}

/// Rows of `B` a panel packing takes through all panels together. Row by row, each row's `NR`
/// runs went to as many panels, a panel apart (a page and more for deep products: an L1 TLB
/// miss per write); all rows per panel read one short run from each row (a page and TLB walk
/// per run, and more streams than the prefetchers follow). Eight rows per pass fill eight
/// consecutive panel rows per panel while each row is still read front to back. Measured on
/// BC-100's forward 1×1s at batch 64 (`examples/bc100_convs.rs`, one thread, interleaved):
/// 1 row 304–315 ms, 4 rows 259–265, 8 rows 252–262, 16 rows 268–270; packing went from 27% to
/// 17% of the samples.
pub(crate) const PACK_ROWS: usize = 8;

/// [`pack_b_matrix`] with `NR` known at compile time, [`PACK_ROWS`] rows of `B` at a time: each
/// source row is read front to back (rather than one short run of every row per panel), and a
/// full panel row is a fixed-size copy instead of an out-of-line `memcpy` call.
#[inline(always)]
fn pack_b_rows<const NR: usize>(
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    depth: usize,
    col0: usize,
    ncols: usize,
) {
    let panels = ncols.div_ceil(NR);
    // The runs are cut from the whole of `src`: columns past a row would read the next one.
    debug_assert!(
        depth <= 1 || col0 + ncols <= ld,
        "pack_b: columns past a row"
    );
    for k0 in (0..depth).step_by(PACK_ROWS) {
        for j in 0..panels {
            let w = NR.min(ncols - j * NR);
            for k in k0..(k0 + PACK_ROWS).min(depth) {
                let run = &src[k * ld + col0 + j * NR..][..w];
                let lanes = &mut dst[(j * depth + k) * NR..][..NR];
                if w == NR {
                    let lanes: &mut [f32; NR] = lanes.try_into().expect("panel row of NR lanes");
                    *lanes = *<&[f32; NR]>::try_from(run).expect("run of NR columns");
                } else {
                    lanes[..w].copy_from_slice(run);
                    lanes[w..].fill(0.0);
                }
            }
        }
    }
}
