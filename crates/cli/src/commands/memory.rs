//! `densenet memory`: peak training memory of a model's dense blocks against depth, for naive
//! concatenation, the shared buffer and memory-efficient backward, measured with the counting
//! allocator this binary installs, beside the inference plan's arena; a table, a plot (SVG or
//! PNG) and optionally a CSV.

use crate::console::out;
use std::path::PathBuf;

use densenet::config::{DenseNetConfig, Stem};
use densenet::infer::{InferencePlan, PlanOptions};
use densenet::memory::sweep::{dense_blocks_peak, model_train_peak};
use densenet::memory::Strategy;
use densenet::DenseNet;
use densenet_kernels::alloc_counter;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::commands::parse_size;
use crate::error::{fail, CliResult};
use crate::output::write_atomic;
use crate::plot::{write_figure, DrawResult, Figure, ImageFormat};

/// Arguments of `densenet memory`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet memory --model densenet_bc100_k12 --batch 8 --size 32x32\n  \
    densenet memory --model densenet_bc100_k12 --batch 4 --depths 40,100,160,250 --plot mem.svg\n  \
    densenet memory --model densenet121 --batch 1 --size 224x224 --depths 40,64 --csv mem.csv\n\n\
    Depth L means (L-4)/6 bottleneck layers per dense block ((L-4)/3 for a plain model), in every\n\
    block of the model; growth rate, bottleneck, compression and stem come from the model.")]
pub struct MemoryArgs {
    /// A preset (e.g. densenet_bc100_k12, densenet121) or a spec such as bc:k=12,blocks=16-16-16.
    #[arg(long, default_value = "densenet_bc100_k12")]
    pub model: String,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Input size HxW (or one number). Default: 224x224 for ImageNet models, 32x32 for CIFAR.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Depths to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "40,100,160,250")]
    pub depths: Vec<usize>,
    /// Growth rate k, overriding the model's.
    #[arg(long)]
    pub growth: Option<usize>,
    /// Where to write the plot: .svg or .png (any case); the extension picks the format.
    #[arg(long, default_value = "memory.svg")]
    pub plot: PathBuf,
    /// Also write the table as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One depth's measurements, in bytes.
struct Row {
    depth: usize,
    layers_per_block: usize,
    naive: u64,
    shared: u64,
    efficient: u64,
    model_stored: u64,
    model_efficient: u64,
    infer_arena: u64,
}

