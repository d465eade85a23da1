//! A 3×3, stride-1 convolution by Winograd's minimal filtering, F(2×2, 3×3) and F(4×4, 3×3)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), over one map:
//! the inference plan calls it per strip or image, training per image of a batch through
//! [`crate::conv2d::conv2d_forward_winograd`] (and, with the flipped weight, for input
//! gradients). The algorithm below is F(2×2, 3×3)'s; F(4×4, 3×3) ([`Variant::F4x4`],
//! `f4.rs`) is the same with 6×6 input tiles, 4×4 output tiles and 36 products.
//!
//! # The algorithm
//!
//! In one dimension, two outputs of a 3-tap filter `g` over four inputs `d`,
//! `y0 = d0·g0 + d1·g1 + d2·g2` and `y1 = d1·g0 + d2·g1 + d3·g2`, take four multiplications
//! instead of six:
//!
//! ```text
//! m0 = (d0 − d2)·g0            m1 = (d1 + d2)·(g0 + g1 + g2)/2
//! m3 = (d1 − d3)·g2            m2 = (d2 − d1)·(g0 − g1 + g2)/2
//! y0 = m0 + m1 + m2            y1 = m1 − m2 − m3
//! ```
//!
//! that is `y = Aᵀ[(G·g) ⊙ (Bᵀ·d)]` with
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0  1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! Nested, the same matrices give a 2×2 output tile of a 3×3 filter from a 4×4 input tile `D`
//! in 16 multiplications instead of 36: `Y = Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·D·B)]·A`. Over `C` input
//! channels the products sum channel by channel before the output transform (it is linear), so
//! a convolution with `K` outputs becomes, for each of the 16 positions `ξ` of the 4×4
//! transformed tile, one matrix product
//!
//! ```text
//! M_ξ[K, tiles] = U_ξ[K, C] · V_ξ[C, tiles],   U = G·g·Gᵀ (weights),   V = Bᵀ·D·B (input)
//! ```
//!
//! of depth `C`, where the direct convolution is one product of depth `9·C`: 16·C against
//! 4·9·C = 36·C multiply-adds per tile of four outputs, 2.25× fewer. The transforms are
//! additions only (and halvings, exact in binary), a few percent of the products' time.
//!
//! # Accuracy
//!
//! The products see transformed values instead of the inputs, so each output is a different
//! sum of roundings than the direct convolution's: on DenseNet's 3×3s, the outputs differ by a
//! few units in the last place of the largest term (the tests bound it relative to
//! `Σ|w|·|x|`), and a whole densenet121 forward's logits within 1e-5 of the direct one's.
//! F(2×2, 3×3) is the variant with the smallest error (under 1e-7 of `Σ|w|·|x|` on
//! densenet121's 128 → 32); F(4×4, 3×3) saves more multiplications with transforms whose
//! coefficients grow to 5 and 1/24, and its errors with them (about 2e-6 there).
//!
//! # Layout
//!
//! The input is read in place from zero-padded planes in the wide-row layout of
//! `conv2d`'s stride-1 path and the inference strips: padded row `r` of channel `ch` starts at
//! `ch·plane + r·row`, and holds the left padding zero at column 0 and image column `x` at
//! `1 + x`. Tile `(ty, tx)` (outputs `2ty..2ty+2 × 2tx..2tx+2`) reads padded rows `2ty..2ty+4`
//! and columns `2tx..2tx+4`. Each channel's `U_ξ` rows and `V_ξ` rows are contiguous, so the
//! products read both in place (`AView::RowMajor`, `BView::Rows`), with no packing.

mod f2;
mod f4;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_64_avx512;

use crate::dispatch::Isa;
use crate::gemm::{self, AView, BView, CStore};

/// Whether `variant`'s transforms are vectorised on the tier `isa`: both on AVX-512,
/// F(2×2, 3×3) on AVX2. Elsewhere they run one tile at a time, and the whole convolution is
/// slower than the direct product (with scalar transforms on the AVX2 tier, 128 → 32 at 56×56
/// ran 0.70× as fast, at 28×28 0.43×), so callers choosing between the two take the direct one
/// there. Every tier computes the same transforms.
pub fn is_fast_on(isa: Isa, variant: Variant) -> bool {
    match isa {
        Isa::Avx512 => true,
        Isa::Avx2 => variant == Variant::F2x2,
        Isa::Portable => false,
    }
}

