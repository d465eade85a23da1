//! Implicit im2col: the convolution's input read as the matrix
//!
//! ```text
//! col[k, m] = pre(in)[ic, n, oy·sh + ky − ph, ox·sw + kx − pw]   (0 on the padding)
//! k = (ic·KH + ky)·KW + kx,   m = (n·OH + oy)·OW + ox
//! ```
//!
//! without ever storing it: the GEMM's `B` packing asks for short runs of one row of `col` and
//! gets them straight from the input, with the per-channel map `pre` applied on the way and
//! padding written as zero after it.

use super::super::gemm::{Tile, PACK_ROWS};
use crate::dispatch::Isa;
use crate::elementwise::{affine_run, relu_value};
use crate::geom::{ChannelAffine, Conv2dGeom};
use crate::simd::on_tier;

/// The input of one convolution seen as `col[K, M]`.
pub(crate) struct Im2col<'a> {
    inp: &'a [f32],
    g: Conv2dGeom,
    pre: Option<ChannelAffine<'a>>,
    out_h: usize,
    out_w: usize,
    /// `N·H·W`: floats per input channel.
    chan_len: usize,
    /// 1×1, stride 1, no padding: `col` is the input itself.
    pointwise: bool,
}

/// Runs of `col` rows are produced through a stack buffer of this many floats when they are
/// written transposed.
const CHUNK: usize = 64;

impl<'a> Im2col<'a> {
    pub(crate) fn new(inp: &'a [f32], g: &Conv2dGeom, pre: Option<ChannelAffine<'a>>) -> Self {
        Im2col {
            inp,
            g: *g,
            pre,
            out_h: g.out_h(),
            out_w: g.out_w(),
            chan_len: g.batch * g.in_h * g.in_w,
            pointwise: is_pointwise(g),
        }
    }

    /// Rows of `col`: `IC·KH·KW`.
    pub(crate) fn rows(&self) -> usize {
        self.g.in_channels * self.g.kernel_h * self.g.kernel_w
    }

    /// Columns of `col`: `N·OH·OW`.
    pub(crate) fn cols(&self) -> usize {
        self.g.batch * self.out_h * self.out_w
    }

    /// Writes `col[k, m0 .. m0 + dst.len()]` into `dst`. Inlined always, so that
    /// [`Im2col::row_on_tier`] compiles it for the tier (called out of line, it ran in
    /// baseline code: a third of the stem's weight gradient).
    #[inline(always)]
    pub(crate) fn row(&self, k: usize, m0: usize, dst: &mut [f32]) {
        let g = &self.g;
        let ic = k / (g.kernel_h * g.kernel_w);
        let chan = &self.inp[ic * self.chan_len..(ic + 1) * self.chan_len];
        let map = ChannelMap::new(self.pre.as_ref(), ic);
        if self.pointwise {
            map.copy(dst, &chan[m0..m0 + dst.len()]);
            return;
        }
        let stride = g.stride_w;
        let len = dst.len();
        // Inlined always too: a closure the compiler kept out of line would run in baseline
        // code whatever tier `row_on_tier` compiled this for.
        self.for_each_segment(
            k,
            m0,
            len,
            #[inline(always)]
            |i, seg, row, ix0| {
                let d = &mut dst[i..i + seg];
                let Some(row) = row else {
                    d.fill(0.0);
                    return;
                };
                let src = &chan[row..row + g.in_w];
                let (lo, hi) = valid_range(ix0, stride, seg, g.in_w);
                d[..lo].fill(0.0);
                d[hi..].fill(0.0);
                if lo == hi {
                    return;
                }
                if stride == 1 {
                    let start = (ix0 + lo as isize) as usize;
                    map.copy(&mut d[lo..hi], &src[start..start + hi - lo]);
                } else {
                    // Every `stride`-th value from the first valid one. Stride 2 (the stem) as
                    // whole pairs, which vectorise as shuffles, and the last value apart.
                    let start = (ix0 + (lo * stride) as isize) as usize;
                    let (d, src) = (&mut d[lo..hi], &src[start..]);
                    let n = d.len();
                    if stride == 2 {
                        let (head, last) = d.split_at_mut(n - 1);
                        for (v, pair) in head.iter_mut().zip(src.chunks_exact(2)) {
                            *v = map.apply(pair[0]);
                        }
                        last[0] = map.apply(src[2 * (n - 1)]);
                    } else {
                        for (v, run) in d.iter_mut().zip(src.chunks(stride)) {
                            *v = map.apply(run[0]);
                        }
                    }
                }
            },
        );
    }

