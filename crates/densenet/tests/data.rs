//! Data set readers, splits, normalisation, augmentation and batching.
//!
//! Every reader is run on small files written here in the exact on-disk format, and on
//! truncated or corrupted versions of them, which must fail with an error naming the file.

use densenet::data::{
    digits, Augment, Batches, DataError, DataSpec, Dataset, Normalization, Rng, Splits,
};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn err_text(e: DataError) -> String {
    e.to_string()
}

// ---------------------------------------------------------------- digits

#[test]
fn bundled_digits_match_the_scikit_learn_csv() {
    let Splits { train, test } = digits::load_digits();
    assert_eq!((train.len(), test.len()), (1347, 450));
    assert_eq!(
        (
            train.channels(),
            train.height(),
            train.width(),
            train.pixel_max()
        ),
        (1, 8, 8, 16)
    );
    // Figures computed from scikit-learn's digits.csv.gz with Python, independently of the
    // converter: first rows, per-class counts and pixel sums of each split.
    assert_eq!(
        train.image(0),
        &[
            0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
            12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
            12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0
        ][..]
    );
    assert_eq!(train.label(0), 0);
    assert_eq!(
        test.image(0),
        &[
            0, 0, 7, 16, 16, 14, 0, 0, 0, 0, 16, 12, 10, 15, 1, 0, 0, 0, 10, 4, 16, 10, 0, 0, 0, 0,
            0, 9, 16, 11, 1, 0, 0, 0, 0, 0, 7, 16, 8, 0, 0, 0, 0, 0, 0, 16, 7, 0, 0, 0, 8, 4, 10,
            15, 2, 0, 0, 0, 12, 16, 16, 6, 0, 0
        ][..]
    );
    assert_eq!(test.label(0), 3);
    assert_eq!(test.label(449), 8);
    assert_eq!(
        train.class_counts(),
        vec![135, 136, 134, 136, 133, 137, 134, 134, 133, 135]
    );
    let all: Vec<usize> = train
        .class_counts()
        .iter()
        .zip(test.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(all, vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let sum = |d: &Dataset| d.images().iter().map(|&v| v as u64).sum::<u64>();
    assert_eq!((sum(&train), sum(&test)), (421_696, 140_022));
}

#[test]
fn broken_digits_files_are_refused_with_the_problem() {
    let path = Path::new("my-digits.bin");
    let good = digits::DIGITS_BIN;
    let with = |at: usize, v: u8| {
        let mut b = good.to_vec();
        b[at] = v;
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..10].to_vec(), "too short"),
        (good[..good.len() - 1].to_vec(), "expected"),
        ([&b"XXXXXXXX"[..], &good[8..]].concat(), "magic"),
        (with(8, 2), "version 2"),
        (with(20, 10), "label 10"),
        (with(good.len() - 1, 17), "above the maximum"),
    ];
    for (bytes, needle) in cases {
        let e = err_text(digits::parse_digits(&bytes, path).unwrap_err());
        assert!(e.contains("my-digits.bin") && e.contains(needle), "{e}");
    }
}

// ---------------------------------------------------------------- CIFAR

/// A CIFAR record whose pixels encode (image id, channel, position) so order mistakes show.
fn cifar_record(labels: &[u8], id: u8) -> Vec<u8> {
    let mut rec = labels.to_vec();
    for c in 0..3u8 {
        for p in 0..1024usize {
            rec.push(
                id.wrapping_mul(31)
                    .wrapping_add(c * 85)
                    .wrapping_add((p % 251) as u8),
            );
        }
    }
    rec
}

