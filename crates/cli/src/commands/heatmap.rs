//! `densenet heatmap`: the paper's Figure 5 for a checkpoint or a weights file.
//!
//! For every dense block, the mean absolute weight of the connection from each source (the block
//! input, then each layer) to each target layer's first conv, normalised per input feature map
//! ([`densenet::heatmap`] has the formula), drawn as one heat-map panel per block with the
//! transition as the last row. The image is SVG or PNG, as the `--out` extension says; PNG text
//! is drawn with the font the binary carries, so no system fonts are needed.

use crate::checkpoint::{Checkpoint, FORMAT};
use crate::console::out;
use crate::error::{fail, CliResult};
use crate::model_io::{self, checkpoint_path};
use crate::output::write_atomic;
use crate::plot::{write_figure, DrawResult, Figure, ImageFormat};
use densenet::heatmap::{connection_strengths, BlockHeatmap};
use densenet::weights::{load_params, StateDict};
use densenet::{DenseNetConfig, ParamStore};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Arguments of `densenet heatmap`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet heatmap --weights runs/20260101-120000 --out heat.svg       a run's checkpoint\n  \
    densenet heatmap --weights densenet121.safetensors --model densenet121 --out heat.png\n  \
    densenet heatmap --weights runs/x --out heat.svg --csv heat.csv      also the numbers")]
pub struct HeatmapArgs {
    /// A checkpoint written by `densenet train` (file or run folder), or a plain safetensors
    /// state dict with torchvision names (then --model is required).
    #[arg(long)]
    pub weights: PathBuf,
    /// Model the weights belong to. [default: the checkpoint's own model]
    #[arg(long)]
    pub model: Option<String>,
    /// Output image: .svg or .png (any case); the extension picks the format.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the matrices as CSV rows `block,target,source,strength`.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Runs `densenet heatmap`.
pub fn run(args: HeatmapArgs) -> CliResult<()> {
    // Checked before the (possibly large) weights are read.
    ImageFormat::of_path(&args.out, "--out")?;
    let path = checkpoint_path(&args.weights);
    let (cfg, store) = load(&path, args.model.as_deref())?;
    let maps = connection_strengths(&cfg, &store)?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let title = format!("connection strength, {name}");
    let figure = Heatmap {
        maps: &maps,
        title: &title,
    };
    write_figure(&args.out, "--out", &figure, "heat map")?;
    out!("model {}", cfg.spec());
    for m in &maps {
        out!(
            "block {}: {} layers{}, strongest connection {:.4e}",
            m.block + 1,
            m.layers,
            if m.has_transition {
                " + transition"
            } else {
                ""
            },
            m.max()
        );
    }
    out!("wrote {}", args.out.display());
    if let Some(csv) = &args.csv {
        write_atomic(csv, to_csv(&maps).as_bytes())?;
        out!("wrote {}", csv.display());
    }
    Ok(())
}

/// The model and its weights from a checkpoint or a plain state dict.
fn load(path: &Path, model: Option<&str>) -> CliResult<(DenseNetConfig, ParamStore)> {
    let bytes =
        std::fs::read(path).map_err(|e| fail!("cannot read weights {}: {e}", path.display()))?;
    let dict = StateDict::from_bytes(&bytes)
        .map_err(|e| fail!("{}: not a readable safetensors file ({e})", path.display()))?;
    let checkpoint = if dict.metadata().get("format").map(String::as_str) == Some(FORMAT) {
        Some(Checkpoint::from_bytes(&bytes, path)?)
    } else {
        None
    };
    let spec = match (model, &checkpoint) {
        (Some(m), _) => m.to_string(),
        (None, Some(ck)) => ck
            .meta_str("model")
            .map_err(|e| fail!("{}: {e}", path.display()))?
            .to_string(),
        (None, None) => {
            return Err(fail!(
                "{}: a plain weights file does not say which model it is; pass --model",
                path.display()
            ))
        }
    };
    let cfg: DenseNetConfig = spec.parse().map_err(|e| fail!("--model {spec}: {e}"))?;
    let mut net = densenet::DenseNet::new(cfg.clone(), 0)?;
    match &checkpoint {
        Some(ck) => model_io::load_model(&mut net, ck, path)?,
        None => {
            load_params(net.store_mut(), &dict)
                .map_err(|e| fail!("{}: does not fit model {spec}: {e}", path.display()))?;
        }
    }
    Ok((cfg, net.store().clone()))
}

fn to_csv(maps: &[BlockHeatmap]) -> String {
    let mut out = String::from("block,target,source,strength\n");
    for m in maps {
        for t in 0..m.targets() {
            for s in 0..m.sources() {
                if let Some(v) = m.get(t, s) {
                    out.push_str(&format!(
                        "{},{},{s},{v:e}\n",
                        m.block + 1,
                        target_label(m, t)
                    ));
                }
            }
        }
    }
    out
}

/// Layer number (1-based) or `T` for the transition.
fn target_label(m: &BlockHeatmap, t: usize) -> String {
    if m.has_transition && t == m.layers {
        "T".into()
    } else {
        (t + 1).to_string()
    }
}

/// Viridis-like colour for `x ∈ [0, 1]`: five stops of matplotlib's viridis, linearly blended.
fn colour(x: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let x = if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The heat-map figure: one panel per block, side by side; colour = strength / the block's
/// strongest connection.
pub struct Heatmap<'a> {
    /// One matrix per dense block.
    pub maps: &'a [BlockHeatmap],
    /// The figure's title.
    pub title: &'a str,
}

/// Width and height of one block's panel, in pixels.
const PANEL: u32 = 380;

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (PANEL * self.maps.len().max(1) as u32, PANEL + 60)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}  (colour: share of the block's strongest connection)",
                self.title
            ),
            ("sans-serif", 16),
        )?;
        let panels = root.split_evenly((1, self.maps.len().max(1)));
        for (m, area) in self.maps.iter().zip(&panels) {
            panel(area, m)?;
        }
        Ok(())
    }
}

