//! `densenet infer`: class scores for images or a raw tensor, through the allocation-free
//! inference plan ([`densenet::infer`]).

use crate::console::out;
use crate::error::{fail, CliResult};
use densenet::infer::npy::{npy_bytes, read_npy, NpyError};
use densenet::infer::preprocess::load_image;
use densenet::infer::{InferencePlan, PlanOptions};
use densenet::{DenseNet, DenseNetConfig};
use std::path::{Path, PathBuf};

/// Arguments of `densenet infer`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet infer --model densenet121 --weights densenet121.safetensors --labels imagenet.txt cat.jpg dog.png\n  \
    densenet infer --model densenet121 --weights w.safetensors --input x.npy --output logits.npy\n  \
    DENSENET_THREADS=1 densenet infer --weights w.safetensors photo.jpg\n\n\
    Images are resized (shorter side 256, bilinear with antialiasing), center-cropped to 224\n\
    (or --size; the resize keeps the 256/224 ratio) and normalised with ImageNet's mean and std.")]
pub struct InferArgs {
    /// A preset such as densenet121 or a spec such as bc:k=12,blocks=16-16-16.
    #[arg(long, default_value = "densenet121")]
    pub model: String,
    /// Weights: a safetensors state dict with torchvision's names (scripts/export_torchvision.py
    /// writes one). Without it the model keeps its random initialisation (for testing only).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// PNG or JPEG images, one batch.
    pub images: Vec<PathBuf>,
    /// A raw input tensor instead of images: .npy, float32 (or float64), NCHW or CHW.
    #[arg(long, conflicts_with = "images")]
    pub input: Option<PathBuf>,
    /// Write the logits [N, classes] here: .npy, or .json (with the top-k).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Class names, one per line, in class order.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Crop size of images (square).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub size: u64,
    /// How many top classes to print per input.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Worker threads (0: one per core). Default: $DENSENET_THREADS, else 0.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the random initialisation used without --weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The thread count: `--threads`, else `DENSENET_THREADS`, else 0 (one per core); then starts
/// the pool.
pub fn init_threads(flag: Option<usize>) -> CliResult<usize> {
    let threads = match flag {
        Some(t) => t,
        None => match std::env::var("DENSENET_THREADS") {
            Ok(v) => v.trim().parse().map_err(|_| {
                fail!("DENSENET_THREADS={v} is not a thread count (a whole number, 0 = all cores)")
            })?,
            Err(_) => 0,
        },
    };
    crate::commands::set_threads(threads)?;
    Ok(rayon::current_num_threads())
}

/// The model `spec`, with the weights at `weights` when given (read straight into the model:
/// no second copy of the weights is ever in memory), else initialised from `seed`.
pub fn load_model(spec: &str, weights: Option<&Path>, seed: u64) -> CliResult<DenseNet> {
    let cfg: DenseNetConfig = spec.parse().map_err(|e| fail!("--model {spec}: {e}"))?;
    let Some(path) = weights else {
        return Ok(DenseNet::new(cfg, seed)?);
    };
    match DenseNet::from_weights(cfg, path, seed) {
        Ok((model, _report)) => Ok(model),
        Err(densenet::Error::Weights(e)) => {
            // One line: the report's per-tensor lines joined.
            let text = e.to_string().replace("\n  ", "; ");
            let shown = path.display().to_string();
            if text.starts_with(&shown) {
                // An I/O error names the file already.
                Err(fail!("{text}"))
            } else {
                Err(fail!("{shown}: {text}"))
            }
        }
        Err(other) => Err(other.into()),
    }
}

/// Runs `densenet infer`.
pub fn run(args: InferArgs) -> CliResult<()> {
    init_threads(args.threads)?;
    let model = load_model(&args.model, args.weights.as_deref(), args.seed)?;
    let cfg = model.config().clone();
    let labels = match &args.labels {
        Some(p) => Some(read_labels(p, cfg.num_classes)?),
        None => None,
    };
    let (names, input, shape) = match (&args.input, args.images.is_empty()) {
        (Some(path), _) => {
            let (input, shape) = read_input(path, cfg.in_channels)?;
            let names: Vec<String> = (0..shape[0])
                .map(|i| format!("{}[{i}]", path.display()))
                .collect();
            (names, input, shape)
        }
        (None, true) => return Err(fail!("no input: give image files or --input x.npy")),
        (None, false) => {
            if cfg.in_channels != 3 {
                return Err(fail!(
                    "model {} takes {} input channels; images give 3",
                    args.model,
                    cfg.in_channels
                ));
            }
            let size = args.size as usize;
            let mut input = Vec::with_capacity(args.images.len() * 3 * size * size);
            for p in &args.images {
                input.extend(load_image(p, size).map_err(|e| fail!("{e}"))?);
            }
            let names = args
                .images
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (names, input, [args.images.len(), 3, size, size])
        }
    };
    let [n, _, h, w] = shape;
    let mut plan = InferencePlan::from_model(model, n, h, w, PlanOptions::default())?;
    let logits = plan.forward(&input)?.to_vec();
    let classes = cfg.num_classes;
    let mut json_rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let probs = softmax(row);
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        out!("{name}");
        let mut top = Vec::new();
        for &c in order.iter().take(args.top) {
            let label = labels.as_ref().map_or("", |l| l[c].as_str());
            out!("  {c:>5}  {:>7.3}%  {label}", probs[c] * 100.0);
            top.push(format!(
                "{{\"class\": {c}, \"probability\": {}, \"label\": {}}}",
                json_number(probs[c]),
                json_string(label)
            ));
        }
        let logits: Vec<String> = row.iter().map(|&v| json_number(v)).collect();
        json_rows.push(format!(
            "    {{\"input\": {}, \"logits\": [{}], \"top\": [{}]}}",
            json_string(name),
            logits.join(", "),
            top.join(", ")
        ));
    }
    if let Some(out) = &args.output {
        write_output(out, &logits, n, classes, json_rows)?;
        out!("logits [{n}, {classes}] written to {}", out.display());
    }
    Ok(())
}