#[test]
fn cifar10_reads_batches_in_order_with_planar_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("cifar-10-batches-bin");
    for b in 1..=5u8 {
        let bytes = [cifar_record(&[b], 2 * b), cifar_record(&[9 - b], 2 * b + 1)].concat();
        write(&nested.join(format!("data_batch_{b}.bin")), &bytes);
    }
    write(&nested.join("test_batch.bin"), &cifar_record(&[7], 100));
    let splits = DataSpec::Cifar10(dir.path().to_path_buf()).load().unwrap();
    let (train, test) = (&splits.train, &splits.test);
    assert_eq!(
        (
            train.len(),
            test.len(),
            train.channels(),
            train.height(),
            train.width()
        ),
        (10, 1, 3, 32, 32)
    );
    assert_eq!(train.labels(), &[1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
    assert_eq!(train.class_names()[0], "airplane");
    assert_eq!(train.image(3), &cifar_record(&[], 5)[..]);
    assert_eq!(test.image(0), &cifar_record(&[], 100)[..]);
    assert_eq!(test.label(0), 7);

    // Truncated file: named, with the record size.
    let broken = nested.join("data_batch_3.bin");
    let bytes = std::fs::read(&broken).unwrap();
    write(&broken, &bytes[..bytes.len() - 7]);
    let e = err_text(DataSpec::Cifar10(nested.clone()).load().unwrap_err());
    assert!(
        e.contains("data_batch_3.bin") && e.contains("3073-byte"),
        "{e}"
    );
    // Corrupted label.
    write(
        &broken,
        &[cifar_record(&[10], 0), cifar_record(&[1], 1)].concat(),
    );
    let e = err_text(DataSpec::Cifar10(nested.clone()).load().unwrap_err());
    assert!(
        e.contains("data_batch_3.bin") && e.contains("record 0 has label 10"),
        "{e}"
    );
    // Missing file.
    std::fs::remove_file(&broken).unwrap();
    let e = err_text(DataSpec::Cifar10(nested).load().unwrap_err());
    assert!(e.contains("data_batch_3.bin"), "{e}");
    // Not a folder at all.
    let e = err_text(
        DataSpec::Cifar10(dir.path().join("nope"))
            .load()
            .unwrap_err(),
    );
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn cifar100_uses_the_fine_label_and_names_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("train.bin"),
        &[cifar_record(&[3, 99], 1), cifar_record(&[19, 0], 2)].concat(),
    );
    write(&dir.path().join("test.bin"), &cifar_record(&[0, 42], 3));
    let splits = DataSpec::Cifar100(dir.path().to_path_buf()).load().unwrap();
    assert_eq!(splits.train.labels(), &[99, 0]);
    assert_eq!(splits.train.num_classes(), 100);
    assert_eq!(splits.train.class_names()[99], "worm");
    assert_eq!(splits.test.image(0), &cifar_record(&[], 3)[..]);
    let names: String = (0..100).map(|i| format!("class{i}\n")).collect();
    write(&dir.path().join("fine_label_names.txt"), names.as_bytes());
    let splits = DataSpec::Cifar100(dir.path().to_path_buf()).load().unwrap();
    assert_eq!(splits.test.class_names()[42], "class42");

    write(
        &dir.path().join("test.bin"),
        &cifar_record(&[0, 42], 3)[..3073],
    );
    let e = err_text(
        DataSpec::Cifar100(dir.path().to_path_buf())
            .load()
            .unwrap_err(),
    );
    assert!(e.contains("test.bin") && e.contains("3074-byte"), "{e}");
    write(&dir.path().join("test.bin"), &cifar_record(&[20, 42], 3));
    let e = err_text(
        DataSpec::Cifar100(dir.path().to_path_buf())
            .load()
            .unwrap_err(),
    );
    assert!(
        e.contains("test.bin") && e.contains("coarse label 20"),
        "{e}"
    );
    write(&dir.path().join("fine_label_names.txt"), b"a\nb\n");
    let e = err_text(
        DataSpec::Cifar100(dir.path().to_path_buf())
            .load()
            .unwrap_err(),
    );
    assert!(
        e.contains("fine_label_names.txt") && e.contains("2 class names"),
        "{e}"
    );
}

// ---------------------------------------------------------------- MNIST (IDX)

