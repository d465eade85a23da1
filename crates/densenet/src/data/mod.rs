//! Image classification data sets: readers, splits, normalisation, augmentation and batching.
//!
//! Every reader produces a [`Splits`]: a training and a test [`Dataset`] of 8-bit images.
//!
//! | source | spec ([`DataSpec`]) | files |
//! |---|---|---|
//! | bundled digits | `digits` | none: embedded in the library ([`digits`]) |
//! | CIFAR-10 | `cifar10:DIR` | `data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin` |
//! | CIFAR-100 | `cifar100:DIR` | `train.bin`, `test.bin` |
//! | MNIST | `mnist:DIR` | `train-images-idx3-ubyte` etc., raw or `.gz` |
//! | Fashion-MNIST | `fashion-mnist:DIR` | same names as MNIST |
//! | image folder | `folder:DIR[,size=S]` | `DIR/<class>/*.{png,jpg}` (or `DIR/train/..`, `DIR/test/..`) |
//!
//! Images are stored as `u8` in **NCHW** order (image after image, each channel a plane of
//! `H·W` bytes), which is how the files store them. [`Batches`] turns them into the network's
//! input one batch at a time: `f32` NCHW, scaled to `[0, 1]`, optionally augmented, normalised
//! per channel.
//!
//! A broken file never panics: it gives a [`DataError`] that names the file and the problem.

mod augment;
mod batch;
mod cifar;
pub mod digits;
mod folder;
mod idx;
mod rng;
mod spec;

pub use augment::Augment;
pub use batch::{Batch, Batches};
pub use cifar::{load_cifar10, load_cifar100, parse_cifar10, parse_cifar100};
pub use folder::{load_folder, DEFAULT_FOLDER_SIZE};
pub use idx::{decode_idx, load_fashion_mnist, load_mnist};
pub use rng::Rng;
pub use spec::DataSpec;

use std::path::{Path, PathBuf};

/// Everything that can be wrong with a data set the user points at.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format requires.
    #[error("{}: {problem}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Anything else: a bad data set spec, a missing file, inconsistent arguments.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, problem: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// The most pixel bytes [`Dataset::upscale`] produces (16 GiB): a larger result is a typo in
/// the factor, refused before allocating.
pub const MAX_UPSCALED_BYTES: usize = 1 << 34;

/// A labelled set of same-sized 8-bit images.
///
/// # Layout
/// `images[((i·C + c)·H + y)·W + x]` is channel `c` of pixel `(y, x)` of image `i` (NCHW).
/// A stored value `v` means the intensity `v / pixel_max` in `[0, 1]`: 255 for the usual
/// 8-bit formats, 16 for the bundled digits.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    channels: usize,
    height: usize,
    width: usize,
    pixel_max: u8,
    images: Vec<u8>,
    labels: Vec<usize>,
    class_names: Vec<String>,
}

