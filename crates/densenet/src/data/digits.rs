//! The bundled data set: scikit-learn's 1,797 handwritten digits (8×8, grey, values 0..16),
//! from the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998,
//! CC BY 4.0; see `data/digits.ATTRIBUTION.md`). It is compiled into the library, so training
//! works from any folder with no download.
//!
//! # Split
//! Fixed and documented: the **first 1,347 images train, the last 450 test** (the classic 75/25
//! cut of the file order). The file keeps the source order, in which writers are grouped, so
//! the test images come largely from other hands than the training images: a harder and more
//! honest split than a random one.
//!
//! # File format (`digits.bin`, version 1, little-endian)
//! ```text
//! offset 0   8 bytes  magic "DNDIGITS"
//! offset 8   u32      format version = 1
//! offset 12  u32      number of images N
//! offset 16  u8 ×4    height 8, width 8, classes 10, largest pixel value 16
//! offset 20  N bytes  labels 0..9
//! then       N·64     pixels, image after image, row-major, 0..16
//! ```
//! `scripts/convert_digits.py` writes it from scikit-learn's `digits.csv.gz`.

use super::{DataError, Dataset, Splits};
use std::path::Path;

/// The embedded file.
pub const DIGITS_BIN: &[u8] = include_bytes!("../../data/digits.bin");

/// Number of images in the training split (the first ones in file order).
pub const TRAIN_LEN: usize = 1347;
/// Number of images in the test split (the last ones).
pub const TEST_LEN: usize = 450;

const MAGIC: &[u8; 8] = b"DNDIGITS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;

/// The bundled digits, split 1,347 / 450 as documented above.
pub fn load_digits() -> Splits {
    let all = parse_digits(DIGITS_BIN, Path::new("<bundled digits.bin>"))
        .expect("the bundled digits file is checked by the test suite");
    split_digits(&all).expect("the bundled digits file has 1,797 images")
}

/// Splits a parsed digits file: the first [`TRAIN_LEN`] images train, the rest test.
pub fn split_digits(all: &Dataset) -> Result<Splits, DataError> {
    if all.len() <= TRAIN_LEN {
        return Err(DataError::Invalid(format!(
            "{}: {} images, need more than {TRAIN_LEN} for the fixed split",
            all.name(),
            all.len()
        )));
    }
    let train: Vec<usize> = (0..TRAIN_LEN).collect();
    let test: Vec<usize> = (TRAIN_LEN..all.len()).collect();
    Ok(Splits {
        train: all.subset("digits/train", &train),
        test: all.subset("digits/test", &test),
    })
}

/// Parses a digits file (format above); `path` only names the file in errors.
pub fn parse_digits(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let bad = |problem: String| DataError::format(path, problem);
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!(
            "{} bytes, too short for the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad(
            "not a digits file (bad magic, expected \"DNDIGITS\")".into()
        ));
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}, this build reads version {VERSION}"
        )));
    }
    let n = u32_at(12) as usize;
    let (h, w, classes, max) = (
        bytes[16] as usize,
        bytes[17] as usize,
        bytes[18] as usize,
        bytes[19],
    );
    let expected = HEADER_LEN + n + n * h * w;
    if bytes.len() != expected {
        return Err(bad(format!(
            "{} bytes, the header promises {n} images of {h}x{w}: expected {expected} bytes",
            bytes.len()
        )));
    }
    let labels: Vec<usize> = bytes[HEADER_LEN..HEADER_LEN + n]
        .iter()
        .map(|&l| l as usize)
        .collect();
    let images = bytes[HEADER_LEN + n..].to_vec();
    let names = (0..classes).map(|d| d.to_string()).collect();
    Dataset::new("digits", 1, h, w, max, images, labels, names).map_err(|e| bad(e.to_string()))
}
