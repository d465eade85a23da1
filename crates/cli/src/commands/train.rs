//! `densenet train`: SGD training with a progress bar, per-epoch evaluation on the held-out split,
//! and after every epoch an atomically written checkpoint, `metrics.csv` and `curves.svg`.
//!
//! Resuming (`--resume RUN`) restores the weights, batch-norm statistics and counters, the
//! optimiser's momentum and step count, and the run's random generator, so the resumed run
//! continues bit-identically to an uninterrupted one.

use crate::checkpoint::Checkpoint;
use crate::commands::set_threads;
use crate::console::out;
use crate::error::{fail, CliResult};
use crate::metrics::{self, EpochMetrics};
use crate::model_io::{self, checkpoint_path, CHECKPOINT_FILE};
use crate::output::{default_run_dir, prepare_dir, write_atomic};
use crate::plot::curves_svg;
use crate::progress::{format_duration, EpochBar};
use densenet::data::{Augment, Batches, DataSpec, Normalization, Rng};
use densenet::train::{train_step, LrSchedule, Sgd};
use densenet::{DenseNet, MemoryPlan};
use densenet_kernels::sgd::SgdConfig;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The model `train` uses on the bundled digits when `--model` is not given: a DenseNet-BC with
/// growth rate 12 and three dense blocks of 4 layers on 16×16 images (the 8×8 digits upscaled).
pub const DIGITS_MODEL: &str = "bc:k=12,blocks=4-4-4";
/// The model used on every other data set when `--model` is not given (the paper's CIFAR
/// DenseNet-BC, L=100, k=12).
pub const DEFAULT_MODEL: &str = "densenet_bc100_k12";

/// Metrics and plot file names inside the run folder.
const METRICS_FILE: &str = "metrics.csv";
const PLOT_FILE: &str = "curves.svg";

/// A learning-rate schedule name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleKind {
    /// The paper's: divide by 10 at 50% and at 75% of the epochs.
    Step,
    /// Cosine annealing to 0 over the epochs.
    Cosine,
    /// The same rate throughout.
    Constant,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Arguments of `densenet train`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet train                                  digits, small DenseNet-BC, about a minute\n  \
    densenet train --epochs 5 --out runs/quick\n  \
    densenet train --data cifar10:data/cifar-10-batches-bin --model densenet_bc100_k12 --epochs 300\n  \
    densenet train --data mnist:data/mnist --model bc:k=12,blocks=6-6-6 --epochs 20\n  \
    densenet train --data folder:photos,size=64 --augment standard --schedule cosine\n  \
    densenet train --resume runs/quick --epochs 10     continue a run (to 10 epochs in total)\n\n\
Data sets (--data): digits (bundled, no files) | cifar10:DIR | cifar100:DIR | mnist:DIR |\n  \
    fashion-mnist:DIR | folder:DIR[,size=S]   (see docs/cli.md for the file layouts)\n\n\
Output (--out, default runs/<UTC date-time>): checkpoint.safetensors, metrics.csv, curves.svg,\n  \
    each rewritten atomically after every epoch.")]
