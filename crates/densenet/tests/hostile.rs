//! Hostile files and inputs: each is answered with a named error, never a panic, a hang or a huge
//! allocation. Sizes are checked before anything is allocated: the counting allocator measures
//! the peak of extra live bytes while each hostile input is handled, and the bound (64 MiB) is
//! far below what the input claims (terabytes) yet loose enough for the other tests of this
//! binary running at the same time.

use std::io::Write;
use std::path::Path;

use densenet::data::{decode_idx, digits::parse_digits, parse_cifar10, DataError, Dataset};
use densenet::infer::{InferencePlan, PlanOptions};
use densenet::weights::{load_into, StateDict, Tensor, WeightsError};
use densenet::{DenseNet, DenseNetConfig, Error, Mode};
use densenet_kernels::alloc_counter::{exclusive, measure, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const SMALL: u64 = 64 << 20;

/// Runs `f`, asserting it allocates at most [`SMALL`] extra bytes at its peak.
#[track_caller]
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> R {
    bounded_by(SMALL, what, f)
}

/// Runs `f`, asserting it allocates at most `limit` extra bytes at its peak.
#[track_caller]
fn bounded_by<R>(limit: u64, what: &str, f: impl FnOnce() -> R) -> R {
    let (r, delta) = measure(f);
    assert!(
        delta.peak_extra_bytes <= limit,
        "{what}: peak of {} extra bytes",
        delta.peak_extra_bytes
    );
    r
}

/// A safetensors file with `header` as its JSON header, then `data`.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn parse(bytes: &[u8]) -> WeightsError {
    bounded("safetensors parse", || StateDict::from_bytes(bytes)).unwrap_err()
}

