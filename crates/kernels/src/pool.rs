//! Max, average and global average pooling, forward and backward.
//!
//! Pooling treats every `H×W` plane alike (`P = C·N` planes), so the kernels run plane groups as
//! rayon tasks; a plane's result never depends on the grouping, which is a fixed function of the
//! shape, so any thread count gives the same bits.
//!
//! Max and average pooling are separable: the window maximum (sum) is the maximum (sum) over the
//! window's columns of the per-column maxima (sums) over its rows. The forward kernels first
//! reduce the window's rows into a row buffer on the stack, a contiguous loop that vectorises,
//! then reduce the strided columns of that buffer. Planes wider than `ROW_BUF` use a direct
//! window scan instead.
//!
//! The max-pool backward finds each window's winner again (the first maximum, as the forward
//! and the reference) and adds its gradient there. For 3×3 stride-2 windows it runs a whole
//! output row of window scans side by side in SIMD lanes, then adds the gradients one by one in
//! output order, so the sums are the reference's bit for bit.

use std::cmp::Ordering::{Equal, Less};

use rayon::prelude::*;

use crate::dispatch::active_isa;
use crate::geom::Pool2dGeom;
use crate::simd::{on_tier, LANES, PAR_MIN_LEN};

/// The widest input row the separable path buffers on the stack.
const ROW_BUF: usize = 512;

/// The maximum of `a` and `b` where a NaN wins, as PyTorch's max pooling.
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// The input rows (or columns) `[lo, hi)` that window `o` covers, clamped to `[0, n)`.
#[inline(always)]
fn window(o: usize, g: &Pool2dGeom, n: usize) -> (usize, usize) {
    let start = o * g.stride;
    let lo = start.saturating_sub(g.pad);
    let hi = (start + g.kernel).saturating_sub(g.pad).min(n);
    (lo, hi)
}

/// Runs `body(out_planes, in_planes)` over groups of whole planes, as rayon tasks when the
/// tensor is large. `out_plane` and `in_plane` are the per-plane lengths.
fn for_plane_groups<O: Send, I: Sync>(
    out: &mut [O],
    inp: &[I],
    (out_plane, in_plane): (usize, usize),
    planes: usize,
    body: impl Fn(&mut [O], &[I]) + Sync,
) {
    if planes == 0 || out_plane == 0 || in_plane == 0 {
        return;
    }
    let per_task = (4096 / in_plane.max(out_plane)).max(1);
    if planes * in_plane.max(out_plane) < PAR_MIN_LEN {
        body(out, inp);
    } else {
        out.par_chunks_mut(out_plane * per_task)
            .zip(inp.par_chunks(in_plane * per_task))
            .for_each(|(o, x)| body(o, x));
    }
}