fn read_labels(path: &Path, classes: usize) -> CliResult<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| fail!("{}: {e}", path.display()))?;
    let labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if labels.len() < classes {
        return Err(fail!(
            "{}: {} labels for a model with {classes} classes",
            path.display(),
            labels.len()
        ));
    }
    Ok(labels)
}

/// An `.npy` input as NCHW: `[N, C, H, W]` or `[C, H, W]` (one image) with `C == channels`.
fn read_input(path: &Path, channels: usize) -> CliResult<(Vec<f32>, [usize; 4])> {
    let a = read_npy(path).map_err(|e| match e {
        // The I/O error names the file already.
        NpyError::Io { .. } => fail!("{e}"),
        NpyError::Format(_) => fail!("{}: {e}", path.display()),
    })?;
    let shape = match a.shape[..] {
        [n, c, h, w] => [n, c, h, w],
        [c, h, w] => [1, c, h, w],
        _ => {
            return Err(fail!(
                "{}: shape {:?} is not NCHW or CHW",
                path.display(),
                a.shape
            ))
        }
    };
    if shape[1] != channels {
        return Err(fail!(
            "{}: {} channels, the model takes {channels} (shape {:?}, NCHW)",
            path.display(),
            shape[1],
            a.shape
        ));
    }
    if shape.contains(&0) {
        return Err(fail!("{}: empty tensor {:?}", path.display(), a.shape));
    }
    Ok((a.data, shape))
}

fn write_output(
    path: &Path,
    logits: &[f32],
    n: usize,
    classes: usize,
    rows: Vec<String>,
) -> CliResult<()> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json {
        let text = format!("{{\"outputs\": [\n{}\n]}}\n", rows.join(",\n"));
        crate::output::write_atomic(path, text.as_bytes())
    } else {
        crate::output::write_atomic(path, &npy_bytes(&[n, classes], logits))
    }
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

/// A JSON number (`null` for NaN and infinities, which JSON cannot hold); Rust prints the
/// shortest decimal that reads back to the same `f32`.
fn json_number(v: f32) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
