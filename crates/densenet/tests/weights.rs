//! Weight interchange: safetensors round trips, foreign key spellings, dtype conversions,
//! mismatch reports, hostile files, atomic saves and the committed PyTorch fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use densenet::weights::{
    bf16_to_f32, canonical_key, f16_to_f32, f64_to_f32, load_into, IntTensor, NamedTensors,
    ShapeMismatch, StateDict, Tensor, WeightsError,
};

#[path = "weights/files.rs"]
mod files;
#[path = "weights/fixtures.rs"]
mod fixtures;

/// A minimal parameter store, standing in for the model's.
#[derive(Debug, Clone, PartialEq)]
struct Store(Vec<(String, Vec<usize>, Vec<f32>)>);

impl Store {
    fn zeros(layout: &[(&str, Vec<usize>)]) -> Self {
        Store(
            layout
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone(), vec![0.0; s.iter().product()]))
                .collect(),
        )
    }

    fn values(&self, name: &str) -> &[f32] {
        self.tensor(name).unwrap().1
    }
}

impl NamedTensors for Store {
    fn tensor_names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _, _)| n.clone()).collect()
    }
    fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        let (_, s, d) = self.0.iter().find(|(n, _, _)| n == name)?;
        Some((s, d))
    }
    fn tensor_mut(&mut self, name: &str) -> Option<(&[usize], &mut [f32])> {
        let (_, s, d) = self.0.iter_mut().find(|(n, _, _)| n == name)?;
        Some((s, d))
    }
}

fn tensor(shape: &[usize], first: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|i| first + i as f32).collect()).unwrap()
}

/// A fresh, empty scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("densenet-weights-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file assembled by hand, so tests can write headers no writer would.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/golden")
        .join(format!("{name}.safetensors"))
}

