//! `densenet eval`: accuracy and loss of a checkpoint on a data set's test split.

use crate::checkpoint::Checkpoint;
use crate::commands::set_threads;
use crate::console::out;
use crate::error::{fail, CliResult};
use crate::model_io::{self, checkpoint_path};
use densenet::data::{DataSpec, Normalization};
use densenet::{DenseNet, DenseNetConfig, MemoryPlan};
use std::path::PathBuf;

/// Arguments of `densenet eval`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet eval --checkpoint runs/20260101-120000          the run's own data set\n  \
    densenet eval --checkpoint runs/c10/checkpoint.safetensors --data cifar10:data/cifar-10-batches-bin\n  \
    densenet eval --checkpoint runs/x --model bc:k=12,blocks=4-4-4   check the file fits this model")]
pub struct EvalArgs {
    /// A checkpoint file, or a run folder holding checkpoint.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set to evaluate on (its test split). [default: the one the checkpoint was trained on]
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Model the checkpoint must fit. [default: the checkpoint's own model]
    #[arg(long)]
    pub model: Option<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run the dense layers' 3×3 convolutions by the direct product only, as `densenet train
    /// --no-winograd` does (by default by Winograd's minimal filtering where that is faster;
    /// the results differ by roundings).
    #[arg(long)]
    pub no_winograd: bool,
}

/// Runs `densenet eval`.
pub fn run(args: EvalArgs) -> CliResult<()> {
    let path = checkpoint_path(&args.checkpoint);
    let ck = Checkpoint::load(&path)?;
    let in_file = |e: crate::error::CliError| fail!("{}: {e}", path.display());
    let spec = match &args.model {
        Some(m) => m.clone(),
        None => ck.meta_str("model").map_err(in_file)?.to_string(),
    };
    let mut cfg: DenseNetConfig = spec.parse().map_err(|e| fail!("--model {spec}: {e}"))?;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => ck.meta_str("data").map_err(in_file)?.parse()?,
    };
    let upscale: usize = ck.meta_parse("upscale").unwrap_or(1);
    set_threads(args.threads)?;
    let test = data.load()?.test.upscale(upscale)?;
    let classes = cfg.num_classes;
    model_io::fit_config_to_data(&mut cfg, &test)?;
    if args.model.is_none() && classes != cfg.num_classes {
        return Err(fail!(
            "{}: the checkpoint's model has {classes} classes, data set {data} has {}",
            path.display(),
            cfg.num_classes
        ));
    }
    let mean = ck
        .meta_str("norm_mean")
        .ok()
        .and_then(model_io::split_floats);
    let std = ck
        .meta_str("norm_std")
        .ok()
        .and_then(model_io::split_floats);
    let norm = match (mean, std) {
        (Some(m), Some(s)) => {
            Normalization::new(m, s).map_err(|e| fail!("{}: {e}", path.display()))?
        }
        _ => {
            return Err(fail!(
                "{}: no normalisation statistics (norm_mean, norm_std)",
                path.display()
            ))
        }
    };
    if norm.mean.len() != test.channels() {
        return Err(fail!(
            "{}: normalisation for {} channel(s), data set {data} has {}",
            path.display(),
            norm.mean.len(),
            test.channels()
        ));
    }
    let mut model = DenseNet::new(cfg.clone(), 0)?;
    model_io::load_model(&mut model, &ck, &path)?;
    let memory_efficient = ck.meta_parse("memory_efficient").unwrap_or(true);
    let (loss, correct) = model_io::evaluate(
        &mut model,
        &test,
        &norm,
        args.batch as usize,
        MemoryPlan::from_memory_efficient(memory_efficient),
        !args.no_winograd,
        None,
    )?;
    let epoch = ck.meta_str("epoch").unwrap_or("?");
    out!(
        "checkpoint {} (epoch {epoch}, model {})",
        path.display(),
        cfg.spec()
    );
    out!(
        "{}: accuracy {:.2}% ({correct}/{}), loss {:.4}",
        test.name(),
        100.0 * correct as f64 / test.len().max(1) as f64,
        test.len(),
        loss
    );
    Ok(())
}