    /// [`Im2col::row`] compiled for the tier `isa` (the map `pre` vectorised).
    pub(crate) fn row_on_tier(&self, isa: Isa, k: usize, m0: usize, dst: &mut [f32]) {
        on_tier(
            isa,
            #[inline(always)]
            || self.row(k, m0, dst),
        );
    }

    /// Adds `src[i]` into the input position `col[k, m0 + i]` reads (skipping padding): the
    /// adjoint of [`Im2col::row`] without `pre`. `d_chan` is the gradient of input channel
    /// `k / (KH·KW)`, `N·H·W` floats.
    pub(crate) fn row_add_back(&self, k: usize, m0: usize, src: &[f32], d_chan: &mut [f32]) {
        let g = &self.g;
        let stride = g.stride_w;
        self.for_each_segment(k, m0, src.len(), |i, seg, row, ix0| {
            let Some(row) = row else { return };
            let dst = &mut d_chan[row..row + g.in_w];
            let (lo, hi) = valid_range(ix0, stride, seg, g.in_w);
            for (s, &v) in src[i + lo..i + hi].iter().enumerate() {
                let ix = (ix0 + ((lo + s) * stride) as isize) as usize;
                dst[ix] += v;
            }
        });
    }

    /// Splits `col[k, m0 .. m0 + len]` into runs within one output row and calls
    /// `f(offset in the run, run length, input row start within the channel or None on the
    /// padding rows, input column of the run's first tap (may be negative))`. Inlined always,
    /// as [`Im2col::row`] is.
    #[inline(always)]
    fn for_each_segment(
        &self,
        k: usize,
        m0: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, Option<usize>, isize),
    ) {
        let g = &self.g;
        let taps = g.kernel_h * g.kernel_w;
        let ky = (k % taps) / g.kernel_w;
        let kx = k % g.kernel_w;
        let plane = self.out_h * self.out_w;
        let mut n = m0 / plane;
        let mut oy = (m0 % plane) / self.out_w;
        let mut ox = m0 % self.out_w;
        let mut i = 0;
        while i < len {
            let seg = (self.out_w - ox).min(len - i);
            let iy = (oy * g.stride_h + ky) as isize - g.pad_h as isize;
            let row =
                (iy >= 0 && (iy as usize) < g.in_h).then(|| (n * g.in_h + iy as usize) * g.in_w);
            let ix0 = (ox * g.stride_w + kx) as isize - g.pad_w as isize;
            f(i, seg, row, ix0);
            i += seg;
            ox = 0;
            oy += 1;
            if oy == self.out_h {
                oy = 0;
                n += 1;
            }
        }
    }

    /// Packs the columns `[col0, col0 + ncols)` of `col` as the GEMM's `B` (panel layout in
    /// [`crate::gemm`]); only the panels `first_panel ..` that fit `dst` are written, so callers
    /// can hand disjoint chunks to different threads.
    pub(crate) fn pack_b(
        &self,
        isa: Isa,
        dst: &mut [f32],
        col0: usize,
        ncols: usize,
        first_panel: usize,
        t: Tile,
    ) {
        if self.pointwise {
            on_tier(
                isa,
                #[inline(always)]
                || match t.nr {
                    32 => self.pack_b_pointwise::<32>(dst, col0, ncols, first_panel),
                    16 => self.pack_b_pointwise::<16>(dst, col0, ncols, first_panel),
                    8 => self.pack_b_pointwise::<8>(dst, col0, ncols, first_panel),
                    _ => self.pack_b_rows(dst, col0, ncols, first_panel, t),
                },
            );
        } else {
            on_tier(
                isa,
                #[inline(always)]
                || self.pack_b_rows(dst, col0, ncols, first_panel, t),
            );
        }
    }

    /// [`Im2col::pack_b`] for the 1×1 case with the panel width `NR` known at compile time:
    /// a full panel row is a fixed-size map of one channel's run, with no per-row division,
    /// bounds re-checks or out-of-line `memcpy` (which dominated packing when done per row).
    #[inline(always)]
    fn pack_b_pointwise<const NR: usize>(
        &self,
        dst: &mut [f32],
        col0: usize,
        ncols: usize,
        first_panel: usize,
    ) {
        let depth = self.rows();
        let panels = (dst.len() / (depth * NR)).min(ncols.div_ceil(NR).saturating_sub(first_panel));
        // The runs are cut from the whole input, not from their channel: a range past the
        // channel would read the next one.
        debug_assert!(
            col0 + ncols <= self.chan_len,
            "pack_b: columns past the channel"
        );
        // `PACK_ROWS` channels at a time through the panels, as `gemm::pack_b_matrix` packs
        // rows: each channel's run is read front to back, and each panel gets consecutive rows.
        for ic0 in (0..depth).step_by(PACK_ROWS) {
            let group = ic0..(ic0 + PACK_ROWS).min(depth);
            let maps: [ChannelMap; PACK_ROWS] = std::array::from_fn(|i| {
                ChannelMap::new(self.pre.as_ref(), (ic0 + i).min(depth - 1))
            });
            for jj in 0..panels {
                let j = first_panel + jj;
                let w = NR.min(ncols - j * NR);
                let m0 = col0 + j * NR;
                for (ic, map) in group.clone().zip(&maps) {
                    let run = &self.inp[ic * self.chan_len + m0..][..w];
                    let lanes = &mut dst[(jj * depth + ic) * NR..][..NR];
                    if w == NR {
                        let lanes: &mut [f32; NR] =
                            lanes.try_into().expect("panel row of NR lanes");
                        let run: &[f32; NR] = run.try_into().expect("run of NR columns");
                        map.copy(lanes, run);
                    } else {
                        map.copy(&mut lanes[..w], run);
                        lanes[w..].fill(0.0);
                    }
                }
            }
        }
    }

    /// [`Im2col::pack_b`] one `col` row run at a time (any geometry). Inlined always, so that
    /// the tier's `on_tier` compiles it (and [`Im2col::row`] inside it) for that tier.
    #[inline(always)]
    fn pack_b_rows(&self, dst: &mut [f32], col0: usize, ncols: usize, first_panel: usize, t: Tile) {
        let depth = self.rows();
        for (j, panel) in dst.chunks_exact_mut(depth * t.nr).enumerate() {
            let j = first_panel + j;
            if j * t.nr >= ncols {
                break;
            }
            let w = t.nr.min(ncols - j * t.nr);
            let m0 = col0 + j * t.nr;
            for (k, lanes) in panel.chunks_exact_mut(t.nr).enumerate() {
                self.row(k, m0, &mut lanes[..w]);
                lanes[w..].fill(0.0);
            }
        }
    }

    /// Packs `colᵀ` (depth `M`, columns `k ∈ [k0, k0 + nk)`) as the GEMM's `B`, for the weight
    /// gradient `dW = d_out · colᵀ`: `dst[(j·M + m)·NR + t] = col[k0 + j·NR + t, m]`. Like
    /// [`Im2col::pack_b`], writes the panels `first_panel ..` that fit `dst`.
    pub(crate) fn pack_b_transposed(
        &self,
        isa: Isa,
        dst: &mut [f32],
        k0: usize,
        nk: usize,
        first_panel: usize,
        t: Tile,
    ) {
        on_tier(
            isa,
            #[inline(always)]
            || self.pack_b_transposed_rows(dst, k0, nk, first_panel, t),
        );
    }

    /// [`Im2col::pack_b_transposed`] one `col` row run at a time (any geometry). Inlined always,
    /// as [`Im2col::pack_b_rows`] is.
    #[inline(always)]
    fn pack_b_transposed_rows(
        &self,
        dst: &mut [f32],
        k0: usize,
        nk: usize,
        first_panel: usize,
        t: Tile,
    ) {
        let depth = self.cols();
        let mut rows = [[0.0f32; CHUNK]; 32];
        assert!(t.nr <= rows.len());
        for (j, panel) in dst.chunks_exact_mut(depth * t.nr).enumerate() {
            let j = first_panel + j;
            if j * t.nr >= nk {
                break;
            }
            let w = t.nr.min(nk - j * t.nr);
            for m0 in (0..depth).step_by(CHUNK) {
                let len = CHUNK.min(depth - m0);
                for (tt, row) in rows.iter_mut().take(w).enumerate() {
                    self.row(k0 + j * t.nr + tt, m0, &mut row[..len]);
                }
                for (i, lanes) in panel[m0 * t.nr..(m0 + len) * t.nr]
                    .chunks_exact_mut(t.nr)
                    .enumerate()
                {
                    for (lane, row) in lanes.iter_mut().zip(&rows[..w]) {
                        *lane = row[i];
                    }
                    lanes[w..].fill(0.0);
                }
            }
        }
    }
}