#[test]
fn round_trip_through_a_file_keeps_every_value_shape_and_metadata() {
    let mut dict = StateDict::new();
    dict.insert("features.conv0.weight", tensor(&[2, 3, 3, 3], -7.25));
    dict.insert(
        "classifier.bias",
        Tensor::new(vec![3], vec![f32::MIN_POSITIVE, -0.0, 1e30]).unwrap(),
    );
    dict.insert("scalar", Tensor::new(vec![], vec![2.5]).unwrap());
    dict.insert("empty", Tensor::new(vec![0, 4], vec![]).unwrap());
    dict.insert_int(
        "features.norm0.num_batches_tracked",
        IntTensor::new(vec![], vec![i64::MAX]).unwrap(),
    );
    dict.set_metadata("format_version", "1");
    let dir = scratch("round-trip");
    let path = dir.join("w.safetensors");
    dict.save(&path).unwrap();
    let back = StateDict::load(&path).unwrap();
    assert_eq!(back.len(), dict.len());
    for (name, t) in dict.tensors() {
        let b = back.get(name).unwrap_or_else(|| panic!("{name} lost"));
        assert_eq!(b.shape(), t.shape(), "{name}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(b.data()), bits(t.data()), "{name}");
    }
    assert_eq!(
        back.get_int("features.norm0.num_batches_tracked")
            .unwrap()
            .data(),
        &[i64::MAX]
    );
    assert_eq!(
        back.metadata().get("format_version").map(String::as_str),
        Some("1")
    );
    // The same bytes come back from to_bytes/from_bytes.
    assert_eq!(
        StateDict::from_bytes(&dict.to_bytes().unwrap()).unwrap(),
        back
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn legacy_torchvision_keys_follow_torchvisions_own_pattern() {
    let cases = [
        (
            "features.denseblock1.denselayer1.norm.1.weight",
            "features.denseblock1.denselayer1.norm1.weight",
        ),
        (
            "features.denseblock4.denselayer16.conv.2.weight",
            "features.denseblock4.denselayer16.conv2.weight",
        ),
        (
            "features.denseblock2.denselayer3.norm.2.running_var",
            "features.denseblock2.denselayer3.norm2.running_var",
        ),
        (
            "features.denseblock2.denselayer3.relu.1.bias",
            "features.denseblock2.denselayer3.relu1.bias",
        ),
        // The pattern's `.*` before `denselayer` accepts anything, even no dot.
        (
            "xdenselayer7.norm.1.running_mean",
            "xdenselayer7.norm1.running_mean",
        ),
        // Left alone by torchvision's pattern, so left alone here.
        (
            "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
            "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
        ),
        (
            "features.denseblock1.denselayer1.norm.3.weight",
            "features.denseblock1.denselayer1.norm.3.weight",
        ),
        (
            "features.denseblock1.denselayer.norm.1.weight",
            "features.denseblock1.denselayer.norm.1.weight",
        ),
        (
            "features.transition1.norm.1.weight",
            "features.transition1.norm.1.weight",
        ),
        (
            "features.denseblock1.denselayer1.norm1.weight",
            "features.denseblock1.denselayer1.norm1.weight",
        ),
    ];
    for (key, want) in cases {
        assert_eq!(canonical_key(key), want, "{key}");
    }

    let mut file = StateDict::new();
    file.insert(
        "features.denseblock1.denselayer1.norm.1.weight",
        tensor(&[4], 1.0),
    );
    file.insert(
        "features.denseblock1.denselayer1.conv.2.weight",
        tensor(&[2, 4, 3, 3], 10.0),
    );
    let mut model = Store::zeros(&[
        ("features.denseblock1.denselayer1.norm1.weight", vec![4]),
        (
            "features.denseblock1.denselayer1.conv2.weight",
            vec![2, 4, 3, 3],
        ),
    ]);
    let report = load_into(&mut model, &file).unwrap();
    assert_eq!(report.loaded, 2);
    assert_eq!(report.renamed.len(), 2);
    assert_eq!(
        model.values("features.denseblock1.denselayer1.norm1.weight"),
        &[1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        model.values("features.denseblock1.denselayer1.conv2.weight")[71],
        81.0
    );
}

#[test]
fn efficient_densenet_keys_map_to_torchvision_names() {
    let cases = [
        ("features.norm_final.weight", "features.norm5.weight"),
        (
            "features.norm_final.running_var",
            "features.norm5.running_var",
        ),
        (
            "features.denseblock3.denselayer12.bn.norm_weight",
            "features.denseblock3.denselayer12.norm1.weight",
        ),
        (
            "features.denseblock3.denselayer12.bn.norm_bias",
            "features.denseblock3.denselayer12.norm1.bias",
        ),
        (
            "features.denseblock3.denselayer12.bn.norm_running_mean",
            "features.denseblock3.denselayer12.norm1.running_mean",
        ),
        (
            "features.denseblock3.denselayer12.bn.norm_running_var",
            "features.denseblock3.denselayer12.norm1.running_var",
        ),
        (
            "features.denseblock3.denselayer12.bn.conv_weight",
            "features.denseblock3.denselayer12.conv1.weight",
        ),
        // The old efficient layer's second half used the legacy dotted names.
        (
            "features.denseblock3.denselayer12.norm.2.weight",
            "features.denseblock3.denselayer12.norm2.weight",
        ),
        (
            "features.transition1.bn.norm_weight",
            "features.transition1.bn.norm_weight",
        ),
    ];
    for (key, want) in cases {
        assert_eq!(canonical_key(key), want, "{key}");
    }
    let mut file = StateDict::new();
    file.insert("features.norm_final.bias", tensor(&[3], 5.0));
    file.insert(
        "features.denseblock1.denselayer1.bn.conv_weight",
        tensor(&[8, 3, 1, 1], 0.5),
    );
    let mut model = Store::zeros(&[
        (
            "features.denseblock1.denselayer1.conv1.weight",
            vec![8, 3, 1, 1],
        ),
        ("features.norm5.bias", vec![3]),
    ]);
    load_into(&mut model, &file).unwrap();
    assert_eq!(model.values("features.norm5.bias"), &[5.0, 6.0, 7.0]);
    assert_eq!(
        model.values("features.denseblock1.denselayer1.conv1.weight")[23],
        23.5
    );
}

#[test]
fn data_parallel_prefix_is_stripped_and_counters_are_optional() {
    assert_eq!(
        canonical_key("module.features.conv0.weight"),
        "features.conv0.weight"
    );
    assert_eq!(
        canonical_key("module.module.classifier.bias"),
        "classifier.bias"
    );
    assert_eq!(
        canonical_key("module.features.denseblock1.denselayer2.norm.1.bias"),
        "features.denseblock1.denselayer2.norm1.bias"
    );
    let mut file = StateDict::new();
    file.insert("module.features.norm0.weight", tensor(&[2], 3.0));
    file.insert_int(
        "module.features.norm0.num_batches_tracked",
        IntTensor::new(vec![], vec![7]).unwrap(),
    );
    let mut model = Store::zeros(&[
        ("features.norm0.weight", vec![2]),
        ("features.norm5.num_batches_tracked", vec![]),
    ]);
    let report = load_into(&mut model, &file).unwrap();
    assert_eq!(report.loaded, 1);
    assert_eq!(
        report.skipped_counters,
        vec!["module.features.norm0.num_batches_tracked"]
    );
    assert_eq!(
        report.counters_not_in_file,
        vec!["features.norm5.num_batches_tracked"]
    );
    assert_eq!(model.values("features.norm0.weight"), &[3.0, 4.0]);

    // A counter the model does hold is loaded, converted to f32.
    let mut model = Store::zeros(&[("features.norm0.num_batches_tracked", vec![])]);
    load_into(&mut model, &file.subset(|n| n.ends_with("tracked"))).unwrap();
    assert_eq!(model.values("features.norm0.num_batches_tracked"), &[7.0]);
}

#[test]
fn two_keys_meaning_the_same_tensor_are_refused() {
    let mut file = StateDict::new();
    file.insert(
        "features.denseblock1.denselayer1.norm.1.weight",
        tensor(&[2], 0.0),
    );
    file.insert(
        "module.features.denseblock1.denselayer1.norm1.weight",
        tensor(&[2], 0.0),
    );
    let mut model = Store::zeros(&[("features.denseblock1.denselayer1.norm1.weight", vec![2])]);
    let err = load_into(&mut model, &file).unwrap_err();
    assert!(
        matches!(err, WeightsError::DuplicateKey { ref canonical, .. }
        if canonical == "features.denseblock1.denselayer1.norm1.weight"),
        "{err}"
    );
}

#[test]
fn f16_bf16_and_f64_convert_to_the_exact_values() {
    let f16 = [
        (0x0000, 0.0),
        (0x8000, -0.0),
        (0x3c00, 1.0),
        (0xc000, -2.0),
        (0x3555, 0.333_251_95),
        (0x7bff, 65504.0),
        (0x0400, 6.103_515_6e-5), // 2^-14, smallest normal
        (0x0001, 5.960_464_5e-8), // 2^-24, smallest subnormal
        (0x03ff, 6.097_555e-5),   // 1023 * 2^-24, largest subnormal
        (0x7c00, f32::INFINITY),
        (0xfc00, f32::NEG_INFINITY),
    ];
    for (bits, want) in f16 {
        let got = f16_to_f32(bits);
        assert_eq!(got.to_bits(), want.to_bits(), "f16 {bits:#06x}: {got:e}");
    }
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
    assert!(f16_to_f32(0x7e00).is_nan() && f16_to_f32(0xfe01).is_nan());

    let bf16 = [
        (0x3f80, 1.0),
        (0xc049, -3.140_625),
        (0x0001, f32::from_bits(0x0001_0000)), // a subnormal
        (0x7f7f, 3.389_531_4e38),
        (0xff80, f32::NEG_INFINITY),
    ];
    for (bits, want) in bf16 {
        assert_eq!(
            bf16_to_f32(bits).to_bits(),
            f32::to_bits(want),
            "bf16 {bits:#06x}"
        );
    }
    assert!(bf16_to_f32(0x7fc0).is_nan());

    assert_eq!(f64_to_f32(0.1), 0.1f32);
    assert_eq!(f64_to_f32(1.0 + 2f64.powi(-24)), 1.0); // tie rounds to even
    assert_eq!(f64_to_f32(1.0 + 3.0 * 2f64.powi(-24)), 1.0 + 2f32.powi(-22));
    assert_eq!(f64_to_f32(2f64.powi(-149)), f32::from_bits(1));
    assert_eq!(f64_to_f32(1e300), f32::INFINITY);

    // The same conversions through a file.
    let halves: Vec<u8> = [0x3c00u16, 0xc000, 0x0001]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let brains: Vec<u8> = [0x3f80u16, 0xc049]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let doubles: Vec<u8> = [0.1f64, -1e300]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let mut data = halves.clone();
    data.extend(&brains);
    data.extend(&doubles);
    let header = r#"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]},"d":{"dtype":"F64","shape":[2,1],"data_offsets":[10,26]}}"#;
    let dict = StateDict::from_bytes(&raw_file(header, &data)).unwrap();
    assert_eq!(dict.get("h").unwrap().data(), &[1.0, -2.0, 2f32.powi(-24)]);
    assert_eq!(dict.get("b").unwrap().data(), &[1.0, -3.140_625]);
    assert_eq!(dict.get("d").unwrap().data(), &[0.1, f32::NEG_INFINITY]);
    assert_eq!(dict.get("d").unwrap().shape(), &[2, 1]);
}

#[test]
fn every_mismatch_is_reported_at_once_by_name_and_nothing_is_modified() {
    let mut file = StateDict::new();
    file.insert("features.conv0.weight", tensor(&[8, 3, 3, 3], 1.0)); // model wants 7x7
    file.insert("classifier.weight", tensor(&[10, 16], 1.0)); // fits
    file.insert("classifier.bias", tensor(&[9], 1.0)); // model wants 10
    file.insert("features.extra.weight", tensor(&[1], 1.0)); // unknown
    file.insert("module.features.other.bias", tensor(&[1], 1.0)); // unknown, renamed
    let mut model = Store::zeros(&[
        ("features.conv0.weight", vec![8, 3, 7, 7]),
        ("features.norm0.weight", vec![8]),
        ("features.norm0.running_var", vec![8]),
        ("classifier.weight", vec![10, 16]),
        ("classifier.bias", vec![10]),
    ]);
    let before = model.clone();
    let err = load_into(&mut model, &file).unwrap_err();
    assert_eq!(model, before, "a failed load must not modify the model");
    let WeightsError::Mismatch(report) = &err else {
        panic!("expected Mismatch, got {err}")
    };
    assert_eq!(
        report.missing,
        vec!["features.norm0.weight", "features.norm0.running_var"]
    );
    assert_eq!(
        report.unexpected,
        vec!["features.extra.weight", "module.features.other.bias"]
    );
    assert_eq!(
        report.wrong_shape,
        vec![
            ShapeMismatch {
                name: "features.conv0.weight".into(),
                expected: vec![8, 3, 7, 7],
                found: vec![8, 3, 3, 3]
            },
            ShapeMismatch {
                name: "classifier.bias".into(),
                expected: vec![10],
                found: vec![9]
            },
        ]
    );
    let text = err.to_string();
    println!("{text}");
    for needle in [
        "2 missing, 2 unexpected, 2 with the wrong shape",
        "missing: features.norm0.weight",
        "missing: features.norm0.running_var",
        "unexpected: features.extra.weight",
        "unexpected: module.features.other.bias",
        "wrong shape: features.conv0.weight expected [8, 3, 7, 7], found [8, 3, 3, 3]",
        "wrong shape: classifier.bias expected [10], found [9]",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
}

#[test]
fn from_named_copies_a_store_and_loads_back_into_it() {
    let mut model = Store::zeros(&[("a.weight", vec![2, 2]), ("a.bias", vec![2])]);
    model
        .tensor_mut("a.weight")
        .unwrap()
        .1
        .copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
    let dict = StateDict::from_named(&model).unwrap();
    assert_eq!(dict.names().collect::<Vec<_>>(), vec!["a.weight", "a.bias"]);
    assert_eq!(dict.get("a.weight").unwrap().data(), &[1.0, 2.0, 3.0, 4.0]);
    let mut other = Store::zeros(&[("a.bias", vec![2]), ("a.weight", vec![2, 2])]);
    load_into(
        &mut other,
        &StateDict::from_bytes(&dict.to_bytes().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(other.values("a.weight"), model.values("a.weight"));
}

/// Every one of the 65536 binary16 patterns against the textbook formula, evaluated in f64:
/// (-1)^s · 2^(e-15) · (1 + m/1024) for normal numbers, (-1)^s · m · 2^-24 for subnormals.
#[test]
fn f16_conversion_matches_the_formula_for_every_bit_pattern() {
    for bits in 0..=u16::MAX {
        let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
        let e = i32::from((bits >> 10) & 0x1f);
        let m = f64::from(bits & 0x3ff);
        let got = f16_to_f32(bits);
        match e {
            31 if m == 0.0 => assert_eq!(got, sign as f32 * f32::INFINITY, "{bits:#06x}"),
            31 => assert!(got.is_nan(), "{bits:#06x}"),
            0 => assert_eq!(f64::from(got), sign * m * 2f64.powi(-24), "{bits:#06x}"),
            _ => assert_eq!(
                f64::from(got),
                sign * 2f64.powi(e - 15) * (1.0 + m / 1024.0),
                "{bits:#06x}"
            ),
        }
        assert_eq!(got.is_sign_negative(), bits >> 15 == 1, "{bits:#06x}");
    }
}
