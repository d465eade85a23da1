//! A bottleneck dense layer (BN-ReLU-Conv1×1, BN-ReLU-Conv3×3) run strip by strip.
//!
//! Run as whole-tensor passes, a layer is four passes, each split among the threads its own
//! way: the packing of the 1×1's input by columns, the 1×1 product by groups of output
//! channels, the padded copy of its output by channels, the 3×3 product by columns. Every pass
//! then reads data another core wrote a moment before, and on two cores at batch 1 those
//! transfers, not the arithmetic, set the pace (DenseNet-BC-100 at 32×32: the padded copy took
//! 5× and the packing 3× as long on two threads as on one).
//!
//! Here each image is cut into horizontal strips of `rows` image rows, and one task does the
//! whole layer for one strip, start to finish, in its own scratch:
//!
//! 1. `C1 = W1 · pre1(prefix)` (+ the folded `norm2` bias) over the strip's rows and one halo
//!    row above and below (the 3×3 needs them), packed and multiplied one column block at a
//!    time;
//! 2. `Q = pre2(C1)`, each block mapped as soon as it is computed, laid out as zero-padded wide
//!    rows (`w + 1` columns: one zero column between consecutive rows, the right padding of one
//!    and the left of the next; a zero row above the image's first row and below its last), the
//!    layout `conv2d`'s wide-row path uses for "same" padding;
//! 3. `C3 = W2 ⋆ Q`, `Q` read in place: as one product whose `9·bk` rows of `B` are runs of
//!    `Q`, or, on maps of 14×14 and more, by Winograd F(2×2, 3×3) (16 products of depth `bk`
//!    over 4×4 tiles of `Q`, [`Winograd3x3`]), F(4×4, 3×3) on maps of 48×48 and more (36
//!    products over 6×6 tiles; see [`uses_winograd`]);
//!
//! and then the caller copies each strip's `C3` into the layer's `k` new channels of the block
//! buffer, dropping the padding column of each row (the one step that reads another
//! core's data: `k` channels, against the `bk` of the bottleneck and the whole prefix a strip
//! reads). The price is the halo: where two strips meet, each computes the 1×1 for one row the
//! other owns.
//!
//! That is the schedule at batch 1 ([`schedule`] picks it when the plan is built): two strips
//! per image in a pool of several threads, one whole-image strip on one thread, and for maps
//! under 16 rows on several threads one whole-image strip whose two products the threads share
//! by output channels ([`StripLayer::run_by_channels`]). At batch 2 and more, [`ImageBlock`]
//! runs a whole block image by image: one task takes an image (one strip, no halo) through
//! every layer of the block while its prefix stays in the core's caches.
//!
//! Each value is the same sum in the same order whatever the strip height (with Winograd, whole
//! tile rows: even, and a multiple of 4 for F(4×4, 3×3), whose tiles then start at the same rows
//! in every strip) and whichever thread runs
//! the strip (the products sum over depth in fixed slices, and a halo row is recomputed with the
//! very operations of the strip that owns it), so results do not depend on the thread count.

use densenet_kernels::gemm::{self, AView, BView, CStore, Tile};
use densenet_kernels::winograd::{self, Variant, Winograd3x3};
use densenet_kernels::{on_tier, ChannelAffine, Isa};
use rayon::prelude::*;

use super::ops::{map_run, pack_block};

/// How a block of bottleneck layers runs in an inference plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockSchedule {
    /// Whole-tensor passes, layer by layer (no strips).
    Passes,
    /// Layer by layer, each layer strip by strip ([`StripLayer`] with `rows` image rows).
    Strips { rows: usize },
    /// Image by image ([`ImageBlock`]).
    Images,
    /// Batch 1, layer by layer, each layer as one whole-image strip whose two products are
    /// shared among the threads by output channels ([`StripLayer::run_by_channels`]).
    Channels,
}

/// Maps shorter than this many rows are not cut into strips at batch 1 (they are shared by
/// output channels instead, [`BlockSchedule::Channels`]): at 7×7 (densenet121's last block) the
/// halo rows made the block 34% slower on one thread and nothing faster on two (4.50 against
/// 3.36 ms, and 3.06 against 3.09). At 14×14 two strips of 7 rows compute 8 rows of 1×1 each
/// (a seventh more) in 112-column blocks of four 32-column panels (an eighth empty), where a
/// whole image is 196 columns: densenet121 batch 1 on two threads 31.9–32.1 → 31.2–31.4 ms with
/// its 14×14 block shared by channels (four interleaved passes). At 16×16 BC-100 stays faster
/// in strips (3.60 against 4.11–4.14 ms): its 12 new channels are one row group of the 3×3, so
/// one thread does the whole 3×3 when shared by channels; at 28×28 densenet121 gained 1% at most.
const MIN_SPLIT_ROWS: usize = 16;

/// The schedule of a block of `h`-row maps at batch `batch`, for a plan built in a pool of
/// `threads` threads: image by image at batch 2 and more; at batch 1 one whole-image strip per
/// layer on one thread, two strips per image on more, or, for maps too short to split into
/// strips, one whole-image strip whose products the threads share by output channels. Any
/// choice gives the same bits (a strip's sums do not depend on its height, image by image
/// equals layer by layer, and, with the direct 3×3s, strips equal the whole-tensor passes); it
/// only moves work between cores. The strips have an even number of rows, for Winograd's 2×2
/// tiles, and a multiple of 4 on maps of 48 rows and more, for its 4×4 ones.
///
/// The equality with the passes holds because both paths do the same arithmetic: the maps
/// before each convolution multiply then add (`map_run` here, `ChannelMap` in the kernels;
/// never a fused multiply-add), the products use the same tile (`gemm::tile_for_rows`), the
/// same depth slices and the same depth order (`(channel, ky, kx)` for the 3×3). Change one side
/// and `tests/infer.rs::a_plan_built_in_one_pool_runs_in_another` (with `norm2` unfolded and
/// Winograd off) fails.
pub(crate) fn schedule(batch: usize, h: usize, threads: usize) -> BlockSchedule {
    if batch > 1 {
        BlockSchedule::Images
    } else if threads <= 1 {
        BlockSchedule::Strips { rows: h.max(1) }
    } else if h >= MIN_SPLIT_ROWS {
        // Whole tile rows: Winograd's tiles then start at the same rows in every strip as in
        // the whole map (4 rows where F(4×4, 3×3) may run, else 2).
        let tile_rows = if h >= WINOGRAD_F4_MIN_SIDE { 4 } else { 2 };
        BlockSchedule::Strips {
            rows: h.div_ceil(2).next_multiple_of(tile_rows),
        }
    } else {
        BlockSchedule::Channels
    }
}

/// Maps with fewer rows or columns than this run their 3×3s directly, not by Winograd: on
/// smaller maps the transforms and the products' fewer tiles cost more than the 2.25× fewer
/// multiply-adds save (densenet121's 128 → 32 on one thread,
/// `cargo run --release -p densenet-kernels --example winograd_timing`, F(2×2, 3×3): 1.68×
/// as fast at 56×56, 1.53× at 28×28, 1.23× at 14×14, 0.87× at 7×7; BC-100's 48 → 12: 1.36× at
/// 32×32, 1.09× at 16×16, 0.71× at 8×8).
const WINOGRAD_MIN_SIDE: usize = 14;

