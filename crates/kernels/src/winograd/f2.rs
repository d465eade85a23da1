//! F(2×2, 3×3)'s transforms (the matrices are in the module doc), written once over
//! [`Arith`](super::Arith) for one value (the portable tier, a tile at a time) and for vectors
//! of lanes (AVX2 and AVX-512, a tile per lane), so that every tier does the same operations in
//! the same order. As in `f4.rs`, tiles are arrays of arrays indexed by constants and built from
//! direct calls, which inline into the SIMD functions and stay in registers.

use super::Arith;

/// `Bᵀ·d` for four inputs.
#[inline(always)]
pub(crate) fn bt<T: Arith>(d: [T; 4]) -> [T; 4] {
    [
        d[0].sub(d[2]),
        d[1].add(d[2]),
        d[2].sub(d[1]),
        d[1].sub(d[3]),
    ]
}

/// `Aᵀ·m` for four products: two outputs.
#[inline(always)]
pub(crate) fn at<T: Arith>(m: [T; 4]) -> [T; 2] {
    [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])]
}

/// `G·g` for three taps.
#[inline(always)]
pub(crate) fn g<T: Arith>(w: [T; 3]) -> [T; 4] {
    [
        w[0],
        w[0].add(w[1]).add(w[2]).mul(0.5),
        w[0].sub(w[1]).add(w[2]).mul(0.5),
        w[2],
    ]
}

/// Column `j` of four rows.
#[inline(always)]
fn column<T: Copy, const N: usize>(rows: &[[T; N]; 4], j: usize) -> [T; 4] {
    [rows[0][j], rows[1][j], rows[2][j], rows[3][j]]
}

/// `Bᵀ·D·B` of one 4×4 tile given by its rows: `Bᵀ` down each column, then `B` along each row.
/// Position `ξ = 4i + j` is `[i][j]` of the result.
#[inline(always)]
pub(crate) fn input_tile<T: Arith>(d: [[T; 4]; 4]) -> [[T; 4]; 4] {
    // `c[j]` is column `j` of `Bᵀ·D`, so `column(&c, i)` is its row `i`.
    let c = [
        bt(column(&d, 0)),
        bt(column(&d, 1)),
        bt(column(&d, 2)),
        bt(column(&d, 3)),
    ];
    [
        bt(column(&c, 0)),
        bt(column(&c, 1)),
        bt(column(&c, 2)),
        bt(column(&c, 3)),
    ]
}

/// `Aᵀ·M·A` of one tile, `M` by rows (`m[i][j]` position `4i + j`): its 2×2 outputs,
/// `[row][column]`.
#[inline(always)]
pub(crate) fn output_tile<T: Arith>(m: [[T; 4]; 4]) -> [[T; 2]; 2] {
    let s = [at(m[0]), at(m[1]), at(m[2]), at(m[3])];
    let (c0, c1) = (at(column(&s, 0)), at(column(&s, 1)));
    [[c0[0], c1[0]], [c0[1], c1[1]]]
}

/// `G·g·Gᵀ` of one 3×3 filter (row-major taps). Position `ξ = 4i + j` is `[j][i]` of the
/// result.
#[inline(always)]
pub(crate) fn weight_tile<T: Arith>(taps: [T; 9]) -> [[T; 4]; 4] {
    let r = [
        g([taps[0], taps[1], taps[2]]),
        g([taps[3], taps[4], taps[5]]),
        g([taps[6], taps[7], taps[8]]),
    ];
    let col = |j: usize| g([r[0][j], r[1][j], r[2][j]]);
    [col(0), col(1), col(2), col(3)]
}
