/// ReLU forward: `out = max(0, x)`.
///
/// # Shapes
/// - `out`, `inp`: any, equal lengths; `out` written.
pub fn relu_forward(out: &mut [f32], inp: &[f32]) {
    assert_eq!(out.len(), inp.len());
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = if x > 0.0 { x } else { 0.0 };
    }
}

/// ReLU backward (accumulates): `d_in += dy · [x > 0]`.
///
/// # Shapes
/// - `d_inp` accumulated; `d_out`, `inp` read; all of one length.
pub fn relu_backward(d_inp: &mut [f32], d_out: &[f32], inp: &[f32]) {
    assert_eq!(d_inp.len(), d_out.len());
    assert_eq!(d_inp.len(), inp.len());
    for ((d, &dy), &x) in d_inp.iter_mut().zip(d_out).zip(inp) {
        if x > 0.0 {
            *d += dy;
        }
    }
}

/// The keep decision of dropout for element `index` under `seed`: a counter-based hash
/// (SplitMix64 of `seed` and `index`) turned into a uniform `u ∈ [0, 1)`, kept when `u ≥ p`.
///
/// Being a pure function of `(seed, index)`, the mask never needs storing: backward regenerates
/// it, and any split of the work across threads draws the same mask.
pub fn dropout_keep(seed: u64, index: u64, p: f32) -> bool {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 24 bits give a float in [0, 1) exactly.
    let u = (z >> 40) as f32 / (1u64 << 24) as f32;
    u >= p
}

/// Dropout forward in training mode: `out_i = x_i / (1 − p)` where [`dropout_keep`] keeps
/// element `i`, else 0 (inverted dropout, as PyTorch). `p = 0` copies; `p = 1` zeroes.
///
/// # Shapes
/// - `out`, `inp`: any, equal lengths.
pub fn dropout_forward(out: &mut [f32], inp: &[f32], p: f32, seed: u64) {
    assert_eq!(out.len(), inp.len());
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout probability {p} outside [0, 1]"
    );
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    for (i, (o, &x)) in out.iter_mut().zip(inp).enumerate() {
        *o = if dropout_keep(seed, i as u64, p) {
            x * scale
        } else {
            0.0
        };
    }
}

/// Dropout backward (accumulates): `d_in_i += dy_i / (1 − p)` where element `i` was kept.
///
/// # Shapes
/// - `d_inp` accumulated, `d_out` read; equal lengths.
pub fn dropout_backward(d_inp: &mut [f32], d_out: &[f32], p: f32, seed: u64) {
    assert_eq!(d_inp.len(), d_out.len());
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    for (i, (d, &dy)) in d_inp.iter_mut().zip(d_out).enumerate() {
        if dropout_keep(seed, i as u64, p) {
            *d += dy * scale;
        }
    }
}
