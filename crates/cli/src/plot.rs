//! The plots the CLI writes, as SVG or PNG (chosen by the file extension), and the
//! training-curve plot of a run (`curves.svg`): loss and accuracy per epoch, train and test.
//!
//! Text needs a font. SVG leaves it to the viewer; for PNG the binary carries DejaVu Sans
//! (`assets/DejaVuSans.ttf`, Bitstream Vera license in `assets/DejaVuSans.LICENSE`) and
//! registers it with plotters' ab_glyph renderer, so labels render on a machine with no fonts
//! installed. The font is registered for SVG too, because plotters measures text with it to lay
//! out label areas.

use crate::error::{fail, CliResult};
use crate::metrics::EpochMetrics;
use crate::output::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// DejaVu Sans, drawn into PNG plots.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Outcome of the one-time font registration, shared by every plot.
static FONT_REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the embedded font under the family names plotters asks for (once per process).
fn register_fonts() -> CliResult<()> {
    let registered = FONT_REGISTERED.get_or_init(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            plotters::style::register_font(family, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded font does not parse".to_string())?;
        }
        Ok(())
    });
    registered
        .clone()
        .map_err(|e| fail!("cannot draw text: {e}"))
}

/// The image formats a plot can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Scalable vector text.
    Svg,
    /// An 8-bit RGB raster.
    Png,
}

impl ImageFormat {
    /// The format a path's extension asks for (`.svg` or `.png`, any case); `option` names the
    /// flag in the error.
    pub fn of_path(path: &Path, option: &str) -> CliResult<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext.eq_ignore_ascii_case("svg") {
            Ok(Self::Svg)
        } else if ext.eq_ignore_ascii_case("png") {
            Ok(Self::Png)
        } else {
            Err(fail!(
                "{option} {}: the image must end in .svg or .png",
                path.display()
            ))
        }
    }
}

/// Something drawable on any plotters backend.
pub trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the whole figure onto `root` (which covers `size()`).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// The encoded image (SVG text or PNG bytes) of a figure; `what` names it in errors.
pub fn render(figure: &impl Figure, format: ImageFormat, what: &str) -> CliResult<Vec<u8>> {
    register_fonts()?;
    let (w, h) = figure.size();
    let drawn = match format {
        ImageFormat::Svg => {
            let mut svg = String::new();
            draw_on(SVGBackend::with_string(&mut svg, (w, h)), figure).map(|()| svg.into_bytes())
        }
        ImageFormat::Png => {
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            draw_on(BitMapBackend::with_buffer(&mut rgb, (w, h)), figure).and_then(|()| {
                let mut png = Vec::new();
                image::ImageEncoder::write_image(
                    image::codecs::png::PngEncoder::new(&mut png),
                    &rgb,
                    w,
                    h,
                    image::ExtendedColorType::Rgb8,
                )?;
                Ok(png)
            })
        }
    };
    drawn.map_err(|e| fail!("cannot draw the {what}: {e}"))
}

/// Renders a figure in the format `path`'s extension names and writes it atomically.
pub fn write_figure(path: &Path, option: &str, figure: &impl Figure, what: &str) -> CliResult<()> {
    let format = ImageFormat::of_path(path, option)?;
    write_atomic(path, &render(figure, format, what)?)
}

fn draw_on<DB: DrawingBackend>(backend: DB, figure: &impl Figure) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let root = backend.into_drawing_area();
    figure.draw(&root)?;
    root.present()?;
    Ok(())
}

/// Training curves of a run: two panels side by side, loss (left) and accuracy in percent
/// (right), each with the training and the test curve.
pub struct Curves<'a> {
    /// One row per finished epoch.
    pub rows: &'a [EpochMetrics],
    /// The figure's title.
    pub title: &'a str,
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (960, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        draw_curves(root, self.rows, self.title)
    }
}

/// The training-curve SVG (see [`Curves`]).
pub fn curves_svg(rows: &[EpochMetrics], title: &str) -> CliResult<String> {
    let svg = render(&Curves { rows, title }, ImageFormat::Svg, "training curves")?;
    String::from_utf8(svg).map_err(|_| fail!("the training-curve SVG is not UTF-8"))
}