/// Maps with at least this many rows and columns take F(4×4, 3×3) where its tiles fit (see [`uses_winograd`]): 4× fewer multiply-adds than the direct product, for
/// larger transforms, which pay off on the largest maps only (the same measurements, with
/// `WINOGRAD_VARIANT=4`: 2.10× as fast as the direct product at 56×56 where F(2×2, 3×3) is
/// 1.68×; 1.57× against 1.53× at 28×28, 1.11× against 1.23× at 14×14; BC-100 at 32×32 1.36×,
/// as F(2×2, 3×3)). densenet121 at batch 8 on two threads: 193–195 ms a pass against 197–203.
const WINOGRAD_F4_MIN_SIDE: usize = 48;

/// Whether a block of `h × w` maps at batch `batch` run with `schedule` takes its 3×3s by
/// Winograd, and with which tiles: on maps of at least [`WINOGRAD_MIN_SIDE`] rows and columns,
/// except at batch 1 under [`MIN_SPLIT_ROWS`] rows, and not in the whole-tensor passes (which
/// use `conv2d`'s direct convolution). F(4×4, 3×3) on maps of at least
/// [`WINOGRAD_F4_MIN_SIDE`] whose sides are multiples of 4 (its tiles read everything up to
/// whole tiles, which must then be the map or its zero padding); F(2×2, 3×3) elsewhere.
///
/// At batch 1 too (session 10): densenet121 on one thread 49.7–50.3 → 47.7–48.6 ms (four
/// interleaved passes). Session 8 had left it out because its transformed weights and blocks
/// (36 positions instead of 16) took the peak RSS past the 48 MB target, and the choice may
/// not depend on the thread count; the stem by bands and the packing scratch in the arena
/// have since made the room (see [`StripLayer::conv3`]).
///
/// Batch-1 maps under 16 rows are shared by output channels on several threads
/// ([`BlockSchedule::Channels`]), where every task would transform the whole input for its
/// share of the outputs (densenet121's 14×14 block at batch 1 on two threads: 27.5–27.8 ms a
/// pass with it direct, 28.2–29.3 with it by Winograd, and 1 MiB more peak RSS). They stay
/// direct on one thread too, so that the choice, and with it every result, does not depend on
/// the pool the plan is built in.
pub(crate) fn uses_winograd(
    schedule: BlockSchedule,
    batch: usize,
    h: usize,
    w: usize,
) -> Option<Variant> {
    let any = schedule != BlockSchedule::Passes
        && h.min(w) >= WINOGRAD_MIN_SIDE
        && (batch > 1 || h >= MIN_SPLIT_ROWS);
    let big = h.min(w) >= WINOGRAD_F4_MIN_SIDE && w.is_multiple_of(4) && h.is_multiple_of(4);
    any.then_some(if big { Variant::F4x4 } else { Variant::F2x2 })
}

/// One bottleneck dense layer on a batch of `h × w` maps, cut into strips of `rows` image rows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StripLayer {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    /// Input channels (the block prefix), bottleneck channels, new channels.
    pub c: usize,
    pub bk: usize,
    pub k: usize,
    /// Image rows per strip (the last strip of an image may have fewer; whole tile rows of
    /// `winograd`, even or a multiple of 4, when an image has several strips).
    pub rows: usize,
    /// The 3×3 as Winograd F(2×2, 3×3) or F(4×4, 3×3) ([`Winograd3x3`]) instead of the direct
    /// wide-row product, on the tiers where its transforms are vectorised
    /// ([`winograd::is_fast_on`]; [`StripLayer::winograd_on`]).
    pub winograd: Option<Variant>,
}

/// Strips one parallel region takes at most, per thread of the pool: the scratch holds that many
/// strips at once.
const STRIPS_PER_THREAD: usize = 2;

/// The widest column block of a strip's 1×1: it bounds the scratch a strip needs for the 1×1's
/// output and packed input (densenet121 at 56×56: 128 × 256 and 224 × 256 floats, against
/// 128 × 30 × 58 for the strip's padded bottleneck).
const STRIP_BLOCK_COLS: usize = 256;

/// `len` floats rounded up to whole 64-byte cache lines.
fn lines(len: usize) -> usize {
    len.div_ceil(16) * 16
}

/// The parts of one strip's scratch, each a whole number of cache lines (see
/// [`StripLayer::lens`]).
#[derive(Clone, Copy, Debug)]
struct StripLens {
    q: usize,
    c1: usize,
    work: usize,
    /// The Winograd weights of all `k` output channels (none for the direct 3×3): one copy
    /// for all the strips a call runs, outside the strips' own scratch.
    u: usize,
}

impl StripLens {
    /// One strip's own scratch.
    fn total(&self) -> usize {
        self.q + self.work
    }
}

impl StripLayer {
    fn strips_per_image(&self) -> usize {
        self.h.div_ceil(self.rows)
    }

    fn strips(&self) -> usize {
        self.batch * self.strips_per_image()
    }

    /// Strip `s`: its image and its rows `[y0, y1)`.
    fn strip(&self, s: usize) -> (usize, usize, usize) {
        let per_image = self.strips_per_image();
        let (n, i) = (s / per_image, s % per_image);
        let y0 = i * self.rows;
        (n, y0, (y0 + self.rows).min(self.h))
    }

    /// Columns of the padded wide rows: the image row and one zero column, which is the right
    /// padding of this row and the left padding of the next.
    fn wq(&self) -> usize {
        wide_row(self.w)
    }

    /// The 3×3 of a strip of `rows` image rows, as Winograd, in blocks of the kernel's default
    /// size ([`winograd::V_BLOCK_FLOATS`]) whether the map is whole or split, each strip in
    /// flight holding its own block. Session 9 had halved the blocks of split maps to keep the
    /// peak RSS under the 48 MB target (densenet121 on two threads: 0.58 MiB less arena, for
    /// 0.3–0.9 ms more per pass), and session 10's F(4×4, 3×3) at batch 1 then took one group
    /// of 16 tiles per block there (36 positions of 128 channels: not even 16 tiles fit in
    /// half). Once the stem ran by bands and the packing scratch moved into the arena (1.6 MiB
    /// less peak RSS), the default block came back: densenet121 on two threads 28.45–28.72 →
    /// 27.35–27.52 ms (block 1 8.9 → 8.1 ms, block 2 7.8 → 7.5), arena 6.39 → 7.10 MiB, peak
    /// RSS 43.9–44.0 → 44.6–44.8 MiB (three interleaved passes).
    fn conv3(&self, rows: usize) -> Winograd3x3 {
        Winograd3x3 {
            variant: self.winograd.unwrap_or(Variant::F2x2),
            ..Winograd3x3::new(self.k, self.bk, rows, self.w)
        }
    }

    /// Whether the 3×3 runs by Winograd on the tier `isa`.
    fn winograd_on(&self, isa: Isa) -> bool {
        self.winograd.is_some_and(|v| winograd::is_fast_on(isa, v))
    }

    /// How a strip of `rows` image rows holds its `C3` on the tier `isa`: floats per row and
    /// per channel (`rows` wide rows of `Q`, or the Winograd output's whole tiles). The first
    /// `w` values of each of the first `rows` rows are the outputs.
    fn c3_layout(&self, isa: Isa, rows: usize) -> (usize, usize) {
        if self.winograd_on(isa) {
            let conv = self.conv3(rows);
            (conv.out_row(), conv.out_len(1))
        } else {
            (self.wq(), rows * self.wq())
        }
    }