/// Max pooling forward, PyTorch semantics: each output is the maximum over its window; padded
/// taps are ignored (they act as −∞); a NaN in the window wins.
///
/// ```text
/// out[p, oy, ox] = max_{ky, kx < K} in[p, oy·s + ky − pad, ox·s + kx − pad]
/// ```
///
/// # Shapes
/// - `out`: `[P, OH, OW]` written, `inp`: `[P, H, W]` read, with `P = C·N` planes.
///
/// # Panics
/// If `g` is not valid ([`Pool2dGeom::is_valid`]) or on length mismatches.
pub fn maxpool2d_forward(out: &mut [f32], inp: &[f32], g: &Pool2dGeom) {
    assert!(g.is_valid(), "invalid pooling geometry {g:?}");
    assert_eq!(out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    let oh = g.out_h();
    maxpool_rows(out, inp, g, 0..oh, (oh, 0..g.in_h));
}

/// The input rows that output rows `rows` of [`maxpool2d_forward`] read: their windows' rows,
/// clamped to the input (padding rows are read from nowhere).
///
/// # Panics
/// If `g` is not valid or `rows` is empty or past the output.
pub fn maxpool2d_input_rows(
    g: &Pool2dGeom,
    rows: &std::ops::Range<usize>,
) -> std::ops::Range<usize> {
    assert!(g.is_valid(), "invalid pooling geometry {g:?}");
    assert!(
        rows.start < rows.end && rows.end <= g.out_h(),
        "output rows {rows:?} of {}",
        g.out_h()
    );
    window(rows.start, g, g.in_h).0..window(rows.end - 1, g, g.in_h).1
}

/// Output rows `rows` of [`maxpool2d_forward`] from a band of the input: the same values, bit
/// for bit, for a caller that produces its input a band of rows at a time (the inference
/// plan's stem pools each band of its convolution's output while it is in cache).
///
/// # Shapes
/// - `out`: `[P, OH, OW]`, the whole output; only rows `rows` of each plane are written.
/// - `band`: `[P, R, W]`, input rows [`maxpool2d_input_rows`]`(g, rows)` of each plane
///   (`R` of them).
///
/// # Panics
/// If `g` is not valid, `rows` is empty or past the output, or on length mismatches.
pub fn maxpool2d_forward_rows(
    out: &mut [f32],
    band: &[f32],
    g: &Pool2dGeom,
    rows: std::ops::Range<usize>,
) {
    let in_rows = maxpool2d_input_rows(g, &rows);
    assert_eq!(out.len(), g.output_len());
    assert_eq!(band.len(), g.planes * in_rows.len() * g.in_w);
    maxpool_rows(out, band, g, rows, (g.out_h(), in_rows));
}

/// Output rows `rows` of every plane (planes of `oh` rows in `out`) from input planes holding
/// the rows `in_rows`.
fn maxpool_rows(
    out: &mut [f32],
    inp: &[f32],
    g: &Pool2dGeom,
    rows: std::ops::Range<usize>,
    (oh, in_rows): (usize, std::ops::Range<usize>),
) {
    let isa = active_isa();
    let ow = g.out_w();
    let (hw, ohw) = (in_rows.len() * g.in_w, oh * ow);
    for_plane_groups(out, inp, (ohw, hw), g.planes, |o, x| {
        for (o, x) in o.chunks_exact_mut(ohw).zip(x.chunks_exact(hw)) {
            let o = &mut o[rows.start * ow..rows.end * ow];
            on_tier(
                isa,
                #[inline(always)]
                || maxpool_plane(o, x, g, rows.start, in_rows.start),
            );
        }
    });
}

/// Output rows `oy0..` of one plane into `out` (whole rows), from `inp`, which holds the
/// plane's input rows from `y_first` on.
#[inline(always)]
fn maxpool_plane(out: &mut [f32], inp: &[f32], g: &Pool2dGeom, oy0: usize, y_first: usize) {
    let (w, ow) = (g.in_w, g.out_w());
    let mut buf = [0.0f32; ROW_BUF];
    // The even and odd halves of a row for `row_max_3s2p1`, cleared once per plane rather than
    // once per output row (2 KB of `memset` per row: a third of the stem pool's time).
    let mut halves = ([0.0f32; ROW_BUF / 2 + 1], [0.0f32; ROW_BUF / 2]);
    for (i, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let (y0, y1) = window(oy0 + i, g, g.in_h);
        let (y0, y1) = (y0 - y_first, y1 - y_first);
        if w <= ROW_BUF {
            let colmax = &mut buf[..w];
            let row = |y: usize| &inp[y * w..(y + 1) * w];
            // Each column's maximum written once: a running maximum stored row after row became
            // a masked store (the column is only written where the new row wins), which the
            // next row's load of the same column cannot take its value from (it waits for the
            // store to reach the cache): the stem pool took 3× as long.
            match y1 - y0 {
                1 => colmax.copy_from_slice(row(y0)),
                2 => {
                    for ((m, &a), &b) in colmax.iter_mut().zip(row(y0)).zip(row(y0 + 1)) {
                        *m = max_nan(a, b);
                    }
                }
                _ => {
                    let rows = row(y0).iter().zip(row(y0 + 1)).zip(row(y0 + 2));
                    for (m, ((&a, &b), &c)) in colmax.iter_mut().zip(rows) {
                        *m = max_nan(max_nan(a, b), c);
                    }
                    for y in y0 + 3..y1 {
                        for (m, &v) in colmax.iter_mut().zip(row(y)) {
                            *m = max_nan(*m, v);
                        }
                    }
                }
            }
            if g.kernel == 3 && g.stride == 2 && g.pad == 1 {
                row_max_3s2p1(out_row, colmax, &mut halves);
            } else {
                for (ox, o) in out_row.iter_mut().enumerate() {
                    let (x0, x1) = window(ox, g, w);
                    *o = colmax[x0 + 1..x1]
                        .iter()
                        .fold(colmax[x0], |m, &v| max_nan(m, v));
                }
            }
        } else {
            for (ox, o) in out_row.iter_mut().enumerate() {
                let (x0, x1) = window(ox, g, w);
                let mut m = inp[y0 * w + x0];
                for y in y0..y1 {
                    for &v in &inp[y * w + x0..y * w + x1] {
                        m = max_nan(m, v);
                    }
                }
                *o = m;
            }
        }
    }
}

/// The horizontal pass of DenseNet's stem pool (3 wide, stride 2, pad 1) over one row of
/// column maxima: output `ox` covers columns `2·ox − 1 ..= 2·ox + 1`. Splitting the row into its
/// even and odd columns turns the stride-2 windows into `max(odd[ox − 1], even[ox], odd[ox])`
/// over contiguous slices, which vectorises.
///
/// `halves` is scratch for the even and odd columns; only what this call writes is read.
#[inline(always)]
fn row_max_3s2p1(
    out: &mut [f32],
    colmax: &[f32],
    (even, odd): &mut ([f32; ROW_BUF / 2 + 1], [f32; ROW_BUF / 2]),
) {
    let pairs = colmax.chunks_exact(2);
    if let Some(&last) = pairs.remainder().first() {
        even[colmax.len() / 2] = last;
    }
    for ((e, o), p) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
        *e = p[0];
        *o = p[1];
    }
    let (n_even, n_odd) = (colmax.len().div_ceil(2), colmax.len() / 2);
    // Output 0 covers columns 0 and 1 (column −1 is padding).
    out[0] = if n_odd > 0 {
        max_nan(even[0], odd[0])
    } else {
        even[0]
    };
    // Interior outputs have all three columns.
    let interior = (out.len() - 1).min(n_odd.saturating_sub(1));
    for (((o, &l), &c), &r) in out[1..=interior]
        .iter_mut()
        .zip(&odd[..interior])
        .zip(&even[1..=interior])
        .zip(&odd[1..=interior])
    {
        *o = max_nan(max_nan(l, c), r);
    }
    // A last output whose right column is past the edge.
    for ox in interior + 1..out.len() {
        let mut m = max_nan(odd[ox - 1], even[ox]);
        if ox < n_odd {
            m = max_nan(m, odd[ox]);
        }
        out[ox] = m;
    }
    debug_assert!(out.len() <= n_even);
}