pub struct TrainArgs {
    /// A preset (densenet121, densenet_bc100_k12, ...) or a spec such as bc:k=12,blocks=16-16-16.
    /// Classes and input channels follow the data set. [default: bc:k=12,blocks=4-4-4 on digits,
    /// densenet_bc100_k12 otherwise]
    #[arg(long)]
    pub model: Option<String>,
    /// The data set: digits | cifar10:DIR | cifar100:DIR | mnist:DIR | fashion-mnist:DIR |
    /// folder:DIR[,size=S].
    #[arg(long, default_value = "digits")]
    pub data: DataSpec,
    /// Epochs to train (with --resume: the total to reach). [default: 20 on digits, 300 on
    /// CIFAR, 20 on MNIST, 100 on image folders]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub epochs: Option<u64>,
    /// Images per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=65_536))]
    pub batch: u64,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.1, value_parser = positive_f32)]
    pub lr: f32,
    /// Learning-rate schedule over the epochs.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Step)]
    pub schedule: ScheduleKind,
    /// Weight decay (L2, applied to every parameter as in the paper).
    #[arg(long, default_value_t = 1e-4, value_parser = non_negative_f32)]
    pub wd: f32,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, value_parser = unit_interval_f32)]
    pub momentum: f32,
    /// Nesterov momentum (the paper's choice).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub nesterov: bool,
    /// Dropout after each dense layer's 3x3 conv, in [0, 1) (the paper: 0.2 without augmentation).
    #[arg(long, value_parser = unit_interval_f32)]
    pub drop_rate: Option<f32>,
    /// Augmentation: none | standard (= crop4+flip) | flip | cropP | cropP+flip. [default: crop2
    /// on digits, none on MNIST, standard on CIFAR and image folders]
    #[arg(long, value_parser = parse_augment)]
    pub augment: Option<Augment>,
    /// Scale images up by this integer factor (nearest neighbour) before training. [default: 2
    /// on digits (8x8 to 16x16), 1 otherwise]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub upscale: Option<u64>,
    /// Seed of the initial weights, the shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Memory-efficient training (Pleiss et al.): recompute batch-norm/ReLU outputs in backward
    /// instead of storing them. Results are identical either way.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub memory_efficient: OnOff,
    /// Keep the training workspace within this many MB (10^6 bytes) by also recomputing the
    /// bottleneck outputs of the layers with the narrowest inputs in backward (memory-efficient
    /// training only; results are identical). The kernels' scratch, the parameters, their
    /// gradients and momentum come on top.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget: Option<u64>,
    /// Run the dense layers' 3×3 convolutions by the direct product only (the evaluations
    /// too), instead of by Winograd's minimal filtering where that is faster (the forward on
    /// maps of 14×14 and more, the input gradient of layers with 32 or more growth channels on
    /// maps of 28×28 and more, on AVX-512 or AVX2; see docs/cli.md); the results differ by
    /// roundings.
    #[arg(long)]
    pub no_winograd: bool,
    /// Output folder. [default: runs/<UTC date-time>; with --resume, the resumed run's folder]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a run from its folder or checkpoint file; its settings are reused, so only
    /// --epochs, --threads and --out may be given with it.
    #[arg(long, conflicts_with_all = ["model", "data", "batch", "lr", "schedule", "wd", "momentum",
        "nesterov", "drop_rate", "augment", "upscale", "seed", "memory_efficient"])]
    pub resume: Option<PathBuf>,
}

fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number >= 0")),
    }
}

fn unit_interval_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number in [0, 1)")),
    }
}

fn parse_augment(s: &str) -> Result<Augment, String> {
    Augment::parse(s).map_err(|e| e.to_string())
}

/// Everything that defines a run; stored in every checkpoint so `--resume` can rebuild it.
#[derive(Clone, Debug)]
struct Settings {
    model: String,
    data: DataSpec,
    epochs: usize,
    batch: usize,
    lr: f32,
    schedule: ScheduleKind,
    wd: f32,
    momentum: f32,
    nesterov: bool,
    drop_rate: Option<f32>,
    augment: Augment,
    upscale: usize,
    seed: u64,
    memory_efficient: bool,
}

impl Settings {
    fn from_args(a: &TrainArgs) -> Self {
        let digits = a.data == DataSpec::Digits;
        let mnist_like = matches!(a.data, DataSpec::Mnist(_) | DataSpec::FashionMnist(_));
        let default_epochs = match &a.data {
            DataSpec::Digits => 20,
            DataSpec::Cifar10(_) | DataSpec::Cifar100(_) => 300,
            DataSpec::Mnist(_) | DataSpec::FashionMnist(_) => 20,
            DataSpec::Folder { .. } => 100,
        };
        let default_augment = if digits {
            Augment {
                pad: 2,
                flip: false,
            }
        } else if mnist_like {
            Augment::NONE
        } else {
            Augment::STANDARD
        };
        Settings {
            model: a
                .model
                .clone()
                .unwrap_or_else(|| if digits { DIGITS_MODEL } else { DEFAULT_MODEL }.to_string()),
            data: a.data.clone(),
            epochs: a.epochs.unwrap_or(default_epochs) as usize,
            batch: a.batch as usize,
            lr: a.lr,
            schedule: a.schedule,
            wd: a.wd,
            momentum: a.momentum,
            nesterov: a.nesterov,
            drop_rate: a.drop_rate,
            augment: a.augment.unwrap_or(default_augment),
            upscale: a.upscale.unwrap_or(if digits { 2 } else { 1 }) as usize,
            seed: a.seed,
            memory_efficient: a.memory_efficient == OnOff::On,
        }
    }