fn config_at_depth(base: &DenseNetConfig, depth: usize) -> CliResult<DenseNetConfig> {
    let per = if base.bn_size.is_some() { 6 } else { 3 };
    if depth <= 4 || !(depth - 4).is_multiple_of(per) {
        return Err(fail!(
            "--depths: {depth} is not a valid {} depth: need L = 4 + {per}*n with n >= 1",
            if per == 6 {
                "DenseNet-BC"
            } else {
                "plain DenseNet"
            }
        ));
    }
    let mut cfg = base.clone();
    let n = (depth - 4) / per;
    cfg.block_config = vec![n; base.block_config.len()];
    cfg.validate()?;
    Ok(cfg)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Measures, prints, plots.
pub fn run(args: MemoryArgs) -> CliResult<()> {
    let mut base: DenseNetConfig = args
        .model
        .parse()
        .map_err(|e| fail!("--model {}: {e}", args.model))?;
    if let Some(k) = args.growth {
        base.growth_rate = k;
        if base.bn_size.is_some() && base.stem == Stem::Cifar {
            base.init_features = 2 * k;
        }
    }
    base.validate()?;
    // Checked before the (possibly long) measurements.
    ImageFormat::of_path(&args.plot, "--plot")?;
    if args.batch == 0 {
        return Err(fail!("--batch must be at least 1"));
    }
    if args.depths.is_empty() {
        return Err(fail!("--depths: give at least one depth"));
    }
    let (h, w) = args.size.unwrap_or(match base.stem {
        Stem::ImageNet => (224, 224),
        Stem::Cifar => (32, 32),
    });
    // The figures are only real if this binary's counting allocator is in place.
    if alloc_counter::snapshot().allocations == 0 {
        return Err(fail!(
            "the counting allocator is not installed; memory cannot be measured"
        ));
    }
    let cfgs = args
        .depths
        .iter()
        .map(|&d| config_at_depth(&base, d))
        .collect::<CliResult<Vec<_>>>()?;
    out!(
        "peak training memory, batch {} at {h}x{w}, k={}, {} (measured: counting allocator)",
        args.batch,
        base.growth_rate,
        if base.bn_size.is_some() {
            "bottleneck layers"
        } else {
            "plain layers"
        }
    );
    out!(
        "dense blocks: all blocks forward then backward, each strategy's saved tensors live; \
         network: one real training step"
    );
    out!(
        "{:>6} {:>8} {:>12} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "depth",
        "L/block",
        "naive MiB",
        "shared MiB",
        "effic. MiB",
        "net stored",
        "net effic.",
        "infer arena"
    );
    let mut rows = Vec::new();
    for (&depth, cfg) in args.depths.iter().zip(&cfgs) {
        let peak = |s| dense_blocks_peak(cfg, args.batch, h, w, s);
        let row = Row {
            depth,
            layers_per_block: cfg.block_config[0],
            naive: peak(Strategy::Naive)?,
            shared: peak(Strategy::Shared)?,
            efficient: peak(Strategy::Efficient)?,
            model_stored: model_train_peak(cfg, args.batch, h, w, false)?,
            model_efficient: model_train_peak(cfg, args.batch, h, w, true)?,
            infer_arena: {
                let model = DenseNet::new(cfg.clone(), 1)?;
                let plan = InferencePlan::new(&model, args.batch, h, w, PlanOptions::default())?;
                plan.arena_bytes() as u64
            },
        };
        out!(
            "{:>6} {:>8} {:>12.1} {:>12.1} {:>12.1} {:>14.1} {:>14.1} {:>12.1}",
            row.depth,
            row.layers_per_block,
            mib(row.naive),
            mib(row.shared),
            mib(row.efficient),
            mib(row.model_stored),
            mib(row.model_efficient),
            mib(row.infer_arena)
        );
        rows.push(row);
    }
    out!(
        "infer arena: the activation arena of the allocation-free inference plan (all rewrites \
         on), the length of its one allocation"
    );
    let title = format!(
        "{}, batch {} at {h}x{w}: peak training memory",
        args.model, args.batch
    );
    let figure = MemoryPlot {
        rows: &rows,
        title: &title,
    };
    write_figure(&args.plot, "--plot", &figure, "memory plot")?;
    out!("plot: {}", args.plot.display());
    if let Some(path) = &args.csv {
        let mut csv = String::from(
            "depth,layers_per_block,naive_bytes,shared_bytes,efficient_bytes,\
             network_stored_bytes,network_efficient_bytes,infer_arena_bytes\n",
        );
        for r in &rows {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                r.depth,
                r.layers_per_block,
                r.naive,
                r.shared,
                r.efficient,
                r.model_stored,
                r.model_efficient,
                r.infer_arena
            ));
        }
        write_atomic(path, csv.as_bytes())?;
        out!("csv: {}", path.display());
    }
    Ok(())
}

/// A plotted line: legend, colour, and the figure it reads from a row.
type Series = (&'static str, RGBColor, fn(&Row) -> u64);

/// Peak memory against depth, one line per strategy.
struct MemoryPlot<'a> {
    rows: &'a [Row],
    title: &'a str,
}

impl Figure for MemoryPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (760, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        draw(root, self.rows, self.title)
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[Row], title: &str) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let max_depth = rows.iter().map(|r| r.depth).max().unwrap_or(1) as f64;
    let min_depth = rows.iter().map(|r| r.depth).min().unwrap_or(0) as f64;
    let max_mib = rows
        .iter()
        .map(|r| mib(r.naive.max(r.model_stored)))
        .fold(1.0, f64::max)
        * 1.08;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(min_depth.min(max_depth - 1.0)..max_depth, 0.0..max_mib)?;
    chart
        .configure_mesh()
        .x_desc("depth L")
        .y_desc("peak MiB")
        .draw()?;
    let series: [Series; 6] = [
        ("naive concatenation (blocks)", RED, |r| r.naive),
        ("shared buffer, BN stored (blocks)", BLUE, |r| r.shared),
        ("memory-efficient (blocks)", GREEN, |r| r.efficient),
        ("network, BN stored", MAGENTA, |r| r.model_stored),
        ("network, memory-efficient", CYAN, |r| r.model_efficient),
        ("inference arena", BLACK, |r| r.infer_arena),
    ];
    for (name, color, get) in series {
        let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.depth as f64, mib(get(r)))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_map_to_layers_per_block() {
        let base = DenseNetConfig::preset("densenet_bc100_k12").unwrap();
        assert_eq!(
            config_at_depth(&base, 100).unwrap().block_config,
            vec![16; 3]
        );
        assert_eq!(
            config_at_depth(&base, 250).unwrap().block_config,
            vec![41; 3]
        );
        assert!(config_at_depth(&base, 101).is_err());
        assert!(config_at_depth(&base, 4).is_err());
        let plain = DenseNetConfig::preset("densenet40_k12").unwrap();
        assert_eq!(
            config_at_depth(&plain, 40).unwrap().block_config,
            vec![12; 3]
        );
    }
}