/// Max pooling backward (accumulates): each output's gradient is added to the input that won
/// its window, `d_inp[argmax] += dy`. The winner is the first maximum in row-major window order
/// on ties (`-0.0` and `0.0` tie) and the first NaN if the window holds one, as the forward pass
/// and PyTorch's CPU kernel pick it; padded taps never win. Within a plane the gradients are
/// added in row-major output order, so overlapping windows that pick the same input add in the
/// reference's order and the result is bit-identical to it.
///
/// 3×3 stride-2 pools (DenseNet's stem) over planes at most `ROW_BUF` = 512 wide take a fast
/// path that scans a whole output row's windows at once in SIMD lanes, then adds the gradients
/// in the same order; other shapes scan window by window.
///
/// # Shapes
/// - `d_inp`: `[P, H, W]` accumulated; `d_out`: `[P, OH, OW]` read; `inp`: `[P, H, W]` read.
///
/// # Panics
/// If `g` is not valid ([`Pool2dGeom::is_valid`]) or on length mismatches.
pub fn maxpool2d_backward(d_inp: &mut [f32], d_out: &[f32], inp: &[f32], g: &Pool2dGeom) {
    assert!(g.is_valid(), "invalid pooling geometry {g:?}");
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    assert_eq!(d_inp.len(), g.input_len());
    let (oh, ow) = (g.out_h(), g.out_w());
    let (hw, ohw) = (g.in_h * g.in_w, oh * ow);
    if hw == 0 || ohw == 0 || g.planes == 0 {
        return;
    }
    let isa = active_isa();
    // Tasks own `d_inp` plane groups and read the matching `inp` and `d_out` planes.
    let per_task = (4096 / hw).max(1);
    let one = |(t, d): (usize, &mut [f32])| {
        let first = t * per_task;
        let planes = d
            .chunks_exact_mut(hw)
            .zip(d_out[first * ohw..].chunks_exact(ohw))
            .zip(inp[first * hw..].chunks_exact(hw));
        on_tier(
            isa,
            #[inline(always)]
            || {
                if g.kernel == 3 && g.stride == 2 && g.in_w <= ROW_BUF {
                    let mut scratch = Scratch3s2::new();
                    for ((d, dy), x) in planes {
                        maxpool_backward_3s2(d, dy, x, g, &mut scratch);
                    }
                } else {
                    for ((d, dy), x) in planes {
                        maxpool_backward_plane(d, dy, x, g);
                    }
                }
            },
        );
    };
    if g.input_len() < PAR_MIN_LEN {
        d_inp.chunks_mut(hw * per_task).enumerate().for_each(one);
    } else {
        d_inp
            .par_chunks_mut(hw * per_task)
            .enumerate()
            .for_each(one);
    }
}

