//! The `densenet` binary end to end: help, summary, training, resume, eval, and every kind of
//! bad input (one `error:` line, a non-zero exit, nothing overwritten).

use densenet::weights::StateDict;
use std::path::Path;
use std::process::{Command, Output};

/// A tiny model so that training tests take seconds: 8x8 digits, three blocks of one layer.
const TINY: &[&str] = &[
    "--model",
    "bc:k=4,blocks=1-1-1",
    "--upscale",
    "1",
    "--batch",
    "128",
    "--threads",
    "2",
];

fn densenet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_densenet"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with an `error:` line that mentions every needle.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stdout:\n{}",
        stdout(o)
    );
    assert!(
        err.starts_with("error:"),
        "stderr does not start with 'error:':\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    densenet(&args)
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [
        &["--help"][..],
        &["train", "--help"],
        &["eval", "--help"],
        &["summary", "--help"],
        &["heatmap", "--help"],
        &["memory", "--help"],
        &["infer", "--help"],
        &["bench", "--help"],
    ] {
        let o = densenet(cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(stdout(&o).contains("Examples:"), "{cmd:?}:\n{}", stdout(&o));
    }
}

#[test]
fn summary_of_densenet121_matches_torchvision() {
    let o = densenet(&["summary", "--model", "densenet121", "--size", "224x224"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("7,978,856"), "{text}");
    assert!(text.contains("2.834 G multiply-adds"), "{text}");
    for stage in ["denseblock1", "transition3", "denseblock4", "classifier"] {
        assert!(text.contains(stage), "{text}");
    }
}

#[test]
fn bad_input_gives_one_error_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    assert_fails(
        &densenet(&["train", "--out", out_s, "--model", "densenet999"]),
        &["densenet999"],
    );
    assert_fails(
        &densenet(&["train", "--out", out_s, "--model", "bc:k=0"]),
        &["k"],
    );
    assert_fails(&densenet(&["train", "--out", out_s, "--lr", "-1"]), &["-1"]);
    assert_fails(
        &densenet(&["train", "--out", out_s, "--epochs", "0"]),
        &["epochs"],
    );
    assert_fails(
        &densenet(&["train", "--out", out_s, "--augment", "rotate"]),
        &["rotate"],
    );
    assert_fails(
        &densenet(&["train", "--out", out_s, "--data", "imagenet:x"]),
        &["imagenet"],
    );
    let missing = dir.path().join("no-such-cifar");
    let spec = format!("cifar10:{}", missing.display());
    assert_fails(
        &densenet(&["train", "--out", out_s, "--data", &spec]),
        &["no-such-cifar"],
    );
    assert_fails(&densenet(&["train", "--resume", out_s]), &["checkpoint"]);
    assert_fails(&densenet(&["eval", "--checkpoint", out_s]), &["run"]);
    assert_fails(
        &densenet(&["summary", "--model", "densenet121", "--size", "8x8"]),
        &["8x8"],
    );
    assert_fails(
        &densenet(&["train", "--out", out_s, "--memory-budget", "1"]),
        &["needs at least", "budget is 1000000 bytes"],
    );
    assert_fails(
        &densenet(&[
            "train",
            "--out",
            out_s,
            "--memory-budget",
            "50",
            "--memory-efficient",
            "off",
        ]),
        &["--memory-budget", "--memory-efficient on"],
    );
    assert!(!out.exists(), "a failed command created the output folder");

    // An output folder that cannot be created: its parent is a file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("run");
    assert_fails(
        &train(&under_file, &["--epochs", "1"]),
        &["output folder", "plain-file"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn train_writes_checkpoint_metrics_and_plot_then_eval_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(&out, &["--epochs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("test accuracy") && text.contains("checkpoint.safetensors"),
        "{text}"
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("epoch,lr,train_loss"));
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("accuracy"));
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // The checkpoint is a safetensors state dict with torchvision names.
    let dict = StateDict::load(out.join("checkpoint.safetensors")).unwrap();
    assert!(dict
        .get("features.denseblock1.denselayer1.conv1.weight")
        .is_some());
    assert!(dict.get("optimizer.momentum.classifier.weight").is_some());
    assert_eq!(dict.metadata().get("epoch").map(String::as_str), Some("2"));

    // eval reproduces the last epoch's test accuracy.
    let test_acc: f64 = rows[2].split(',').nth(5).unwrap().parse().unwrap();
    let o = densenet(&["eval", "--checkpoint", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = format!("accuracy {:.2}%", 100.0 * test_acc);
    assert!(stdout(&o).contains(&want), "{} lacks {want}", stdout(&o));

    // A checkpoint that does not fit the model.
    let o = densenet(&[
        "eval",
        "--checkpoint",
        out.to_str().unwrap(),
        "--model",
        "bc:k=8,blocks=1-1-1",
    ]);
    assert_fails(&o, &["does not fit", "checkpoint.safetensors"]);

    // Training again into the same folder refuses and leaves the run as it was.
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    assert_fails(
        &train(&out, &["--epochs", "1"]),
        &["already holds a run", "--resume"],
    );
    assert_eq!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap(),
        before
    );

    // A corrupted checkpoint names the file.
    let broken = dir.path().join("broken.safetensors");
    std::fs::write(&broken, &before[..before.len() / 2]).unwrap();
    assert_fails(
        &densenet(&["eval", "--checkpoint", broken.to_str().unwrap()]),
        &["broken.safetensors"],
    );
}

#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let split = dir.path().join("split");
    // Augmentation on, so the random stream must be restored too.
    let extra = ["--epochs", "3", "--augment", "crop1", "--seed", "7"];
    let o = train(&whole, &extra);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(
        &split,
        &["--epochs", "1", "--augment", "crop1", "--seed", "7"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Already finished: asks for more epochs.
    assert_fails(
        &densenet(&["train", "--resume", split.to_str().unwrap()]),
        &["--epochs"],
    );
    let o = densenet(&[
        "train",
        "--resume",
        split.to_str().unwrap(),
        "--epochs",
        "3",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("resuming"));

    let a = StateDict::load(whole.join("checkpoint.safetensors")).unwrap();
    let b = StateDict::load(split.join("checkpoint.safetensors")).unwrap();
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>());
    for (name, t) in a.tensors() {
        let u = b.get(name).unwrap();
        let same = t
            .data()
            .iter()
            .zip(u.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same && t.shape() == u.shape(),
            "tensor {name} differs after resume"
        );
    }
    for (name, t) in a.int_tensors() {
        assert_eq!(t.data(), b.get_int(name).unwrap().data(), "{name}");
    }
    assert_eq!(a.metadata().get("rng_state"), b.metadata().get("rng_state"));
    // Same losses and accuracies epoch by epoch (timings aside).
    let losses = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&whole), losses(&split));
}

#[test]
fn an_exploding_loss_stops_the_run_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(&out, &["--epochs", "2", "--lr", "1e30", "--momentum", "0"]);
    assert_fails(&o, &["loss became", "training stopped", "no checkpoint"]);
    assert!(!out.join("checkpoint.safetensors").exists());
}

/// A reader that goes away (`densenet bench | head -1`) stops the printing, not the command:
/// no panic, a successful exit. The pipe's read end is closed before the command starts, so
/// its first line already fails.
#[test]
fn a_closed_standard_output_is_not_a_crash() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_densenet"))
        .args(["bench", "--model", "bc:k=4,blocks=1-1-1", "--iters", "2"])
        .stdout(writer)
        .output()
        .expect("the binary runs");
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    assert!(o.status.success(), "{}; stderr:\n{err}", o.status);
}

/// Output lost to a failing standard output (a full disk) is a failure, reported once the
/// command has done its work: one `error:` line, a non-zero exit.
#[test]
fn lost_output_is_an_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // No such device here.
    };
    let o = Command::new(env!("CARGO_BIN_EXE_densenet"))
        .args(["summary", "--model", "densenet121"])
        .stdout(full)
        .output()
        .expect("the binary runs");
    assert_fails(&o, &["cannot write to standard output"]);
}