    /// Columns of the 1×1 per block: an L2-sized block of packed `B`
    /// ([`gemm::b_block_cols`]), at most [`STRIP_BLOCK_COLS`].
    fn block_cols(&self, cols1: usize, t: Tile) -> usize {
        gemm::b_block_cols(self.c, cols1, t).min(STRIP_BLOCK_COLS)
    }

    /// Floats of one strip's scratch on the tier `isa`: `Q`, then a work area holding one
    /// column block of the 1×1 (its output `C1` and its packed `B`) while `Q` is filled, and
    /// the 3×3's output `C3` (and the Winograd scratch) afterwards. Each part is rounded up to
    /// whole cache lines.
    fn lens(&self, isa: Isa) -> StripLens {
        let t = gemm::tile(isa);
        let rows = self.rows.min(self.h);
        let cols1 = (rows + 2).min(self.h) * self.w;
        let block = self.block_cols(cols1, t);
        // The 3×3 reads each row of `B` as a run of the strip's `cols3` columns rounded up to
        // `NR`, starting up to two rows and two columns into a channel's plane: the last
        // channel's last run ends `NR − 1 + 2` floats past the last plane at most (`NR + 1`
        // is exactly enough; one spare).
        let qplane = (rows + 2) * self.wq();
        let mut q = self.bk * qplane + t.nr + 2;
        let mut conv3 = 0;
        if self.winograd_on(isa) {
            // Winograd reads past the last plane too (up to 34 floats from its last group of
            // tiles, and for a strip of odd height the row below it), and needs its own scratch.
            q = q.max(self.conv3(rows).input_len(qplane, self.wq()));
            conv3 = self.conv3(rows).scratch_len(isa, self.k);
        }
        let c1 = lines(self.bk * block);
        let packed = lines(gemm::packed_b_len(self.c, block, t));
        let c3 = lines(self.k * self.c3_layout(isa, rows).1);
        let u = if self.winograd_on(isa) {
            lines(self.conv3(rows).weights_len(self.k))
        } else {
            0
        };
        StripLens {
            q: lines(q),
            c1,
            work: (c1 + packed).max(c3 + conv3),
            u,
        }
    }

    /// Strips per parallel region in the current pool.
    fn wave(&self) -> usize {
        (rayon::current_num_threads() * STRIPS_PER_THREAD).clamp(1, self.strips().max(1))
    }

    /// Floats of scratch for [`StripLayer::run`] to run as many strips at once as it can in the
    /// current pool, on any tier (a plan built on one tier may run capped to another). Less
    /// works too, down to one strip's worth (see [`StripLayer::run`]).
    pub fn scratch_len(&self) -> usize {
        let (per_strip, u) = Isa::ALL
            .map(|isa| {
                let lens = self.lens(isa);
                (lens.total(), lens.u)
            })
            .into_iter()
            .fold((0, 0), |(a, b), (x, y)| (a.max(x), b.max(y)));
        // 16 more for aligning the start.
        u + self.wave() * per_strip + 16
    }

