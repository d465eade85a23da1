//! `densenet heatmap` end to end: from a training checkpoint and from a plain state dict, as SVG
//! and as PNG, plus every kind of bad input (one `error:` line, a non-zero exit, no image
//! written).

use densenet::weights::StateDict;
use densenet::{DenseNetConfig, ParamStore};
use std::process::{Command, Output};

fn densenet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_densenet"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn assert_fails(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a failure");
    assert!(err.starts_with("error:"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn draws_the_map_of_a_training_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = densenet(&[
        "train",
        "--out",
        run_s,
        "--model",
        "bc:k=4,blocks=3-2",
        "--upscale",
        "1",
        "--epochs",
        "1",
        "--batch",
        "128",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = dir.path().join("heat.svg");
    let csv = dir.path().join("heat.csv");
    let o = densenet(&[
        "heatmap",
        "--weights",
        run_s,
        "--out",
        svg.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("block 1: 3 layers + transition") && text.contains("block 2: 2 layers"));
    let image = std::fs::read_to_string(&svg).unwrap();
    assert!(image.starts_with("<svg") && image.contains("block 2"));
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + (1 + 2 + 3 + 4) + (1 + 2),
        "{rows}"
    );
    for line in rows.lines().skip(1) {
        let v: f32 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert!(v.is_finite() && v > 0.0, "{line}");
    }

    // The same map as PNG (the extension in any case picks the format).
    let png = dir.path().join("heat.PnG");
    let o = densenet(&[
        "heatmap",
        "--weights",
        run_s,
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_png_heatmap(&png, 2);
}

/// `path` decodes as a PNG of `blocks` panels (380 px wide each, 440 px high) holding the
/// viridis end colours of the heat cells, the grey of missing connections and dark text pixels.
fn assert_png_heatmap(path: &std::path::Path, blocks: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG signature"
    );
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("a decodable PNG")
        .to_rgb8();
    assert_eq!(img.dimensions(), (380 * blocks, 440));
    let mut colours = std::collections::HashSet::new();
    let mut dark = 0usize;
    for p in img.pixels() {
        colours.insert(p.0);
        if p.0.iter().all(|&c| c < 80) {
            dark += 1;
        }
    }
    assert!(colours.len() > 50, "only {} colours", colours.len());
    assert!(
        colours.contains(&[235, 235, 235]),
        "no grey (missing) cells"
    );
    assert!(colours.contains(&[255, 255, 255]), "no white background");
    // Axis lines alone give ~1,400 dark pixels and three grey levels; the anti-aliased glyphs
    // of the title, captions and tick labels add thousands more and dozens of grey levels.
    assert!(dark > 2500, "{dark} dark pixels: no text drawn?");
    let greys: std::collections::HashSet<u8> = colours
        .iter()
        .filter(|c| c[0] == c[1] && c[1] == c[2])
        .map(|c| c[0])
        .collect();
    assert!(
        greys.len() > 30,
        "{} grey levels: no text drawn?",
        greys.len()
    );
}

#[test]
fn draws_the_map_of_a_plain_state_dict_with_the_values_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: DenseNetConfig = "bc:k=2,blocks=2-1,classes=3".parse().unwrap();
    let mut store = ParamStore::new(&cfg, 3).unwrap();
    // Every weight of layer 2's conv1 is -0.25, so its row reads 0.25 from both sources.
    let (_, w) = store
        .tensor_mut("features.denseblock1.denselayer2.conv1.weight")
        .unwrap();
    w.fill(-0.25);
    let weights = dir.path().join("w.safetensors");
    StateDict::from_params(&store)
        .unwrap()
        .save(&weights)
        .unwrap();
    let w_s = weights.to_str().unwrap();
    let svg = dir.path().join("h.svg");
    let csv = dir.path().join("h.csv");
    let (svg_s, csv_s) = (svg.to_str().unwrap(), csv.to_str().unwrap());
    let spec = cfg.spec();
    let o = densenet(&[
        "heatmap",
        "--weights",
        w_s,
        "--model",
        &spec,
        "--out",
        svg_s,
        "--csv",
        csv_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.contains("\n1,2,0,2.5e-1\n1,2,1,2.5e-1\n"), "{rows}");

    // Bad inputs: no --model for a plain file, another model, a JPEG, a missing file, garbage.
    let other = dir.path().join("other.svg");
    let other_s = other.to_str().unwrap();
    assert_fails(
        &densenet(&["heatmap", "--weights", w_s, "--out", other_s]),
        &["w.safetensors", "--model"],
    );
    assert_fails(
        &densenet(&[
            "heatmap",
            "--weights",
            w_s,
            "--model",
            "bc:k=4,blocks=2-1,classes=3",
            "--out",
            other_s,
        ]),
        &["does not fit model"],
    );
    assert_fails(
        &densenet(&[
            "heatmap",
            "--weights",
            w_s,
            "--model",
            &spec,
            "--out",
            other.with_extension("jpg").to_str().unwrap(),
        ]),
        &["other.jpg", ".svg or .png"],
    );
    assert!(!other.with_extension("jpg").exists());
    let missing = dir.path().join("missing.safetensors");
    assert_fails(
        &densenet(&[
            "heatmap",
            "--weights",
            missing.to_str().unwrap(),
            "--model",
            &spec,
            "--out",
            other_s,
        ]),
        &["missing.safetensors"],
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors at all").unwrap();
    assert_fails(
        &densenet(&[
            "heatmap",
            "--weights",
            junk.to_str().unwrap(),
            "--model",
            &spec,
            "--out",
            other_s,
        ]),
        &["junk.safetensors", "safetensors"],
    );
    assert!(!other.exists());
}