#[test]
fn safetensors_header_longer_than_the_file() {
    let _serial = exclusive();
    let mut bytes = file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    bytes[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let e = parse(&bytes);
    assert!(matches!(e, WeightsError::HeaderPastEnd { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse(&bytes), WeightsError::HeaderTooLarge { .. }));
    assert!(matches!(
        parse(&bytes[..5]),
        WeightsError::FileTooShort { len: 5 }
    ));
}

#[test]
fn safetensors_offsets_out_of_range_or_overlapping() {
    let _serial = exclusive();
    let past_end = file(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        &[0; 4],
    );
    let e = parse(&past_end);
    assert!(
        matches!(
            e,
            WeightsError::DataSize { .. } | WeightsError::BadOffsets { .. }
        ),
        "{e}"
    );
    let overlap = file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    let e = parse(&overlap);
    assert!(matches!(e, WeightsError::BadOffsets { .. }), "{e}");
    assert!(e.to_string().contains("offsets"), "{e}");
    let backwards = file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
        &[0; 4],
    );
    assert!(matches!(
        parse(&backwards),
        WeightsError::BadOffsets { .. } | WeightsError::DataSize { .. }
    ));
}

#[test]
fn safetensors_wrong_dtype() {
    let _serial = exclusive();
    let bytes = file(
        r#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
        &[1, 2],
    );
    let e = parse(&bytes);
    assert!(matches!(e, WeightsError::UnsupportedDtype { .. }), "{e}");
    assert!(
        e.to_string().contains("`w`") && e.to_string().contains("U8"),
        "{e}"
    );
    // The right shape in the wrong dtype for its byte range.
    let bytes = file(
        r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert!(matches!(parse(&bytes), WeightsError::DataSize { .. }));
}

#[test]
fn safetensors_dimensions_that_overflow_or_claim_terabytes() {
    let _serial = exclusive();
    // 2^62 elements: the byte count overflows u64.
    let overflow = file(
        r#"{"a":{"dtype":"F32","shape":[4611686018427387904,1],"data_offsets":[0,0]}}"#,
        &[],
    );
    let e = parse(&overflow);
    assert!(
        matches!(
            e,
            WeightsError::ShapeOverflow { .. } | WeightsError::DataSize { .. }
        ),
        "{e}"
    );
    // Product overflows usize itself.
    let product = file(
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
        &[],
    );
    assert!(matches!(
        parse(&product),
        WeightsError::ShapeOverflow { .. }
    ));
    // 2^40 floats (4 TB) backed by 8 bytes: refused before any allocation of that size.
    let terabytes = file(
        r#"{"a":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    let e = parse(&terabytes);
    assert!(matches!(e, WeightsError::DataSize { .. }), "{e}");
}

#[test]
fn zero_sized_tensors_and_inputs() {
    let _serial = exclusive();
    // A zero-sized tensor is a valid file; it does not fit a model tensor of another shape.
    let bytes = file(
        r#"{"a":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#,
        &[],
    );
    let dict = StateDict::from_bytes(&bytes).unwrap();
    assert_eq!(dict.get("a").unwrap().shape(), &[0, 3]);
    let mut target = StateDict::new();
    target.insert("a", Tensor::zeros(vec![1, 3]));
    let e = load_into(&mut target, &dict).unwrap_err();
    assert!(e.to_string().contains("wrong shape: a"), "{e}");

    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let mut model = DenseNet::new(cfg, 0).unwrap();
    assert!(matches!(
        model.workspace(0, 8, 8, true),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        model.workspace(2, 0, 8, true),
        Err(Error::Shape(_))
    ));
    let mut ws = model.workspace(2, 8, 8, true).unwrap();
    let e = model.forward(&mut ws, &[], Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    assert!(matches!(
        "bc:k=0".parse::<DenseNetConfig>(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Dataset::new("empty", 0, 8, 8, 255, vec![], vec![], vec!["a".into()]),
        Err(DataError::Invalid(_))
    ));
}

#[test]
fn non_finite_weights_are_refused_before_loading() {
    let _serial = exclusive();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut file = StateDict::new();
        file.insert("w", Tensor::new(vec![3], vec![1.0, bad, 2.0]).unwrap());
        let file = StateDict::from_bytes(&file.to_bytes().unwrap()).unwrap();
        let mut target = StateDict::new();
        target.insert("w", Tensor::zeros(vec![3]));
        let e = load_into(&mut target, &file).unwrap_err();
        assert!(
            matches!(e, WeightsError::NonFinite { index: 1, .. }),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("`w`") && e.to_string().contains("not finite"));
        assert_eq!(
            target.get("w").unwrap().data(),
            &[0.0; 3],
            "target untouched"
        );
    }
}

#[test]
fn non_finite_inputs_are_refused() {
    let _serial = exclusive();
    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let mut model = DenseNet::new(cfg, 0).unwrap();
    let mut ws = model.workspace(2, 8, 8, true).unwrap();
    let mut x = vec![0.5; 2 * 3 * 8 * 8];
    x[3 * 64 + 5] = f32::NAN;
    let e = model.forward(&mut ws, &x, Mode::Eval).unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert!(e.to_string().contains("image 1"), "{e}");
    x[3 * 64 + 5] = f32::INFINITY;
    let e = model.forward_train(&mut ws, &x, &[0, 1]).unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    let mut plan = InferencePlan::new(&model, 2, 8, 8, PlanOptions::plain()).unwrap();
    let e = plan.forward(&x).unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    x[3 * 64 + 5] = 0.5;
    assert!(plan.forward(&x).is_ok());
}

#[test]
fn images_of_the_wrong_channel_count_or_size() {
    let _serial = exclusive();
    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let mut model = DenseNet::new(cfg, 0).unwrap();
    let mut ws = model.workspace(2, 8, 8, true).unwrap();
    // Grey images to an RGB network.
    let e = model
        .forward(&mut ws, &[0.0; 2 * 8 * 8], Mode::Eval)
        .unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    assert!(e.to_string().contains("3 channels"), "{e}");
    // 16x16 images to a workspace made for 8x8.
    let e = model
        .forward(&mut ws, &[0.0; 2 * 3 * 16 * 16], Mode::Eval)
        .unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    // Too small for the network's downsampling.
    assert!(matches!(
        model.workspace(2, 1, 1, true),
        Err(Error::Shape(_))
    ));
    let imagenet: DenseNetConfig = "bc:k=4,blocks=2-2,stem=imagenet".parse().unwrap();
    let e = imagenet.block_sizes(3, 3).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
}

#[test]
fn absurd_specs_and_sizes_are_refused_before_allocating() {
    let _serial = exclusive();
    for spec in [
        "bc:blocks=1000000000",
        "bc:k=4096,blocks=4096-4096",
        "bc:k=4096,blocks=100-100-100,bn=64",
        "bc:k=18446744073709551615",
        "custom:classes=1048576,init=65536,k=4096,blocks=4096",
    ] {
        let e = bounded(spec, || spec.parse::<DenseNetConfig>()).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{spec}: {e}");
    }
    let e = "bc:k=1024,blocks=200-200-200"
        .parse::<DenseNetConfig>()
        .unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");

    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2,classes=3".parse().unwrap();
    let model = DenseNet::new(cfg, 0).unwrap();
    for (n, h, w) in [(1 << 40, 8, 8), (1, 1 << 31, 1 << 31), (usize::MAX, 8, 8)] {
        let e = bounded("workspace", || model.workspace(n, h, w, true)).unwrap_err();
        assert!(e.to_string().contains("workspace"), "{n}x{h}x{w}: {e}");
    }
}

#[test]
fn hostile_data_files() {
    let _serial = exclusive();
    let path = Path::new("hostile");
    // A gzip IDX stream whose header promises 18 bytes but which inflates to 16 MiB.
    let mut raw = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3];
    raw.extend(vec![0u8; 16 << 20]);
    let mut gz = flate2_compress(&raw);
    drop(raw);
    let e = bounded_by(4 << 20, "gzip bomb", || decode_idx(&gz, 3, path)).unwrap_err();
    assert!(e.to_string().contains("header promises 18 bytes"), "{e}");
    gz.truncate(gz.len() / 2);
    assert!(decode_idx(&gz, 3, path).is_err());
    // An IDX header that claims 2^96 bytes.
    let huge = [
        0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    ];
    let e = bounded("idx sizes", || decode_idx(&huge, 3, path)).unwrap_err();
    assert!(e.to_string().contains("overflow"), "{e}");
    // A digits header that promises 4 billion images.
    let mut digits = b"DNDIGITS".to_vec();
    digits.extend(1u32.to_le_bytes());
    digits.extend(u32::MAX.to_le_bytes());
    digits.extend([255, 255, 10, 16]);
    let e = bounded("digits", || parse_digits(&digits, path)).unwrap_err();
    assert!(e.to_string().contains("expected"), "{e}");
    // A CIFAR file that is not whole records, and one whose label is out of range.
    assert!(parse_cifar10(&[0; 3072], path).is_err());
    let mut rec = vec![0u8; 3073];
    rec[0] = 10;
    let e = parse_cifar10(&rec, path).unwrap_err();
    assert!(e.to_string().contains("label 10"), "{e}");
    // Upscaling by an absurd factor.
    let set = Dataset::new("one", 1, 2, 2, 255, vec![0; 4], vec![0], vec!["a".into()]).unwrap();
    let e = bounded("upscale", || set.upscale(1 << 40)).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    let e = Dataset::new(
        "big",
        usize::MAX,
        2,
        2,
        255,
        vec![],
        vec![],
        vec!["a".into()],
    );
    assert!(e.unwrap_err().to_string().contains("overflows"));
}

/// Gzip-compresses `bytes` with the flate2 crate the library reads IDX files with.
fn flate2_compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
