//! The AVX-512 micro-kernel.
//!
//! Tile 8×32: sixteen `zmm` accumulators, two `B` vectors per depth step and eight broadcasts
//! (16 FMAs per 2 full loads + 8 broadcast loads). Eight rows divide DenseNet's output widths
//! (32 = growth, 128 = 4·growth) exactly; 32 columns waste little on 56², 28² and 14² maps.
//!
//! Measured (DenseNet-121 batch-1 forward, one thread, GFLOP per CPU-second on a shared Zen 5
//! core, see docs/performance.md): 1×1 convolutions 156–219 (93–123% of the 176 GFLOP/s
//! nominal peak), 3×3 128→32 106–150, average of the 16 bottleneck and growth shapes 174 (99%).
//! 1×1 256→128 @28: 219 vs 105 for the AVX2 kernel and 39 for the portable one.

use super::{ASliver, BSliver, CStore};
use std::arch::x86_64::*;

/// Rows per micro-tile.
pub const MR: usize = 8;
/// Columns per micro-tile.
pub const NR: usize = 32;
/// Kernel name for logs and bench IDs.
pub const NAME: &str = "avx512_gemm_f32_8x32";

/// Rows of the narrow-output tile: 12×32 keeps 24 accumulators (of 32 registers) and serves
/// outputs of 12, 36, 60… channels (DenseNet-BC's growth rate 12), which 8-row groups would
/// pad by a third, a ninth, a fifteenth. Chosen per product by [`super::tile_for_rows`].
pub const MR_NARROW: usize = 12;

/// `C[MR, NR] (+)= Σ_k A[·, k] ⊗ B[k, ..NR]`, `C[r, j] = c[r·ldc + j]`, with `B` packed
/// (`B[k, ..] = b[k·NR..][..NR]`) or read in place from its rows. `ROWS` is [`MR`] or
/// [`MR_NARROW`]. With `VECS = 1` only the first 16 columns (one vector) of the tile are
/// computed and stored, from the same `B` rows: a column tail of at most 16 costs half a tile
/// (each of those columns is the same sum as in a whole tile).
///
/// # Panics
/// If a buffer is too short for `kc` or the tile, or the CPU lacks the tier's features.
#[inline]
pub(crate) fn kernel<const ROWS: usize, const VECS: usize>(
    kc: usize,
    a: ASliver<'_>,
    b: BSliver<'_>,
    c: &mut [f32],
    ldc: usize,
    store: CStore,
) {
    // Checked for whole rows of `NR`: a packed row is `NR` floats apart whatever `VECS`, and
    // callers of an in-place `B` leave `NR` floats after its last row anyway.
    let (b_ptr, b_starts) = b.checked(kc, NR);
    assert!(ROWS == MR || ROWS == MR_NARROW);
    assert!(VECS == 1 || VECS == 2);
    assert!(super::c_span(ROWS, ldc, 16 * VECS).is_some_and(|n| n <= c.len()));
    assert!(is_x86_feature_detected!("avx512f"));
    let (packed, rows) = match a {
        ASliver::Packed(a) => {
            assert!(a.len() >= kc * ROWS);
            (a.as_ptr(), [std::ptr::null(); ROWS])
        }
        ASliver::Rows(data, starts) => {
            assert!(starts[..ROWS]
                .iter()
                .all(|&s| s.checked_add(kc).is_some_and(|end| end <= data.len())));
            let rows = std::array::from_fn(|r| data.as_ptr().wrapping_add(starts[r]));
            (std::ptr::null(), rows)
        }
    };
    // SAFETY: the asserts (and `BSliver::checked`) bound every read of `A` (kc·ROWS packed
    // floats, or kc floats from each row start), of `B` (kc·NR packed floats, or NR floats from
    // each of kc row starts; the kernel reads the first 16·VECS of each) and every access to
    // `c` ((ROWS−1)·ldc + 16·VECS), and the CPU has the features.
    unsafe {
        let c = c.as_mut_ptr();
        match (packed.is_null(), b_starts.is_null()) {
            (true, true) => kernel_rx32::<ROWS, VECS, false, true>(
                kc, packed, rows, b_ptr, b_starts, c, ldc, store,
            ),
            (true, false) => kernel_rx32::<ROWS, VECS, false, false>(
                kc, packed, rows, b_ptr, b_starts, c, ldc, store,
            ),
            (false, true) => kernel_rx32::<ROWS, VECS, true, true>(
                kc, packed, rows, b_ptr, b_starts, c, ldc, store,
            ),
            (false, false) => kernel_rx32::<ROWS, VECS, true, false>(
                kc, packed, rows, b_ptr, b_starts, c, ldc, store,
            ),
        }
    }
}

/// With `A_PACKED`, `A[r, k] = a[k·ROWS + r]`, otherwise `A[r, k] = rows[r][k]`; with
/// `B_PACKED`, `B[k, t] = b[k·NR + t]`, otherwise `B[k, t] = b[b_starts[k] + t]`; columns
/// `t < 16·VECS`.
///
/// # Safety
/// `a` (packed) or each `rows[r]` holds the `kc` values of `A` so addressed; `b` holds the
/// values of `B` so addressed for `t < 16·VECS` (with `b_starts` holding `kc` offsets); `c`
/// holds `(ROWS−1)·ldc + 16·VECS`; the CPU has the enabled features.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_rx32<
    const ROWS: usize,
    const VECS: usize,
    const A_PACKED: bool,
    const B_PACKED: bool,
>(
    kc: usize,
    a: *const f32,
    rows: [*const f32; ROWS],
    b: *const f32,
    b_starts: *const usize,
    c: *mut f32,
    ldc: usize,
    store: CStore,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    for k in 0..kc {
        // SAFETY: k < kc, so B[k, ..NR] and A[r, k] for every r < ROWS are in bounds in either
        // layout.
        unsafe {
            let b_k = if B_PACKED {
                b.add(k * NR)
            } else {
                b.add(*b_starts.add(k))
            };
            let b0 = _mm512_loadu_ps(b_k);
            let b1 = if VECS == 2 {
                _mm512_loadu_ps(b_k.add(16))
            } else {
                b0
            };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rk = if A_PACKED {
                    *a.add(k * ROWS + r)
                } else {
                    *rows[r].add(k)
                };
                let a_r = _mm512_set1_ps(a_rk);
                acc_r[0] = _mm512_fmadd_ps(a_r, b0, acc_r[0]);
                if VECS == 2 {
                    acc_r[1] = _mm512_fmadd_ps(a_r, b1, acc_r[1]);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: r < ROWS, so row r's 16·VECS floats at c + r·ldc are within
        // (ROWS−1)·ldc + 16·VECS.
        unsafe {
            let row = c.add(r * ldc);
            for (v, &acc_v) in acc_r.iter().take(VECS).enumerate() {
                let at = row.add(16 * v);
                match store {
                    CStore::Add => _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), acc_v)),
                    // Full, 64-byte-aligned lines: straight to memory.
                    CStore::Stream if (row as usize).is_multiple_of(64) => {
                        _mm512_stream_ps(at, acc_v);
                    }
                    _ => _mm512_storeu_ps(at, acc_v),
                }
            }
        }
    }
    if store == CStore::Stream {
        // Non-temporal stores are weakly ordered: fence them before whatever hands `C` on (a
        // rayon join, another thread's reads).
        // SAFETY (of this call in an `unsafe fn`): SSE, which has `sfence`, is part of x86-64.
        _mm_sfence();
    }
}
