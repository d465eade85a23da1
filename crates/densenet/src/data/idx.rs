//! MNIST and Fashion-MNIST in the IDX format (LeCun et al.; Xiao, Rasul & Vollgraf 2017).
//!
//! Files in `DIR`, each raw or gzip-compressed (`.gz`, detected by its magic bytes):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`. The dotted spelling some archives use (`train-images.idx3-ubyte`)
//! is accepted too.
//!
//! IDX: a big-endian header `0x00 0x00 type ndim`, then `ndim` big-endian `u32` sizes, then the
//! data. Images are type `0x08` (unsigned byte) with 3 dimensions `N×28×28` (any `H×W` is
//! accepted); labels are type `0x08` with 1 dimension `N`.

use super::{check_dir, read_file, DataError, Dataset, Splits};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The Fashion-MNIST class names in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Loads MNIST (classes `0`..`9`) from `dir`.
pub fn load_mnist(dir: &Path) -> Result<Splits, DataError> {
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    load_idx_pair(dir, "mnist", &names)
}

/// Loads Fashion-MNIST from `dir` (same file names as MNIST).
pub fn load_fashion_mnist(dir: &Path) -> Result<Splits, DataError> {
    let names: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    load_idx_pair(dir, "fashion-mnist", &names)
}

fn load_idx_pair(dir: &Path, name: &str, names: &[String]) -> Result<Splits, DataError> {
    check_dir(dir)?;
    let train = load_split(dir, "train", &format!("{name}/train"), names)?;
    let test = load_split(dir, "t10k", &format!("{name}/test"), names)?;
    Ok(Splits { train, test })
}

fn load_split(
    dir: &Path,
    prefix: &str,
    name: &str,
    names: &[String],
) -> Result<Dataset, DataError> {
    let images_path = find_file(dir, prefix, "images", "idx3")?;
    let labels_path = find_file(dir, prefix, "labels", "idx1")?;
    let (dims, pixels) = read_idx(&images_path, 3)?;
    let (label_dims, label_bytes) = read_idx(&labels_path, 1)?;
    if dims[0] != label_dims[0] {
        return Err(DataError::Invalid(format!(
            "{} holds {} images but {} holds {} labels",
            images_path.display(),
            dims[0],
            labels_path.display(),
            label_dims[0]
        )));
    }
    if let Some(i) = label_bytes.iter().position(|&l| l as usize >= names.len()) {
        return Err(DataError::format(
            &labels_path,
            format!(
                "label {} of item {i} is not below {}",
                label_bytes[i],
                names.len()
            ),
        ));
    }
    let labels = label_bytes.into_iter().map(usize::from).collect();
    Dataset::new(
        name,
        1,
        dims[1],
        dims[2],
        255,
        pixels,
        labels,
        names.to_vec(),
    )
}

/// The first of `PREFIX-KIND-IDX-ubyte`, `PREFIX-KIND.IDX-ubyte`, each raw or `.gz`, that exists.
fn find_file(dir: &Path, prefix: &str, kind: &str, idx: &str) -> Result<PathBuf, DataError> {
    let stems = [
        format!("{prefix}-{kind}-{idx}-ubyte"),
        format!("{prefix}-{kind}.{idx}-ubyte"),
    ];
    for stem in &stems {
        for candidate in [dir.join(stem), dir.join(format!("{stem}.gz"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(DataError::Invalid(format!(
        "{}: missing {} (or {0}.gz)",
        dir.display(),
        stems[0]
    )))
}

/// Reads an IDX file of unsigned bytes with `ndim` dimensions: the sizes and the data.
pub(crate) fn read_idx(path: &Path, ndim: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    decode_idx(&read_file(path)?, ndim, path)
}

/// Decodes the bytes of an IDX file of unsigned bytes with `ndim` dimensions, raw or gzip
/// (detected by its magic bytes): the sizes and the data. `path` only names the file in errors.
///
/// A gzip stream is decompressed only as far as the IDX header it starts with promises (plus
/// one byte to detect excess), so a small hostile file cannot inflate into gigabytes.
pub fn decode_idx(
    raw: &[u8],
    ndim: usize,
    path: &Path,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx(raw, ndim).map_err(|problem| DataError::format(path, problem));
    }
    let broken = |e: std::io::Error| DataError::format(path, format!("broken gzip stream: {e}"));
    let mut stream = GzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut stream)
        .take((4 + 4 * ndim) as u64)
        .read_to_end(&mut out)
        .map_err(broken)?;
    let promised = idx_data_len(&out, ndim).map_err(|problem| DataError::format(path, problem))?;
    stream
        .take(promised.saturating_add(1) as u64)
        .read_to_end(&mut out)
        .map_err(broken)?;
    parse_idx(&out, ndim).map_err(|problem| DataError::format(path, problem))
}

/// Checks an IDX header of unsigned bytes with `ndim` dimensions and returns how many data
/// bytes it promises.
fn idx_data_len(bytes: &[u8], ndim: usize) -> Result<usize, String> {
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "{} bytes, too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (the first two bytes must be zero)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX data type 0x{:02x}, expected 0x08 (unsigned byte)",
            bytes[2]
        ));
    }
    if bytes[3] as usize != ndim {
        return Err(format!("{} dimensions, expected {ndim}", bytes[3]));
    }
    let dims = idx_dims(bytes, ndim);
    if dims.iter().skip(1).any(|&d| d == 0) {
        return Err(format!("zero-sized dimension in {dims:?}"));
    }
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| "sizes overflow".to_string())
}

/// The `ndim` big-endian sizes after the 4-byte magic; the caller has checked the length.
fn idx_dims(bytes: &[u8], ndim: usize) -> Vec<usize> {
    bytes[4..4 + 4 * ndim]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect()
}

fn parse_idx(bytes: &[u8], ndim: usize) -> Result<(Vec<usize>, Vec<u8>), String> {
    let expected = idx_data_len(bytes, ndim)?;
    let dims = idx_dims(bytes, ndim);
    let data = &bytes[4 + 4 * ndim..];
    if data.len() != expected {
        return Err(format!(
            "header promises {} bytes of data ({}), found {} (truncated or corrupted)",
            expected,
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            data.len()
        ));
    }
    Ok((dims, data.to_vec()))
}
