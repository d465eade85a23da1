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

/// [`pack_b_matrix`] with `NR` known at compile time, row by row of `B`: each source row is
/// read front to back once (rather than one short run of every row per panel), and a full
/// panel row is a fixed-size copy instead of an out-of-line `memcpy` call.
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
    for k in 0..depth {
        let row = &src[k * ld + col0..k * ld + col0 + ncols];
        for j in 0..panels {
            let lanes = &mut dst[(j * depth + k) * NR..(j * depth + k + 1) * NR];
            let w = NR.min(ncols - j * NR);
            if w == NR {
                let lanes: &mut [f32; NR] = lanes.try_into().expect("panel row of NR lanes");
                let run: &[f32; NR] = row[j * NR..(j + 1) * NR]
                    .try_into()
                    .expect("run of NR columns");
                *lanes = *run;
            } else {
                lanes[..w].copy_from_slice(&row[j * NR..]);
                lanes[w..].fill(0.0);
            }
        }
    }
}