/// Positions of a transformed 4×4 tile of F(2×2, 3×3): the number of products.
pub const POSITIONS: usize = 16;

/// The tile size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2×2, 3×3): 2×2 outputs from 4×4 inputs, 16 products per tile (2.25× fewer
    /// multiply-adds than the direct convolution), exact on small integers; what lies past the
    /// map is read only for outputs past it.
    F2x2,
    /// F(4×4, 3×3) (`f4.rs`): 4×4 outputs from 6×6 inputs, 36 products per tile (4× fewer), with
    /// larger roundings; everything its tiles read past the map must be zero.
    F4x4,
}

impl Variant {
    /// Outputs per side of a tile.
    pub fn m(self) -> usize {
        match self {
            Variant::F2x2 => 2,
            Variant::F4x4 => 4,
        }
    }

    /// Products (positions of a transformed tile) per tile.
    pub fn positions(self) -> usize {
        match self {
            Variant::F2x2 => POSITIONS,
            Variant::F4x4 => f4::POSITIONS,
        }
    }
}

/// The default [`Winograd3x3::v_block`]: 512 KiB of `V` per block of tiles. Larger blocks cost
/// fewer, longer products and re-read fewer overlapping input rows, for more scratch:
/// densenet121's 128 → 32 on one thread (`winograd_timing`) with 256 / 512 / 768 / 1024 KiB
/// ran 1.50× / 1.57× / 1.67× / 1.74× as fast as the direct product at 56×56, 1.38× / 1.49× /
/// 1.55× / 1.60× at 28×28.
pub const V_BLOCK_FLOATS: usize = 128 * 1024;

/// Tiles the transforms handle at once: one AVX-512 vector.
const LANES: usize = 16;

/// The arithmetic of the transforms (`f2.rs`, `f4.rs`), on one value or on a vector of lanes.
pub(crate) trait Arith: Copy {
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    /// `self · c`.
    fn mul(self, c: f32) -> Self;
}

impl Arith for f32 {
    #[inline(always)]
    fn add(self, other: f32) -> f32 {
        self + other
    }
    #[inline(always)]
    fn sub(self, other: f32) -> f32 {
        self - other
    }
    #[inline(always)]
    fn mul(self, c: f32) -> f32 {
        self * c
    }
}

/// A 3×3, stride-1, padding-1 convolution of `c` input channels into `k` output channels over
/// `rows × cols` outputs, run as F(2×2, 3×3) or F(4×4, 3×3) ([`Winograd3x3::variant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winograd3x3 {
    /// Output channels.
    pub k: usize,
    /// Input channels.
    pub c: usize,
    /// Output rows.
    pub rows: usize,
    /// Output columns.
    pub cols: usize,
    /// Floats of transformed input per block of tiles, about: whole panels of the products
    /// (`NR` tiles) when at least 16 tiles fit, at least one; else one group of 16 tiles, which
    /// the transforms take at once (half a panel on AVX-512, whose products then run
    /// half-width tiles; with the default block, more than 227 input channels for
    /// F(4×4, 3×3), 512 for F(2×2, 3×3)). Any value gives the same results.
    pub v_block: usize,
    /// The tile size.
    pub variant: Variant,
}

/// The lengths of [`Winograd3x3::forward`]'s scratch parts, in floats.
struct ScratchLens {
    v: usize,
    m: usize,
    /// Tiles per block (whole panels of `NR`, or one group of [`LANES`]), which is also the row
    /// stride of `V_ξ` and `M_ξ` (the products read each row as runs of `NR` tiles); the
    /// stride from one `ξ` to the next in `V` and in `M`.
    block: usize,
    v_stride: usize,
    m_stride: usize,
}

impl Winograd3x3 {
    /// The convolution by F(2×2, 3×3) with the default block size ([`V_BLOCK_FLOATS`]).
    pub fn new(k: usize, c: usize, rows: usize, cols: usize) -> Self {
        Winograd3x3 {
            k,
            c,
            rows,
            cols,
            v_block: V_BLOCK_FLOATS,
            variant: Variant::F2x2,
        }
    }