/// Errors of a plotters drawing, whatever the backend.
pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[EpochMetrics],
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let (left, right) = root.split_horizontally(480);
    let last_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1).max(2) as f64;
    let finite = |v: &f64| v.is_finite();
    let max_loss = rows
        .iter()
        .flat_map(|r| [r.train_loss, r.test_loss])
        .filter(finite)
        .fold(0.1, f64::max)
        * 1.05;
    panel(
        &left,
        "loss",
        (1.0, last_epoch),
        (0.0, max_loss),
        rows,
        |r| (r.train_loss, r.test_loss),
    )?;
    let min_acc = rows
        .iter()
        .flat_map(|r| [r.train_acc, r.test_acc])
        .filter(finite)
        .fold(1.0, f64::min)
        .min(0.9);
    let low = (min_acc * 100.0 / 10.0).floor() * 10.0;
    panel(
        &right,
        "accuracy (%)",
        (1.0, last_epoch),
        (low, 100.0),
        rows,
        |r| (r.train_acc * 100.0, r.test_acc * 100.0),
    )?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    y_desc: &str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    rows: &[EpochMetrics],
    values: impl Fn(&EpochMetrics) -> (f64, f64),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .draw()?;
    let clamp = |v: f64| {
        if v.is_finite() {
            v.clamp(y_range.0, y_range.1)
        } else {
            y_range.1
        }
    };
    let train: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.epoch as f64, clamp(values(r).0)))
        .collect();
    let test: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.epoch as f64, clamp(values(r).1)))
        .collect();
    let train_style = ShapeStyle::from(&BLUE).stroke_width(2);
    let test_style = ShapeStyle::from(&RED).stroke_width(2);
    chart
        .draw_series(LineSeries::new(train, train_style))?
        .label("train")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], train_style));
    chart
        .draw_series(LineSeries::new(test, test_style))?
        .label("test")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], test_style));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_both_panels_and_curves() {
        let rows: Vec<EpochMetrics> = (1..=5)
            .map(|e| EpochMetrics {
                epoch: e,
                lr: 0.1,
                train_loss: 2.0 / e as f64,
                train_acc: 0.5 + 0.09 * e as f64,
                test_loss: if e == 3 { f64::NAN } else { 2.2 / e as f64 },
                test_acc: 0.45 + 0.09 * e as f64,
                seconds: 1.0,
                images_per_second: 100.0,
            })
            .collect();
        let svg = curves_svg(&rows, "digits").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("accuracy (%)") && svg.contains("loss"));
        assert!(svg.matches("<polyline").count() >= 4, "{svg}");
        assert!(curves_svg(&rows[..1], "one epoch").is_ok());
        assert!(curves_svg(&[], "empty").is_ok());

        // The same figure as PNG: the right size, the two curve colours and drawn text.
        let png = render(
            &Curves {
                rows: &rows,
                title: "digits",
            },
            ImageFormat::Png,
            "curves",
        )
        .unwrap();
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (960, 420));
        let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
        assert!(has([0, 0, 255]) && has([255, 0, 0]) && has([255, 255, 255]));
        let grey_levels: std::collections::HashSet<u8> = img
            .pixels()
            .filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2])
            .map(|p| p.0[0])
            .collect();
        // Anti-aliased glyph edges give many grey levels; lines and fills alone give a few.
        assert!(grey_levels.len() > 30, "{} grey levels", grey_levels.len());
    }

    #[test]
    fn the_extension_picks_the_format() {
        let of = |p: &str| ImageFormat::of_path(Path::new(p), "--out");
        assert_eq!(of("a/b.svg").unwrap(), ImageFormat::Svg);
        assert_eq!(of("B.SVG").unwrap(), ImageFormat::Svg);
        assert_eq!(of("c.Png").unwrap(), ImageFormat::Png);
        for bad in ["d.jpg", "e", "f.png.txt", ".png"] {
            let e = of(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(".svg or .png"), "{e}");
        }
    }
}
