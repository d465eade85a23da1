//! Weights read from a file tensor by tensor: `DenseNet::from_weights` and
//! `DenseNet::load_weights` give the same model as parsing the whole file into a `StateDict`
//! first, in every dtype the loader converts and across read chunks, while holding no copy of the
//! file (from_weights) or one staged copy of the parameters (load_weights); a load that fails
//! part-way leaves the model as it was.
//!
//! The counting allocator measures the peaks, so the tests of this binary run one at a time.

use std::path::Path;

use densenet::weights::{load_params, StateDict, WeightsError};
use densenet::{DenseNet, DenseNetConfig, Error};
use densenet_kernels::alloc_counter::{exclusive, measure, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// A small network whose classifier (1000 × 56 = 56,000 values) spans several read chunks.
fn config() -> DenseNetConfig {
    "bc:k=8,blocks=2-2,init=16,classes=1000".parse().unwrap()
}

/// The model's state dict with every value distinct (so a tensor read into the wrong place or
/// a chunk read out of order shows) and the counters set.
fn distinct_model() -> DenseNet {
    let mut model = DenseNet::new(config(), 3).unwrap();
    let store = model.store_mut();
    for (t, name) in store.tensor_names().into_iter().enumerate() {
        let (_, values) = store.tensor_mut(&name).unwrap();
        for (i, v) in values.iter_mut().enumerate() {
            // Positive where running variances need it; exact in bf16 for small i.
            *v = 1.0 + (t as f32) * 0.5 + (i % 97) as f32 * 0.25;
        }
    }
    for (i, bn) in store.bn_names().to_vec().iter().enumerate() {
        store.set_batches_tracked(bn, 100 + i as u64);
    }
    model
}

/// Writes `dict` as a safetensors file whose float tensors are stored as `dtype` (F32, F64,
/// F16 or BF16; values must be exact in it) and whose counters are I64.
fn write_as(dict: &StateDict, dtype: &str, path: &Path) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let mut add = |name: &str, dtype: &str, shape: &[usize], bytes: Vec<u8>| {
        let start = data.len();
        data.extend_from_slice(&bytes);
        header.insert(
            name.to_owned(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    };
    for (name, t) in dict.tensors() {
        let bytes: Vec<u8> = t
            .data()
            .iter()
            .flat_map(|&v| match dtype {
                "F32" => v.to_le_bytes().to_vec(),
                "F64" => f64::from(v).to_le_bytes().to_vec(),
                "BF16" => ((v.to_bits() >> 16) as u16).to_le_bytes().to_vec(),
                "F16" => f32_to_f16_exact(v).to_le_bytes().to_vec(),
                _ => unreachable!(),
            })
            .collect();
        add(name, dtype, t.shape(), bytes);
    }
    for (name, t) in dict.int_tensors() {
        let bytes = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        add(name, "I64", t.shape(), bytes);
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

/// `v` as binary16, for values that are exact in it (normal numbers with at most 11
/// significant bits): checked by converting back.
fn f32_to_f16_exact(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    assert!((1..31).contains(&exponent), "{v} is not a normal f16");
    let half = sign | ((exponent as u16) << 10) | ((bits >> 13) & 0x3ff) as u16;
    assert_eq!(
        densenet::weights::f16_to_f32(half),
        v,
        "{v} is not exact in f16"
    );
    half
}

/// Every value and counter of two models, bitwise.
fn assert_same_weights(a: &DenseNet, b: &DenseNet, what: &str) {
    let (sa, sb) = (a.store(), b.store());
    for name in sa.tensor_names() {
        let (va, vb) = (sa.tensor(&name).unwrap().1, sb.tensor(&name).unwrap().1);
        assert!(
            va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{what}: {name} differs"
        );
    }
    for bn in sa.bn_names() {
        assert_eq!(
            sa.batches_tracked(bn),
            sb.batches_tracked(bn),
            "{what}: {bn}"
        );
    }
}

#[test]
fn reading_tensor_by_tensor_equals_parsing_the_whole_file() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let source = distinct_model();
    let dict = StateDict::from_params(source.store()).unwrap();
    for dtype in ["F32", "F64", "F16", "BF16"] {
        let path = dir.path().join(format!("w-{dtype}.safetensors"));
        write_as(&dict, dtype, &path);

        let mut expected = DenseNet::new(config(), 9).unwrap();
        load_params(expected.store_mut(), &StateDict::load(&path).unwrap()).unwrap();
        assert_same_weights(&expected, &source, dtype);

        let (built, report) = DenseNet::from_weights(config(), &path, 9).unwrap();
        assert_same_weights(&built, &expected, dtype);
        assert_eq!(report.counters_loaded, source.store().bn_names().len());

        let mut loaded = DenseNet::new(config(), 4).unwrap();
        let report = loaded.load_weights(&path).unwrap();
        assert_same_weights(&loaded, &expected, dtype);
        assert_eq!(report.loaded, source.store().tensor_names().len());
    }
}

#[test]
fn loading_from_a_file_holds_no_copy_of_it() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    // About 2 MB of weights.
    let config = || -> DenseNetConfig { "bc:k=32,blocks=4-4,classes=1000".parse().unwrap() };
    let source = DenseNet::new(config(), 8).unwrap();
    source.save_weights(&path).unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    // Header, names and the read buffer: well under one file's worth for this model.
    let slack = 256 << 10;
    assert!(
        file_bytes > 4 * slack,
        "the test model is too small to tell"
    );

    let (_, new_only) = measure(|| DenseNet::new(config(), 0).unwrap());
    let (built, from_file) = measure(|| DenseNet::from_weights(config(), &path, 0).unwrap());
    println!(
        "file {file_bytes} B; DenseNet::new peak {} B, from_weights {} B",
        new_only.peak_extra_bytes, from_file.peak_extra_bytes
    );
    assert!(
        from_file.peak_extra_bytes <= new_only.peak_extra_bytes + slack,
        "from_weights holds more than the model: {} vs {} B",
        from_file.peak_extra_bytes,
        new_only.peak_extra_bytes
    );
    assert_same_weights(&built.0, &source, "from_weights");

    let mut model = DenseNet::new(config(), 1).unwrap();
    let (report, staged) = measure(|| model.load_weights(&path).unwrap());
    println!("load_weights peak {} B", staged.peak_extra_bytes);
    // One staged copy of the values (no gradients): at most one file's worth beyond the slack.
    assert!(
        staged.peak_extra_bytes <= file_bytes + slack,
        "load_weights holds more than one staged copy: {} B for a {file_bytes} B file",
        staged.peak_extra_bytes
    );
    assert!(report.loaded > 0);
    assert_same_weights(&model, &source, "load_weights");
}

#[test]
fn a_load_that_fails_part_way_leaves_the_model_unchanged() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let source = distinct_model();
    let mut dict = StateDict::from_params(source.store()).unwrap();
    // A NaN in the last value of the classifier's bias: found only after other tensors were
    // read (and, from a file, written into the staged store).
    let last = "classifier.bias".to_owned();
    let values = dict.get_mut(&last).unwrap().data_mut();
    let n = values.len();
    values[n - 1] = f32::NAN;
    let path = dir.path().join("nan.safetensors");
    dict.save(&path).unwrap();

    let mut model = DenseNet::new(config(), 5).unwrap();
    let before = DenseNet::new(config(), 5).unwrap();
    let err = model.load_weights(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::NonFinite { tensor, index, .. } if *tensor == last && *index == n - 1),
        "{err}"
    );
    assert_same_weights(&model, &before, "after a failed load_weights");
    let err = DenseNet::from_weights(config(), &path, 0).unwrap_err();
    assert!(
        matches!(&err, Error::Weights(WeightsError::NonFinite { .. })),
        "{err}"
    );

    // A file cut inside its data is refused from its header, before anything is read.
    let bytes = std::fs::read(dir.path().join("nan.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let err = model.load_weights(&cut).unwrap_err();
    assert!(matches!(err, WeightsError::DataSize { .. }), "{err}");
    assert_same_weights(&model, &before, "after a truncated file");

    // A file for another model: every mismatch reported, nothing changed.
    let other: DenseNetConfig = "bc:k=8,blocks=2-2,init=16,classes=10".parse().unwrap();
    let wrong = dir.path().join("other.safetensors");
    DenseNet::new(other, 0)
        .unwrap()
        .save_weights(&wrong)
        .unwrap();
    let err = model.load_weights(&wrong).unwrap_err();
    assert!(err.to_string().contains("classifier.weight"), "{err}");
    assert_same_weights(&model, &before, "after a mismatched file");
}

/// A counter tensor that claims 64 MB (a sparse file) is refused as a counter without being
/// read: its size is checked first.
#[test]
fn a_huge_counter_is_refused_unread() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter.safetensors");
    let values = 16usize << 20;
    let header = format!(
        r#"{{"features.norm5.num_batches_tracked":{{"dtype":"I32","shape":[{values}],"data_offsets":[0,{}]}}}}"#,
        values * 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len((bytes.len() + values * 4) as u64).unwrap();
    drop(file);

    let (_, model) = measure(|| DenseNet::new(config(), 0).unwrap());
    let (err, load) = measure(|| DenseNet::from_weights(config(), &path, 0).unwrap_err());
    assert!(
        matches!(&err, Error::Weights(WeightsError::BadCounter { tensor }) if tensor.ends_with("num_batches_tracked")),
        "{err}"
    );
    assert!(
        load.peak_extra_bytes < model.peak_extra_bytes + (1 << 20),
        "refusing the counter took {} bytes",
        load.peak_extra_bytes
    );
}