    /// Tile rows and tile columns: `⌈rows/m⌉ × ⌈cols/m⌉` for tiles of `m × m` outputs.
    pub fn tiles(&self) -> (usize, usize) {
        let m = self.variant.m();
        (self.rows.div_ceil(m), self.cols.div_ceil(m))
    }

    /// Floats per output row of [`Winograd3x3::forward`]: whole tiles, `m·⌈cols/m⌉`.
    pub fn out_row(&self) -> usize {
        self.variant.m() * self.tiles().1
    }

    /// Floats of the output for `k_rows` output channels: `m·⌈rows/m⌉` rows of
    /// [`Winograd3x3::out_row`] each.
    pub fn out_len(&self, k_rows: usize) -> usize {
        k_rows * self.variant.m() * self.tiles().0 * self.out_row()
    }

    /// Floats the input must hold for planes `plane` apart with rows `row` apart: the last
    /// channel's last tile row, and on AVX-512 the `16·m + 2` floats a group of tiles reads from
    /// its first tile's first column, for a group that starts at the last tile (lanes past the
    /// map's edge compute values that are dropped).
    pub fn input_len(&self, plane: usize, row: usize) -> usize {
        let (ty, tx) = self.tiles();
        if self.c == 0 || ty == 0 || tx == 0 {
            return 0;
        }
        let m = self.variant.m();
        (self.c - 1) * plane + (m * ty + 1) * row + m * (tx - 1) + m * LANES + 2
    }

    fn scratch_lens(&self, isa: Isa, k_rows: usize) -> ScratchLens {
        let nr = gemm::tile(isa).nr;
        let (ty, tx) = self.tiles();
        let tiles = ty * tx;
        let positions = self.variant.positions();
        let fit = self.v_block / (positions * self.c.max(1));
        let block = if fit >= LANES {
            (fit / nr * nr).max(nr).min(tiles.next_multiple_of(nr))
        } else {
            // One group of the transforms (half a panel on AVX-512, whose products then run
            // half-width tiles): half the scratch of a panel.
            LANES.min(tiles.next_multiple_of(LANES))
        }
        .max(1);
        // A cache line more than the rows, so that the 16 positions of one tile, which the
        // transforms write and read together, do not sit a multiple of 4 KiB apart (their
        // accesses would alias in the load-store unit); it also takes the spare lanes of the
        // last channel's last group (each channel's spill into the next row is overwritten
        // when that row is transformed).
        let (v_stride, m_stride) = (self.c * block + LANES, k_rows * block + LANES);
        let round = |n: usize| n.div_ceil(16) * 16;
        ScratchLens {
            v: round(positions * v_stride),
            m: round(positions * m_stride),
            block,
            v_stride,
            m_stride,
        }
    }

    /// Floats of scratch [`Winograd3x3::forward`] needs for `k_rows` output channels on the
    /// tier `isa` (16 more than its parts, for alignment): one block of transformed input
    /// (`P·c·block` for `P` positions, 16 or 36) and of products (`P·k_rows·block`), a block
    /// being the tiles whose `V` fits in about [`Winograd3x3::v_block`] floats.
    pub fn scratch_len(&self, isa: Isa, k_rows: usize) -> usize {
        let l = self.scratch_lens(isa, k_rows);
        l.v + l.m + 16
    }

    /// Floats of the transformed weights of `k_rows` output channels: `k_rows·c` per position
    /// (16 or 36), and a line.
    pub fn weights_len(&self, k_rows: usize) -> usize {
        self.variant.positions() * u_stride(k_rows, self.c)
    }

    /// `U = G·g·Gᵀ` of output channels `row0 .. row0 + k_rows`, for [`Winograd3x3::forward`]:
    /// `[k_rows, c]` per position (16 or 36). Computed per call by the inference plan rather
    /// than stored: it takes about 15 µs on AVX-512 for densenet121's 32 × 128 filters (a
    /// hundredth of their convolution at 56×56), and stored it would be 16/9 of the 3×3 weights
    /// it replaces (2.1 MB more for densenet121's 18 layers on 56×56 and 28×28 maps).
    ///
    /// # Shapes
    /// - `weights`: `[k, c, 3, 3]` (OIHW, PyTorch's layout).
    /// - `u`: [`Winograd3x3::weights_len`]`(k_rows)` floats, written.
    pub fn transform_weights(
        &self,
        isa: Isa,
        (row0, k_rows): (usize, usize),
        weights: &[f32],
        u: &mut [f32],
    ) {
        let (k, c) = (self.k, self.c);
        assert!(row0 + k_rows <= k, "winograd: output rows out of range");
        assert_eq!(weights.len(), 9 * k * c, "winograd: weight length");
        assert!(u.len() >= self.weights_len(k_rows), "winograd: U too short");
        crate::on_tier(
            isa,
            #[inline(always)]
            || transform_weights(isa, self.variant, weights, c, row0, k_rows, u),
        );
    }

