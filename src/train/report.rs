//! The training report's picture: loss per epoch (training and validation) beside
//! the validation precision-recall curve of each class, drawn with `plotters` into
//! a PNG. Text needs a TrueType font; the DejaVu font that the overlay uses is
//! registered with plotters once.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::TrainError;
use super::head::EpochStats;

/// One class's precision-recall curve: `(precision, recall)` points.
pub struct PrCurve {
    pub label: String,
    pub points: Vec<(f32, f32)>,
}

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
];

/// Registers a font for plotters' "sans-serif"; false when none is installed.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let path = std::env::var("PEDVISION_FONT")
            .ok()
            .into_iter()
            .chain(FONTS.iter().map(|s| s.to_string()));
        for p in path {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Image {
        path: path.to_path_buf(),
        reason: format!("cannot draw the plot: {e}"),
    }
}

/// Draws the two panels into `path` (PNG, 1200×500).
pub fn draw(path: &Path, history: &[EpochStats], curves: &[PrCurve]) -> Result<(), TrainError> {
    if !font_ready() {
        return Err(plot_error(
            path,
            "no TrueType font (install fonts-dejavu-core or set PEDVISION_FONT)",
        ));
    }
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let (left, right) = root.split_horizontally(600);
    draw_losses(&left, history, path)?;
    draw_pr_curves(&right, curves, path)?;
    root.present().map_err(|e| plot_error(path, e))?;
    Ok(())
}

/// The plot's panels: drawing areas of the PNG.
type Panel<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The left panel: training and validation loss per epoch.
fn draw_losses(left: &Panel<'_>, history: &[EpochStats], path: &Path) -> Result<(), TrainError> {
    let epochs = history.len().max(1) as f32;
    let max_loss = history
        .iter()
        .flat_map(|h| [h.train_loss, h.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max)
        .max(1e-3)
        * 1.1;
    let mut chart = ChartBuilder::on(left)
        .caption("loss per epoch", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.5f32..epochs + 0.5, 0f32..max_loss)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss per positive")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (name, colour, pick) in [
        (
            "train",
            BLUE,
            (|h: &EpochStats| h.train_loss) as fn(&EpochStats) -> f32,
        ),
        ("validation", RED, |h: &EpochStats| h.val_loss),
    ] {
        chart
            .draw_series(LineSeries::new(
                history.iter().map(|h| (h.epoch as f32, pick(h))),
                colour.stroke_width(2),
            ))
            .map_err(|e| plot_error(path, e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    Ok(())
}

/// The right panel: each class's validation precision-recall curve.
fn draw_pr_curves(right: &Panel<'_>, curves: &[PrCurve], path: &Path) -> Result<(), TrainError> {
    let mut pr = ChartBuilder::on(right)
        .caption("validation precision-recall (IoU 0.5)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f32..1.0, 0f32..1.02)
        .map_err(|e| plot_error(path, e))?;
    pr.configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, curve) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        pr.draw_series(LineSeries::new(
            curve.points.iter().map(|&(p, r)| (r, p)),
            colour.stroke_width(2),
        ))
        .map_err(|e| plot_error(path, e))?
        .label(curve.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    pr.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    Ok(())
}
