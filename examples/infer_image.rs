//! Classifies one image with a DenseNet in evaluation mode.
//!
//! `cargo run --release --example infer_image -- [IMAGE [WEIGHTS MODEL]]`
//!
//! - `IMAGE`: any PNG or JPEG. Without it, a 32×32 test pattern is generated and written as a
//!   PNG to the temporary folder, then read back like any other file.
//! - `WEIGHTS MODEL`: a safetensors state dict with torchvision names and the model it fits
//!   (e.g. `densenet121.safetensors densenet121`). Without them, a small randomly initialised
//!   DenseNet-BC is used: the predictions are then meaningless, the pipeline is the point.
//!
//! The pixels are scaled to [0, 1] and normalised with ImageNet's mean and standard deviation
//! (torchvision's convention), laid out NCHW, and run through an [`InferencePlan`]: built once
//! for the model and the input size (batch-norm folding, fused BN+ReLU, one arena), after which
//! its `forward` allocates nothing. The test checks the plan's logits against
//! [`DenseNet::forward`] in `Mode::Eval`.

use densenet::infer::{InferencePlan, PlanOptions};
use densenet::weights::{load_params, StateDict};
use densenet::{DenseNet, DenseNetConfig};
use std::path::{Path, PathBuf};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Writes a 32×32 RGB test pattern (a colour gradient with a bright square) as a PNG.
fn write_test_pattern(path: &Path) -> AnyResult<()> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let square = (10..22).contains(&x) && (10..22).contains(&y);
        if square {
            image::Rgb([250, 250, 250])
        } else {
            image::Rgb([(x * 8) as u8, (y * 8) as u8, 128])
        }
    });
    img.save(path)?;
    Ok(())
}

/// The image as normalised `[3, H, W]` floats.
fn load_image(path: &Path) -> AnyResult<(Vec<f32>, usize, usize)> {
    let img = image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let mut chw = vec![0.0; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = f32::from(p.0[c]) / 255.0;
            chw[(c * h + y as usize) * w + x as usize] = (v - MEAN[c]) / STD[c];
        }
    }
    Ok((chw, h, w))
}

/// The model: loaded from a state dict, or a small random DenseNet-BC.
fn load_model(weights: Option<(&Path, &str)>) -> AnyResult<DenseNet> {
    Ok(match weights {
        Some((file, spec)) => {
            let cfg: DenseNetConfig = spec.parse()?;
            let mut model = DenseNet::new(cfg, 0)?;
            load_params(model.store_mut(), &StateDict::load(file)?)?;
            model
        }
        None => DenseNet::new("bc:k=8,blocks=2-2-2,classes=10".parse()?, 42)?,
    })
}

/// The top-`n` classes and their softmax probabilities for the image at `image`.
fn classify(
    image: &Path,
    weights: Option<(&Path, &str)>,
    n: usize,
) -> AnyResult<Vec<(usize, f32)>> {
    let (pixels, h, w) = load_image(image)?;
    let model = load_model(weights)?;
    let mut plan = InferencePlan::new(&model, 1, h, w, PlanOptions::default())?;
    println!(
        "inference plan: {} bytes of activations in one arena",
        plan.arena_bytes()
    );
    let logits = plan.forward(&pixels)?.to_vec();
    let top = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f32> = logits.iter().map(|&v| (v - top).exp()).collect();
    let total: f32 = exp.iter().sum();
    let mut ranked: Vec<(usize, f32)> = exp.iter().map(|&e| e / total).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(n);
    Ok(ranked)
}

/// Writes the test pattern to a temporary file named after `tag` (tests run in parallel).
fn generated_image(tag: &str) -> AnyResult<PathBuf> {
    let name = format!("densenet-example-{tag}-{}.png", std::process::id());
    let path = std::env::temp_dir().join(name);
    write_test_pattern(&path)?;
    Ok(path)
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (image, generated) = match args.first() {
        Some(p) => (PathBuf::from(p), false),
        None => (generated_image("main")?, true),
    };
    let weights = match (args.get(1), args.get(2)) {
        (Some(w), Some(m)) => Some((Path::new(w), m.as_str())),
        (Some(_), None) => return Err("give the model too: IMAGE WEIGHTS MODEL".into()),
        _ => None,
    };
    let top = classify(&image, weights, 5);
    if generated {
        let _ = std::fs::remove_file(&image);
    }
    println!("{}:", image.display());
    for (class, p) in top? {
        println!("  class {class:4}  p = {p:.4}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use densenet::Mode;

    #[test]
    fn classifies_a_generated_png() {
        let path = generated_image("classify").unwrap();
        let top = classify(&path, None, 10);
        std::fs::remove_file(&path).unwrap();
        let top = top.unwrap();
        assert_eq!(top.len(), 10);
        let sum: f32 = top.iter().map(|t| t.1).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        let mut classes: Vec<usize> = top.iter().map(|t| t.0).collect();
        classes.sort_unstable();
        assert_eq!(classes, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_plan_agrees_with_the_training_code_in_eval_mode() {
        let path = generated_image("agree").unwrap();
        let loaded = load_image(&path);
        std::fs::remove_file(&path).unwrap();
        let (pixels, h, w) = loaded.unwrap();
        let mut model = load_model(None).unwrap();
        let mut plan = InferencePlan::new(&model, 1, h, w, PlanOptions::default()).unwrap();
        let fast = plan.forward(&pixels).unwrap().to_vec();
        let mut ws = model.workspace(1, h, w, true).unwrap();
        let slow = model.forward(&mut ws, &pixels, Mode::Eval).unwrap();
        for (a, b) in fast.iter().zip(slow) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn a_file_that_is_not_an_image_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("densenet-example-bad-{}.png", std::process::id()));
        std::fs::write(&path, b"definitely not a PNG").unwrap();
        let result = classify(&path, None, 3);
        std::fs::remove_file(&path).unwrap();
        assert!(result.is_err());
    }
}