fn idx_images(n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        b.extend((d as u32).to_be_bytes());
    }
    b.extend((0..n * h * w).map(|i| (i * 7 % 256) as u8));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn mnist_reads_raw_and_gzipped_idx_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("train-images-idx3-ubyte"), &idx_images(3, 28, 28));
    write(
        &d.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_labels(&[5, 0, 9])),
    );
    write(
        &d.join("t10k-images.idx3-ubyte.gz"),
        &gz(&idx_images(2, 28, 28)),
    );
    write(&d.join("t10k-labels.idx1-ubyte"), &idx_labels(&[1, 2]));
    let s = DataSpec::Mnist(d.to_path_buf()).load().unwrap();
    assert_eq!(
        (
            s.train.len(),
            s.test.len(),
            s.train.channels(),
            s.train.height()
        ),
        (3, 2, 1, 28)
    );
    assert_eq!(s.train.labels(), &[5, 0, 9]);
    assert_eq!(
        s.train.image(1),
        &idx_images(3, 28, 28)[16 + 784..16 + 2 * 784]
    );
    assert_eq!(s.test.image(1), &idx_images(2, 28, 28)[16 + 784..]);
    let f = DataSpec::FashionMnist(d.to_path_buf()).load().unwrap();
    assert_eq!(f.train.class_names()[9], "Ankle boot");

    let load_err = || err_text(DataSpec::Mnist(d.to_path_buf()).load().unwrap_err());
    // Truncated raw images.
    write(
        &d.join("train-images-idx3-ubyte"),
        &idx_images(3, 28, 28)[..1000],
    );
    let e = load_err();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    // Count mismatch between images and labels.
    write(&d.join("train-images-idx3-ubyte"), &idx_images(4, 28, 28));
    let e = load_err();
    assert!(e.contains("4 images") && e.contains("3 labels"), "{e}");
    write(&d.join("train-images-idx3-ubyte"), &idx_images(3, 28, 28));
    // Truncated gzip stream.
    let g = gz(&idx_labels(&[5, 0, 9]));
    write(&d.join("train-labels-idx1-ubyte.gz"), &g[..g.len() / 2]);
    let e = load_err();
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
    // Wrong kind of file: an images file where labels belong.
    write(
        &d.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_images(3, 2, 2)),
    );
    let e = load_err();
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("3 dimensions, expected 1"),
        "{e}"
    );
    // Label out of range.
    write(
        &d.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_labels(&[5, 10, 9])),
    );
    let e = load_err();
    assert!(e.contains("label 10"), "{e}");
    // Missing file.
    std::fs::remove_file(d.join("t10k-labels.idx1-ubyte")).unwrap();
    write(
        &d.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_labels(&[5, 0, 9])),
    );
    let e = load_err();
    assert!(e.contains("missing t10k-labels-idx1-ubyte"), "{e}");
}

// ---------------------------------------------------------------- image folder

fn save_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_splits_every_fifth_file_and_resizes() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        save_png(
            &dir.path().join("cat").join(format!("{i:02}.png")),
            40,
            20,
            [200, 10, 10],
        );
    }
    for i in 0..5 {
        save_png(
            &dir.path().join("dog").join(format!("{i:02}.png")),
            16,
            16,
            [0, 0, 255],
        );
    }
    write(&dir.path().join("dog").join("notes.txt"), b"ignored");
    let s = DataSpec::Folder {
        dir: dir.path().to_path_buf(),
        size: 16,
    }
    .load()
    .unwrap();
    assert_eq!(
        s.train.class_names(),
        &["cat".to_string(), "dog".to_string()]
    );
    // cat: files 00..05, the 5th (04) is held out; dog: 00..04, the 5th (04) is held out.
    assert_eq!(s.train.labels(), &[0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(s.test.labels(), &[0, 1]);
    assert_eq!(
        (s.train.channels(), s.train.height(), s.train.width()),
        (3, 16, 16)
    );
    // A solid colour stays solid after the resize, each channel its own plane.
    let cat = s.train.image(0);
    assert!(cat[..256].iter().all(|&v| v == 200) && cat[256..512].iter().all(|&v| v == 10));
    let dog = s.test.image(1);
    assert!(dog[..512].iter().all(|&v| v == 0) && dog[512..].iter().all(|&v| v == 255));

    write(
        &dir.path().join("dog").join("05.png"),
        b"\x89PNG\r\n\x1a\nbroken",
    );
    let e = err_text(
        DataSpec::Folder {
            dir: dir.path().to_path_buf(),
            size: 16,
        }
        .load()
        .unwrap_err(),
    );
    assert!(e.contains("05.png") && e.contains("decode"), "{e}");
}

#[test]
fn image_folder_with_train_and_test_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    save_png(&dir.path().join("train/a/x.png"), 8, 8, [1, 2, 3]);
    save_png(&dir.path().join("train/b/y.png"), 8, 8, [4, 5, 6]);
    save_png(&dir.path().join("test/b/z.png"), 8, 8, [7, 8, 9]);
    let spec: DataSpec = format!("folder:{},size=8", dir.path().display())
        .parse()
        .unwrap();
    let s = spec.load().unwrap();
    assert_eq!((s.train.len(), s.test.len()), (2, 1));
    assert_eq!(s.test.labels(), &[1]);
    assert_eq!(s.test.image(0)[0], 7);
    save_png(&dir.path().join("test/c/w.png"), 8, 8, [7, 8, 9]);
    let e = err_text(spec.load().unwrap_err());
    assert!(e.contains("class 'c'"), "{e}");
}

