//! The `densenet` command: train a DenseNet, evaluate a checkpoint, print a model summary.
//!
//! One module per subcommand under [`commands`]; shared pieces (atomic writes, checkpoints,
//! metrics, plots, the progress bar) each have their own module. Every failure ends in one line
//! `error: ...` on stderr and exit status 1 (2 for flags clap rejects).

mod checkpoint;
mod commands;
mod console;
mod error;
mod metrics;
mod model_io;
mod output;
mod plot;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// Counts every heap byte, so `densenet memory` measures rather than estimates.
#[global_allocator]
static ALLOC: densenet_kernels::alloc_counter::CountingAllocator =
    densenet_kernels::alloc_counter::CountingAllocator;

/// DenseNet (Huang et al. 2017) on the CPU, with memory-efficient training (Pleiss et al. 2017).
#[derive(Parser)]
#[command(
    name = "densenet",
    version,
    about,
    after_help = "Examples:\n  \
        densenet train                       train a small DenseNet-BC on the bundled digits\n  \
        densenet eval --checkpoint runs/X/checkpoint.safetensors\n  \
        densenet summary --model densenet121 --size 224x224"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a DenseNet on a data set, with a progress bar, checkpoints, metrics and a plot.
    Train(commands::train::TrainArgs),
    /// Accuracy and loss of a checkpoint on a data set's test split.
    Eval(commands::eval::EvalArgs),
    /// Per-stage table of a model: output size, layers, parameters, multiply-adds, memory.
    Summary(commands::summary::SummaryArgs),
    /// Peak training memory against depth: naive concatenation, shared buffer, memory-efficient.
    Memory(commands::memory::MemoryArgs),
    /// Class scores for images or a raw .npy tensor (allocation-free inference plan).
    Infer(commands::infer::InferArgs),
    /// Latency, throughput and memory of inference.
    Bench(commands::bench::BenchArgs),
    /// The paper's Figure 5: mean absolute weight between the layers of each dense block (SVG).
    Heatmap(commands::heatmap::HeatmapArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::Memory(args) => commands::memory::run(args),
        Command::Infer(args) => commands::infer::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Heatmap(args) => commands::heatmap::run(args),
    };
    match (result, console::lost_output()) {
        (Ok(()), None) => ExitCode::SUCCESS,
        (Ok(()), Some(e)) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