/// The heat map as SVG text (see [`Heatmap`]).
#[cfg(test)]
fn heatmap_svg(maps: &[BlockHeatmap], title: &str) -> CliResult<String> {
    let svg = crate::plot::render(&Heatmap { maps, title }, ImageFormat::Svg, "heat map")?;
    String::from_utf8(svg).map_err(|_| fail!("the heat-map SVG is not UTF-8"))
}

fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, m: &BlockHeatmap) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (rows, cols) = (m.targets() as f64, m.sources() as f64);
    let max = f64::from(m.max());
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("block {} (max {:.2e})", m.block + 1, max),
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(40)
        .build_cartesian_2d(-0.5..cols - 0.5, -0.5..rows - 0.5)?;
    // Row t is drawn at y = rows-1-t so layer 1 is on top, the transition at the bottom.
    let label_rows = m.targets();
    let y_label = |y: &f64| {
        let r = y.round();
        if (y - r).abs() > 1e-6 || r < 0.0 || r >= rows {
            return String::new();
        }
        target_label(m, label_rows - 1 - r as usize)
    };
    let x_label = |x: &f64| {
        let r = x.round();
        if (x - r).abs() > 1e-6 || r < 0.0 {
            String::new()
        } else {
            format!("{}", r as usize)
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("source layer s (0 = block input)")
        .y_desc("target layer l")
        .x_labels(m.sources().min(13))
        .y_labels(m.targets().min(13))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .draw()?;
    let mut cells = Vec::new();
    for t in 0..m.targets() {
        for s in 0..m.sources() {
            let y = rows - 1.0 - t as f64;
            let x = s as f64;
            let fill = match m.get(t, s) {
                Some(v) if max > 0.0 => colour(f64::from(v) / max).filled(),
                Some(_) => colour(0.0).filled(),
                None => RGBColor(235, 235, 235).filled(),
            };
            cells.push(Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                fill,
            ));
        }
    }
    chart.draw_series(cells)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_scale_runs_from_dark_purple_to_yellow() {
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
        assert_eq!(colour(f64::NAN), colour(0.0));
        assert_eq!(colour(7.0), colour(1.0));
    }

    #[test]
    fn svg_has_one_cell_per_matrix_entry() {
        let cfg: DenseNetConfig = "bc:k=2,blocks=3-2,classes=2".parse().unwrap();
        let store = ParamStore::new(&cfg, 0).unwrap();
        let maps = connection_strengths(&cfg, &store).unwrap();
        let svg = heatmap_svg(&maps, "t").unwrap();
        let cells = maps
            .iter()
            .map(|m| m.targets() * m.sources())
            .sum::<usize>();
        assert!(svg.matches("<rect").count() >= cells, "{svg}");
        assert!(svg.contains("block 2") && svg.contains("source layer"));
        let csv = to_csv(&maps);
        // Block 1: rows read 1, 2, 3 and (transition) 4 sources; block 2: 1 and 2.
        assert_eq!(csv.lines().count(), 1 + (1 + 2 + 3 + 4) + (1 + 2));
        assert!(csv.contains("\n1,T,3,"));
    }
}
