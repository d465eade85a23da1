//! ImageNet-style preprocessing, as torchvision's
//! `Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)`:
//!
//! 1. decode a PNG or JPEG; grayscale is replicated to three channels, alpha is dropped;
//! 2. resize so the shorter side is `resize` pixels (256 for a 224 crop; the longer side is
//!    `⌊resize·long/short⌋`, as torchvision computes it) with a **bilinear filter with
//!    antialiasing**: a triangle kernel stretched by the downscale factor, so every source pixel
//!    contributes when shrinking (what PIL and torchvision's `antialias=True` do). Values stay
//!    in `f32` (PIL rounds to 8 bits after the resize; results differ by at most about 1/255);
//! 3. crop the central `crop×crop` square (offset `round((size − crop)/2)`);
//! 4. scale to [0, 1] and normalise per channel with ImageNet's mean (0.485, 0.456, 0.406) and
//!    standard deviation (0.229, 0.224, 0.225).
//!
//! The result is `[3, crop, crop]`, channel-major, ready to be one image of an NCHW batch.

use std::path::Path;

/// ImageNet's per-channel mean (RGB).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// What can go wrong preparing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an image this build decodes (PNG, JPEG), or are corrupt.
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: String, reason: String },
    /// The image or the requested size is unusable.
    #[error("{path}: {reason}")]
    Size { path: String, reason: String },
}

/// The shorter-side size torchvision's recipe resizes to before cropping `crop`: 256 for 224,
/// and the same 8/7 ratio for other crops.
pub fn resize_for_crop(crop: usize) -> usize {
    (crop * 256).div_ceil(224)
}

/// Reads, resizes, crops and normalises the image at `path` (see the module doc) into
/// `[3, crop, crop]`.
pub fn load_image(path: impl AsRef<Path>, crop: usize) -> Result<Vec<f32>, ImageError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: name.clone(),
        source,
    })?;
    let img = image::load_from_memory(&bytes).map_err(|e| ImageError::Decode {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let plane: Vec<f32> = rgb.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
    preprocess_rgb(&plane, h, w, crop).map_err(|reason| ImageError::Size { path: name, reason })
}

/// [`load_image`] from decoded pixels: `rgb` is `[H, W, 3]` interleaved, values in [0, 1].
pub fn preprocess_rgb(rgb: &[f32], h: usize, w: usize, crop: usize) -> Result<Vec<f32>, String> {
    if crop == 0 {
        return Err("the crop size must be at least 1".into());
    }
    if h == 0 || w == 0 || rgb.len() != h * w * 3 {
        return Err(format!("image of {w}x{h} pixels has no usable data"));
    }
    let short = resize_for_crop(crop);
    let (rh, rw) = if h <= w {
        (short, (short as u64 * w as u64 / h as u64) as usize)
    } else {
        ((short as u64 * h as u64 / w as u64) as usize, short)
    };
    if rh > 1 << 15 || rw > 1 << 15 {
        return Err(format!(
            "a {w}x{h} image resized to a shorter side of {short} would be {rw}x{rh}, too large"
        ));
    }
    let mut out = vec![0.0; 3 * crop * crop];
    let top = ((rh - crop) as f64 / 2.0).round() as usize;
    let left = ((rw - crop) as f64 / 2.0).round() as usize;
    let rows = filter_taps(h, rh);
    let cols = filter_taps(w, rw);
    // Horizontal pass over every source row for the cropped columns, then vertical.
    let mut horiz = vec![0.0f32; h * crop * 3];
    for y in 0..h {
        for ox in 0..crop {
            let (start, weights) = &cols[left + ox];
            for ch in 0..3 {
                let mut acc = 0.0f32;
                for (i, &wt) in weights.iter().enumerate() {
                    acc += wt * rgb[(y * w + start + i) * 3 + ch];
                }
                horiz[(y * crop + ox) * 3 + ch] = acc;
            }
        }
    }
    for oy in 0..crop {
        let (start, weights) = &rows[top + oy];
        for ox in 0..crop {
            for ch in 0..3 {
                let mut acc = 0.0f32;
                for (i, &wt) in weights.iter().enumerate() {
                    acc += wt * horiz[((start + i) * crop + ox) * 3 + ch];
                }
                let v = acc.clamp(0.0, 1.0);
                out[(ch * crop + oy) * crop + ox] = (v - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
            }
        }
    }
    Ok(out)
}

/// For each of `dst` output positions along an axis of `src` pixels: the first source pixel
/// and the normalised triangle-filter weights (support scaled by the downscale factor).
fn filter_taps(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(src);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|i| (1.0 - ((i as f64 + 0.5 - center) / support).abs()).max(0.0))
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|x| *x /= total);
            }
            (lo, weights.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_and_is_normalised() {
        let (h, w) = (300, 400);
        let rgb: Vec<f32> = (0..h * w * 3).map(|i| [0.2, 0.5, 0.9][i % 3]).collect();
        let out = preprocess_rgb(&rgb, h, w, 224).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        for ch in 0..3 {
            let want = ([0.2, 0.5, 0.9][ch] - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
            for &v in &out[ch * 224 * 224..(ch + 1) * 224 * 224] {
                assert!((v - want).abs() < 1e-5, "{v} vs {want}");
            }
        }
    }

    #[test]
    fn the_crop_is_centred() {
        // A horizontal ramp: the crop's middle column holds the image's middle value.
        let (h, w) = (256, 512);
        let rgb: Vec<f32> = (0..h * w * 3)
            .map(|i| ((i / 3) % w) as f32 / w as f32)
            .collect();
        let out = preprocess_rgb(&rgb, h, w, 224).unwrap();
        let mid = out[112 * 224 + 112] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
        assert!((mid - 0.5).abs() < 0.01, "{mid}");
        assert_eq!(resize_for_crop(224), 256);
    }
}
