//! Hostile files, atomic saves and fuzz-style properties of the safetensors reader.

use std::fs;

use densenet::weights::{canonical_key, IntTensor, StateDict, Tensor, WeightsError};
use proptest::prelude::*;

use super::{raw_file, scratch, tensor};

fn valid_file() -> Vec<u8> {
    let mut dict = StateDict::new();
    dict.insert("w", tensor(&[2, 3], 0.0));
    dict.insert("b", tensor(&[3], 10.0));
    dict.to_bytes().unwrap()
}

#[test]
fn hostile_files_each_give_a_named_error() {
    let file = valid_file();
    // Every case is given both in memory and as a file (read header first, then tensor by
    // tensor): the two readers must refuse it with the same error.
    let dir = scratch("hostile");
    let on_disk = dir.join("hostile.safetensors");
    let check = |bytes: &[u8], what: &str, ok: &dyn Fn(&WeightsError) -> bool| {
        let err = StateDict::from_bytes(bytes).expect_err(what);
        println!("{what}: {err}");
        assert!(ok(&err), "{what}: unexpected error {err:?}");
        fs::write(&on_disk, bytes).unwrap();
        let from_file = StateDict::load(&on_disk).expect_err(what);
        assert_eq!(
            std::mem::discriminant(&from_file),
            std::mem::discriminant(&err),
            "{what}: the file reader says {from_file:?}, the in-memory one {err:?}"
        );
    };
    check(&file[..5], "shorter than the length field", &|e| {
        matches!(e, WeightsError::FileTooShort { len: 5 })
    });
    check(&file[..file.len() - 4], "truncated data", &|e| {
        matches!(e, WeightsError::DataSize { .. })
    });
    let mut padded = file.clone();
    padded.extend([0u8; 4]);
    check(&padded, "trailing bytes", &|e| {
        matches!(e, WeightsError::DataSize { .. })
    });
    check(&file[..40], "truncated inside the header", &|e| {
        matches!(e, WeightsError::HeaderPastEnd { .. })
    });

    let mut long = file.clone();
    long[..8].copy_from_slice(&(file.len() as u64).to_le_bytes());
    check(
        &long,
        "header longer than the file",
        &|e| matches!(e, WeightsError::HeaderPastEnd { declared, .. } if *declared == file.len() as u64),
    );
    let mut huge = file.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    check(&huge, "absurd header length", &|e| {
        matches!(e, WeightsError::HeaderTooLarge { .. })
    });

    check(&raw_file("not json", &[]), "not JSON", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });
    check(&raw_file("{\"a\":\u{0}}", &[]), "bad JSON", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });
    let mut bad_utf8 = raw_file("{\"a\": 1}", &[]);
    bad_utf8[9] = 0xff;
    check(&bad_utf8, "not UTF-8", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });

    let out_of_range = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    check(
        &raw_file(out_of_range, &[0; 24]),
        "offsets with a gap",
        &|e| matches!(e, WeightsError::BadOffsets { tensor } if tensor == "b"),
    );
    let past_end = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    check(&raw_file(past_end, &[0; 8]), "offsets past the end", &|e| {
        matches!(e, WeightsError::DataSize { .. })
    });
    let backwards = r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#;
    check(
        &raw_file(backwards, &[0; 8]),
        "offsets running backwards",
        &|e| matches!(e, WeightsError::BadOffsets { .. }),
    );
    let wrong_size = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    check(
        &raw_file(wrong_size, &[0; 8]),
        "size disagrees with shape",
        &|e| matches!(e, WeightsError::DataSize { .. }),
    );

    for dtype in ["U8", "BOOL", "I8", "U16", "F8_E4M3", "C64", "U64"] {
        let bytes = if dtype == "C64" || dtype == "U64" {
            8
        } else if dtype == "U16" {
            2
        } else {
            1
        };
        let header =
            format!(r#"{{"mask":{{"dtype":"{dtype}","shape":[1],"data_offsets":[0,{bytes}]}}}}"#);
        check(
            &raw_file(&header, &vec![1; bytes]),
            dtype,
            &|e| matches!(e, WeightsError::UnsupportedDtype { tensor, dtype: d } if tensor == "mask" && d == dtype),
        );
    }
    let unknown = r#"{"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
    check(&raw_file(unknown, &[0]), "unknown dtype", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });

    let overflow = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#;
    check(
        &raw_file(overflow, &[0; 4]),
        "shape product overflows",
        &|e| matches!(e, WeightsError::ShapeOverflow { .. }),
    );
    let overflow_bytes =
        r#"{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#;
    check(
        &raw_file(overflow_bytes, &[0; 8]),
        "byte size overflows",
        &|e| matches!(e, WeightsError::ShapeOverflow { .. }),
    );
    let absurd = r#"{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,4]}}"#;
    check(
        &raw_file(absurd, &[0; 4]),
        "absurd but finite shape",
        &|e| matches!(e, WeightsError::DataSize { .. }),
    );
    let negative = r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#;
    check(&raw_file(negative, &[0; 4]), "negative dimension", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });

    // `__metadata__` may be null (the safetensors crate accepts it), not given twice.
    let null_meta = r#"{"__metadata__":null,"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let bytes = raw_file(null_meta, &[0; 4]);
    let dict = StateDict::from_bytes(&bytes).expect("null metadata");
    fs::write(&on_disk, &bytes).unwrap();
    assert_eq!(
        StateDict::load(&on_disk).expect("null metadata, from a file"),
        dict
    );
    let twice = r#"{"__metadata__":{"a":"1"},"__metadata__":{"b":"2"}}"#;
    check(&raw_file(twice, &[]), "metadata given twice", &|e| {
        matches!(e, WeightsError::InvalidHeader { .. })
    });

    // A named pipe is refused before it is opened (opening one waits for a writer).
    #[cfg(unix)]
    {
        let fifo = dir.join("pipe.safetensors");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = StateDict::load(&fifo).unwrap_err();
            assert!(matches!(err, WeightsError::NotAFile { .. }), "{err}");
        }
    }

    for not_a_file in ["/dev/zero", "."] {
        let err = StateDict::load(not_a_file).unwrap_err();
        assert!(
            matches!(err, WeightsError::NotAFile { .. }),
            "{not_a_file}: {err}"
        );
    }
    let missing = dir.join("nope.safetensors");
    let err = StateDict::load(&missing).unwrap_err();
    assert!(
        matches!(&err, WeightsError::Io { path, .. } if path == &missing),
        "{err}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tensor_constructors_refuse_sizes_that_disagree() {
    assert!(matches!(
        Tensor::new(vec![2, 3], vec![0.0; 5]),
        Err(WeightsError::InvalidTensor { found: 5, .. })
    ));
    assert!(Tensor::new(vec![usize::MAX, 2], vec![]).is_err());
    assert!(IntTensor::new(vec![2], vec![1]).is_err());
    assert!(Tensor::new(vec![], vec![1.0]).is_ok());
}