/// Whether `col` is the input itself (1×1 kernel, stride 1, no padding).
pub(crate) fn is_pointwise(g: &Conv2dGeom) -> bool {
    g.kernel_h == 1
        && g.kernel_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_h == 0
        && g.pad_w == 0
}

/// The run positions `s ∈ [lo, hi)` of a run of `seg` taps starting at input column `ix0` with
/// step `stride` that land inside `[0, width)`.
fn valid_range(ix0: isize, stride: usize, seg: usize, width: usize) -> (usize, usize) {
    let stride = stride as isize;
    // First s with ix0 + s·stride >= 0.
    let lo = if ix0 >= 0 {
        0
    } else {
        ((-ix0 + stride - 1) / stride) as usize
    };
    // First s with ix0 + s·stride >= width.
    let end = width as isize - ix0;
    let hi = if end <= 0 {
        0
    } else {
        ((end + stride - 1) / stride) as usize
    };
    let lo = lo.min(seg);
    (lo, hi.clamp(lo, seg))
}

/// The per-channel input map of one channel: identity, or `max(0, scale·x + shift)`.
pub(super) struct ChannelMap {
    scale: f32,
    shift: f32,
    relu: bool,
    identity: bool,
}

impl ChannelMap {
    pub(super) fn new(pre: Option<&ChannelAffine<'_>>, c: usize) -> Self {
        match pre {
            None => ChannelMap {
                scale: 1.0,
                shift: 0.0,
                relu: false,
                identity: true,
            },
            Some(p) => ChannelMap {
                scale: p.scale[c],
                shift: p.shift[c],
                relu: p.relu,
                identity: false,
            },
        }
    }

    #[inline(always)]
    pub(super) fn apply(&self, x: f32) -> f32 {
        if self.identity {
            return x;
        }
        // Multiply then add (not `mul_add`): without FMA in the baseline target a fused
        // multiply-add is a libm call per value.
        let y = self.scale * x + self.shift;
        if self.relu {
            relu_value(y)
        } else {
            y
        }
    }

    #[inline(always)]
    pub(super) fn copy(&self, dst: &mut [f32], src: &[f32]) {
        if self.identity {
            dst.copy_from_slice(src);
        } else {
            affine_run(dst, src, self.scale, self.shift, self.relu);
        }
    }
}
