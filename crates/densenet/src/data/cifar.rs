//! CIFAR-10 and CIFAR-100, "binary version" (Krizhevsky, 2009).
//!
//! - CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` (train, 50,000 images) and
//!   `test_batch.bin` (10,000); each record is 3,073 bytes: the label (0..9), then 1,024 red,
//!   1,024 green and 1,024 blue bytes, each plane row-major 32×32. Class names come from
//!   `batches.meta.txt` when it is there.
//! - CIFAR-100: `train.bin` (50,000) and `test.bin` (10,000); each record is 3,074 bytes: the
//!   coarse label (0..19), the fine label (0..99), then the same 3,072 pixel bytes. The fine
//!   label is used. Names come from `fine_label_names.txt` when it is there.
//!
//! `DIR` may be the folder holding the files or the folder the archive unpacks into
//! (`cifar-10-batches-bin/`, `cifar-100-binary/`) or its parent.

use super::{check_dir, read_file, DataError, Dataset, Splits};
use std::path::{Path, PathBuf};

const PIXELS: usize = 3 * 32 * 32;

/// The CIFAR-10 class names in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The CIFAR-100 fine class names in label order.
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Loads CIFAR-10 from `dir` (see the module doc for the files).
pub fn load_cifar10(dir: &Path) -> Result<Splits, DataError> {
    let dir = find_dir(dir, "cifar-10-batches-bin", "test_batch.bin")?;
    let names = class_names(&dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    let train_files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    let train = read_records(&train_files, 1, 0, "cifar10/train", &names)?;
    let test = read_records(&[dir.join("test_batch.bin")], 1, 0, "cifar10/test", &names)?;
    Ok(Splits { train, test })
}

/// Loads CIFAR-100 (fine labels) from `dir` (see the module doc for the files).
pub fn load_cifar100(dir: &Path) -> Result<Splits, DataError> {
    let dir = find_dir(dir, "cifar-100-binary", "test.bin")?;
    let names = class_names(&dir.join("fine_label_names.txt"), &CIFAR100_CLASSES)?;
    let train = read_records(&[dir.join("train.bin")], 2, 1, "cifar100/train", &names)?;
    let test = read_records(&[dir.join("test.bin")], 2, 1, "cifar100/test", &names)?;
    Ok(Splits { train, test })
}

/// `dir` itself if it holds `marker`, else `dir/subdir` if that does.
fn find_dir(dir: &Path, subdir: &str, marker: &str) -> Result<PathBuf, DataError> {
    check_dir(dir)?;
    if dir.join(marker).exists() {
        return Ok(dir.to_path_buf());
    }
    let nested = dir.join(subdir);
    if nested.join(marker).exists() {
        return Ok(nested);
    }
    Err(DataError::Invalid(format!(
        "{}: no {marker} here or in {subdir}/ (expected the binary version of the data set)",
        dir.display()
    )))
}

/// One name per line from `path` if it exists (blank lines skipped), else the built-in names.
fn class_names(path: &Path, builtin: &[&str]) -> Result<Vec<String>, DataError> {
    if !path.exists() {
        return Ok(builtin.iter().map(|s| s.to_string()).collect());
    }
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::format(path, "not UTF-8 text"))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != builtin.len() {
        return Err(DataError::format(
            path,
            format!("{} class names, expected {}", names.len(), builtin.len()),
        ));
    }
    Ok(names)
}

/// Parses the bytes of one CIFAR-10 binary file (`data_batch_N.bin` or `test_batch.bin`) with
/// the built-in class names; `path` only names the file in errors.
pub fn parse_cifar10(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let names: Vec<String> = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    parse_one(bytes, path, 1, 0, "cifar10", &names)
}

/// Parses the bytes of one CIFAR-100 binary file (`train.bin` or `test.bin`, fine labels) with
/// the built-in class names; `path` only names the file in errors.
pub fn parse_cifar100(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let names: Vec<String> = CIFAR100_CLASSES.iter().map(|s| s.to_string()).collect();
    parse_one(bytes, path, 2, 1, "cifar100", &names)
}

fn parse_one(
    bytes: &[u8],
    path: &Path,
    label_bytes: usize,
    label_at: usize,
    name: &str,
    names: &[String],
) -> Result<Dataset, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    append_records(
        bytes,
        path,
        label_bytes,
        label_at,
        names,
        &mut images,
        &mut labels,
    )?;
    Dataset::new(name, 3, 32, 32, 255, images, labels, names.to_vec())
}

/// Reads every record of `files`: `label_bytes` label bytes (the one at `label_at` is used),
/// then 3,072 pixel bytes.
fn read_records(
    files: &[PathBuf],
    label_bytes: usize,
    label_at: usize,
    name: &str,
    names: &[String],
) -> Result<Dataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = read_file(path)?;
        append_records(
            &bytes,
            path,
            label_bytes,
            label_at,
            names,
            &mut images,
            &mut labels,
        )?;
    }
    Dataset::new(name, 3, 32, 32, 255, images, labels, names.to_vec())
}

/// Appends the records of one file's `bytes` to `images` and `labels`.
fn append_records(
    bytes: &[u8],
    path: &Path,
    label_bytes: usize,
    label_at: usize,
    names: &[String],
    images: &mut Vec<u8>,
    labels: &mut Vec<usize>,
) -> Result<(), DataError> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte records (truncated or not a \
                 CIFAR binary file)",
                bytes.len()
            ),
        ));
    }
    images.reserve(bytes.len() / record * PIXELS);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[label_at] as usize;
        if label >= names.len() {
            return Err(DataError::format(
                path,
                format!(
                    "record {i} has label {label}, expected 0..{}",
                    names.len().saturating_sub(1)
                ),
            ));
        }
        if label_bytes == 2 && rec[0] >= 20 {
            return Err(DataError::format(
                path,
                format!("record {i} has coarse label {}, expected 0..19", rec[0]),
            ));
        }
        labels.push(label);
        images.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}