    /// `k_rows` output channels of the convolution from their transformed weights `u` (a
    /// [`Winograd3x3::transform_weights`] of those channels).
    ///
    /// # Shapes
    /// - `u`: [`Winograd3x3::weights_len`]`(k_rows)` floats.
    /// - `input`: `c` zero-padded planes as the module docs say, `plane` floats apart, rows
    ///   `row ≥ cols + 1` apart, at least [`Winograd3x3::input_len`] floats. Padded rows
    ///   `0 ..= rows + 1` and columns `0 ..= cols + 1` are the convolution's input (column
    ///   `cols + 1` may be the next row's column 0 when `row = cols + 1`: it must then be zero,
    ///   as it is in the shared-padding layout). With F(2×2, 3×3), what lies past them is read
    ///   only for outputs past `rows × cols`; with F(4×4, 3×3) it must be zero up to the map
    ///   rounded up to whole tiles (padded rows `0 ..= m·⌈rows/m⌉ + 1`, columns likewise).
    /// - `out`: [`Winograd3x3::out_len`]`(k_rows)` floats: channel `o` of `u`'s, row `y`,
    ///   column `x` at `(o·m⌈rows/m⌉ + y)·out_row + x` for tiles of `m × m`, written. Rows and
    ///   columns past the map's hold values to be dropped.
    /// - `scratch`: [`Winograd3x3::scratch_len`]`(isa, k_rows)` floats.
    ///
    /// Each output is the same sum in the same order whatever channels `u` holds, the thread,
    /// or which block its tile falls in; tiles start at multiples of `m` in the rows and columns
    /// of the padded input, so a caller cutting a map into strips of a multiple of `m` rows gets
    /// the whole map's values.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        isa: Isa,
        (u, k_rows): (&[f32], usize),
        input: &[f32],
        [plane, row]: [usize; 2],
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let (k, c) = (self.k, self.c);
        let (ty_n, tx_n) = self.tiles();
        assert!(
            k_rows <= k,
            "winograd: more output rows than the convolution's"
        );
        assert!(u.len() >= self.weights_len(k_rows), "winograd: U too short");
        assert!(row > self.cols, "winograd: rows must be wider than the map");
        assert!(
            input.len() >= self.input_len(plane, row),
            "winograd: input too short"
        );
        assert!(
            out.len() >= self.out_len(k_rows),
            "winograd: output too short"
        );
        if k_rows == 0 || ty_n == 0 || tx_n == 0 {
            return;
        }
        let lens = self.scratch_lens(isa, k_rows);
        let scratch = gemm::align64(scratch);
        assert!(
            scratch.len() >= lens.v + lens.m,
            "winograd: scratch too short"
        );
        let (v, rest) = scratch.split_at_mut(lens.v);
        let m = &mut rest[..lens.m];