/// Whether `v` displaces `best` as the window's winner: `v > best`, or `v` is the window's
/// first NaN. As "`v` is not `≤ best` (greater or unordered), and `best` is not NaN" it is two
/// compares joined without a branch, so the scans below compile to selects (the outcome is
/// data-dependent: as a branch it mispredicts often).
#[inline(always)]
fn beats(v: f32, best: f32) -> bool {
    !matches!(v.partial_cmp(&best), Some(Less | Equal)) & !best.is_nan()
}

/// The input index (in the plane) of the winner of the window over rows `y0..y1` and columns
/// `x0..x1`, scanned in row-major order.
#[inline(always)]
fn window_argmax(
    inp: &[f32],
    w: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) -> usize {
    let mut best = y0 * w + x0;
    let mut bv = inp[best];
    for y in y0..y1 {
        for (i, &v) in (y * w + x0..).zip(&inp[y * w + x0..y * w + x1]) {
            let take = beats(v, bv);
            best = if take { i } else { best };
            bv = if take { v } else { bv };
        }
    }
    best
}

/// Any geometry: one window scan per output.
#[inline(always)]
fn maxpool_backward_plane(d_inp: &mut [f32], d_out: &[f32], inp: &[f32], g: &Pool2dGeom) {
    let (w, ow) = (g.in_w, g.out_w());
    for (oy, dy_row) in d_out.chunks_exact(ow).enumerate() {
        let ys = window(oy, g, g.in_h);
        for (ox, &dy) in dy_row.iter().enumerate() {
            d_inp[window_argmax(inp, w, ys, window(ox, g, w))] += dy;
        }
    }
}

/// Scratch of [`maxpool_backward_3s2`], made once per task: the (up to) three input rows a
/// window row covers, split into even and odd columns, input row `y` in slot `y % 3` (one input
/// row is shared by consecutive window rows and stays), and the winners' codes of two window
/// rows.
///
/// `odd` is shifted by one, `odd[j] = row[2j − 1]`, so that the windows of output `ox` read
/// offset `ox` or `ox + 1` of every slice and none starts before zero. The slots that would hold
/// padding hold copies of the neighbouring input instead: `odd[0] = row[0]` and, for an odd
/// width `W`, `odd[(W + 1)/2] = row[W − 1]`. A copy placed right after its original never beats
/// it, so the right copy never wins; the left copy comes right before its original and wins
/// exactly when the original would, so the scan gives it the original's code. Every output of
/// the row then takes the same vector scan, with no clipped windows.
///
/// The slices are one value longer than a whole number of lane blocks, so the scans can read
/// the last block shifted by one; values read past the row are never used.
struct Scratch3s2 {
    even: [[f32; ROW_BUF / 2 + 1]; 3],
    odd: [[f32; ROW_BUF / 2 + 1]; 3],
    codes: [[u32; ROW_BUF / 2]; 2],
}

