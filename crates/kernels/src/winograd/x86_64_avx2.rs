//! The F(2×2, 3×3) transforms on AVX2: sixteen tiles of a tile row at once as two halves of
//! eight lanes, one tile per lane, with the AVX-512 module's layout and `f2.rs`'s arithmetic.
//! An input row's even and odd columns are separated with an in-lane shuffle and a cross-lane
//! permute per pair of vectors; the outputs' two columns are interleaved back with unpacks and
//! a cross-lane permute.

use std::arch::x86_64::*;

use super::{f2, LANES, POSITIONS};

/// Eight lanes of the transforms' arithmetic ([`super::Arith`]).
#[derive(Clone, Copy)]
struct Y(__m256);

impl super::Arith for Y {
    #[inline(always)]
    fn add(self, other: Y) -> Y {
        // SAFETY: a `Y` exists only inside this module's AVX2 functions, entered after their
        // callers detected AVX2.
        Y(unsafe { _mm256_add_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn sub(self, other: Y) -> Y {
        // SAFETY: as in `add`.
        Y(unsafe { _mm256_sub_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn mul(self, c: f32) -> Y {
        // SAFETY: as in `add`.
        Y(unsafe { _mm256_mul_ps(self.0, _mm256_set1_ps(c)) })
    }
}

/// Lanes of one AVX2 vector.
const HALF: usize = 8;

/// See `super::input_group`: `Bᵀ·D·B` of `n ≤ 16` adjacent tiles, reading `2·16 + 2` floats
/// of each of four rows and storing all 16 lanes of each position (lanes past `n` compute from
/// whatever lies there, for the caller to overwrite or drop).
///
/// # Panics
/// If `src` is shorter than `3·row + 34` floats, `v` than the 16 positions' runs, or the CPU
/// lacks AVX2.
pub(super) fn input_group(src: &[f32], row: usize, v: &mut [f32], dst: usize, stride: usize) {
    assert!(
        src.len() >= 3 * row + 2 * LANES + 2,
        "winograd: input run too short"
    );
    assert!(dst + (POSITIONS - 1) * stride + LANES <= v.len());
    assert!(is_x86_feature_detected!("avx2"));
    // SAFETY: AVX2 was detected just above; the loads stay within `src` (four rows of 34
    // floats from `src[0]`, the first assert) and the stores write 16 floats from each
    // `dst + ξ·stride`, within `v` (the second).
    unsafe { input_group_avx2(src.as_ptr(), row, v.as_mut_ptr().add(dst), stride) }
}

/// The even and the odd floats of the 16 at `p`, in order.
///
/// # Safety
/// AVX2 must be available and `p` must point to 16 readable floats.
#[inline(always)]
unsafe fn deinterleave(p: *const f32) -> (__m256, __m256) {
    // SAFETY: the caller guarantees the feature and the 16 floats.
    unsafe {
        let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(HALF)));
        // In-lane: a0 a2 b0 b2 | a4 a6 b4 b6, then the 64-bit quarters reordered.
        let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let order = |x: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(x)))
        };
        (order(even), order(odd))
    }
}

#[target_feature(enable = "avx2")]
unsafe fn input_group_avx2(src: *const f32, row: usize, v: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `input_group`).
    unsafe {
        for half in 0..2 {
            let base = src.add(2 * HALF * half);
            let row_of = |i: usize| {
                let r = base.add(i * row);
                let (d0, d1) = deinterleave(r);
                let (d2, d3) = deinterleave(r.add(2));
                [Y(d0), Y(d1), Y(d2), Y(d3)]
            };
            let d = [row_of(0), row_of(1), row_of(2), row_of(3)];
            for (i, vi) in f2::input_tile(d).iter().enumerate() {
                for (j, x) in vi.iter().enumerate() {
                    _mm256_storeu_ps(v.add((4 * i + j) * stride + HALF * half), x.0);
                }
            }
        }
    }
}

/// A mask of the first `n` of eight lanes (`n ≤ 8`) for `maskload` / `maskstore`.
///
/// # Safety
/// AVX2 must be available.
#[inline(always)]
unsafe fn first_lanes(n: usize) -> __m256i {
    // SAFETY: the caller guarantees the feature.
    unsafe {
        let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), index)
    }
}