#[test]
fn failed_saves_leave_the_old_file_intact_and_no_temporary_behind() {
    let dir = scratch("atomic");
    let mut dict = StateDict::new();
    dict.insert("w", tensor(&[4], 1.0));

    // The folder does not exist: an error naming the temporary file's folder, nothing created.
    let missing = dir.join("no-such-folder").join("w.safetensors");
    let err = dict.save(&missing).unwrap_err();
    assert!(
        matches!(err, WeightsError::Io { ref path, .. } if path.starts_with(dir.join("no-such-folder"))),
        "{err}"
    );
    assert!(!dir.join("no-such-folder").exists());

    // The target is a folder holding a file: the rename fails, the folder and its content stay.
    let target = dir.join("occupied.safetensors");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), b"old").unwrap();
    let err = dict.save(&target).unwrap_err();
    assert!(
        matches!(err, WeightsError::Io { ref path, .. } if path == &target),
        "{err}"
    );
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"old");
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("occupied.safetensors")],
        "temporary file left behind"
    );

    // An old file whose new content cannot be serialised (a header over 100 MB) stays as it was.
    let path = dir.join("w.safetensors");
    dict.save(&path).unwrap();
    let old = fs::read(&path).unwrap();
    let mut too_big = dict.clone();
    too_big.set_metadata("blob", "x".repeat(100_000_001));
    assert!(too_big.save(&path).is_err());
    assert_eq!(fs::read(&path).unwrap(), old);

    // A successful save replaces the old file completely.
    dict.insert("w", tensor(&[2], 9.0));
    dict.save(&path).unwrap();
    assert_eq!(
        StateDict::load(&path).unwrap().get("w").unwrap().data(),
        &[9.0, 10.0]
    );
    assert!(matches!(
        dict.save(""),
        Err(WeightsError::NoFileName { .. })
    ));
    fs::remove_dir_all(dir).unwrap();
}

/// The same names, shapes, metadata and values, compared bitwise (NaN equals NaN).
fn same_bits(a: &StateDict, b: &StateDict) -> bool {
    let floats = |d: &StateDict| -> Vec<(String, Vec<usize>, Vec<u32>)> {
        d.tensors()
            .map(|(n, t)| {
                let bits = t.data().iter().map(|v| v.to_bits()).collect();
                (n.to_owned(), t.shape().to_vec(), bits)
            })
            .collect()
    };
    let ints = |d: &StateDict| -> Vec<(String, IntTensor)> {
        d.int_tensors()
            .map(|(n, t)| (n.to_owned(), t.clone()))
            .collect()
    };
    floats(a) == floats(b) && ints(a) == ints(b) && a.metadata() == b.metadata()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = StateDict::from_bytes(&bytes);
    }

    #[test]
    fn corrupted_valid_files_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                                         cut in any::<prop::sample::Index>()) {
        let mut file = valid_file();
        for (at, byte) in edits {
            let i = at.index(file.len());
            file[i] = byte;
        }
        let cut = &file[..cut.index(file.len())];
        // The file reader must agree with the in-memory one: same tensors, or an error of
        // the same kind.
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&file[..], cut] {
            let in_memory = StateDict::from_bytes(bytes);
            let path = dir.path().join("corrupted.safetensors");
            fs::write(&path, bytes).unwrap();
            match (in_memory, StateDict::load(&path)) {
                (Ok(a), Ok(b)) => prop_assert!(same_bits(&a, &b), "{:?} vs {:?}", a, b),
                (Err(a), Err(b)) => {
                    prop_assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b))
                }
                (a, b) => prop_assert!(false, "in memory {:?}, from the file {:?}", a, b),
            }
        }
    }

    #[test]
    fn normalising_twice_changes_nothing(parts in proptest::collection::vec(
        prop::sample::select(vec!["module", "features", "denselayer3", "denseblock1", "norm", "conv", "relu",
                                  "1", "2", "bn", "norm_final", "weight", "running_mean", "norm_weight", "conv_weight"]),
        1..7)) {
        let key = parts.join(".");
        let once = canonical_key(&key);
        prop_assert_eq!(canonical_key(&once), once);
    }
}
