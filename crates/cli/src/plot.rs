//! The training-curve plot of a run (`curves.svg`): loss and accuracy per epoch, train and test.
//!
//! SVG, so no font files are needed: the text is left to the viewer's fonts.

use crate::error::{fail, CliResult};
use crate::metrics::EpochMetrics;
use plotters::prelude::*;

/// Two panels side by side: loss (left) and accuracy in percent (right), each with the
/// training and the test curve.
pub fn curves_svg(rows: &[EpochMetrics], title: &str) -> CliResult<String> {
    let mut svg = String::new();
    draw(&mut svg, rows, title).map_err(|e| fail!("cannot draw the training curves: {e}"))?;
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(svg: &mut String, rows: &[EpochMetrics], title: &str) -> DrawResult {
    let root = SVGBackend::with_string(svg, (960, 420)).into_drawing_area();
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
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
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
    }
}