/// See `super::output_group`: `Aᵀ·M·A` of `n ≤ 16` adjacent tiles into two output rows.
///
/// # Panics
/// If `m` or `out` is too short for `n` tiles, or the CPU lacks AVX2.
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
    assert!(is_x86_feature_detected!("avx2"));
    // SAFETY: AVX2 was detected just above; the masked loads read lanes `0 .. n` of runs at
    // `src + ξ·stride`, within `m`, and the masked stores write `2n` floats from `out[0]` and
    // from `out[row]`, within `out` (the asserts).
    unsafe { output_group_avx2(m.as_ptr().add(src), stride, n, out.as_mut_ptr(), row) }
}

#[target_feature(enable = "avx2")]
unsafe fn output_group_avx2(m: *const f32, stride: usize, n: usize, out: *mut f32, row: usize) {
    // SAFETY: the caller checked every address (see `output_group`); a half with no lanes
    // reads and writes nothing.
    unsafe {
        for half in 0..2 {
            let lanes = n.saturating_sub(HALF * half).min(HALF);
            if lanes == 0 {
                break;
            }
            let mask = first_lanes(lanes);
            let load = |xi: usize| Y(_mm256_maskload_ps(m.add(xi * stride + HALF * half), mask));
            let products = [0, 1, 2, 3].map(|i| [0, 1, 2, 3].map(|j| load(4 * i + j)));
            let [[y00, y01], [y10, y11]] = f2::output_tile(products).map(|r| r.map(|y| y.0));
            // 2·lanes floats per output row, tile `t` at `2t`: the first four tiles' pairs,
            // then the last four's.
            let (m0, m1) = (
                first_lanes(2 * lanes),
                first_lanes((2 * lanes).saturating_sub(8)),
            );
            for (dy, (a, b)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
                let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
                let o = out.add(dy * row + 2 * HALF * half);
                _mm256_maskstore_ps(o, m0, _mm256_permute2f128_ps::<0x20>(lo, hi));
                // Only a half of more than four tiles reaches the second vector (`o + 8` is
                // then within the `2·lanes` floats checked).
                if lanes > 4 {
                    _mm256_maskstore_ps(o.add(HALF), m1, _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
            }
        }
    }
}

/// See `super::transform_weights`: `U_ξ[l] = (G·g_l·Gᵀ)_ξ` for sixteen consecutive filters of
/// one output channel (OIHW, `filters[9·l + t]`), position `ξ` to `u[dst + ξ·stride + l]`.
///
/// # Panics
/// If `filters` is shorter than 16 filters, `u` than the 16 positions' runs, or the CPU lacks
/// AVX2.
pub(super) fn weight_group(filters: &[f32], u: &mut [f32], dst: usize, stride: usize) {
    assert!(filters.len() >= 9 * LANES);
    assert!(dst + (POSITIONS - 1) * stride + LANES <= u.len());
    assert!(is_x86_feature_detected!("avx2"));
    // SAFETY: AVX2 was detected just above; the gathers read `filters[9·l + t]` for `l < 16`,
    // `t < 9` (the first assert) and the stores write 16 floats from each `dst + ξ·stride`
    // (the second).
    unsafe { weight_group_avx2(filters.as_ptr(), u.as_mut_ptr().add(dst), stride) }
}

#[target_feature(enable = "avx2")]
unsafe fn weight_group_avx2(filters: *const f32, u: *mut f32, stride: usize) {
    // SAFETY: the caller checked every address (see `weight_group`).
    unsafe {
        let nine = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
        for part in 0..2 {
            let f = filters.add(9 * HALF * part);
            let g: [__m256; 9] = std::array::from_fn(|t| _mm256_i32gather_ps::<4>(f.add(t), nine));
            let taps = g.map(Y);
            for (j, col) in f2::weight_tile(taps).iter().enumerate() {
                for (i, x) in col.iter().enumerate() {
                    _mm256_storeu_ps(u.add((4 * i + j) * stride + HALF * part), x.0);
                }
            }
        }
    }
}
