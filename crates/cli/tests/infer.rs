//! `densenet infer` and `densenet bench` end to end: outputs checked against the library's
//! training-code eval forward, and every kind of bad input answered with one `error:` line and a
//! non-zero exit.

use densenet::infer::npy::{npy_bytes, read_npy};
use densenet::{DenseNet, DenseNetConfig, Mode, Stem};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_densenet"))
}

fn config() -> DenseNetConfig {
    DenseNetConfig {
        growth_rate: 4,
        block_config: vec![2, 2],
        init_features: 8,
        bn_size: Some(4),
        compression: 0.5,
        drop_rate: 0.0,
        num_classes: 5,
        in_channels: 3,
        stem: Stem::ImageNet,
    }
}

/// A model saved to `dir/w.safetensors`, and its spec.
fn saved_model(dir: &Path) -> (DenseNet, PathBuf, String) {
    let net = DenseNet::new(config(), 3).unwrap();
    let path = dir.join("w.safetensors");
    net.save_weights(&path).unwrap();
    (net, path, config().spec())
}

fn run(cmd: &mut Command) -> Output {
    cmd.env_remove("DENSENET_THREADS").output().unwrap()
}

fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "succeeded: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "{err} lacks {needle:?}");
}

#[test]
fn npy_in_npy_out_matches_the_eval_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (mut net, weights, spec) = saved_model(dir.path());
    let (n, h, w) = (2, 40, 36);
    let x: Vec<f32> = (0..n * 3 * h * w)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let input = dir.path().join("x.npy");
    std::fs::write(&input, npy_bytes(&[n, 3, h, w], &x)).unwrap();
    let output = dir.path().join("logits.npy");
    let out = run(bin()
        .args(["infer", "--model", &spec, "--threads", "1", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output));
    assert!(out.status.success(), "{out:?}");
    let got = read_npy(&output).unwrap();
    assert_eq!(got.shape, vec![n, 5]);
    let mut ws = net.workspace(n, h, w, true).unwrap();
    let want = net.forward(&mut ws, &x, Mode::Eval).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in got.data.iter().zip(want) {
        assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
    }
    // JSON output too, with the environment variable choosing the threads.
    let json = dir.path().join("out.json");
    let out = bin()
        .env("DENSENET_THREADS", "2")
        .args(["infer", "--model", &spec, "--top", "3", "--weights"])
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&json).unwrap();
    assert_eq!(text.matches("\"logits\"").count(), n);
    assert_eq!(text.matches("\"class\"").count(), 3 * n);
}

#[test]
fn images_get_top_k_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (_, weights, spec) = saved_model(dir.path());
    let png = dir.path().join("a.png");
    let jpg = dir.path().join("b.jpg");
    let img = image::RgbImage::from_fn(70, 50, |x, y| image::Rgb([x as u8 * 3, y as u8 * 4, 90]));
    img.save(&png).unwrap();
    img.save(&jpg).unwrap();
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "zero\none\ntwo\nthree\nfour\n").unwrap();
    let out = run(bin()
        .args(["infer", "--model", &spec, "--size", "48", "--weights"])
        .arg(&weights)
        .arg("--labels")
        .arg(&labels)
        .arg(&png)
        .arg(&jpg));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("a.png") && text.contains("b.jpg"), "{text}");
    let percent_lines = text.lines().filter(|l| l.contains('%')).count();
    assert_eq!(percent_lines, 2 * 5, "{text}");
    assert!(text.contains("three"), "{text}");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, weights, spec) = saved_model(dir.path());
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("bad.png"), b"not an image at all").unwrap();
    std::fs::write(p("bad.npy"), b"\x93NUMPY garbage").unwrap();
    std::fs::write(p("gray.npy"), npy_bytes(&[1, 1, 32, 32], &[0.0; 1024])).unwrap();
    let other = DenseNetConfig {
        num_classes: 9,
        ..config()
    };
    DenseNet::new(other, 1)
        .unwrap()
        .save_weights(p("other.safetensors"))
        .unwrap();
    let infer = |args: &[&Path]| {
        let mut c = bin();
        c.args(["infer", "--model", &spec]);
        for a in args {
            c.arg(a);
        }
        run(&mut c)
    };
    let w = weights.as_path();
    let flag = |s: &'static str| Path::new(s);
    assert_one_line_error(
        &infer(&[flag("--weights"), w, &p("missing.png")]),
        "missing.png",
    );
    assert_one_line_error(&infer(&[flag("--weights"), w, &p("bad.png")]), "bad.png");
    assert_one_line_error(
        &infer(&[flag("--weights"), w, flag("--input"), &p("bad.npy")]),
        "bad.npy",
    );
    assert_one_line_error(
        &infer(&[flag("--weights"), w, flag("--input"), &p("gray.npy")]),
        "channels",
    );
    assert_one_line_error(
        &infer(&[flag("--weights"), &p("other.safetensors"), &p("bad.png")]),
        "classifier.weight",
    );
    assert_one_line_error(&infer(&[flag("--weights"), &p("nope.safetensors")]), "nope");
    let out = bin()
        .env("DENSENET_THREADS", "many")
        .args(["infer", "--model", &spec])
        .arg(p("bad.png"))
        .output()
        .unwrap();
    assert_one_line_error(&out, "DENSENET_THREADS");
    // A size the network cannot take.
    let tiny = dir.path().join("tiny.npy");
    std::fs::write(&tiny, npy_bytes(&[1, 3, 3, 3], &[0.0; 27])).unwrap();
    assert_one_line_error(&infer(&[flag("--input"), &tiny]), "too small");
}

#[test]
fn bench_reports_latency_and_memory() {
    let out = run(bin().args([
        "bench",
        "--model",
        &config().spec(),
        "--size",
        "48",
        "--batch",
        "2",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--stages",
    ]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "median",
        "images/s",
        "arena",
        "weights",
        "peak RSS",
        "denseblock2",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
}