        let tile = gemm::tile_for_rows(isa, k);
        // Rows of `V_ξ` and `M_ξ` are a block of tiles long.
        let (ld, v_stride, m_stride) = (lens.block, lens.v_stride, lens.m_stride);
        let tiles = ty_n * tx_n;
        let out_row = self.out_row();
        let (variant, mt) = (self.variant, self.variant.m());
        let out_plane = mt * ty_n * out_row;
        for f0 in (0..tiles).step_by(lens.block) {
            let f1 = (f0 + lens.block).min(tiles);
            // 1. V_ξ[ch, f − f0] for every channel and tile of the block.
            for ch in 0..c {
                let src = &input[ch * plane..];
                for (ty, tx, n) in segments(f0, f1, tx_n) {
                    let at = mt * ty * row + mt * tx;
                    let dst = ch * ld + (ty * tx_n + tx - f0);
                    input_group(isa, variant, &src[at..], row, n, v, dst, v_stride);
                }
            }
            // 2. M_ξ = U_ξ · V_ξ.
            let cols = f1 - f0;
            let row_start = |ch: usize| ch * ld;
            for xi in 0..variant.positions() {
                gemm::gemm_block_with(
                    isa,
                    tile,
                    0,
                    k_rows,
                    cols,
                    c,
                    AView::RowMajor {
                        data: &u[xi * u_stride(k_rows, c)..][..k_rows * c],
                        ld: c,
                    },
                    BView::Rows {
                        // A block of `LANES` tiles is half a panel: the kernel's bounds check
                        // asks for a whole panel from the last row's start, which runs into
                        // the `LANES` floats of padding after the position's last channel.
                        data: &v[xi * v_stride..][..c * ld + LANES],
                        row_start: &row_start,
                    },
                    &mut m[xi * m_stride..][..k_rows * ld],
                    ld,
                    CStore::Write,
                );
            }
            // 3. Each output tile from its products.
            for o in 0..k_rows {
                for (ty, tx, n) in segments(f0, f1, tx_n) {
                    let src = o * ld + (ty * tx_n + tx - f0);
                    let at = o * out_plane + mt * ty * out_row + mt * tx;
                    let out = &mut out[at..];
                    output_group(isa, variant, m, src, m_stride, n, out, out_row);
                }
            }
        }
    }
}

/// The tiles `f0 .. f1` (row-major over tile rows `tx_n` long) as runs within one tile row of
/// at most [`LANES`]: `(tile row, first tile column, tiles)`.
fn segments(f0: usize, f1: usize, tx_n: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut f = f0;
    std::iter::from_fn(move || {
        (f < f1).then(|| {
            let (ty, tx) = (f / tx_n, f % tx_n);
            let n = LANES.min(tx_n - tx).min(f1 - f);
            f += n;
            (ty, tx, n)
        })
    })
}

/// `U_ξ[o − row0, ch] = (G·g[o, ch]·Gᵀ)_ξ` for output channels `row0 .. row0 + k_rows`, into
/// `u` (`[P, k_rows, c]`, positions [`u_stride`] apart), from OIHW weights: vectorised sixteen
/// channels at a time, one filter per lane (gathered, nine floats apart).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transform_weights(
    isa: Isa,
    variant: Variant,
    g: &[f32],
    c: usize,
    row0: usize,
    k_rows: usize,
    u: &mut [f32],
) {
    let stride = u_stride(k_rows, c);
    for o in 0..k_rows {
        // Output channel `row0 + o`'s filters, nine taps each.
        let filters = &g[(row0 + o) * c * 9..][..c * 9];
        let mut ch0 = 0;
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 || (isa == Isa::Avx2 && variant == Variant::F2x2) {
            while ch0 + LANES <= c {
                let (group, dst) = (&filters[ch0 * 9..], o * c + ch0);
                match (isa, variant) {
                    (Isa::Avx2, _) => x86_64_avx2::weight_group(group, u, dst, stride),
                    (_, Variant::F2x2) => x86_64_avx512::weight_group(group, u, dst, stride),
                    (_, Variant::F4x4) => x86_64_avx512::weight_group4(group, u, dst, stride),
                }
                ch0 += LANES;
            }
        }
        let _ = isa;
        for ch in ch0..c {
            let taps: [f32; 9] = filters[ch * 9..][..9].try_into().expect("nine taps");
            let at = o * c + ch;
            match variant {
                Variant::F2x2 => {
                    for (j, col) in f2::weight_tile(taps).iter().enumerate() {
                        for (i, &x) in col.iter().enumerate() {
                            u[(4 * i + j) * stride + at] = x;
                        }
                    }
                }
                Variant::F4x4 => {
                    for (j, col) in f4::weight_tile(taps).iter().enumerate() {
                        for (i, &x) in col.iter().enumerate() {
                            u[(f4::ALPHA * i + j) * stride + at] = x;
                        }
                    }
                }
            }
        }
    }
}

/// Floats from one position's `U_ξ` (`k_rows × c`) to the next: a cache line more than its
/// values, so that the 16 positions of a filter, which the weight transform writes together,
/// do not fall a multiple of 4 KiB apart (in the same few sets of the L1 cache).
fn u_stride(k_rows: usize, c: usize) -> usize {
    k_rows * c + LANES
}