impl Dataset {
    /// Builds a data set, checking that the pieces fit together: `images` holds
    /// `labels.len()·C·H·W` bytes, every label is below the number of classes, no pixel is
    /// above `pixel_max`, and the sizes are non-zero.
    pub fn new(
        name: impl Into<String>,
        channels: usize,
        height: usize,
        width: usize,
        pixel_max: u8,
        images: Vec<u8>,
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        let name = name.into();
        if channels == 0 || height == 0 || width == 0 || pixel_max == 0 {
            return Err(DataError::Invalid(format!(
                "{name}: channels, height, width and pixel_max must be positive \
                 (got {channels}, {height}, {width}, {pixel_max})"
            )));
        }
        if class_names.is_empty() {
            return Err(DataError::Invalid(format!("{name}: no classes")));
        }
        let per_image = channels
            .checked_mul(height)
            .and_then(|p| p.checked_mul(width))
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "{name}: image size {channels}x{height}x{width} overflows"
                ))
            })?;
        if Some(images.len()) != labels.len().checked_mul(per_image) {
            return Err(DataError::Invalid(format!(
                "{name}: {} image bytes for {} labels of {per_image} bytes each",
                images.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= class_names.len())
        {
            return Err(DataError::Invalid(format!(
                "{name}: label {l} of image {i} is not below the {} classes",
                class_names.len()
            )));
        }
        if let Some(i) = images.iter().position(|&v| v > pixel_max) {
            return Err(DataError::Invalid(format!(
                "{name}: pixel value {} of image {} is above the maximum {pixel_max}",
                images[i],
                i / per_image
            )));
        }
        Ok(Self {
            name,
            channels,
            height,
            width,
            pixel_max,
            images,
            labels,
            class_names,
        })
    }

    /// A short name for messages, e.g. `digits/train`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Channels per image (1 for grey, 3 for RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// The stored value that means full intensity (255, or 16 for the digits).
    pub fn pixel_max(&self) -> u8 {
        self.pixel_max
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// The class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Every label, one per image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }
    /// All pixels, NCHW (see the type's doc).
    pub fn images(&self) -> &[u8] {
        &self.images
    }
    /// Bytes per image, `C·H·W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// The pixels of image `i` (`C·H·W` bytes, CHW order).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }
    /// The label of image `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// Image `i` as `f32` intensities in `[0, 1]` (CHW order).
    pub fn image_f32(&self, i: usize) -> Vec<f32> {
        let scale = 1.0 / f32::from(self.pixel_max);
        self.image(i)
            .iter()
            .map(|&v| f32::from(v) * scale)
            .collect()
    }

    /// A new data set holding the images at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, name: impl Into<String>, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            name: name.into(),
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            ..self.empty_like()
        }
    }

    /// Every image scaled up by an integer `factor` in both directions (nearest neighbour:
    /// each pixel becomes a `factor×factor` square), e.g. the 8×8 digits to 16×16 so that a
    /// network with more downsampling fits them. `factor` 1 returns a copy.
    pub fn upscale(&self, factor: usize) -> Result<Dataset, DataError> {
        if factor == 0 {
            return Err(DataError::Invalid(
                "upscale factor must be at least 1".into(),
            ));
        }
        let too_large = || {
            DataError::Invalid(format!(
                "upscaling {} images of {}x{} by {factor} is too large",
                self.len(),
                self.height,
                self.width
            ))
        };
        let (h, w) = (
            self.height.checked_mul(factor).ok_or_else(too_large)?,
            self.width.checked_mul(factor).ok_or_else(too_large)?,
        );
        let bytes = (self.len() * self.channels)
            .checked_mul(h)
            .and_then(|b| b.checked_mul(w))
            .filter(|&b| b <= MAX_UPSCALED_BYTES)
            .ok_or_else(too_large)?;
        let mut images = Vec::with_capacity(bytes);
        for plane in self.images.chunks_exact(self.height * self.width) {
            for y in 0..h {
                let row = &plane[(y / factor) * self.width..][..self.width];
                images.extend((0..w).map(|x| row[x / factor]));
            }
        }
        Ok(Dataset {
            name: self.name.clone(),
            height: h,
            width: w,
            images,
            labels: self.labels.clone(),
            class_names: self.class_names.clone(),
            ..self.empty_like()
        })
    }

    /// How many images each class has, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The same shape with no images, the `..base` of struct updates (copies no pixels).
    fn empty_like(&self) -> Dataset {
        Dataset {
            name: String::new(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixel_max: self.pixel_max,
            images: Vec::new(),
            labels: Vec::new(),
            class_names: Vec::new(),
        }
    }
}

/// A training set and the held-out set it is evaluated on.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    /// The images the network learns from.
    pub train: Dataset,
    /// The held-out images accuracy is reported on.
    pub test: Dataset,
}

/// Per-channel normalisation: `x' = (x - mean[c]) / std[c]` for intensities `x` in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean intensity of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (all positive).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Given statistics; every `std` must be positive and finite, and both lists equally long.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, DataError> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(DataError::Invalid(format!(
                "normalisation needs one mean and one std per channel (got {} and {})",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::Invalid(format!(
                "normalisation std {s} is not positive"
            )));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::Invalid(format!(
                "normalisation mean {m} is not finite"
            )));
        }
        Ok(Self { mean, std })
    }

    /// The identity (mean 0, std 1) for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Mean and (population) standard deviation of each channel over every pixel of `set`,
    /// computed in `f64`; a constant channel gets std 1 so that it is only centred.
    pub fn fit(set: &Dataset) -> Self {
        let (c, hw) = (set.channels(), set.height() * set.width());
        let mut sum = vec![0f64; c];
        let mut sum_sq = vec![0f64; c];
        for (k, plane) in set.images().chunks_exact(hw).enumerate() {
            let ch = k % c;
            for &v in plane {
                let v = f64::from(v);
                sum[ch] += v;
                sum_sq[ch] += v * v;
            }
        }
        let count = (set.len() * hw).max(1) as f64;
        let scale = f64::from(set.pixel_max());
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] / count;
            let var = (sum_sq[ch] / count - m * m).max(0.0);
            let s = var.sqrt() / scale;
            mean.push((m / scale) as f32);
            std.push(if s > 1e-12 { s as f32 } else { 1.0 });
        }
        Self { mean, std }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Checks that `dir` is a readable folder, naming it in the error.
pub(crate) fn check_dir(dir: &Path) -> Result<(), DataError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DataError::Invalid(format!(
            "{}: not a folder",
            dir.display()
        ))),
        Err(e) => Err(DataError::io(dir, e)),
    }
}