    fn to_meta(&self, ck: &mut Checkpoint) {
        let m = &mut ck.meta;
        m.insert("model_arg".into(), self.model.clone());
        m.insert("data".into(), self.data.to_string());
        m.insert("epochs".into(), self.epochs.to_string());
        m.insert("batch".into(), self.batch.to_string());
        m.insert("lr".into(), self.lr.to_string());
        m.insert(
            "schedule".into(),
            format!("{:?}", self.schedule).to_lowercase(),
        );
        m.insert("wd".into(), self.wd.to_string());
        m.insert("momentum".into(), self.momentum.to_string());
        m.insert("nesterov".into(), self.nesterov.to_string());
        m.insert(
            "drop_rate".into(),
            self.drop_rate.map_or(String::new(), |d| d.to_string()),
        );
        m.insert("augment".into(), self.augment.to_string());
        m.insert("upscale".into(), self.upscale.to_string());
        m.insert("seed".into(), self.seed.to_string());
        m.insert("memory_efficient".into(), self.memory_efficient.to_string());
    }

    fn from_meta(ck: &Checkpoint) -> CliResult<Self> {
        let schedule = match ck.meta_str("schedule")? {
            "step" => ScheduleKind::Step,
            "cosine" => ScheduleKind::Cosine,
            "constant" => ScheduleKind::Constant,
            other => return Err(fail!("checkpoint has unknown schedule {other:?}")),
        };
        let drop = ck.meta_str("drop_rate")?;
        Ok(Settings {
            model: ck.meta_str("model_arg")?.to_string(),
            data: ck.meta_str("data")?.parse()?,
            epochs: ck.meta_parse("epochs")?,
            batch: ck.meta_parse("batch")?,
            lr: ck.meta_parse("lr")?,
            schedule,
            wd: ck.meta_parse("wd")?,
            momentum: ck.meta_parse("momentum")?,
            nesterov: ck.meta_parse("nesterov")?,
            drop_rate: if drop.is_empty() {
                None
            } else {
                Some(ck.meta_parse("drop_rate")?)
            },
            augment: Augment::parse(ck.meta_str("augment")?)?,
            upscale: ck.meta_parse("upscale")?,
            seed: ck.meta_parse("seed")?,
            memory_efficient: ck.meta_parse("memory_efficient")?,
        })
    }

    fn lr_schedule(&self) -> LrSchedule {
        match self.schedule {
            ScheduleKind::Step => LrSchedule::Step {
                lr: self.lr,
                epochs: self.epochs,
            },
            ScheduleKind::Cosine => LrSchedule::Cosine {
                lr: self.lr,
                epochs: self.epochs,
            },
            ScheduleKind::Constant => LrSchedule::Constant { lr: self.lr },
        }
    }
}

/// Where a resumed run picks up.
struct Resume {
    ck: Checkpoint,
    path: PathBuf,
    epoch: usize,
}

