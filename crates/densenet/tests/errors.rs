//! Every error variant of the crate, each produced by a real failing input where one exists, with
//! its message checked for the words that name the problem.
//!
//! The table lists one row per variant; [`variant_name`] maps an error to its variant with an
//! exhaustive `match`, so a new variant fails to compile here until it gets a row, and the final
//! check fails if a variant has no row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use densenet::data::{digits::parse_digits, DataError, DataSpec};
use densenet::infer::npy::{parse_npy, read_npy, NpyError};
use densenet::infer::preprocess::{load_image, ImageError};
use densenet::weights::{
    load_into, load_params, IntTensor, NamedTensors, StateDict, Tensor, WeightsError,
};
use densenet::{DenseNet, DenseNetConfig, Error, Mode};

fn weights_variant(e: &WeightsError) -> &'static str {
    match e {
        WeightsError::Io { .. } => "Io",
        WeightsError::NotAFile { .. } => "NotAFile",
        WeightsError::NoFileName { .. } => "NoFileName",
        WeightsError::FileTooShort { .. } => "FileTooShort",
        WeightsError::HeaderTooLarge { .. } => "HeaderTooLarge",
        WeightsError::HeaderPastEnd { .. } => "HeaderPastEnd",
        WeightsError::InvalidHeader { .. } => "InvalidHeader",
        WeightsError::BadOffsets { .. } => "BadOffsets",
        WeightsError::DataSize { .. } => "DataSize",
        WeightsError::ShapeOverflow { .. } => "ShapeOverflow",
        WeightsError::UnsupportedDtype { .. } => "UnsupportedDtype",
        WeightsError::InvalidTensor { .. } => "InvalidTensor",
        WeightsError::NonFinite { .. } => "NonFinite",
        WeightsError::BadCounter { .. } => "BadCounter",
        WeightsError::DuplicateKey { .. } => "DuplicateKey",
        WeightsError::Mismatch(_) => "Mismatch",
        WeightsError::TargetInconsistent { .. } => "TargetInconsistent",
        WeightsError::Format(_) => "Format",
    }
}
const WEIGHTS_VARIANTS: usize = 18;

fn data_variant(e: &DataError) -> &'static str {
    match e {
        DataError::Io { .. } => "Io",
        DataError::Format { .. } => "Format",
        DataError::Invalid(_) => "Invalid",
    }
}
const DATA_VARIANTS: usize = 3;

fn error_variant(e: &Error) -> &'static str {
    match e {
        Error::Config(_) => "Config",
        Error::Shape(_) => "Shape",
        Error::NonFinite(_) => "NonFinite",
        Error::Data(_) => "Data",
        Error::Io { .. } => "Io",
        Error::Weights(_) => "Weights",
    }
}
const ERROR_VARIANTS: usize = 6;

/// A safetensors file with `header` as its JSON header, then `data`.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn parse_err(bytes: &[u8]) -> WeightsError {
    StateDict::from_bytes(bytes).unwrap_err()
}

fn one(name: &str, shape: Vec<usize>, data: Vec<f32>) -> StateDict {
    let mut d = StateDict::new();
    d.insert(name, Tensor::new(shape, data).unwrap());
    d
}

/// A model store that lists a tensor it then cannot return: a bug in a target, not in a file.
struct Liar;

impl NamedTensors for Liar {
    fn tensor_names(&self) -> Vec<String> {
        vec!["ghost".into()]
    }
    fn tensor(&self, _: &str) -> Option<(&[usize], &[f32])> {
        None
    }
    fn tensor_mut(&mut self, _: &str) -> Option<(&[usize], &mut [f32])> {
        None
    }
}

#[test]
fn every_weights_error_names_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let mut target = one("w", vec![2], vec![0.0; 2]);
    let cases: Vec<(WeightsError, &[&str])> = vec![
        (
            StateDict::load(&missing).unwrap_err(),
            &["missing.safetensors"],
        ),
        (
            StateDict::load(dir.path()).unwrap_err(),
            &["not a regular file"],
        ),
        (StateDict::new().save("").unwrap_err(), &["names no file"]),
        (parse_err(&[1, 2, 3]), &["truncated", "3 bytes"]),
        (
            parse_err(&u64::MAX.to_le_bytes()),
            &["header length", "limit"],
        ),
        (
            parse_err(&file("{}", &[])[..9]),
            &["header length", "only 1 bytes"],
        ),
        (parse_err(&file("{\"a\":1}  ", &[])), &["invalid header"]),
        (
            parse_err(&file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            )),
            &["offsets"],
        ),
        (
            parse_err(&file(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                &[0; 4],
            )),
            &["offsets", "file"],
        ),
        (
            parse_err(&file(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
                &[],
            )),
            &["overflow"],
        ),
        (
            parse_err(&file(
                r#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
                &[1, 2],
            )),
            &["`w`", "unsupported dtype U8"],
        ),
        (
            Tensor::new(vec![2, 2], vec![0.0; 3]).unwrap_err(),
            &["[2, 2]", "3 values"],
        ),
        (
            load_into(&mut target, &one("w", vec![2], vec![0.0, f32::NAN])).unwrap_err(),
            &["`w`", "NaN", "not finite"],
        ),
        (
            {
                let cfg: DenseNetConfig = "bc:k=2,blocks=1,init=2,classes=2".parse().unwrap();
                let mut model = DenseNet::new(cfg, 0).unwrap();
                let mut d = StateDict::new();
                d.insert_int(
                    "features.norm5.num_batches_tracked",
                    IntTensor::new(vec![2], vec![1, 2]).unwrap(),
                );
                load_params(model.store_mut(), &d).unwrap_err()
            },
            &[
                "features.norm5.num_batches_tracked",
                "one non-negative integer",
            ],
        ),
        (
            {
                let mut d = one("denselayer1.norm.1.weight", vec![2], vec![0.0; 2]);
                d.insert("denselayer1.norm1.weight", Tensor::zeros(vec![2]));
                load_into(&mut target, &d).unwrap_err()
            },
            &["denselayer1.norm.1.weight", "denselayer1.norm1.weight"],
        ),
        (
            load_into(&mut target, &one("v", vec![3], vec![0.0; 3])).unwrap_err(),
            &["missing: w", "unexpected: v"],
        ),
        (
            load_into(&mut Liar, &StateDict::new()).unwrap_err(),
            &["ghost", "inconsistent"],
        ),
        (
            // 4-bit floats: one element is half a byte, which the safetensors crate refuses.
            parse_err(&file(
                r#"{"a":{"dtype":"F4","shape":[1],"data_offsets":[0,0]}}"#,
                &[],
            )),
            &["safetensors"],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (e, words) in &cases {
        let text = e.to_string();
        for w in *words {
            assert!(
                text.contains(w),
                "{}: {text:?} lacks {w:?}",
                weights_variant(e)
            );
        }
        seen.insert(weights_variant(e));
    }
    assert_eq!(seen.len(), WEIGHTS_VARIANTS, "variants covered: {seen:?}");
}