const _: () = assert!((ROW_BUF / 2).is_multiple_of(LANES));

impl Scratch3s2 {
    fn new() -> Self {
        Scratch3s2 {
            even: [[0.0; ROW_BUF / 2 + 1]; 3],
            odd: [[0.0; ROW_BUF / 2 + 1]; 3],
            codes: [[0; ROW_BUF / 2]; 2],
        }
    }

    /// Splits input row `y` (at most `ROW_BUF` wide) into slot `y % 3`.
    #[inline(always)]
    fn load(&mut self, y: usize, row: &[f32]) {
        let (even, odd) = (&mut self.even[y % 3], &mut self.odd[y % 3]);
        let pairs = row.chunks_exact(2);
        if let Some(&last) = pairs.remainder().first() {
            even[row.len() / 2] = last;
            odd[row.len() / 2 + 1] = last;
        }
        odd[0] = row[0];
        for ((e, o), p) in even.iter_mut().zip(odd[1..].iter_mut()).zip(pairs) {
            *e = p[0];
            *o = p[1];
        }
    }
}

/// The backward of DenseNet's stem pool and any other 3×3 stride-2 pool (padding 0 or 1, the
/// only ones valid for a 3-wide window) over one plane at most `ROW_BUF` wide.
///
/// The generic scan carries the winner's value through a serial chain of compares, one output
/// at a time. Here the window scans of a whole output row run side by side: with the input rows
/// split into even and odd columns ([`Scratch3s2`]), tap `kx` of output `ox` sits at offset `ox`
/// of one contiguous slice for every output, so the (up to) nine taps become as many
/// compare-and-select steps over lane blocks ([`window_codes`]), which vectorise on every tier.
/// Each output keeps a code for its winning tap, and only then are the gradients added, scalar
/// and in output order, which keeps the reference's order of adds. Windows clipped at the top or
/// bottom just scan fewer rows.
#[inline(always)]
fn maxpool_backward_3s2(
    d_inp: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    g: &Pool2dGeom,
    s: &mut Scratch3s2,
) {
    let (w, oh, ow, pad) = (g.in_w, g.out_h(), g.out_w(), g.pad);
    debug_assert!(g.kernel == 3 && g.stride == 2 && pad <= 1 && w <= ROW_BUF);
    // The scans run whole lane blocks; codes past `ow` are never read.
    let blocks = ow.next_multiple_of(LANES);
    // With padding 1, output 0's first column is the copy of column 0 (see `Scratch3s2`).
    let mut first_left = [0u32; LANES];
    first_left[0] = pad as u32;
    // Row `oy`'s gradients are added after row `oy + 1`'s scan: reading the codes right after
    // the vector stores that wrote them stalls (measured on AVX-512), and the adds keep their
    // order all the same.
    let mut scatter = |oy: usize, codes: &[u32]| {
        // Code `r·W + kx` is input (y0 + r, 2·ox − pad + kx).
        let corner = window(oy, g, g.in_h).0 * w;
        let dy_row = &d_out[oy * ow..(oy + 1) * ow];
        for (ox, (&dy, &c)) in dy_row.iter().zip(&codes[..ow]).enumerate() {
            d_inp[corner + 2 * ox + c as usize - pad] += dy;
        }
    };
    let mut loaded = 0;
    for oy in 0..oh {
        let (y0, y1) = window(oy, g, g.in_h);
        for y in loaded.max(y0)..y1 {
            s.load(y, &inp[y * w..(y + 1) * w]);
        }
        loaded = y1;
        // Output `ox`'s taps in window row `r` are `left[ox]`, `centre[ox]`, `right[ox]`.
        let taps = |y: usize| -> [&[f32]; 3] {
            let (e, o) = (&s.even[y % 3][..], &s.odd[y % 3][..]);
            if pad == 0 {
                [&e[..blocks], &o[1..=blocks], &e[1..=blocks]]
            } else {
                [&o[..blocks], &e[..blocks], &o[1..=blocks]]
            }
        };
        let codes = &mut s.codes[oy % 2][..blocks];
        match y1 - y0 {
            3 => window_codes(
                codes,
                [taps(y0), taps(y0 + 1), taps(y0 + 2)],
                w,
                &first_left,
            ),
            2 => window_codes(codes, [taps(y0), taps(y0 + 1)], w, &first_left),
            _ => window_codes(codes, [taps(y0)], w, &first_left),
        }
        if oy > 0 {
            scatter(oy - 1, &s.codes[(oy - 1) % 2]);
        }
    }
    scatter(oh - 1, &s.codes[(oh - 1) % 2]);
}