    /// The layer: `slot = conv2(pre2(conv1(pre1(prefix)) + b1))`, on the tier `isa`.
    ///
    /// # Shapes
    /// - `slot`: `[k, N, H, W]`, written. `prefix`: `[c, N, H, W]`, read.
    /// - `w1`: `[bk, c]`, `b1`: `[bk]`, `pre1`: `[c]`; `w2`: `[k, bk, 3, 3]` (stride 1, padding
    ///   1), `pre2`: `[bk]`.
    /// - `scratch`: [`StripLayer::scratch_len`] floats, or at least one strip's worth and 16
    ///   floats for alignment (then fewer strips run at once).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        isa: Isa,
        slot: &mut [f32],
        prefix: &[f32],
        (w1, b1, pre1): (&[f32], Option<&[f32]>, ChannelAffine<'_>),
        (w2, pre2): (&[f32], ChannelAffine<'_>),
        scratch: &mut [f32],
    ) {
        let plane = self.h * self.w;
        let m = self.batch * plane;
        self.check_lengths(slot, prefix, w1, w2);
        assert!(
            self.winograd
                .is_none_or(|v| self.rows >= self.h || self.rows.is_multiple_of(v.m())),
            "strips: Winograd's tiles need strips of whole tile rows"
        );
        // F(4×4, 3×3)'s tiles read up to whole tiles: past a map of other sizes, into the next
        // plane.
        assert!(
            self.winograd != Some(Variant::F4x4)
                || (self.h.is_multiple_of(4) && self.w.is_multiple_of(4)),
            "strips: F(4x4, 3x3) needs maps of whole 4x4 tiles"
        );
        let lens = self.lens(isa);
        let per_strip = lens.total();
        // `per_strip` and `lens.u` are whole numbers of cache lines, so every part is aligned.
        let scratch = gemm::align64(scratch);
        assert!(scratch.len() >= lens.u, "strips: scratch shorter than U");
        let (u, scratch) = scratch.split_at_mut(lens.u);
        if self.winograd_on(isa) {
            // Once for every strip of the call.
            self.conv3(self.rows.min(self.h))
                .transform_weights(isa, (0, self.k), w2, u);
        }
        let u = &*u;
        // As many strips at once as the pool can run and the scratch holds (a plan built in a
        // smaller pool runs fewer at once in a larger one).
        let wave = self.wave().min(scratch.len() / per_strip);
        assert!(wave >= 1, "strips: scratch shorter than one strip's");
        let scratch = &mut scratch[..wave * per_strip];
        let strips = self.strips();
        for s0 in (0..strips).step_by(wave) {
            let nw = wave.min(strips - s0);
            let plane_of = |ch: usize, n: usize| &prefix[(ch * self.batch + n) * plane..][..plane];
            let task = |(i, mine): (usize, &mut [f32])| {
                self.strip_layer(isa, s0 + i, mine, &plane_of, (w1, b1, pre1), (w2, pre2), u);
            };
            if nw > 1 {
                scratch[..nw * per_strip]
                    .par_chunks_mut(per_strip)
                    .enumerate()
                    .for_each(task);
            } else {
                task((0, &mut scratch[..per_strip]));
            }
            // The strips' rows of each new channel, the columns past `w` dropped.
            for (i, mine) in scratch[..nw * per_strip].chunks(per_strip).enumerate() {
                let (n, y0, y1) = self.strip(s0 + i);
                let (row_len, per_channel) = self.c3_layout(isa, y1 - y0);
                let c3 = &mine[lens.q..][..self.k * per_channel];
                for (o, values) in c3.chunks_exact(per_channel).enumerate() {
                    let image = &mut slot[o * m + n * plane..][..plane];
                    drop_padding(
                        values,
                        row_len,
                        &mut image[y0 * self.w..y1 * self.w],
                        self.w,
                    );
                }
            }
        }
    }

    /// Panics unless the layer's tensors have the lengths its shape gives.
    fn check_lengths(&self, slot: &[f32], prefix: &[f32], w1: &[f32], w2: &[f32]) {
        let m = self.batch * self.h * self.w;
        assert_eq!(slot.len(), self.k * m, "strips: output length");
        assert_eq!(prefix.len(), self.c * m, "strips: input length");
        assert_eq!(w1.len(), self.bk * self.c, "strips: conv1 weight length");
        assert_eq!(
            w2.len(),
            self.k * self.bk * 9,
            "strips: conv2 weight length"
        );
    }

    /// Tasks [`StripLayer::run_by_channels`] splits a layer into in the current pool: one per
    /// thread, at most one per group of the 1×1's output rows.
    fn channel_tasks(&self, t: Tile) -> usize {
        rayon::current_num_threads().clamp(1, self.bk.div_ceil(t.mr).max(1))
    }

    /// Floats of scratch for [`StripLayer::run_by_channels`] in the current pool, on any tier:
    /// the whole image's `Q` and a work area per task (its packed `B` and its rows of `C1`).
    pub fn channels_scratch_len(&self) -> usize {
        let whole = StripLayer {
            rows: self.h,
            ..*self
        };
        Isa::ALL
            .map(|isa| {
                let lens = whole.lens(isa);
                lens.q + whole.channel_tasks(gemm::tile(isa)) * (lens.work + lens.u)
            })
            .into_iter()
            .max()
            .unwrap_or(0)
            + 16
    }

    /// The layer at batch 1 as one whole-image strip (the same sums as [`StripLayer::run`]),
    /// shared among the threads by output channels, for maps too short to cut into strips
    /// (densenet121's 7×7 block: 49 columns, fewer than two of the 1×1's panels per thread).
    /// Two parallel regions:
    ///
    /// 1. each task packs the whole image's `pre1(prefix)` for itself (a few tens of KB, cheaper
    ///    than a third region and a cross-core read), computes its rows of `C1` and maps them
    ///    into its channels' planes of `Q`;
    /// 2. each task computes its rows of the 3×3 from all of `Q` and copies them into the slot
    ///    (split by the tile's row groups: one task when the growth rate is a single group, as
    ///    12 is for AVX-512's 12-row tile; densenet121's 32 make four).
    ///
    /// # Shapes
    /// As [`StripLayer::run`], with `batch = 1`; `scratch`:
    /// [`StripLayer::channels_scratch_len`] floats in the pool it runs in.
    #[allow(clippy::too_many_arguments)]
    pub fn run_by_channels(
        &self,
        isa: Isa,
        slot: &mut [f32],
        prefix: &[f32],
        (w1, b1, pre1): (&[f32], Option<&[f32]>, ChannelAffine<'_>),
        (w2, pre2): (&[f32], ChannelAffine<'_>),
        scratch: &mut [f32],
    ) {
        assert_eq!(self.batch, 1, "channels: batch 1 only");
        let whole = StripLayer {
            rows: self.h,
            ..*self
        };
        let (h, w, wq) = (self.h, self.w, whole.wq());
        let m = h * w;
        self.check_lengths(slot, prefix, w1, w2);
        let t = gemm::tile(isa);
        let lens = whole.lens(isa);
        let scratch = gemm::align64(scratch);
        // Each task's work area, with its own channels' Winograd weights.
        let per_task = lens.work + lens.u;
        assert!(
            scratch.len() >= lens.q + per_task,
            "channels: scratch shorter than one task's"
        );
        // As many tasks as the pool has threads and the scratch has room for (a plan built in a
        // smaller pool runs fewer in a larger one; the sums are the same).
        let tasks = whole
            .channel_tasks(t)
            .min((scratch.len() - lens.q) / per_task);
        let (q, work) = scratch.split_at_mut(lens.q);
        let qplane = (h + 2) * wq;
        let (planes, tail) = q.split_at_mut(self.bk * qplane);
        // The 3×3 reads past the last plane (see `lens`): zeros, the bottom-right corner's padding.
        tail.fill(0.0);

        // 1. `C1` by groups of output channels, each mapped into its own planes of `Q`.
        let rows1 = self.bk.div_ceil(t.mr).div_ceil(tasks) * t.mr;
        let block = whole.block_cols(m, t);
        let conv1 = |(i, (qp, work)): (usize, (&mut [f32], &mut [f32]))| {
            let r0 = i * rows1;
            let rows = qp.len() / qplane;
            for row in qp.chunks_exact_mut(wq) {
                row[0] = 0.0;
            }
            for plane in qp.chunks_exact_mut(qplane) {
                plane[..wq].fill(0.0);
                plane[(h + 1) * wq..].fill(0.0);
            }
            let (c1, packed) = work.split_at_mut(lens.c1);
            let a1 = AView::RowMajor {
                data: &w1[r0 * self.c..],
                ld: self.c,
            };
            for col0 in (0..m).step_by(block) {
                let ncols = block.min(m - col0);
                let b = &mut packed[..gemm::packed_b_len(self.c, ncols, t)];
                let channel = |ch: usize| &prefix[ch * m..(ch + 1) * m];
                pack_block(isa, b, channel, self.c, col0, ncols, Some(pre1), t);
                let bias = b1.map(|b| &b[r0..r0 + rows]);
                let pre2 = ChannelAffine {
                    scale: &pre2.scale[r0..r0 + rows],
                    shift: &pre2.shift[r0..r0 + rows],
                    relu: pre2.relu,
                };
                conv1_block_into_q(
                    isa,
                    (a1, self.c, bias),
                    b,
                    c1,
                    pre2,
                    qp,
                    [qplane, 1, w, wq],
                    (col0, ncols),
                );
            }
        };
        planes
            .par_chunks_mut(rows1 * qplane)
            .zip(work.par_chunks_mut(per_task))
            .enumerate()
            .for_each(conv1);

        // 2. The 3×3 by groups of its output channels, from all of `Q`, into the slot.
        let q = &*q;
        let cols3 = h * wq;
        let tile3 = gemm::tile_for_rows(isa, self.k);
        let tasks3 = tasks.min(self.k.div_ceil(tile3.mr)).max(1);
        let rows3 = self.k.div_ceil(tile3.mr).div_ceil(tasks3) * tile3.mr;
        let (row_len, per_channel) = whole.c3_layout(isa, h);
        let conv2 = |(i, (out, work)): (usize, (&mut [f32], &mut [f32]))| {
            let rows = out.len() / m;
            let (c3, rest) = work.split_at_mut(lines(rows * per_channel));
            let c3 = &mut c3[..rows * per_channel];
            if self.winograd_on(isa) {
                let conv = whole.conv3(h);
                let (u, rest) = rest.split_at_mut(lines(conv.weights_len(rows)));
                conv.transform_weights(isa, (i * rows3, rows), w2, u);
                conv.forward(isa, (u, rows), q, [qplane, wq], c3, rest);
            } else {
                let geometry = [qplane, wq, cols3];
                conv3_from_q(isa, self.k, (i * rows3, rows), w2, self.bk, q, geometry, c3);
            }
            for (values, image) in c3.chunks_exact(per_channel).zip(out.chunks_exact_mut(m)) {
                drop_padding(values, row_len, image, w);
            }
        };
        slot.par_chunks_mut(rows3 * m)
            .zip(work.par_chunks_mut(per_task))
            .enumerate()
            .for_each(conv2);
    }

    /// Strip `s`, in `scratch`: `[Q | work]`, the work area holding `C1` and the packed `B` of
    /// one column block of the 1×1, then `C3` (see [`StripLayer::lens`]).
    ///
    /// `plane(ch, n)` is input channel `ch` of image `n`: its `h·w` values. With Winograd, `u`
    /// is the 3×3's transformed weights (`w2` is then unused).
    #[allow(clippy::too_many_arguments)]
    fn strip_layer<'a>(
        &self,
        isa: Isa,
        s: usize,
        scratch: &mut [f32],
        plane: &(dyn Fn(usize, usize) -> &'a [f32] + Sync),
        (w1, b1, pre1): (&[f32], Option<&[f32]>, ChannelAffine<'_>),
        (w2, pre2): (&[f32], ChannelAffine<'_>),
        u: &[f32],
    ) {
        let t = gemm::tile(isa);
        let lens = self.lens(isa);
        let (q, work) = scratch.split_at_mut(lens.q);
        let (c1, packed) = work.split_at_mut(lens.c1);
        let (n, y0, y1) = self.strip(s);
        let (ya, yb) = (y0.saturating_sub(1), (y1 + 1).min(self.h));
        let (w, wq) = (self.w, self.wq());

        // `Q`: padded row `r` of a channel is image row `y0 + r − 1`; its first and last
        // columns, and the rows outside the image, are zero. The 1×1 fills the rest.
        let qplane = (y1 - y0 + 2) * wq;
        let (planes, tail) = q.split_at_mut(self.bk * qplane);
        tail.fill(0.0);
        for qp in planes.chunks_exact_mut(qplane) {
            for (r, row) in qp.chunks_exact_mut(wq).enumerate() {
                if (y0 + r).checked_sub(1).is_some_and(|y| y < self.h) {
                    row[0] = 0.0;
                } else {
                    row.fill(0.0);
                }
            }
        }

        // 1. The 1×1 over rows `ya..yb` (a contiguous run of columns of every prefix channel),
        //    one L2-sized block of columns at a time; 2. each block, mapped by `pre2`, into `Q`.
        let cols1 = (yb - ya) * w;
        let first_col = ya * w;
        let block = self.block_cols(cols1, t);
        let a1 = AView::RowMajor {
            data: w1,
            ld: self.c,
        };
        for col0 in (0..cols1).step_by(block) {
            let ncols = block.min(cols1 - col0);
            let b = &mut packed[..gemm::packed_b_len(self.c, ncols, t)];
            let channel = |ch: usize| plane(ch, n);
            pack_block(
                isa,
                b,
                channel,
                self.c,
                first_col + col0,
                ncols,
                Some(pre1),
                t,
            );
            // Column `col0 + j` of the block is image row `ya + (col0 + j) / w`: padded row
            // `ya − y0 + 1 + (col0 + j) / w` of `Q`.
            conv1_block_into_q(
                isa,
                (a1, self.c, b1),
                b,
                c1,
                pre2,
                planes,
                [qplane, ya + 1 - y0, w, wq],
                (col0, ncols),
            );
        }

        // 3. The 3×3 by Winograd's tiles, both read from `Q` in place,
        if self.winograd_on(isa) {
            let conv = self.conv3(y1 - y0);
            let (c3, rest) = work.split_at_mut(lines(self.k * conv.out_len(1)));
            conv.forward(isa, (u, self.k), q, [qplane, wq], c3, rest);
            return;
        }
        //    or as wide rows: output `(oy, ox)` of the strip is column `oy·(w+1) + ox`, and row
        //    `(ch, ky, kx)` of `B` is `Q` read from `ch·qplane + ky·(w+1) + kx` on.
        let cols3 = (y1 - y0) * wq;
        let c3 = &mut work[..self.k * cols3];
        conv3_from_q(
            isa,
            self.k,
            (0, self.k),
            w2,
            self.bk,
            q,
            [qplane, wq, cols3],
            c3,
        );
    }
}

/// Rows `row0 .. row0 + rows` of a layer's 3×3 (`k` new channels, `bk` input channels) over the
/// padded bottleneck `Q` as wide rows, into `c3` (`rows × cols3`): output `(oy, ox)` is column
/// `oy·wq + ox`, and row `(ch, ky, kx)` of `B` is `Q` read from `ch·qplane + ky·wq + kx` on.
/// `row0` starts a row group of the tile `gemm::tile_for_rows` gives for `k`.
#[allow(clippy::too_many_arguments)]
fn conv3_from_q(
    isa: Isa,
    k: usize,
    (row0, rows): (usize, usize),
    w2: &[f32],
    bk: usize,
    q: &[f32],
    [qplane, wq, cols3]: [usize; 3],
    c3: &mut [f32],
) {
    let depth3 = bk * 9;
    let row_start = |d: usize| (d / 9) * qplane + (d % 9 / 3) * wq + d % 3;
    gemm::gemm_block_with(
        isa,
        gemm::tile_for_rows(isa, k),
        row0,
        rows,
        cols3,
        depth3,
        AView::RowMajor {
            data: w2,
            ld: depth3,
        },
        BView::Rows {
            data: q,
            row_start: &row_start,
        },
        c3,
        cols3,
        CStore::Write,
    );
}

/// One column block of a layer's 1×1 into `Q`: `C1 = W1 · B` (`B` the block's packed, mapped
/// input, `depth` deep) plus `bias`, for the channels whose padded planes `planes` holds (`qplane`
/// floats each, `a1`'s rows and `pre2`'s entries in the same order), each row mapped by `pre2`
/// into its plane. Block column `j` is image column `(col0 + j) % w` of padded row
/// `first_row + (col0 + j) / w`, at column offset 1 of rows `wq` wide.
#[allow(clippy::too_many_arguments)]
fn conv1_block_into_q(
    isa: Isa,
    (a1, depth, bias): (AView<'_>, usize, Option<&[f32]>),
    b: &[f32],
    c1: &mut [f32],
    pre2: ChannelAffine<'_>,
    planes: &mut [f32],
    [qplane, first_row, w, wq]: [usize; 4],
    (col0, ncols): (usize, usize),
) {
    let rows = planes.len() / qplane;
    let c1 = &mut c1[..rows * ncols];
    let store = match bias {
        Some(bias) => {
            for (row, &v) in c1.chunks_exact_mut(ncols).zip(bias) {
                row.fill(v);
            }
            CStore::Add
        }
        None => CStore::Write,
    };
    gemm::gemm_packed(isa, rows, ncols, depth, a1, b, c1, ncols, store, false);
    // Compiled for the tier: this map is 2% of a densenet121 pass at batch 1.
    on_tier(
        isa,
        #[inline(always)]
        || map_into_q(c1, ncols, pre2, planes, [qplane, first_row, w, wq], col0),
    );
}

/// Each row of `c1` (`ncols` values of one channel) mapped by its channel's `pre2` into that
/// channel's plane of `planes`, block column `j` at image column `(col0 + j) % w` of padded row
/// `first_row + (col0 + j) / w`.
#[inline(always)]
fn map_into_q(
    c1: &[f32],
    ncols: usize,
    pre2: ChannelAffine<'_>,
    planes: &mut [f32],
    [qplane, first_row, w, wq]: [usize; 4],
    col0: usize,
) {
    for (ch, (values, qp)) in c1
        .chunks_exact(ncols)
        .zip(planes.chunks_exact_mut(qplane))
        .enumerate()
    {
        let (scale, shift) = (pre2.scale[ch], pre2.shift[ch]);
        // The first run starts mid-row; every later one at column 0 of the next row.
        let (mut j, mut at, mut x) = (0, (first_row + col0 / w) * wq + 1, col0 % w);
        while j < ncols {
            let run = (w - x).min(ncols - j);
            map_run(
                &mut qp[at + x..at + x + run],
                &values[j..j + run],
                scale,
                shift,
                pre2.relu,
            );
            (j, at, x) = (j + run, at + wq, 0);
        }
    }
}

/// Columns of a wide row of `Q` for maps `w` wide: the row and one zero column. Padded row `r`
/// of a plane starts at `r·(w + 1)` with its zero column, and image column `x` is at
/// `r·(w + 1) + 1 + x`, so the column after a row's last value is the next row's zero column:
/// each padding column serves as the right padding of one row and the left of the next. A
/// 3×3 output `(oy, ox)` at wide column `oy·(w + 1) + ox` then reads its taps at `ky·(w + 1) +
/// kx` further on, and one wide column per row (`ox = w`) is computed and dropped, where
/// `w + 2` wide rows computed two (as `conv2d`'s wide rows did before they shared theirs).
/// densenet121 at batch 1 on one thread: 56·57 columns in 100 panels of 32 for the 56×56 map
/// (56·58 took 102), 28·29 in 26 (28·30 took 27), 14·15 in 7 (as 14·16).
fn wide_row(w: usize) -> usize {
    w + 1
}

/// Rows of `wq` wide columns (`values`) into rows of `w` (`dst`), the columns past `w` dropped.
fn drop_padding(values: &[f32], wq: usize, dst: &mut [f32], w: usize) {
    for (row, out) in values.chunks_exact(wq).zip(dst.chunks_exact_mut(w)) {
        out.copy_from_slice(&row[..w]);
    }
}

/// One layer's weights as [`StripLayer::run`] takes them: `(w1, b1, pre1)` and `(w2, pre2)`.
pub(crate) type LayerWeights<'a> = (
    (&'a [f32], Option<&'a [f32]>, ChannelAffine<'a>),
    (&'a [f32], ChannelAffine<'a>),
);

/// A dense block of bottleneck layers run image by image: one task takes an image through every
/// layer of the block, each layer as a [`StripLayer`] strip of the whole image, before the next
/// image.
///
/// Layer by layer, each layer reads the whole block prefix of every image: at batch 64 (BC-100's
/// first block: up to 204 channels × 64 × 32 × 32 floats, 53 MB) that is a pass over memory
/// per layer. Image by image, an image's prefix (0.8 MB there) stays in its core's caches from
/// one layer to the next. The image's new channels are kept in the task's own scratch (the
/// layers read them from there) and copied into the block buffer once the block is done.
/// An image is one strip, so no halo is computed twice; the sums are those of [`StripLayer`],
/// so results equal the layer-by-layer schedule's bit for bit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ImageBlock {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    /// Channels entering the block, growth rate, bottleneck channels, layers.
    pub k0: usize,
    pub k: usize,
    pub bk: usize,
    pub layers: usize,
    /// The layers' 3×3s as Winograd (see [`StripLayer::winograd`]).
    pub winograd: Option<Variant>,
}

impl ImageBlock {
    fn layer(&self, l: usize) -> StripLayer {
        StripLayer {
            batch: self.batch,
            h: self.h,
            w: self.w,
            c: self.k0 + l * self.k,
            bk: self.bk,
            k: self.k,
            rows: self.h,
            winograd: self.winograd,
        }
    }

    /// Floats of an image's new channels.
    fn own_len(&self) -> usize {
        lines(self.layers * self.k * self.h * self.w)
    }

    /// Floats of the Winograd weights of one layer (the same for every layer of the block).
    fn u_len(&self) -> usize {
        Isa::ALL
            .map(|isa| self.layer(0).lens(isa).u)
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// Floats of one image's scratch: its new channels, a layer's Winograd weights, then one
    /// strip's scratch for the widest layer on any tier.
    fn per_image(&self) -> usize {
        let strip = (0..self.layers)
            .flat_map(|l| Isa::ALL.map(|isa| self.layer(l).lens(isa).total()))
            .max()
            .unwrap_or(0);
        self.own_len() + self.u_len() + strip
    }

    /// Images per parallel region in the current pool.
    fn wave(&self) -> usize {
        rayon::current_num_threads().clamp(1, self.batch.max(1))
    }

    /// Floats of scratch for [`ImageBlock::run`] in the current pool; at least one image's
    /// worth (and 16 for alignment) works, running one image at a time.
    pub fn scratch_len(&self) -> usize {
        self.wave() * self.per_image() + 16
    }

    /// The block's layers on every image: `tail` (the `layers·k` channels the block adds)
    /// from `head` (the `k0` channels it starts with), layer `l` with the weights `weights(l)`.
    ///
    /// # Shapes
    /// - `head`: `[k0, N, H, W]`, read. `tail`: `[layers·k, N, H, W]`, written.
    /// - `scratch`: see [`ImageBlock::scratch_len`].
    pub fn run<'w>(
        &self,
        isa: Isa,
        head: &[f32],
        tail: &mut [f32],
        weights: &(dyn Fn(usize) -> LayerWeights<'w> + Sync),
        scratch: &mut [f32],
    ) {
        let (hw, w) = (self.h * self.w, self.w);
        let m = self.batch * hw;
        assert_eq!(head.len(), self.k0 * m, "image block: input length");
        for l in 0..self.layers {
            let ((w1, _, _), (w2, _)) = weights(l);
            let c = self.k0 + l * self.k;
            assert_eq!(w1.len(), self.bk * c, "image block: conv1 weight length");
            assert_eq!(
                w2.len(),
                self.k * self.bk * 9,
                "image block: conv2 weight length"
            );
        }
        assert_eq!(
            tail.len(),
            self.layers * self.k * m,
            "image block: output length"
        );
        let per_image = self.per_image();
        let own_len = self.own_len();
        let scratch = gemm::align64(scratch);
        let wave = self.wave().min(scratch.len() / per_image);
        assert!(wave >= 1, "image block: scratch shorter than one image's");
        for n0 in (0..self.batch).step_by(wave) {
            let nw = wave.min(self.batch - n0);
            let task = |(i, mine): (usize, &mut [f32])| {
                let n = n0 + i;
                let (own, rest) = mine.split_at_mut(own_len);
                let (u, strip) = rest.split_at_mut(self.u_len());
                for l in 0..self.layers {
                    let layer = self.layer(l);
                    {
                        let own = &*own;
                        let plane = |ch: usize, n: usize| {
                            if ch < self.k0 {
                                &head[(ch * self.batch + n) * hw..][..hw]
                            } else {
                                &own[(ch - self.k0) * hw..][..hw]
                            }
                        };
                        let (first, second) = weights(l);
                        if layer.winograd_on(isa) {
                            layer
                                .conv3(self.h)
                                .transform_weights(isa, (0, self.k), second.0, u);
                        }
                        layer.strip_layer(isa, n, strip, &plane, first, second, u);
                    }
                    // `C3` into the image's channels `k0 + l·k ..`, the columns past `w` dropped.
                    let c3_at = layer.lens(isa).q;
                    let (row_len, per_channel) = layer.c3_layout(isa, self.h);
                    let c3 = &strip[c3_at..][..self.k * per_channel];
                    let new = &mut own[l * self.k * hw..][..self.k * hw];
                    for (values, dst) in c3.chunks_exact(per_channel).zip(new.chunks_exact_mut(hw))
                    {
                        drop_padding(values, row_len, dst, w);
                    }
                }
            };
            let wave_scratch = &mut scratch[..nw * per_image];
            if nw > 1 {
                wave_scratch
                    .par_chunks_mut(per_image)
                    .enumerate()
                    .for_each(task);
            } else {
                task((0, wave_scratch));
            }
            // Each new channel's rows of these images into the block buffer.
            let done = &*wave_scratch;
            let store = |(ch, row): (usize, &mut [f32])| {
                for i in 0..nw {
                    let src = &done[i * per_image + ch * hw..][..hw];
                    row[(n0 + i) * hw..][..hw].copy_from_slice(src);
                }
            };
            if nw > 1 {
                tail.par_chunks_mut(m).enumerate().for_each(store);
            } else {
                tail.chunks_mut(m).enumerate().for_each(store);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use densenet_kernels::reference::conv2d_forward;
    use densenet_kernels::Conv2dGeom;

    /// Values in [-1, 1) from a seed.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::init::Rng::new(seed);
        (0..len).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
    }

    /// `y = max(0, scale·x + shift)` per channel of a `[C, M]` tensor.
    fn map(x: &[f32], scale: &[f32], shift: &[f32], m: usize) -> Vec<f32> {
        x.chunks_exact(m)
            .zip(scale.iter().zip(shift))
            .flat_map(|(run, (&s, &t))| run.iter().map(move |&v| (s * v + t).max(0.0)))
            .collect()
    }

    /// The layer by the reference kernels on whole tensors.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        l: &StripLayer,
        prefix: &[f32],
        w1: &[f32],
        b1: Option<&[f32]>,
        (s1, t1): (&[f32], &[f32]),
        w2: &[f32],
        (s2, t2): (&[f32], &[f32]),
    ) -> Vec<f32> {
        let m = l.batch * l.h * l.w;
        let geom = |ic, oc, k, p| Conv2dGeom::square(l.batch, ic, oc, l.h, l.w, k, 1, p);
        let mut z = vec![0.0; l.bk * m];
        conv2d_forward(
            &mut z,
            &map(prefix, s1, t1, m),
            w1,
            b1,
            &geom(l.c, l.bk, 1, 0),
        );
        let mut out = vec![0.0; l.k * m];
        conv2d_forward(
            &mut out,
            &map(&z, s2, t2, m),
            w2,
            None,
            &geom(l.bk, l.k, 3, 1),
        );
        out
    }

    /// The schedule rule, case by case.
    #[test]
    fn schedules() {
        use BlockSchedule::*;
        assert_eq!(schedule(2, 56, 2), Images);
        assert_eq!(schedule(64, 8, 1), Images);
        assert_eq!(schedule(1, 56, 1), Strips { rows: 56 });
        assert_eq!(schedule(1, 7, 1), Strips { rows: 7 });
        assert_eq!(schedule(1, 56, 2), Strips { rows: 28 });
        // Whole 4-row tiles of F(4×4, 3×3) from 48 rows on.
        assert_eq!(schedule(1, 52, 2), Strips { rows: 28 });
        assert_eq!(schedule(1, 44, 2), Strips { rows: 22 });
        assert_eq!(schedule(1, 17, 4), Strips { rows: 10 });
        assert_eq!(schedule(1, 18, 2), Strips { rows: 10 });
        assert_eq!(schedule(1, 16, 2), Strips { rows: 8 });
        assert_eq!(schedule(1, 15, 2), Channels);
        assert_eq!(schedule(1, 14, 2), Channels);
        assert_eq!(schedule(1, 7, 2), Channels);
        assert_eq!(schedule(1, 1, 3), Channels);
    }

    /// The Winograd rule, case by case: F(4×4, 3×3) on maps of 48 and more in whole tiles of 4
    /// at any batch, F(2×2, 3×3) on the other maps of 14 and more, none where the map is
    /// shared by channels or run by whole-tensor passes.
    #[test]
    fn winograd_variants() {
        use BlockSchedule::*;
        let (f2, f4) = (Some(Variant::F2x2), Some(Variant::F4x4));
        assert_eq!(uses_winograd(Strips { rows: 28 }, 1, 56, 56), f4);
        assert_eq!(uses_winograd(Strips { rows: 56 }, 1, 56, 56), f4);
        assert_eq!(uses_winograd(Images, 8, 56, 56), f4);
        assert_eq!(uses_winograd(Strips { rows: 28 }, 1, 52, 54), f2);
        assert_eq!(uses_winograd(Strips { rows: 28 }, 1, 50, 52), f2);
        assert_eq!(uses_winograd(Strips { rows: 14 }, 1, 28, 28), f2);
        assert_eq!(uses_winograd(Strips { rows: 8 }, 1, 16, 16), f2);
        assert_eq!(uses_winograd(Images, 8, 14, 14), f2);
        assert_eq!(uses_winograd(Channels, 1, 14, 14), None);
        assert_eq!(uses_winograd(Images, 8, 7, 7), None);
        assert_eq!(uses_winograd(Passes, 1, 56, 56), None);
    }

    /// Every strip height gives the same bits, and those match the reference within rounding,
    /// on maps down to one row or one column, with and without the 1×1's bias, with the 1×1's
    /// column blocks ending inside an image row, on every tier the CPU has; with the direct
    /// 3×3 and with Winograd's: F(2×2, 3×3) on every even strip height (odd maps: a last strip
    /// of odd height), F(4×4, 3×3) on maps of whole tiles of 4 and strip heights multiples of 4.
    #[test]
    fn any_strip_height_gives_the_same_bits_and_matches_the_reference() {
        for isa in Isa::ALL.into_iter().filter(|t| t.is_supported()) {
            check_every_strip_height(isa, None);
            check_every_strip_height(isa, Some(Variant::F2x2));
            check_every_strip_height(isa, Some(Variant::F4x4));
        }
    }

    fn check_every_strip_height(isa: Isa, winograd: Option<Variant>) {
        for (case, &(batch, h, w, c, bk, k, bias)) in [
            (1, 7, 5, 5, 8, 3, true),
            (1, 1, 9, 3, 4, 2, false),
            (2, 6, 1, 4, 12, 12, true),
            (3, 4, 4, 37, 16, 5, true),
            (1, 16, 16, 40, 48, 12, true),
            // 300 input channels: 1×1 column blocks of 256, ending inside rows of 30.
            (1, 20, 30, 300, 16, 4, false),
            // One-row strips of 33 wide columns: 1 past a multiple of 16 and of 32, so the
            // cache-line rounding of `Q` adds nothing to its slack.
            (1, 3, 32, 5, 16, 4, true),
            // densenet121's last block, cut down: 7×7, 128 bottleneck and 32 new channels, a
            // bottleneck that is not whole row groups (20 = 8 + 8 + 4).
            (1, 7, 7, 70, 128, 32, true),
            // Whole tiles of 4 for F(4×4, 3×3), 12 new channels.
            (1, 8, 12, 24, 20, 12, true),
            // A wide bottleneck (120) in F(4×4, 3×3)'s 36 positions: 30 tiles fit the block,
            // which takes one panel of them.
            (1, 12, 8, 16, 120, 4, true),
            (1, 5, 6, 33, 20, 12, false),
        ]
        .iter()
        .enumerate()
        {
            let seed = case as u64 * 10;
            let m = batch * h * w;
            let prefix = values(c * m, seed);
            let w1 = values(bk * c, seed + 1);
            let b1 = values(bk, seed + 2);
            let w2 = values(k * bk * 9, seed + 3);
            let (s1, t1) = (values(c, seed + 4), values(c, seed + 5));
            let (s2, t2) = (values(bk, seed + 6), values(bk, seed + 7));
            let b1 = bias.then_some(&b1[..]);
            let mut first: Option<Vec<f32>> = None;
            // F(4×4, 3×3) reads whole tiles: maps of whole tiles of 4 only.
            if winograd == Some(Variant::F4x4) && (h % 4 != 0 || w % 4 != 0) {
                continue;
            }
            // Winograd's tiles need strips of whole tile rows (or one strip per image).
            let whole = |r: usize| winograd.is_none_or(|v| r.is_multiple_of(v.m())) || r >= h;
            for rows in (1..=h + 1).filter(|&r| whole(r)) {
                let l = StripLayer {
                    batch,
                    h,
                    w,
                    c,
                    bk,
                    k,
                    rows,
                    winograd,
                };
                let mut slot = vec![f32::NAN; k * m];
                // Every other height gets only one strip's worth: the strips then run one at
                // a time.
                let len = if rows % 4 < 2 {
                    let lens = l.lens(isa);
                    lens.u + lens.total() + 16
                } else {
                    l.scratch_len()
                };
                let mut scratch = vec![f32::NAN; len];
                let pre1 = ChannelAffine {
                    scale: &s1,
                    shift: &t1,
                    relu: true,
                };
                let pre2 = ChannelAffine {
                    scale: &s2,
                    shift: &t2,
                    relu: true,
                };
                l.run(
                    isa,
                    &mut slot,
                    &prefix,
                    (&w1, b1, pre1),
                    (&w2, pre2),
                    &mut scratch,
                );
                match &first {
                    None => {
                        let want = reference(&l, &prefix, &w1, b1, (&s1, &t1), &w2, (&s2, &t2));
                        let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
                        for (i, (g, r)) in slot.iter().zip(&want).enumerate() {
                            assert!(
                                (g - r).abs() <= 1e-5 * scale,
                                "{isa}, case {case}, rows {rows}, Winograd {winograd:?}: value {i} \
                                 is {g}, the reference {r}"
                            );
                        }
                        first = Some(slot);
                    }
                    Some(first) => {
                        let same = first
                            .iter()
                            .zip(&slot)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{isa}, case {case}, Winograd {winograd:?}: strips of {rows} rows \
                             change the bits"
                        );
                    }
                }
            }
            if batch > 1 {
                continue;
            }
            // Shared by output channels: the same bits on pools of 1–4 threads, with the
            // pool's scratch or one task's worth.
            let first = first.expect("at least one strip height ran");
            let l = StripLayer {
                batch,
                h,
                w,
                c,
                bk,
                k,
                rows: h,
                winograd,
            };
            for threads in 1..=4 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                for one_task in [false, true] {
                    let slot = pool.install(|| {
                        let len = if one_task {
                            let lens = l.lens(isa);
                            lens.q + lens.work + lens.u + 16
                        } else {
                            l.channels_scratch_len()
                        };
                        let mut scratch = vec![f32::NAN; len];
                        let mut slot = vec![f32::NAN; k * m];
                        let pre1 = ChannelAffine {
                            scale: &s1,
                            shift: &t1,
                            relu: true,
                        };
                        let pre2 = ChannelAffine {
                            scale: &s2,
                            shift: &t2,
                            relu: true,
                        };
                        l.run_by_channels(
                            isa,
                            &mut slot,
                            &prefix,
                            (&w1, b1, pre1),
                            (&w2, pre2),
                            &mut scratch,
                        );
                        slot
                    });
                    let same = first
                        .iter()
                        .zip(&slot)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{isa}, case {case}, Winograd {winograd:?}: by channels on {threads} \
                         threads (one task's scratch: {one_task}) changes the bits"
                    );
                }
            }
        }
    }

    /// Image by image equals layer by layer bit for bit, whatever the scratch holds (one image
    /// at a time, or the pool's wave, including a partial last wave), on pools of 1–3 threads
    /// and every tier: batches of 3 and 5, maps down to one column, 12 new channels (AVX-512's
    /// 12-row tile), with and without the 1×1's bias, with the direct 3×3 and Winograd's.
    #[test]
    fn image_by_image_equals_layer_by_layer() {
        for &(batch, h, w, k0, k, bk, layers, bias) in &[
            (3, 5, 7, 6, 4, 16, 3, true),
            (5, 4, 1, 5, 12, 20, 2, false),
            (2, 1, 6, 3, 2, 4, 2, true),
            (3, 8, 4, 5, 12, 16, 2, true),
        ] {
            for threads in 1..=3 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let whole_fours = h % 4 == 0 && w % 4 == 0;
                let variants = [None, Some(Variant::F2x2), Some(Variant::F4x4)];
                for winograd in variants
                    .into_iter()
                    .filter(|&v| v != Some(Variant::F4x4) || whole_fours)
                {
                    pool.install(|| {
                        check_image_block(batch, h, w, k0, k, bk, layers, bias, winograd)
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_image_block(
        batch: usize,
        h: usize,
        w: usize,
        k0: usize,
        k: usize,
        bk: usize,
        layers: usize,
        bias: bool,
        winograd: Option<Variant>,
    ) {
        let m = batch * h * w;
        let params: Vec<_> = (0..layers)
            .map(|l| {
                let c = k0 + l * k;
                let seed = 100 + 10 * l as u64;
                (
                    values(bk * c, seed),
                    values(bk, seed + 1),
                    (values(c, seed + 2), values(c, seed + 3)),
                    values(k * bk * 9, seed + 4),
                    (values(bk, seed + 5), values(bk, seed + 6)),
                )
            })
            .collect();
        let weights = |l: usize| -> LayerWeights<'_> {
            let (w1, b1, (s1, t1), w2, (s2, t2)) = &params[l];
            let c = k0 + l * k;
            let pre1 = ChannelAffine {
                scale: &s1[..c],
                shift: &t1[..c],
                relu: true,
            };
            let pre2 = ChannelAffine {
                scale: &s2[..],
                shift: &t2[..],
                relu: true,
            };
            ((&w1[..], bias.then_some(&b1[..]), pre1), (&w2[..], pre2))
        };
        let head = values(k0 * m, 7);
        for isa in Isa::ALL.into_iter().filter(|t| t.is_supported()) {
            // Layer by layer, strips of two rows.
            let mut feats = head.clone();
            feats.resize((k0 + layers * k) * m, f32::NAN);
            for l in 0..layers {
                let c = k0 + l * k;
                let layer = StripLayer {
                    batch,
                    h,
                    w,
                    c,
                    bk,
                    k,
                    rows: winograd.map_or(2, |v| v.m()),
                    winograd,
                };
                let (prefix, rest) = feats.split_at_mut(c * m);
                let mut scratch = vec![f32::NAN; layer.scratch_len()];
                let (first, second) = weights(l);
                layer.run(isa, &mut rest[..k * m], prefix, first, second, &mut scratch);
            }
            let block = ImageBlock {
                batch,
                h,
                w,
                k0,
                k,
                bk,
                layers,
                winograd,
            };
            for len in [block.scratch_len(), block.per_image() + 16] {
                let mut tail = vec![f32::NAN; layers * k * m];
                let mut scratch = vec![f32::NAN; len];
                block.run(isa, &head, &mut tail, &weights, &mut scratch);
                let same = feats[k0 * m..]
                    .iter()
                    .zip(&tail)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{isa}, batch {batch}, {h}x{w}, scratch {len}, Winograd {winograd:?}: image by \
                     image differs"
                );
            }
        }
    }
}