/// `Bᵀ·D·B` of `n ≤ 16` horizontally adjacent tiles of one channel (tile `t` reads columns
/// `m·t .. m·t + m + 2` of `m + 2` rows): `src` starts at the top-left
/// input of the first (rows `row` apart), and position `ξ` of tile `t` goes to
/// `v[dst + ξ·stride + t]`. Lanes `n .. 16` of each position may be written too (with values
/// to be overwritten or dropped): the caller leaves room for them and writes a row's groups in
/// order.
#[allow(clippy::too_many_arguments)]
fn input_group(
    isa: Isa,
    variant: Variant,
    src: &[f32],
    row: usize,
    n: usize,
    v: &mut [f32],
    dst: usize,
    stride: usize,
) {
    let positions = variant.positions();
    assert!(n <= LANES && (positions - 1) * stride + dst + LANES <= v.len());
    #[cfg(target_arch = "x86_64")]
    match (isa, variant) {
        (Isa::Avx512, Variant::F2x2) => {
            return x86_64_avx512::input_group(src, row, v, dst, stride);
        }
        (Isa::Avx512, Variant::F4x4) => {
            return x86_64_avx512::input_group4(src, row, v, dst, stride);
        }
        (Isa::Avx2, Variant::F2x2) => return x86_64_avx2::input_group(src, row, v, dst, stride),
        _ => {}
    }
    let _ = isa;
    if variant == Variant::F4x4 {
        for t in 0..n {
            let rows: [[f32; 6]; 6] =
                std::array::from_fn(|i| std::array::from_fn(|j| src[i * row + 4 * t + j]));
            for (i, vi) in f4::input_tile(rows).iter().enumerate() {
                for (j, &x) in vi.iter().enumerate() {
                    v[dst + (f4::ALPHA * i + j) * stride + t] = x;
                }
            }
        }
        return;
    }
    for t in 0..n {
        let d: [[f32; 4]; 4] =
            std::array::from_fn(|i| std::array::from_fn(|j| src[i * row + 2 * t + j]));
        for (i, vi) in f2::input_tile(d).iter().enumerate() {
            for (j, &x) in vi.iter().enumerate() {
                v[dst + (4 * i + j) * stride + t] = x;
            }
        }
    }
}

/// `Aᵀ·M·A` of `n ≤ 16` adjacent tiles: position `ξ` of tile `t` at `m[src + ξ·stride + t]`;
/// the tile's `m × m` outputs, row `r`, to `out[r·row + m·t ..][..m]`.
#[allow(clippy::too_many_arguments)]
fn output_group(
    isa: Isa,
    variant: Variant,
    m: &[f32],
    src: usize,
    stride: usize,
    n: usize,
    out: &mut [f32],
    row: usize,
) {
    let (positions, mt) = (variant.positions(), variant.m());
    assert!(n <= LANES && (positions - 1) * stride + src + n <= m.len());
    assert!((mt - 1) * row + mt * n <= out.len());
    #[cfg(target_arch = "x86_64")]
    match (isa, variant) {
        (Isa::Avx512, Variant::F2x2) => {
            return x86_64_avx512::output_group(m, src, stride, n, out, row);
        }
        (Isa::Avx512, Variant::F4x4) => {
            return x86_64_avx512::output_group4(m, src, stride, n, out, row);
        }
        (Isa::Avx2, Variant::F2x2) => {
            return x86_64_avx2::output_group(m, src, stride, n, out, row);
        }
        _ => {}
    }
    let _ = isa;
    if variant == Variant::F4x4 {
        for t in 0..n {
            let products: [[f32; 6]; 6] = std::array::from_fn(|i| {
                std::array::from_fn(|j| m[src + (f4::ALPHA * i + j) * stride + t])
            });
            for (r, y) in f4::output_tile(products).iter().enumerate() {
                out[r * row + 4 * t..][..4].copy_from_slice(y);
            }
        }
        return;
    }
    for t in 0..n {
        let products: [[f32; 4]; 4] =
            std::array::from_fn(|i| std::array::from_fn(|j| m[src + (4 * i + j) * stride + t]));
        for (r, y) in f2::output_tile(products).iter().enumerate() {
            out[r * row + 2 * t..][..2].copy_from_slice(y);
        }
    }
}