/// For each output `j`, the code `r·W + k` of the winner among the taps `taps[r][k][j]` (window
/// row `r`, column `k`), scanned in row-major order; the first column's codes of output block 0
/// are raised by `first_left`. Runs in blocks of [`LANES`] outputs (`codes.len()` is a multiple
/// of it, the taps at least as long), each block's scan unrolled over fixed-size arrays, which
/// LLVM turns into vector compares and selects, two of each per tap.
///
/// The first-maximum rule is associative (the first maximum of a sequence is the first maximum
/// of the first maxima of its consecutive parts), so each window row is merged on its own and
/// the rows are then merged in order: a chain of four dependent merges rather than eight.
#[inline(always)]
fn window_codes<const R: usize>(
    codes: &mut [u32],
    taps: [[&[f32]; 3]; R],
    w: usize,
    first_left: &[u32; LANES],
) {
    let w = w as u32;
    for (j, block) in codes.chunks_exact_mut(LANES).enumerate() {
        let adjust = if j == 0 { Some(first_left) } else { None };
        // A closure: as a separate `fn` the same code compiled to a slower scan (3.8 -> 5.2 ms
        // for the batch-8 stem on one thread, AVX-512).
        let row = |r: usize| {
            let t: &[&[f32]; 3] = &taps[r];
            [
                lane_block(t[0], j),
                lane_block(t[1], j),
                lane_block(t[2], j),
            ]
        };
        let (mut v, mut c) = row_winners(row(0), 0, adjust);
        for r in 1..R {
            let (rv, rc) = row_winners(row(r), r as u32 * w, adjust);
            for (((v, c), x), k) in v.iter_mut().zip(c.iter_mut()).zip(rv).zip(rc) {
                let take = beats(x, *v);
                *v = if take { x } else { *v };
                *c = if take { k } else { *c };
            }
        }
        block.copy_from_slice(&c);
    }
}

/// The winners of one window row's taps `row` and their codes `code + k` (raised by `adjust`).
#[inline(always)]
fn row_winners(
    row: [&[f32; LANES]; 3],
    code: u32,
    adjust: Option<&[u32; LANES]>,
) -> ([f32; LANES], [u32; LANES]) {
    let mut v = *row[0];
    let mut c = [code; LANES];
    if let Some(a) = adjust {
        for (c, a) in c.iter_mut().zip(a) {
            *c += a;
        }
    }
    merge(&mut v, &mut c, row[1], code + 1);
    merge(&mut v, &mut c, row[2], code + 2);
    (v, c)
}

/// Merges the taps `x` (code `code`), which come after the current winners `v` (codes `c`).
#[inline(always)]
fn merge(v: &mut [f32; LANES], c: &mut [u32; LANES], x: &[f32; LANES], code: u32) {
    for ((v, c), &x) in v.iter_mut().zip(c.iter_mut()).zip(x) {
        let take = beats(x, *v);
        *v = if take { x } else { *v };
        *c = if take { code } else { *c };
    }
}

