//! An image folder with one subfolder per class (PNG or JPEG files).
//!
//! Two layouts:
//! - `DIR/train/<class>/*` and `DIR/test/<class>/*`: the split is yours. Classes are the
//!   subfolders of `train/`, sorted by name; every `test/` subfolder must be one of them.
//! - `DIR/<class>/*`: a fixed split. In each class the files are sorted by name and every fifth
//!   one (the 5th, 10th, ...) is held out for testing, the rest train (80/20).
//!
//! Files whose extension is not `.png`, `.jpg` or `.jpeg` (any case) are ignored; a file with
//! one of those extensions that does not decode is an error naming it.
//!
//! Resize policy: every image is converted to RGB, scaled (triangle filter) so that its
//! shorter side is `size`, and the central `size×size` square is kept (torchvision's
//! `Resize(size)` + `CenterCrop(size)`). The default `size` is 32.

use super::{check_dir, DataError, Dataset, Splits};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// The side length images are brought to when none is given.
pub const DEFAULT_FOLDER_SIZE: usize = 32;

/// Loads an image folder (see the module doc), bringing every image to `size×size` RGB.
pub fn load_folder(dir: &Path, size: usize) -> Result<Splits, DataError> {
    if size == 0 || size > 4096 {
        return Err(DataError::Invalid(format!(
            "image size {size} must be in 1..=4096"
        )));
    }
    check_dir(dir)?;
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let classes = subfolders(&train_dir)?;
        if classes.is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: no class subfolders",
                train_dir.display()
            )));
        }
        for test_class in subfolders(&test_dir)? {
            if !classes.contains(&test_class) {
                return Err(DataError::Invalid(format!(
                    "{}: class '{test_class}' is not a class of {}",
                    test_dir.display(),
                    train_dir.display()
                )));
            }
        }
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            train.extend(
                image_files(&train_dir.join(class))?
                    .into_iter()
                    .map(|p| (p, label)),
            );
            let test_class = test_dir.join(class);
            if test_class.is_dir() {
                test.extend(image_files(&test_class)?.into_iter().map(|p| (p, label)));
            }
        }
        return Ok(Splits {
            train: decode_all("folder/train", &train, &classes, size)?,
            test: decode_all("folder/test", &test, &classes, size)?,
        });
    }
    let classes = subfolders(dir)?;
    if classes.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no class subfolders (expected DIR/<class>/*.png or DIR/train/<class>/...)",
            dir.display()
        )));
    }
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        for (i, path) in image_files(&dir.join(class))?.into_iter().enumerate() {
            if i % 5 == 4 {
                test.push((path, label));
            } else {
                train.push((path, label));
            }
        }
    }
    Ok(Splits {
        train: decode_all("folder/train", &train, &classes, size)?,
        test: decode_all("folder/test", &test, &classes, size)?,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        entries.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// The names of the subfolders of `dir`, sorted.
fn subfolders(dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect())
}

/// The PNG and JPEG files of `dir`, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .map(|e| {
                        matches!(
                            e.to_ascii_lowercase().to_str(),
                            Some("png" | "jpg" | "jpeg")
                        )
                    })
                    .unwrap_or(false)
        })
        .collect())
}

fn decode_all(
    name: &str,
    files: &[(PathBuf, usize)],
    classes: &[String],
    size: usize,
) -> Result<Dataset, DataError> {
    if files.is_empty() {
        return Err(DataError::Invalid(format!(
            "{name}: no PNG or JPEG images found"
        )));
    }
    let plane = size * size;
    let mut images = vec![0u8; files.len() * 3 * plane];
    let mut labels = Vec::with_capacity(files.len());
    for ((path, label), out) in files.iter().zip(images.chunks_exact_mut(3 * plane)) {
        let decoded = image::ImageReader::open(path)
            .map_err(|e| DataError::io(path, e))?
            .with_guessed_format()
            .map_err(|e| DataError::io(path, e))?
            .decode()
            .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
        let side = size as u32;
        let rgb = if decoded.width() == side && decoded.height() == side {
            decoded.to_rgb8()
        } else {
            decoded
                .resize_to_fill(side, side, FilterType::Triangle)
                .to_rgb8()
        };
        // Interleaved RGB (HWC) to planar CHW.
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px.0[c];
            }
        }
        labels.push(*label);
    }
    Dataset::new(name, 3, size, size, 255, images, labels, classes.to_vec())
}