#[test]
fn every_data_error_names_its_problem() {
    let missing = PathBuf::from("no-such-folder-for-the-errors-test");
    let cases: Vec<(DataError, &[&str])> = vec![
        (
            densenet::data::load_mnist(&missing).unwrap_err(),
            &["no-such-folder-for-the-errors-test"],
        ),
        (
            parse_digits(b"NOTDIGITS...........", Path::new("x.bin")).unwrap_err(),
            &["x.bin", "magic"],
        ),
        (
            "imagenet:dir".parse::<DataSpec>().unwrap_err(),
            &["unknown data set kind"],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (e, words) in &cases {
        let text = e.to_string();
        for w in *words {
            assert!(
                text.contains(w),
                "{}: {text:?} lacks {w:?}",
                data_variant(e)
            );
        }
        seen.insert(data_variant(e));
    }
    assert_eq!(seen.len(), DATA_VARIANTS, "variants covered: {seen:?}");
}

#[test]
fn every_inference_input_error_names_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let npy: Vec<(NpyError, &[&str])> = vec![
        (read_npy(&missing).unwrap_err(), &["missing.npy"]),
        (
            parse_npy(b"not numpy").unwrap_err(),
            &["not a valid .npy file"],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (e, words) in &npy {
        let name = match e {
            NpyError::Io { .. } => "Io",
            NpyError::Format(_) => "Format",
        };
        for w in *words {
            assert!(e.to_string().contains(w), "{name}: {e} lacks {w:?}");
        }
        seen.insert(name);
    }
    assert_eq!(seen.len(), 2);

    let not_png = dir.path().join("not.png");
    std::fs::write(&not_png, b"this is not a png").unwrap();
    // A 1x1 PNG (made by the image crate) is valid, but a zero crop is not.
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::new(1, 1).save(&tiny).unwrap();
    let img: Vec<(ImageError, &[&str])> = vec![
        (
            load_image(dir.path().join("missing.png"), 8).unwrap_err(),
            &["missing.png"],
        ),
        (
            load_image(&not_png, 8).unwrap_err(),
            &["not.png", "cannot decode"],
        ),
        (
            load_image(&tiny, 0).unwrap_err(),
            &["tiny.png", "crop size"],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (e, words) in &img {
        let name = match e {
            ImageError::Io { .. } => "Io",
            ImageError::Decode { .. } => "Decode",
            ImageError::Size { .. } => "Size",
        };
        for w in *words {
            assert!(e.to_string().contains(w), "{name}: {e} lacks {w:?}");
        }
        seen.insert(name);
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn every_crate_error_names_its_problem() {
    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let mut model = DenseNet::new(cfg, 0).unwrap();
    let mut ws = model.workspace(1, 8, 8, true).unwrap();
    let mut nan = vec![0.0; 3 * 8 * 8];
    nan[7] = f32::NAN;
    let cases: Vec<(Error, &[&str])> = vec![
        (
            "bc:k=twelve".parse::<DenseNetConfig>().unwrap_err(),
            &["k=twelve", "whole number"],
        ),
        (
            model.forward(&mut ws, &[0.0; 5], Mode::Eval).unwrap_err(),
            &["input has 5 values"],
        ),
        (
            model.forward(&mut ws, &nan, Mode::Eval).unwrap_err(),
            &["NaN", "index 7"],
        ),
        (
            Error::from(parse_digits(b"", Path::new("empty.bin")).unwrap_err()),
            &["empty.bin", "too short"],
        ),
        (
            // No public function of the crate returns Error::Io today (file readers have their
            // own error types), so this row is built by hand to check its message.
            Error::Io {
                path: "model.bin".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
            },
            &["model.bin", "not found"],
        ),
        (
            DenseNet::from_weights(
                "bc:k=4,blocks=2-2,classes=3".parse().unwrap(),
                Path::new("no-such-weights.safetensors"),
                0,
            )
            .unwrap_err(),
            &["no-such-weights.safetensors"],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (e, words) in &cases {
        let text = e.to_string();
        for w in *words {
            assert!(
                text.contains(w),
                "{}: {text:?} lacks {w:?}",
                error_variant(e)
            );
        }
        seen.insert(error_variant(e));
    }
    assert_eq!(seen.len(), ERROR_VARIANTS, "variants covered: {seen:?}");
}
