//! Training-time augmentation: random crop from a zero-padded image and horizontal flip, the
//! standard recipe for CIFAR (He et al. 2016; Huang et al. 2017, section 4.1).

use super::{DataError, Rng};

/// Which augmentations a training batch gets. Test batches never get any.
///
/// Padding is with stored value 0 (black) *before* normalisation, as torchvision's
/// `RandomCrop(32, padding=4)` ahead of `Normalize` does, so a padded pixel becomes
/// `-mean/std` after normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Pad each side by this many pixels, then crop a random window of the original size
    /// (0 = no crop).
    pub pad: usize,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        pad: 0,
        flip: false,
    };
    /// The CIFAR recipe: 4-pixel zero padding, random 32×32 crop, horizontal flip.
    pub const STANDARD: Augment = Augment { pad: 4, flip: true };

    /// Whether this augments at all.
    pub fn is_none(&self) -> bool {
        self.pad == 0 && !self.flip
    }

    /// Parses `none`, `standard` (= `crop4+flip`), `flip`, `cropP` or `cropP+flip`.
    pub fn parse(text: &str) -> Result<Augment, DataError> {
        let bad = || {
            DataError::Invalid(format!(
                "unknown augmentation '{text}' (expected none, standard, flip, cropP or cropP+flip, \
                 e.g. crop4+flip)"
            ))
        };
        match text {
            "none" => return Ok(Augment::NONE),
            "standard" => return Ok(Augment::STANDARD),
            _ => {}
        }
        let mut aug = Augment::NONE;
        for part in text.split('+') {
            if part == "flip" && !aug.flip {
                aug.flip = true;
            } else if let Some(p) = part.strip_prefix("crop") {
                let pad: usize = p.parse().map_err(|_| bad())?;
                if pad == 0 || pad > 64 || aug.pad != 0 {
                    return Err(bad());
                }
                aug.pad = pad;
            } else {
                return Err(bad());
            }
        }
        Ok(aug)
    }

    /// Draws this image's crop offset and flip from `rng` (always the same number of draws for
    /// a given `Augment`, so the sequence does not depend on pixel values).
    pub fn draw(&self, rng: &mut Rng) -> (usize, usize, bool) {
        let (dy, dx) = if self.pad > 0 {
            (rng.below(2 * self.pad + 1), rng.below(2 * self.pad + 1))
        } else {
            (self.pad, self.pad)
        };
        let flip = self.flip && rng.below(2) == 1;
        (dy, dx, flip)
    }

    /// Writes the augmented `src` (one `C×H×W` image, CHW) into `dst` (same shape): output pixel
    /// `(y, x)` of channel `c` is padded-image pixel `(y + dy, x' + dx)` where `x' = W-1-x` when
    /// flipping and `x` otherwise, and the padded image is `src` shifted by `pad` with zeros
    /// around it.
    pub fn apply(
        &self,
        dst: &mut [u8],
        src: &[u8],
        shape: (usize, usize, usize),
        draw: (usize, usize, bool),
    ) {
        let (c, h, w) = shape;
        let (dy, dx, flip) = draw;
        debug_assert_eq!(src.len(), c * h * w);
        debug_assert_eq!(dst.len(), c * h * w);
        for ch in 0..c {
            let plane = &src[ch * h * w..][..h * w];
            let out = &mut dst[ch * h * w..][..h * w];
            for y in 0..h {
                let sy = (y + dy).checked_sub(self.pad).filter(|&sy| sy < h);
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = (xx + dx).checked_sub(self.pad).filter(|&sx| sx < w);
                    out[y * w + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => plane[sy * w + sx],
                        _ => 0,
                    };
                }
            }
        }
    }
}

impl std::fmt::Display for Augment {
    /// The form [`Augment::parse`] reads back: `none`, `flip`, `crop4` or `crop4+flip`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pad, self.flip) {
            (0, false) => write!(f, "none"),
            (0, true) => write!(f, "flip"),
            (p, false) => write!(f, "crop{p}"),
            (p, true) => write!(f, "crop{p}+flip"),
        }
    }
}
