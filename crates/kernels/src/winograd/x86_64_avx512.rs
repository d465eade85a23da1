//! The Winograd transforms on AVX-512: sixteen tiles of a tile row at once, one per lane.
//!
//! Tile `t` of a group reads input columns `2t .. 2t + 4`, so the lanes' first inputs are the
//! even columns of a 32-float run and their second the odd ones: two loads and two
//! two-source permutes (`vpermt2ps`) give a row's `d0` and `d1` for all sixteen tiles, and the
//! same from two columns further on give `d2` and `d3`. The outputs go the other way: the two
//! columns of each tile's output row are interleaved back into 32 consecutive floats. The
//! arithmetic is `f2.rs`'s and `f4.rs`'s, written once for every tier, so the transforms give
//! the other tiers' results bit for bit.

use std::arch::x86_64::*;

use super::{f2, LANES, POSITIONS};

/// Sixteen lanes of the transforms' arithmetic ([`super::Arith`]).
#[derive(Clone, Copy)]
struct Z(__m512);

impl super::Arith for Z {
    #[inline(always)]
    fn add(self, other: Z) -> Z {
        // SAFETY: a `Z` exists only inside this module's AVX-512 functions, entered after
        // their callers detected AVX-512F.
        Z(unsafe { _mm512_add_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn sub(self, other: Z) -> Z {
        // SAFETY: as in `add`.
        Z(unsafe { _mm512_sub_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn mul(self, c: f32) -> Z {
        // SAFETY: as in `add`.
        Z(unsafe { _mm512_mul_ps(self.0, _mm512_set1_ps(c)) })
    }
}

/// Even lanes of a two-vector run, then its odd lanes.
const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
/// Interleaving of two vectors `a`, `b`: `a0 b0 a1 b1 …`, the low eight pairs and the high.
const LO: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const HI: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

/// See `super::input_group`: `Bᵀ·D·B` of 16 adjacent tiles, reading `2·16 + 2` floats of each
/// of four rows and storing all 16 lanes of each position (lanes past the caller's `n` compute
/// from whatever lies there, for the caller to overwrite or drop: a full store costs a masked
/// one's fraction).
///
/// # Panics
/// If `src` is shorter than `3·row + 34` floats, `v` than the 16 positions' runs, or the CPU
/// lacks AVX-512F.
pub(super) fn input_group(src: &[f32], row: usize, v: &mut [f32], dst: usize, stride: usize) {
    assert!(
        src.len() >= 3 * row + 2 * LANES + 2,
        "winograd: input run too short"
    );
    assert!(dst + (POSITIONS - 1) * stride + LANES <= v.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the loads stay within `src` (the first assert:
    // four rows of 34 floats from `src[0]`), and the stores write 16 floats from each
    // `dst + ξ·stride`, within `v` (the second assert).
    unsafe { input_group_avx512(src.as_ptr(), row, v.as_mut_ptr().add(dst), stride) }
}

#[target_feature(enable = "avx512f")]
unsafe fn input_group_avx512(src: *const f32, row: usize, v: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `input_group`).
    unsafe {
        let even = _mm512_loadu_si512(EVEN.as_ptr().cast());
        let odd = _mm512_loadu_si512(ODD.as_ptr().cast());
        let row_of = |i: usize| {
            let r = src.add(i * row);
            let (x0, x1) = (_mm512_loadu_ps(r), _mm512_loadu_ps(r.add(LANES)));
            let (y0, y1) = (_mm512_loadu_ps(r.add(2)), _mm512_loadu_ps(r.add(LANES + 2)));
            [
                Z(_mm512_permutex2var_ps(x0, even, x1)),
                Z(_mm512_permutex2var_ps(x0, odd, x1)),
                Z(_mm512_permutex2var_ps(y0, even, y1)),
                Z(_mm512_permutex2var_ps(y0, odd, y1)),
            ]
        };
        let d = [row_of(0), row_of(1), row_of(2), row_of(3)];
        for (i, vi) in f2::input_tile(d).iter().enumerate() {
            for (j, x) in vi.iter().enumerate() {
                _mm512_storeu_ps(v.add((4 * i + j) * stride), x.0);
            }
        }
    }
}

/// See `super::output_group`: `Aᵀ·M·A` of `n ≤ 16` adjacent tiles into two output rows.
///
/// # Panics
/// If `m` or `out` is too short for `n` tiles, or the CPU lacks AVX-512F.
pub(super) fn output_group(
    m: &[f32],
    src: usize,
    stride: usize,
    n: usize,
    out: &mut [f32],
    row: usize,
) {
    assert!(n <= LANES && src + (POSITIONS - 1) * stride + n <= m.len());
    assert!(row + 2 * n <= out.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the masked loads read lanes `0 .. n` of runs at
    // `src + ξ·stride`, within `m`, and the masked stores write `2n` floats from `out[0]` and
    // from `out[row]`, within `out` (the asserts).
    unsafe { output_group_avx512(m.as_ptr().add(src), stride, n, out.as_mut_ptr(), row) }
}

#[target_feature(enable = "avx512f")]
unsafe fn output_group_avx512(m: *const f32, stride: usize, n: usize, out: *mut f32, row: usize) {
    // SAFETY: the caller checked every address (see `output_group`).
    unsafe {
        let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
        let load = |xi: usize| Z(_mm512_maskz_loadu_ps(mask, m.add(xi * stride)));
        let products = [0, 1, 2, 3].map(|i| [0, 1, 2, 3].map(|j| load(4 * i + j)));
        let [[y00, y01], [y10, y11]] = f2::output_tile(products).map(|r| r.map(|z| z.0));
        let lo = _mm512_loadu_si512(LO.as_ptr().cast());
        let hi = _mm512_loadu_si512(HI.as_ptr().cast());
        // 2n floats per output row: the first vector's lanes, then the second's.
        let wide = 2 * n as u32;
        let m0: __mmask16 = ((1u32 << wide.min(16)) - 1) as __mmask16;
        let m1: __mmask16 = ((1u32 << wide.saturating_sub(16)) - 1) as __mmask16;
        for (dy, (a, b)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
            let o = out.add(dy * row);
            _mm512_mask_storeu_ps(o, m0, _mm512_permutex2var_ps(a, lo, b));
            // Only a group of more than eight tiles reaches the second vector (`o + 16` is then
            // within the `2n` floats checked).
            if m1 != 0 {
                _mm512_mask_storeu_ps(o.add(LANES), m1, _mm512_permutex2var_ps(a, hi, b));
            }
        }
    }
}

/// The nine taps of sixteen consecutive OIHW filters, one gather each (lane `l` of tap `t` is
/// `filters[9·l + t]`).
///
/// # Safety
/// The CPU must support AVX-512F (callers are AVX-512 functions), and `filters` must point to
/// at least 144 readable floats.
#[inline(always)]
unsafe fn gather_taps(filters: *const f32) -> [__m512; 9] {
    // SAFETY: the caller guarantees the feature and the 144 floats read.
    unsafe {
        let nine = _mm512_setr_epi32(
            0, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 99, 108, 117, 126, 135,
        );
        std::array::from_fn(|t| _mm512_i32gather_ps::<4>(nine, filters.add(t)))
    }
}

/// See `super::transform_weights`: `U_ξ[l] = (G·g_l·Gᵀ)_ξ` for sixteen consecutive filters of
/// one output channel, `filters[9·l + t]` tap `t` of filter `l` (OIHW), position `ξ` to
/// `u[dst + ξ·stride + l]`. Each tap of the sixteen filters is one gather (nine floats apart).
///
/// # Panics
/// If `filters` is shorter than 16 filters, `u` than the 16 positions' runs, or the CPU lacks
/// AVX-512F.
pub(super) fn weight_group(filters: &[f32], u: &mut [f32], dst: usize, stride: usize) {
    assert!(filters.len() >= 9 * LANES);
    assert!(dst + (POSITIONS - 1) * stride + LANES <= u.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the gathers read `filters[9·l + t]` for
    // `l < 16`, `t < 9`, within `filters` (the first assert), and each store writes 16 floats
    // from `dst + ξ·stride` (the second).
    unsafe { weight_group_avx512(filters.as_ptr(), u.as_mut_ptr().add(dst), stride) }
}

#[target_feature(enable = "avx512f")]
unsafe fn weight_group_avx512(filters: *const f32, u: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `weight_group`).
    unsafe {
        let taps = gather_taps(filters).map(Z);
        for (j, col) in f2::weight_tile(taps).iter().enumerate() {
            for (i, x) in col.iter().enumerate() {
                _mm512_storeu_ps(u.add((4 * i + j) * stride), x.0);
            }
        }
    }
}

// F(4×4, 3×3): sixteen tiles of four columns each span 64 input columns (and two more).

/// See `super::input_group`: `Bᵀ·D·B` of sixteen adjacent 6×6 tiles (tile `t` reads columns
/// `4t .. 4t + 6` of six rows), all 16 lanes of each of the 36 positions stored. Reads
/// `16·4 + 2` floats of each row.
///
/// # Panics
/// If `src` is shorter than `5·row + 66` floats, `v` than the positions' runs, or the CPU lacks
/// AVX-512F.
pub(super) fn input_group4(src: &[f32], row: usize, v: &mut [f32], dst: usize, stride: usize) {
    assert!(
        src.len() >= 5 * row + 4 * LANES + 2,
        "winograd: input run too short"
    );
    assert!(dst + (super::f4::POSITIONS - 1) * stride + LANES <= v.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the loads stay within `src` (six rows of 66
    // floats from `src[0]`, the last two masked to the lanes they use) and the stores write 16
    // floats from each `dst + ξ·stride`, within `v`.
    unsafe { input_group4_avx512(src.as_ptr(), row, v.as_mut_ptr().add(dst), stride) }
}

#[target_feature(enable = "avx512f")]
unsafe fn input_group4_avx512(src: *const f32, row: usize, v: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `input_group4`).
    unsafe {
        let even = _mm512_loadu_si512(EVEN.as_ptr().cast());
        let odd = _mm512_loadu_si512(ODD.as_ptr().cast());
        let rows: [[Z; 6]; 6] = std::array::from_fn(|i| {
            let r = src.add(i * row);
            let x: [__m512; 4] = std::array::from_fn(|q| _mm512_loadu_ps(r.add(LANES * q)));
            // Columns 0, 2, 4, … and 1, 3, 5, … of the 64, then every fourth.
            let e01 = _mm512_permutex2var_ps(x[0], even, x[1]);
            let e23 = _mm512_permutex2var_ps(x[2], even, x[3]);
            let o01 = _mm512_permutex2var_ps(x[0], odd, x[1]);
            let o23 = _mm512_permutex2var_ps(x[2], odd, x[3]);
            let d0 = _mm512_permutex2var_ps(e01, even, e23);
            let d1 = _mm512_permutex2var_ps(o01, even, o23);
            let d2 = _mm512_permutex2var_ps(e01, odd, e23);
            let d3 = _mm512_permutex2var_ps(o01, odd, o23);
            // Columns 4t + 4 and 4t + 5: the next lane's d0 and d1, the last lane's from
            // columns 64 and 65.
            let c64 = _mm512_castps_si512(_mm512_maskz_loadu_ps(1, r.add(4 * LANES)));
            let c65 = _mm512_castps_si512(_mm512_maskz_loadu_ps(1, r.add(4 * LANES + 1)));
            let d4 = _mm512_castsi512_ps(_mm512_alignr_epi32(c64, _mm512_castps_si512(d0), 1));
            let d5 = _mm512_castsi512_ps(_mm512_alignr_epi32(c65, _mm512_castps_si512(d1), 1));
            [d0, d1, d2, d3, d4, d5].map(Z)
        });
        for (i, vi) in super::f4::input_tile(rows).iter().enumerate() {
            for (j, x) in vi.iter().enumerate() {
                _mm512_storeu_ps(v.add((6 * i + j) * stride), x.0);
            }
        }
    }
}

/// Interleaving of two vectors of pairs `a`, `b`: `a0 a1 b0 b1 a2 a3 b2 b3 …`, from the low
/// eight floats of each and from the high.
const PAIRS_LO: [i32; 16] = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
const PAIRS_HI: [i32; 16] = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];

/// See `super::output_group`: `Aᵀ·M·A` of `n ≤ 16` adjacent tiles into four output rows of
/// `4n` floats.
///
/// # Panics
/// If `m` or `out` is too short for `n` tiles, or the CPU lacks AVX-512F.
pub(super) fn output_group4(
    m: &[f32],
    src: usize,
    stride: usize,
    n: usize,
    out: &mut [f32],
    row: usize,
) {
    assert!(n <= LANES && src + (super::f4::POSITIONS - 1) * stride + n <= m.len());
    assert!(3 * row + 4 * n <= out.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the masked loads read lanes `0 .. n` of runs at
    // `src + ξ·stride`, within `m`, and the masked stores write `4n` floats from each of
    // `out[0]`, `out[row]`, `out[2·row]`, `out[3·row]`, within `out` (the asserts).
    unsafe { output_group4_avx512(m.as_ptr().add(src), stride, n, out.as_mut_ptr(), row) }
}

#[target_feature(enable = "avx512f")]
unsafe fn output_group4_avx512(m: *const f32, stride: usize, n: usize, out: *mut f32, row: usize) {
    // SAFETY: the caller checked every address (see `output_group4`).
    unsafe {
        let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
        let products: [[Z; 6]; 6] = std::array::from_fn(|i| {
            std::array::from_fn(|j| Z(_mm512_maskz_loadu_ps(mask, m.add((6 * i + j) * stride))))
        });
        let y = super::f4::output_tile(products);
        let (lo, hi) = (
            _mm512_loadu_si512(LO.as_ptr().cast()),
            _mm512_loadu_si512(HI.as_ptr().cast()),
        );
        let (pairs_lo, pairs_hi) = (
            _mm512_loadu_si512(PAIRS_LO.as_ptr().cast()),
            _mm512_loadu_si512(PAIRS_HI.as_ptr().cast()),
        );
        let total = 4 * n;
        for (r, &[y0, y1, y2, y3]) in y.iter().enumerate() {
            // Tile t's four columns to floats 4t .. 4t + 4: columns 0 and 1 paired, 2 and 3
            // paired, then the pairs interleaved.
            let c01_lo = _mm512_permutex2var_ps(y0.0, lo, y1.0);
            let c01_hi = _mm512_permutex2var_ps(y0.0, hi, y1.0);
            let c23_lo = _mm512_permutex2var_ps(y2.0, lo, y3.0);
            let c23_hi = _mm512_permutex2var_ps(y2.0, hi, y3.0);
            let runs = [
                _mm512_permutex2var_ps(c01_lo, pairs_lo, c23_lo),
                _mm512_permutex2var_ps(c01_lo, pairs_hi, c23_lo),
                _mm512_permutex2var_ps(c01_hi, pairs_lo, c23_hi),
                _mm512_permutex2var_ps(c01_hi, pairs_hi, c23_hi),
            ];
            let o = out.add(r * row);
            for (q, &run) in runs.iter().enumerate() {
                // Only the vectors holding some of the `4n` floats are stored (`o + 16q` is
                // then within them).
                let have = total.saturating_sub(LANES * q).min(LANES);
                if have > 0 {
                    let mask: __mmask16 = ((1u32 << have) - 1) as __mmask16;
                    _mm512_mask_storeu_ps(o.add(LANES * q), mask, run);
                }
            }
        }
    }
}

/// See `super::transform_weights`: F(4×4, 3×3)'s `G·g·Gᵀ` of sixteen consecutive filters of
/// one output channel (`filters[9·l + t]`, OIHW), position `ξ` to `u[dst + ξ·stride + l]`.
///
/// # Panics
/// If `filters` is shorter than 16 filters, `u` than the 36 positions' runs, or the CPU lacks
/// AVX-512F.
pub(super) fn weight_group4(filters: &[f32], u: &mut [f32], dst: usize, stride: usize) {
    assert!(filters.len() >= 9 * LANES);
    assert!(dst + (super::f4::POSITIONS - 1) * stride + LANES <= u.len());
    assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: AVX-512F was detected just above; the gathers read `filters[9·l + t]` for
    // `l < 16`, `t < 9` (the first assert) and the stores write 16 floats from each
    // `dst + ξ·stride` (the second).
    unsafe { weight_group4_avx512(filters.as_ptr(), u.as_mut_ptr().add(dst), stride) }
}

#[target_feature(enable = "avx512f")]
unsafe fn weight_group4_avx512(filters: *const f32, u: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `weight_group4`).
    unsafe {
        let taps = gather_taps(filters).map(Z);
        for (j, col) in super::f4::weight_tile(taps).iter().enumerate() {
            for (i, x) in col.iter().enumerate() {
                _mm512_storeu_ps(u.add((6 * i + j) * stride), x.0);
            }
        }
    }
}
