//! `densenet bench`: latency, throughput and memory of the inference plan.

use crate::commands::infer::{init_threads, load_model};
use crate::commands::parse_size;
use crate::console::out;
use crate::error::CliResult;
use densenet::infer::{InferencePlan, PlanOptions, StageTimes};
use std::time::{Duration, Instant};

/// Arguments of `densenet bench`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet bench --model densenet121 --batch 1 --size 224 --threads 2\n  \
    densenet bench --model densenet_bc100_k12 --batch 64 --size 32 --iters 10\n  \
    densenet bench --model densenet121 --stages          per-stage times (median)")]
pub struct BenchArgs {
    /// A preset such as densenet121 or a spec such as bc:k=12,blocks=16-16-16.
    #[arg(long, default_value = "densenet121")]
    pub model: String,
    /// Images per batch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch: u64,
    /// Input size HxW (or one number). Default: 224 for ImageNet models, 32 for CIFAR ones.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Worker threads (0: one per core). Default: $DENSENET_THREADS, else 0.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed passes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub iters: u64,
    /// Untimed passes first.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Weights to load (random initialisation otherwise; speed does not depend on values).
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// Also report the median time of each stage.
    #[arg(long)]
    pub stages: bool,
    /// Turn every plan rewrite off (BN folding, pooling first, fused packing, strips, Winograd).
    #[arg(long)]
    pub plain: bool,
    /// Run the dense layers as whole-tensor passes instead of strip by strip (to compare the
    /// two schedules).
    #[arg(long, conflicts_with = "plain")]
    pub no_strips: bool,
    /// Run the dense layers' 3×3 convolutions directly instead of by Winograd (to compare the
    /// two).
    #[arg(long, conflicts_with = "plain")]
    pub no_winograd: bool,
    /// Run the ImageNet stem over the whole map instead of in bands of rows (to compare the
    /// two).
    #[arg(long, conflicts_with = "plain")]
    pub no_stem_bands: bool,
}

/// Runs `densenet bench`.
pub fn run(args: BenchArgs) -> CliResult<()> {
    let threads = init_threads(args.threads)?;
    let model = load_model(&args.model, args.weights.as_deref(), 0)?;
    let (h, w) = args.size.unwrap_or(match model.config().stem {
        densenet::Stem::ImageNet => (224, 224),
        densenet::Stem::Cifar => (32, 32),
    });
    let n = args.batch as usize;
    let opts = if args.plain {
        PlanOptions::plain()
    } else {
        PlanOptions {
            dense_layers_by_strips: !args.no_strips,
            winograd_3x3: !args.no_winograd,
            stem_in_bands: !args.no_stem_bands,
            ..PlanOptions::default()
        }
    };
    let mut plan = InferencePlan::from_model(model, n, h, w, opts)?;
    let input: Vec<f32> = (0..plan.input_len())
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    for _ in 0..args.warmup {
        plan.forward(&input)?;
    }
    let cpu0 = cpu_time_ns();
    let wall0 = Instant::now();
    let mut times = Vec::with_capacity(args.iters as usize);
    let mut stage_runs: Vec<StageTimes> = Vec::new();
    for _ in 0..args.iters {
        if args.stages {
            let mut st = StageTimes::default();
            let t0 = Instant::now();
            plan.forward_timed(&input, &mut st)?;
            times.push(t0.elapsed());
            stage_runs.push(st);
        } else {
            let t0 = Instant::now();
            plan.forward(&input)?;
            times.push(t0.elapsed());
        }
    }
    let wall = wall0.elapsed();
    let cpu = cpu_time_ns().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    times.sort();
    let median_time = median(&times);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    out!(
        "model {}  batch {n}  input {h}x{w}  threads {threads}  tier {}  {}",
        args.model,
        plan.isa().name(),
        if args.plain {
            "plain".to_string()
        } else {
            let off: Vec<&str> = [
                (args.no_strips, "strips"),
                (args.no_winograd, "Winograd"),
                (args.no_stem_bands, "stem bands"),
            ]
            .into_iter()
            .filter_map(|(off, name)| off.then_some(name))
            .collect();
            if off.is_empty() {
                "all rewrites".to_string()
            } else {
                format!("all rewrites but {}", off.join(", "))
            }
        }
    );
    out!(
        "latency ms: median {:.2}  min {:.2}  max {:.2}  ({} iters, {} warm-up)",
        ms(median_time),
        ms(times[0]),
        ms(times[times.len() - 1]),
        args.iters,
        args.warmup
    );
    out!(
        "throughput: {:.1} images/s",
        n as f64 / median_time.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        // On a shared machine the wall time includes waiting for a core; the CPU time does not.
        let per_pass = cpu as f64 / 1e6 / args.iters as f64;
        out!(
            "cpu time: {per_pass:.2} ms per pass over all threads ({:.0}% of {threads} cores busy)",
            100.0 * per_pass / (wall.as_secs_f64() * 1e3 / args.iters as f64) / threads as f64
        );
    }
    out!(
        "memory: arena {:.2} MiB (peak of live buffers {:.2} MiB; packing scratch {:.2} MiB in it), weights {:.2} MiB",
        mib(plan.arena_bytes()),
        mib(plan.peak_live_bytes()),
        mib(plan.scratch_bytes()),
        mib(plan.weight_bytes())
    );
    match peak_rss_bytes() {
        Some(b) => out!("peak RSS: {:.1} MiB (VmHWM)", mib(b)),
        None => out!("peak RSS: unavailable (no /proc/self/status)"),
    }
    if args.stages {
        out!("stage medians (ms):");
        for (i, name) in plan.stage_names().iter().enumerate() {
            let mut t: Vec<Duration> = stage_runs.iter().map(|s| s.stages[i].1).collect();
            t.sort();
            let m = median(&t);
            out!(
                "  {name:<14} {:>8.3}  {:>5.1}%",
                ms(m),
                100.0 * m.as_secs_f64() / median_time.as_secs_f64()
            );
        }
    }
    Ok(())
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// `VmHWM` of `/proc/self/status`: the peak resident set size, in bytes (Linux only).
fn peak_rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time of all this process's threads so far, in nanoseconds (Linux: the first field of
/// each `/proc/self/task/*/schedstat`).
fn cpu_time_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