/// Block `j` of [`LANES`] values of `s`.
#[inline(always)]
fn lane_block(s: &[f32], j: usize) -> &[f32; LANES] {
    s[j * LANES..(j + 1) * LANES].try_into().unwrap()
}

/// Average pooling forward, without padding (`g.pad` must be 0):
/// `out[p, oy, ox] = (1/K²) Σ_{ky, kx} in[p, oy·s + ky, ox·s + kx]`, summed in `f32`.
///
/// # Shapes
/// - `out`: `[P, OH, OW]` written, `inp`: `[P, H, W]` read.
pub fn avgpool2d_forward(out: &mut [f32], inp: &[f32], g: &Pool2dGeom) {
    assert_eq!(g.pad, 0, "average pooling takes no padding");
    assert!(g.is_valid(), "invalid pooling geometry {g:?}");
    assert_eq!(out.len(), g.output_len());
    assert_eq!(inp.len(), g.input_len());
    let isa = active_isa();
    let (oh, ow) = (g.out_h(), g.out_w());
    let (hw, ohw) = (g.in_h * g.in_w, oh * ow);
    for_plane_groups(out, inp, (ohw, hw), g.planes, |o, x| {
        for (o, x) in o.chunks_exact_mut(ohw).zip(x.chunks_exact(hw)) {
            on_tier(
                isa,
                #[inline(always)]
                || avgpool_plane(o, x, g),
            );
        }
    });
}

#[inline(always)]
fn avgpool_plane(out: &mut [f32], inp: &[f32], g: &Pool2dGeom) {
    let (w, ow, k, s) = (g.in_w, g.out_w(), g.kernel, g.stride);
    let norm = 1.0 / (k * k) as f32;
    let mut buf = [0.0f32; ROW_BUF];
    for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let y0 = oy * s;
        if k == 2 && s == 2 {
            // DenseNet's transitions: the common case, summed in the reference's order.
            let (r0, r1) = (&inp[y0 * w..(y0 + 1) * w], &inp[(y0 + 1) * w..(y0 + 2) * w]);
            for ((o, a), b) in out_row
                .iter_mut()
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                *o = (a[0] + a[1] + b[0] + b[1]) * norm;
            }
        } else if w <= ROW_BUF {
            let colsum = &mut buf[..w];
            colsum.copy_from_slice(&inp[y0 * w..(y0 + 1) * w]);
            for y in y0 + 1..y0 + k {
                for (m, &v) in colsum.iter_mut().zip(&inp[y * w..(y + 1) * w]) {
                    *m += v;
                }
            }
            for (ox, o) in out_row.iter_mut().enumerate() {
                let x0 = ox * s;
                *o = colsum[x0..x0 + k].iter().sum::<f32>() * norm;
            }
        } else {
            for (ox, o) in out_row.iter_mut().enumerate() {
                let x0 = ox * s;
                let mut acc = 0.0f32;
                for y in y0..y0 + k {
                    acc += inp[y * w + x0..y * w + x0 + k].iter().sum::<f32>();
                }
                *o = acc * norm;
            }
        }
    }
}

/// Average pooling backward (accumulates): `d_in[p, iy, ix] += (1/K²)·dy` for every window
/// covering the pixel, added in the same order as the reference.
///
/// # Shapes
/// - `d_inp`: `[P, H, W]` accumulated; `d_out`: `[P, OH, OW]` read.
pub fn avgpool2d_backward(d_inp: &mut [f32], d_out: &[f32], g: &Pool2dGeom) {
    assert_eq!(g.pad, 0, "average pooling takes no padding");
    assert!(g.is_valid(), "invalid pooling geometry {g:?}");
    assert_eq!(d_out.len(), g.output_len());
    assert_eq!(d_inp.len(), g.input_len());
    let isa = active_isa();
    let (oh, ow) = (g.out_h(), g.out_w());
    let (hw, ohw) = (g.in_h * g.in_w, oh * ow);
    for_plane_groups(d_inp, d_out, (hw, ohw), g.planes, |d, dy| {
        for (d, dy) in d.chunks_exact_mut(hw).zip(dy.chunks_exact(ohw)) {
            on_tier(
                isa,
                #[inline(always)]
                || avgpool_backward_plane(d, dy, g),
            );
        }
    });
}