// ---------------------------------------------------------------- spec

#[test]
fn data_specs_parse_and_print() {
    for text in [
        "digits",
        "cifar10:/d",
        "cifar100:d",
        "mnist:x/y",
        "fashion-mnist:f",
        "folder:img",
        "folder:img,size=64",
    ] {
        assert_eq!(text.parse::<DataSpec>().unwrap().to_string(), text);
    }
    for bad in [
        "",
        "cifar",
        "cifar10:",
        "imagenet:/x",
        "folder:x,size=0",
        "folder:x,size=big",
        "digits:x",
    ] {
        assert!(bad.parse::<DataSpec>().is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------- normalisation, batches

fn tiny_set() -> Dataset {
    // 3 images, 2 channels, 2x3 pixels.
    let images: Vec<u8> = (0..36).map(|i| (i * 5 % 256) as u8).collect();
    Dataset::new(
        "tiny",
        2,
        2,
        3,
        255,
        images,
        vec![0, 1, 0],
        vec!["a".into(), "b".into()],
    )
    .unwrap()
}

#[test]
fn normalisation_fit_is_the_per_channel_mean_and_std() {
    let set = tiny_set();
    let norm = Normalization::fit(&set);
    for c in 0..2 {
        let vals: Vec<f64> = (0..3)
            .flat_map(|n| set.image(n)[c * 6..(c + 1) * 6].to_vec())
            .map(|v| v as f64 / 255.0)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(
            (norm.mean[c] as f64 - mean).abs() < 1e-6
                && (norm.std[c] as f64 - var.sqrt()).abs() < 1e-6
        );
    }
    assert!(Normalization::new(vec![0.5], vec![0.0]).is_err());
    assert!(Normalization::new(vec![0.5, 0.1], vec![1.0]).is_err());
}

/// A batch of 0 images, or a normalisation for another channel count, is an error naming the
/// problem, not a panic.
#[test]
fn batches_refuse_a_zero_batch_and_a_mismatched_normalisation() {
    let set = tiny_set();
    let norm = Normalization::new(vec![0.5, 0.25], vec![2.0, 0.5]).unwrap();
    let err = Batches::eval(&set, 0, &norm)
        .err()
        .expect("batch 0 refused");
    assert!(err.to_string().contains("batch size 0"), "{err}");
    let err = Batches::train(&set, 0, &norm, Augment::STANDARD, Rng::new(1))
        .err()
        .expect("batch 0 refused");
    assert!(err.to_string().contains("batch size 0"), "{err}");
    let grey = Normalization::new(vec![0.5], vec![2.0]).unwrap();
    let err = Batches::eval(&set, 2, &grey)
        .err()
        .expect("1 channel against 2 refused");
    assert!(err.to_string().contains("1 channels"), "{err}");
}

#[test]
fn eval_batches_are_normalised_nchw_in_order() {
    let set = tiny_set();
    let norm = Normalization::new(vec![0.5, 0.25], vec![2.0, 0.5]).unwrap();
    let batches: Vec<_> = Batches::eval(&set, 2, &norm).unwrap().collect();
    assert_eq!(batches.len(), 2);
    assert_eq!((batches[1].n, batches[1].labels.clone()), (1, vec![0]));
    let b = &batches[0];
    for c in 0..2 {
        for n in 0..2 {
            for p in 0..6 {
                let raw = set.image(n)[c * 6 + p] as f32 / 255.0;
                let want = (raw - norm.mean[c]) / norm.std[c];
                assert!((b.images[(n * 2 + c) * 6 + p] - want).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn train_batches_shuffle_deterministically_and_drop_the_last_partial_batch() {
    let set = digits::load_digits().train;
    let norm = Normalization::fit(&set);
    let labels = |seed| -> Vec<Vec<usize>> {
        Batches::train(&set, 100, &norm, Augment::NONE, Rng::new(seed))
            .unwrap()
            .map(|b| b.labels)
            .collect()
    };
    let (a, b, c) = (labels(1), labels(1), labels(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 13); // 1347 / 100, the last 47 dropped
    assert!(a.iter().all(|l| l.len() == 100));
    assert_eq!(
        Batches::train(&set, 100, &norm, Augment::NONE, Rng::new(1))
            .unwrap()
            .num_batches(),
        13
    );
    // No image twice in a pass: no class appears more often than the split holds it.
    let mut counts = [0; 10];
    for l in a.iter().flatten() {
        counts[*l] += 1;
    }
    assert!(counts
        .iter()
        .zip(set.class_counts())
        .all(|(&k, total)| k <= total));
    assert_eq!(counts.iter().sum::<usize>(), 1300);
}

// ---------------------------------------------------------------- augmentation

#[test]
fn crop_and_flip_match_an_explicitly_padded_image() {
    let (c, h, w, pad) = (2, 5, 7, 2);
    let src: Vec<u8> = (0..c * h * w).map(|i| (i + 1) as u8).collect();
    let aug = Augment { pad, flip: true };
    let mut rng = Rng::new(9);
    let mut seen_flip = [false; 2];
    for _ in 0..50 {
        let draw = aug.draw(&mut rng);
        let (dy, dx, flip) = draw;
        assert!(dy <= 2 * pad && dx <= 2 * pad);
        seen_flip[flip as usize] = true;
        let mut dst = vec![0; src.len()];
        aug.apply(&mut dst, &src, (c, h, w), draw);
        // Build the padded image, crop, then flip: the textbook order.
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        for ch in 0..c {
            let mut padded = vec![0u8; ph * pw];
            for y in 0..h {
                for x in 0..w {
                    padded[(y + pad) * pw + x + pad] = src[(ch * h + y) * w + x];
                }
            }
            for y in 0..h {
                for x in 0..w {
                    let cx = if flip { w - 1 - x } else { x };
                    assert_eq!(dst[(ch * h + y) * w + x], padded[(y + dy) * pw + cx + dx]);
                }
            }
        }
    }
    assert_eq!(seen_flip, [true, true]);
}

#[test]
fn augmented_batches_repeat_for_equal_rng_states() {
    let set = tiny_set();
    let norm = Normalization::fit(&set);
    let run = |rng: Rng| -> Vec<Vec<f32>> {
        Batches::train(&set, 1, &norm, Augment::STANDARD, rng)
            .unwrap()
            .map(|b| b.images)
            .collect()
    };
    let mut r = Rng::new(5);
    r.next_u64();
    assert_eq!(run(r.clone()), run(Rng::from_state(r.state())));
    assert_ne!(run(Rng::new(5)), run(Rng::new(6)));
}

#[test]
fn augment_specs_parse() {
    assert_eq!(Augment::parse("standard").unwrap(), Augment::STANDARD);
    assert_eq!(Augment::parse("crop4+flip").unwrap(), Augment::STANDARD);
    assert_eq!(
        Augment::parse("crop1").unwrap(),
        Augment {
            pad: 1,
            flip: false
        }
    );
    assert_eq!(Augment::parse("none").unwrap(), Augment::NONE);
    for bad in ["", "crop", "crop0", "flip+flip", "rotate", "crop2+crop3"] {
        assert!(Augment::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn rng_below_is_in_range_and_roughly_uniform() {
    let mut rng = Rng::new(42);
    let mut counts = [0usize; 7];
    for _ in 0..70_000 {
        counts[rng.below(7)] += 1;
    }
    assert!(
        counts.iter().all(|&k| (9_500..10_500).contains(&k)),
        "{counts:?}"
    );
    let mut a = Rng::new(3);
    a.next_u64();
    let mut b = Rng::from_state(a.state());
    assert_eq!(a.next_u64(), b.next_u64());
}

#[test]
fn upscale_repeats_each_pixel() {
    let set = Dataset::new(
        "u",
        1,
        2,
        2,
        16,
        vec![1, 2, 3, 4],
        vec![0],
        vec!["x".into()],
    )
    .unwrap();
    let up = set.upscale(2).unwrap();
    assert_eq!((up.height(), up.width()), (4, 4));
    assert_eq!(
        up.image(0),
        &[1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]
    );
    assert!(set.upscale(0).is_err());
}

#[test]
fn dataset_new_checks_its_pieces() {
    let names = || vec!["a".to_string()];
    assert!(Dataset::new("x", 1, 2, 2, 255, vec![0; 3], vec![0], names()).is_err());
    assert!(Dataset::new("x", 1, 1, 1, 255, vec![0], vec![1], names()).is_err());
    assert!(Dataset::new("x", 1, 1, 1, 16, vec![17], vec![0], names()).is_err());
    assert!(Dataset::new("x", 0, 1, 1, 16, vec![], vec![], names()).is_err());
}