/// Runs `densenet train`.
pub fn run(args: TrainArgs) -> CliResult<()> {
    let (mut settings, resume) = match &args.resume {
        Some(from) => {
            let path = checkpoint_path(from);
            let ck = Checkpoint::load(&path)?;
            let mut s = Settings::from_meta(&ck).map_err(|e| fail!("{}: {e}", path.display()))?;
            let epoch: usize = ck
                .meta_parse("epoch")
                .map_err(|e| fail!("{}: {e}", path.display()))?;
            if let Some(e) = args.epochs {
                s.epochs = e as usize;
            }
            if s.epochs <= epoch {
                return Err(fail!(
                    "{} has already trained {epoch} of {} epochs; give --epochs N with N > {epoch} to train on",
                    path.display(),
                    s.epochs
                ));
            }
            (s, Some(Resume { ck, path, epoch }))
        }
        None => (Settings::from_args(&args), None),
    };
    set_threads(args.threads)?;

    // Model spec and data first: both can be wrong, and neither needs the output folder.
    let mut cfg: densenet::DenseNetConfig = settings
        .model
        .parse()
        .map_err(|e| fail!("--model {}: {e}", settings.model))?;
    let splits = settings.data.load()?;
    let train_set = splits.train.upscale(settings.upscale)?;
    let test_set = splits.test.upscale(settings.upscale)?;
    if let Some(d) = settings.drop_rate {
        cfg.drop_rate = d;
    }
    model_io::fit_config_to_data(&mut cfg, &train_set)?;
    if train_set.len() < settings.batch {
        settings.batch = train_set.len();
        if settings.batch < 2 {
            return Err(fail!(
                "{} has {} image(s); training needs at least 2",
                train_set.name(),
                train_set.len()
            ));
        }
    }
    let norm = Normalization::fit(&train_set);

    let out = match (&args.out, &resume) {
        (Some(out), _) => out.clone(),
        (None, Some(r)) => r
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        (None, None) => default_run_dir(),
    };
    let ck_path = out.join(CHECKPOINT_FILE);
    let resuming_in_place = resume
        .as_ref()
        .is_some_and(|r| same_file(&r.path, &ck_path));
    if ck_path.exists() && !resuming_in_place {
        return Err(fail!(
            "{} already holds a run ({CHECKPOINT_FILE}); choose another --out, or continue it with --resume {}",
            out.display(),
            out.display()
        ));
    }
    // The model and its workspace before the output folder: a memory budget can be refused.
    let mut model = DenseNet::new(cfg.clone(), settings.seed)?;
    let (h, w) = (train_set.height(), train_set.width());
    let plan = match args.memory_budget {
        Some(_) if !settings.memory_efficient => {
            return Err(fail!(
                "--memory-budget needs memory-efficient training, and this {} with it off{}",
                if resume.is_some() {
                    "resumed run trained"
                } else {
                    "run is set"
                },
                if resume.is_some() {
                    ""
                } else {
                    " (--memory-efficient on)"
                }
            ))
        }
        Some(mb) => {
            MemoryPlan::Budget(usize::try_from(mb.saturating_mul(1_000_000)).unwrap_or(usize::MAX))
        }
        None => MemoryPlan::from_memory_efficient(settings.memory_efficient),
    };
    let mut ws = model.workspace_with_plan(settings.batch, h, w, plan)?;
    ws.set_winograd_3x3(!args.no_winograd);
    prepare_dir(&out)?;

    let sgd_config = SgdConfig {
        lr: settings.lr,
        momentum: settings.momentum,
        dampening: 0.0,
        weight_decay: settings.wd,
        nesterov: settings.nesterov && settings.momentum > 0.0,
    };
    let mut sgd = Sgd::new(sgd_config, model.store());
    let mut run_rng = Rng::new(settings.seed);
    let mut rows: Vec<EpochMetrics> = Vec::new();
    let mut start_epoch = 0;
    if let Some(r) = &resume {
        model_io::load_model(&mut model, &r.ck, &r.path)?;
        model_io::load_optimizer(&mut sgd, &model, &r.ck, &r.path)?;
        run_rng = Rng::from_state(
            r.ck.meta_parse("rng_state")
                .map_err(|e| fail!("{}: {e}", r.path.display()))?,
        );
        start_epoch = r.epoch;
        let old_metrics = r.path.with_file_name(METRICS_FILE);
        if let Ok(text) = std::fs::read_to_string(&old_metrics) {
            rows = metrics::parse_csv(&text, &old_metrics)?;
            rows.retain(|row| row.epoch <= start_epoch);
        }
    }

    // One training forward pass per optimiser step: the dropout stream continues where it was.
    ws.set_step(sgd.steps());
    let schedule = settings.lr_schedule();
    let batches_per_epoch = Batches::train(
        &train_set,
        settings.batch,
        &norm,
        Augment::NONE,
        Rng::new(0),
    )?
    .num_batches();

    let budget = args
        .memory_budget
        .map(|mb| {
            format!(
                ", workspace {:.0} MB of a {mb} MB budget",
                ws.bytes() as f64 / 1e6
            )
        })
        .unwrap_or_default();
    out!(
        "{} densenet: {} ({} parameters), memory-efficient {}{budget}",
        if resume.is_some() {
            "resuming"
        } else {
            "training"
        },
        cfg.spec(),
        group_digits(model.store().num_parameters() as u64),
        if settings.memory_efficient {
            "on"
        } else {
            "off"
        }
    );
    out!(
        "data {}: {} train / {} test images of {}x{}x{}, {} classes{}",
        settings.data,
        train_set.len(),
        test_set.len(),
        train_set.channels(),
        h,
        w,
        train_set.num_classes(),
        if settings.upscale > 1 {
            format!(" (upscaled x{})", settings.upscale)
        } else {
            String::new()
        }
    );
    out!(
        "epochs {} from {}, batch {}, lr {} ({:?}), momentum {}{}, wd {}, augment {}, seed {}, {} threads",
        settings.epochs,
        start_epoch + 1,
        settings.batch,
        settings.lr,
        settings.schedule,
        settings.momentum,
        if sgd_config.nesterov { " nesterov" } else { "" },
        settings.wd,
        settings.augment,
        settings.seed,
        rayon::current_num_threads()
    );
    out!("output {}", out.display());

    let started = Instant::now();
    let mut last_test = (f64::NAN, 0usize);
    for epoch in start_epoch..settings.epochs {
        let epoch_start = Instant::now();
        let lr = schedule.lr_at(epoch as f64);
        sgd.set_lr(lr);
        let epoch_rng = Rng::new(run_rng.next_u64());
        let batches = Batches::train(
            &train_set,
            settings.batch,
            &norm,
            settings.augment,
            epoch_rng,
        )?;
        let later = (settings.epochs - epoch - 1) * batches_per_epoch;
        let mut bar = EpochBar::new(epoch + 1, settings.epochs, batches_per_epoch, later);
        for (i, batch) in batches.enumerate() {
            let loss = train_step(&mut model, &mut ws, &mut sgd, &batch.images, &batch.labels)?;
            if !loss.is_finite() {
                bar.finish();
                return Err(non_finite(
                    "training loss",
                    loss,
                    epoch,
                    Some(i),
                    &out,
                    start_epoch,
                ));
            }
            let correct = model_io::count_correct(ws.logits(), &batch.labels);
            bar.step(batch.n, f64::from(loss), correct);
        }
        bar.evaluating();
        let (test_loss, test_correct) = model_io::evaluate(
            &mut model,
            &test_set,
            &norm,
            settings.batch,
            plan,
            !args.no_winograd,
            Some(&mut ws),
        )?;
        bar.finish();
        if !test_loss.is_finite() {
            return Err(non_finite(
                "test loss",
                test_loss as f32,
                epoch,
                None,
                &out,
                start_epoch,
            ));
        }
        last_test = (test_loss, test_correct);
        let row = EpochMetrics {
            epoch: epoch + 1,
            lr: f64::from(lr),
            train_loss: bar.mean_loss(),
            train_acc: bar.accuracy(),
            test_loss,
            test_acc: test_correct as f64 / test_set.len().max(1) as f64,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_second: bar.images_per_second(),
        };
        out!(
            "epoch {:>3}/{}  lr {:<7} train loss {:.4} acc {:6.2}%  test loss {:.4} acc {:6.2}%  {:.0} img/s  {:.1}s",
            row.epoch,
            settings.epochs,
            short_float(f64::from(lr)),
            row.train_loss,
            100.0 * row.train_acc,
            row.test_loss,
            100.0 * row.test_acc,
            row.images_per_second,
            row.seconds
        );
        rows.push(row);

        let mut ck = Checkpoint::default();
        model_io::save_model(&mut ck, &model, Some(&sgd));
        settings.to_meta(&mut ck);
        ck.meta.insert("model".into(), cfg.spec());
        ck.meta.insert("epoch".into(), (epoch + 1).to_string());
        ck.meta
            .insert("rng_state".into(), run_rng.state().to_string());
        ck.meta
            .insert("norm_mean".into(), model_io::join_floats(&norm.mean));
        ck.meta
            .insert("norm_std".into(), model_io::join_floats(&norm.std));
        ck.meta.insert(
            "test_accuracy".into(),
            format!("{:.6}", test_correct as f64 / test_set.len().max(1) as f64),
        );
        ck.save(&ck_path)?;
        write_atomic(&out.join(METRICS_FILE), metrics::to_csv(&rows).as_bytes())?;
        let title = format!("{} on {}", settings.model, settings.data);
        write_atomic(&out.join(PLOT_FILE), curves_svg(&rows, &title)?.as_bytes())?;
    }

    let (test_loss, correct) = last_test;
    out!();
    out!(
        "test accuracy {:.2}% ({correct}/{}), test loss {:.4}, after {} epochs ({} this run, {})",
        100.0 * correct as f64 / test_set.len().max(1) as f64,
        test_set.len(),
        test_loss,
        settings.epochs,
        settings.epochs - start_epoch,
        format_duration(started.elapsed().as_secs_f64())
    );
    out!("checkpoint {}", ck_path.display());
    out!("metrics    {}", out.join(METRICS_FILE).display());
    out!("plot       {}", out.join(PLOT_FILE).display());
    Ok(())
}

/// The error for a NaN or infinite loss: the run stops, the last good checkpoint stays.
fn non_finite(
    what: &str,
    value: f32,
    epoch: usize,
    batch: Option<usize>,
    out: &Path,
    start_epoch: usize,
) -> crate::error::CliError {
    let at = match batch {
        Some(b) => format!("epoch {} batch {}", epoch + 1, b + 1),
        None => format!("epoch {}", epoch + 1),
    };
    let kept = if epoch > start_epoch {
        format!(
            "the last good checkpoint (epoch {epoch}) is {}",
            out.join(CHECKPOINT_FILE).display()
        )
    } else if start_epoch > 0 {
        format!("the checkpoint it resumed from (epoch {start_epoch}) is unchanged")
    } else {
        "no checkpoint was written".to_string()
    };
    fail!("{what} became {value} at {at}; training stopped (try a smaller --lr); {kept}")
}

/// `0.1`, `0.01`, `0.0234`: at most 6 decimals, trailing zeros dropped.
pub fn short_float(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn group_digits(v: u64) -> String {
    crate::commands::summary::group(v)
}