#[inline(always)]
fn avgpool_backward_plane(d_inp: &mut [f32], d_out: &[f32], g: &Pool2dGeom) {
    let (w, ow, k, s) = (g.in_w, g.out_w(), g.kernel, g.stride);
    let norm = 1.0 / (k * k) as f32;
    for (oy, dy_row) in d_out.chunks_exact(ow).enumerate() {
        for y in oy * s..oy * s + k {
            let row = &mut d_inp[y * w..(y + 1) * w];
            for (ox, &dy) in dy_row.iter().enumerate() {
                let v = dy * norm;
                for d in &mut row[ox * s..ox * s + k] {
                    *d += v;
                }
            }
        }
    }
}

/// Global average pooling forward: `out[n, c] = (1/(H·W)) Σ_{y, x} in[c, n, y, x]`.
///
/// The output is image-major (`[N, C]`, one row of features per image), ready for the linear
/// classifier.
///
/// # Shapes
/// - `out`: `[N, C]` written; `inp`: `[C, N, H, W]` read; `hw = H·W`.
pub fn global_avgpool_forward(
    out: &mut [f32],
    inp: &[f32],
    channels: usize,
    batch: usize,
    hw: usize,
) {
    assert_eq!(out.len(), batch * channels);
    assert_eq!(inp.len(), channels * batch * hw);
    assert!(hw > 0, "global average pooling over empty planes");
    let isa = active_isa();
    // Output element `n·C + c` reads plane `c·N + n`; tasks own runs of output elements.
    let one = |(t, o): (usize, &mut [f32])| {
        on_tier(
            isa,
            #[inline(always)]
            || {
                for (j, o) in o.iter_mut().enumerate() {
                    let idx = t * 64 + j;
                    let (n, c) = (idx / channels, idx % channels);
                    let plane = &inp[(c * batch + n) * hw..(c * batch + n + 1) * hw];
                    // Planes are small (7×7, 8×8): a plain `f64` sum beats lane
                    // partials, whose set-up and tail cost more than 49 adds.
                    let s: f64 = plane.iter().map(|&v| f64::from(v)).sum();
                    *o = (s / hw as f64) as f32;
                }
            },
        )
    };
    if inp.len() < PAR_MIN_LEN {
        out.chunks_mut(64).enumerate().for_each(one);
    } else {
        out.par_chunks_mut(64).enumerate().for_each(one);
    }
}

/// Global average pooling backward (accumulates): `d_in[c, n, y, x] += dy[n, c]/(H·W)`.
///
/// # Shapes
/// - `d_inp`: `[C, N, H, W]` accumulated; `d_out`: `[N, C]` read.
pub fn global_avgpool_backward(
    d_inp: &mut [f32],
    d_out: &[f32],
    channels: usize,
    batch: usize,
    hw: usize,
) {
    assert_eq!(d_out.len(), batch * channels);
    assert_eq!(d_inp.len(), channels * batch * hw);
    if hw == 0 {
        return;
    }
    let isa = active_isa();
    let one = |(plane, d): (usize, &mut [f32])| {
        let (c, n) = (plane / batch, plane % batch);
        let v = d_out[n * channels + c] / hw as f32;
        on_tier(
            isa,
            #[inline(always)]
            || {
                for d in d.iter_mut() {
                    *d += v;
                }
            },
        );
    };
    if d_inp.len() < PAR_MIN_LEN {
        d_inp.chunks_mut(hw).enumerate().for_each(one);
    } else {
        d_inp
            .par_chunks_mut(hw)
            .enumerate()
            .with_min_len((4096 / hw).max(1))
            .for_each(one);
    }
}
