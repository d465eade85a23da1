//! Element conversions from the dtypes a checkpoint may hold to `f32` (and `i64`).
//!
//! All input is little-endian, as the safetensors format prescribes.

/// The `f32` with the same value as the IEEE 754 binary16 number `bits`.
///
/// Every binary16 value is exactly representable in `f32`, so this is exact: normal numbers
/// re-bias the exponent (15 -> 127) and widen the 10-bit mantissa to 23 bits; subnormals
/// (`mantissa · 2^-24`) are normalised; infinities stay infinite and NaNs stay NaN with their
/// payload shifted into the top mantissa bits (so a quiet NaN stays quiet).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let out = match exponent {
        0 if mantissa == 0 => sign,
        0 => {
            // value = mantissa · 2^-24: shift the leading 1 up to the implicit-bit position
            // (bit 10), lowering the exponent once per shift, starting from 2^-14.
            let mut biased = 127 - 14;
            let mut m = mantissa;
            while m & 0x400 == 0 {
                m <<= 1;
                biased -= 1;
            }
            sign | (biased << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(out)
}

/// The `f32` with the same value as the bfloat16 number `bits`: bfloat16 is the top half of an
/// `f32`, so this is exact for every value, NaN and infinity included.
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `f64` to `f32`, rounding to nearest-even; values beyond `f32::MAX` become infinite, as in
/// PyTorch's `tensor.float()`.
pub fn f64_to_f32(value: f64) -> f32 {
    value as f32
}

/// Decodes `bytes` as little-endian elements of `N` bytes, converting each with `convert`.
/// The caller has checked that `bytes.len()` is a multiple of `N`.
pub(crate) fn decode<const N: usize, T>(bytes: &[u8], convert: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(chunk);
            convert(raw)
        })
        .collect()
}

/// Decodes `bytes` as little-endian elements of `N` bytes into `out`, converting each with
/// `convert`. The caller has checked that `bytes.len() == out.len() * N`.
pub(crate) fn decode_into<const N: usize, T>(
    bytes: &[u8],
    out: &mut [T],
    convert: impl Fn([u8; N]) -> T,
) {
    for (chunk, value) in bytes.chunks_exact(N).zip(out) {
        let mut raw = [0u8; N];
        raw.copy_from_slice(chunk);
        *value = convert(raw);
    }
}
