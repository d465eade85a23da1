//! The F(2×2, 3×3) transforms on AVX2: sixteen tiles of a tile row at once as two halves of
//! eight lanes, one tile per lane, with the AVX-512 module's layout and the operations of
//! `input_tile` / `output_tile` / `weight_at`. An input row's even and odd columns are
//! separated with an in-lane shuffle and a cross-lane permute per pair of vectors; the outputs'
//! two columns are interleaved back with unpacks and a cross-lane permute.

use std::arch::x86_64::*;

use super::{LANES, POSITIONS};

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
            let mut d = [[_mm256_setzero_ps(); 4]; 4];
            for (i, di) in d.iter_mut().enumerate() {
                let r = base.add(i * row);
                let (d0, d1) = deinterleave(r);
                let (d2, d3) = deinterleave(r.add(2));
                *di = [d0, d1, d2, d3];
            }
            // Bᵀ·D, then ·B: `super::input_tile`'s operations.
            let t: [[__m256; 4]; 4] = [
                std::array::from_fn(|j| _mm256_sub_ps(d[0][j], d[2][j])),
                std::array::from_fn(|j| _mm256_add_ps(d[1][j], d[2][j])),
                std::array::from_fn(|j| _mm256_sub_ps(d[2][j], d[1][j])),
                std::array::from_fn(|j| _mm256_sub_ps(d[1][j], d[3][j])),
            ];
            for (i, ti) in t.iter().enumerate() {
                let vi = [
                    _mm256_sub_ps(ti[0], ti[2]),
                    _mm256_add_ps(ti[1], ti[2]),
                    _mm256_sub_ps(ti[2], ti[1]),
                    _mm256_sub_ps(ti[1], ti[3]),
                ];
                for (j, &x) in vi.iter().enumerate() {
                    _mm256_storeu_ps(v.add((4 * i + j) * stride + HALF * half), x);
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
            let mt: [__m256; POSITIONS] = std::array::from_fn(|xi| {
                _mm256_maskload_ps(m.add(xi * stride + HALF * half), mask)
            });
            // M·A, then Aᵀ·: `super::output_tile`'s operations.
            let s: [__m256; 4] = std::array::from_fn(|i| {
                _mm256_add_ps(_mm256_add_ps(mt[4 * i], mt[4 * i + 1]), mt[4 * i + 2])
            });
            let t: [__m256; 4] = std::array::from_fn(|i| {
                _mm256_sub_ps(_mm256_sub_ps(mt[4 * i + 1], mt[4 * i + 2]), mt[4 * i + 3])
            });
            let y00 = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]);
            let y01 = _mm256_add_ps(_mm256_add_ps(t[0], t[1]), t[2]);
            let y10 = _mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]);
            let y11 = _mm256_sub_ps(_mm256_sub_ps(t[1], t[2]), t[3]);
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
        let half = _mm256_set1_ps(0.5);
        // `super::g_times`: entry `j` of `G·(a, b, c)`.
        let g_times = |a: __m256, b: __m256, c: __m256| {
            [
                a,
                _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(a, b), c), half),
                _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(a, b), c), half),
                c,
            ]
        };
        for part in 0..2 {
            let f = filters.add(9 * HALF * part);
            let g: [__m256; 9] = std::array::from_fn(|t| _mm256_i32gather_ps::<4>(f.add(t), nine));
            let r: [[__m256; 4]; 3] =
                std::array::from_fn(|a| g_times(g[3 * a], g[3 * a + 1], g[3 * a + 2]));
            for (j, ((&r0, &r1), &r2)) in r[0].iter().zip(&r[1]).zip(&r[2]).enumerate() {
                for (i, &x) in g_times(r0, r1, r2).iter().enumerate() {
                    _mm256_storeu_ps(u.add((4 * i + j) * stride + HALF * part), x);
                }
            }
        }
    }
}
