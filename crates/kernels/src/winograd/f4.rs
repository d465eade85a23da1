//! F(4×4, 3×3): the larger tile. A 4×4 block of outputs from a 6×6 input tile, 36 products per
//! tile of 16 outputs instead of 144 (F(2×2, 3×3): 64), with the matrices of Lavin and Gray
//! (interpolation points 0, ±1, ±2 and ∞):
//!
//! ```text
//!      ⎡4  0 −5  0  1  0⎤         ⎡ 1/4     0     0 ⎤
//!      ⎢0 −4 −4  1  1  0⎥         ⎢−1/6  −1/6  −1/6 ⎥        ⎡1  1  1  1  1  0⎤
//! Bᵀ = ⎢0  4 −4 −1  1  0⎥     G = ⎢−1/6   1/6  −1/6 ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//!      ⎢0 −2 −1  2  1  0⎥         ⎢1/24  1/12   1/6 ⎥        ⎢0  1  1  4  4  0⎥
//!      ⎢0  2 −1 −2  1  0⎥         ⎢1/24 −1/12   1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎣0  4  0 −5  0  1⎦         ⎣  0     0     1  ⎦
//! ```
//!
//! Each output is then a sum in which the inputs a 3-tap window does not cover cancel only
//! in exact arithmetic: everything a tile reads must be genuine input or zero (there are no
//! values "read only for dropped outputs" as with F(2×2, 3×3)), and the roundings are larger
//! (the transforms scale by up to 5 and 1/24).
//!
//! The one-dimensional transforms are written once over [`Arith`], for one value (the portable
//! tier, a tile at a time) and for sixteen lanes (AVX-512, sixteen tiles at a time), so that
//! every tier does the same operations in the same order.

/// Side of the transformed tile, and positions (products) per tile.
pub(crate) const ALPHA: usize = 6;
pub(crate) const POSITIONS: usize = ALPHA * ALPHA;

use super::Arith;

/// `Bᵀ·d` for six inputs.
#[inline(always)]
pub(crate) fn bt<T: Arith>(d: [T; 6]) -> [T; 6] {
    let four_1_2 = d[1].add(d[2]).mul(4.0);
    let four_1m2 = d[1].sub(d[2]).mul(4.0);
    let two_3m1 = d[3].sub(d[1]).mul(2.0);
    let d4m2 = d[4].sub(d[2]);
    [
        d[0].mul(4.0).sub(d[2].mul(5.0)).add(d[4]),
        d[3].add(d[4]).sub(four_1_2),
        d[4].sub(d[3]).add(four_1m2),
        d4m2.add(two_3m1),
        d4m2.sub(two_3m1),
        d[1].mul(4.0).sub(d[3].mul(5.0)).add(d[5]),
    ]
}

/// `Aᵀ·m` for six products: four outputs.
#[inline(always)]
pub(crate) fn at<T: Arith>(m: [T; 6]) -> [T; 4] {
    let (p, q) = (m[1].add(m[2]), m[1].sub(m[2]));
    let (r, s) = (m[3].add(m[4]), m[3].sub(m[4]));
    [
        m[0].add(p).add(r),
        q.add(s.mul(2.0)),
        p.add(r.mul(4.0)),
        q.add(s.mul(8.0)).add(m[5]),
    ]
}

/// `G·g` for three taps.
#[inline(always)]
pub(crate) fn g<T: Arith>(w: [T; 3]) -> [T; 6] {
    let outer = w[0].add(w[2].mul(4.0));
    let two_1 = w[1].mul(2.0);
    [
        w[0].mul(0.25),
        w[0].add(w[1]).add(w[2]).mul(-1.0 / 6.0),
        w[0].sub(w[1]).add(w[2]).mul(-1.0 / 6.0),
        outer.add(two_1).mul(1.0 / 24.0),
        outer.sub(two_1).mul(1.0 / 24.0),
        w[2],
    ]
}

// The tiles below are arrays of arrays indexed by constants only and built from direct calls
// (no `map`, no `from_fn`): every step then inlines into the AVX-512 functions, whose lane
// arithmetic would otherwise be called out of line, and stays in registers (a flat array
// indexed `ξ % 6`, `ξ / 6` went through the stack).

/// The tile `a` transposed (a copy, no arithmetic).
#[inline(always)]
fn transpose<T: Copy, const R: usize, const C: usize>(a: [[T; C]; R]) -> [[T; R]; C] {
    std::array::from_fn(|j| std::array::from_fn(|i| a[i][j]))
}

/// Column `j` of a tile given by rows.
#[inline(always)]
fn column<T: Copy, const N: usize>(rows: &[[T; N]; 6], j: usize) -> [T; 6] {
    [
        rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j],
    ]
}

/// `Bᵀ·D·B` of one 6×6 tile given by its rows: `D·B` row by row, then `Bᵀ` down each column.
/// Position `ξ = 6i + j` is `[i][j]` of the result (as in `f2.rs`).
#[inline(always)]
pub(crate) fn input_tile<T: Arith>(d: [[T; 6]; 6]) -> [[T; 6]; 6] {
    let t = [bt(d[0]), bt(d[1]), bt(d[2]), bt(d[3]), bt(d[4]), bt(d[5])];
    transpose([
        bt(column(&t, 0)),
        bt(column(&t, 1)),
        bt(column(&t, 2)),
        bt(column(&t, 3)),
        bt(column(&t, 4)),
        bt(column(&t, 5)),
    ])
}

/// `Aᵀ·M·A` of one tile, `M` by rows (`m[i][j]` position `6i + j`): its 4×4 outputs,
/// `[row][column]` (as in `f2.rs`).
#[inline(always)]
pub(crate) fn output_tile<T: Arith>(m: [[T; 6]; 6]) -> [[T; 4]; 4] {
    let s = [at(m[0]), at(m[1]), at(m[2]), at(m[3]), at(m[4]), at(m[5])];
    transpose([
        at(column(&s, 0)),
        at(column(&s, 1)),
        at(column(&s, 2)),
        at(column(&s, 3)),
    ])
}

/// `G·g·Gᵀ` of one 3×3 filter (row-major taps). Position `ξ = 6i + j` is `[j][i]` of the
/// result.
#[inline(always)]
pub(crate) fn weight_tile<T: Arith>(taps: [T; 9]) -> [[T; 6]; 6] {
    let r = [
        g([taps[0], taps[1], taps[2]]),
        g([taps[3], taps[4], taps[5]]),
        g([taps[6], taps[7], taps[8]]),
    ];
    let col = |j: usize| g([r[0][j], r[1][j], r[2][j]]);
    [col(0), col(1), col(2), col(3), col(4), col(5)]
}
