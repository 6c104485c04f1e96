//! The per-epoch loss and accuracy plots.

use anyhow::Result;
use plotters::prelude::*;

use crate::fit::history::{EpochLog, TrainReport};

use super::canvas::{
    draw_legend, draw_message, legend_split, Area, Mark, FONT, GRID, INK, PALETTE,
};
use super::runs::run_label;

pub(super) struct EpochCurves {
    colour: RGBColor,
    label: String,
    train: Vec<(i32, f64)>,
    select: Vec<(i32, f64)>,
    best: Option<(i32, f64)>,
}

pub(super) type EpochValue = fn(&EpochLog) -> Option<f64>;

pub(super) fn epoch_curves(
    report: &TrainReport,
    train: EpochValue,
    select: EpochValue,
) -> Vec<EpochCurves> {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    report
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let points = |f: EpochValue| -> Vec<(i32, f64)> {
                run.history
                    .iter()
                    .filter_map(|e| finite(f(e)).map(|v| (e.epoch as i32, v)))
                    .collect()
            };
            let best = run
                .history
                .iter()
                .find(|e| e.epoch == run.best_epoch)
                .and_then(|e| finite(select(e)).or_else(|| finite(train(e))))
                .map(|v| (run.best_epoch as i32, v));
            EpochCurves {
                colour: PALETTE[i % PALETTE.len()],
                label: run_label(report, run),
                train: points(train),
                select: points(select),
                best,
            }
        })
        .collect()
}

pub(super) fn draw_epochs(
    area: &Area<'_>,
    report: &TrainReport,
    title: &str,
    y_desc: &str,
    (train, select): (EpochValue, EpochValue),
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    let area = area.titled(title, (FONT, 22))?;
    let curves = epoch_curves(report, train, select);
    if curves
        .iter()
        .all(|c| c.train.is_empty() && c.select.is_empty())
    {
        return draw_message(
            &area,
            &[
                "No per-epoch history: this run had no fold or hold-out runs,",
                "and the final model trained on every patient is not plotted.",
            ],
        );
    }
    let max_epoch = curves
        .iter()
        .flat_map(|c| c.train.iter().chain(&c.select))
        .map(|p| p.0)
        .max()
        .unwrap_or(1)
        .max(2);
    let (y_lo, y_hi) = y_range.unwrap_or_else(|| {
        data_range(
            curves
                .iter()
                .flat_map(|c| c.train.iter().chain(&c.select))
                .map(|p| p.1),
        )
    });
    let (plot, legend) = legend_split(&area);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(1i32..max_epoch, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(max_epoch.min(15) as usize)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    for c in &curves {
        if let Some((x, y)) = c.best {
            chart.draw_series(DashedLineSeries::new(
                [(x, y_lo), (x, y_hi)],
                3,
                4,
                c.colour.mix(0.7).stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Circle::new((x, y), 6, c.colour.filled())))?;
        }
        chart.draw_series(LineSeries::new(
            c.train.iter().copied(),
            c.colour.stroke_width(2),
        ))?;
        chart.draw_series(DashedLineSeries::new(
            c.select.iter().copied(),
            9,
            5,
            c.colour.stroke_width(2),
        ))?;
    }
    draw_legend(&legend, &epoch_legend(&curves))
}

/// A y range that fits the values with a margin of 8% of their spread, from 0 when that is
/// no more than the margin away: the loss falls from about 0.7 to 0.5, which a 0-based axis
/// would flatten into a line at the top.
pub(super) fn data_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    // A flat curve still gets an axis a few percent tall.
    let margin = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
    let bottom = if lo - margin <= margin {
        0.0
    } else {
        lo - margin
    };
    (bottom.min(lo), hi + margin)
}

/// Legend of an epoch chart: the line styles in use (no selection entry when no run had
/// selection patients), then one swatch per run.
pub(super) fn epoch_legend(curves: &[EpochCurves]) -> Vec<(Mark, String)> {
    let mut entries = vec![(Mark::Line(INK), "training".to_string())];
    if curves.iter().any(|c| !c.select.is_empty()) {
        entries.push((Mark::Dashed(INK), "selection patients".to_string()));
    }
    entries.push((Mark::Dot(INK), "epoch kept".to_string()));
    entries.extend(
        curves
            .iter()
            .map(|c| (Mark::Swatch(c.colour), c.label.clone())),
    );
    entries
}

pub(super) fn draw_loss(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    draw_epochs(
        area,
        report,
        "Loss per epoch",
        "cross-entropy",
        (|e| Some(e.train_loss), |e| e.select_loss),
        None,
    )
}

pub(super) fn draw_accuracy(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    draw_epochs(
        area,
        report,
        "Accuracy per epoch (selection: balanced accuracy)",
        "accuracy",
        (
            |e| Some(e.train_accuracy),
            |e| e.select.as_ref().map(|m| m.balanced_accuracy),
        ),
        Some((0.0, 1.02)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves(select: Vec<(i32, f64)>) -> EpochCurves {
        EpochCurves {
            colour: PALETTE[0],
            label: "run 1".into(),
            train: vec![(1, 0.7), (2, 0.6)],
            select,
            best: None,
        }
    }

    fn legend_labels(curves: &[EpochCurves]) -> Vec<String> {
        epoch_legend(curves).into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn the_selection_legend_entry_appears_only_with_selection_patients() {
        let without = legend_labels(&[curves(vec![])]);
        assert_eq!(without, ["training", "epoch kept", "run 1"]);
        let with = legend_labels(&[curves(vec![]), curves(vec![(1, 0.8)])]);
        assert!(with.contains(&"selection patients".to_string()), "{with:?}");
    }

    #[test]
    fn the_loss_axis_fits_the_data() {
        // Loss from 0.7 down to 0.5: the axis spans that, not 0 to 0.76.
        let (lo, hi) = data_range([0.7, 0.55, 0.5].into_iter());
        assert!(lo > 0.45 && lo < 0.5, "{lo}");
        assert!(hi > 0.7 && hi < 0.72, "{hi}");
        // Values near zero keep a zero-based axis; a flat curve still gets some height.
        assert_eq!(data_range([0.05, 0.4].into_iter()).0, 0.0);
        let (lo, hi) = data_range([0.3, 0.3].into_iter());
        assert!(lo < 0.3 && hi > 0.3);
        assert_eq!(data_range(std::iter::empty()), (0.0, 1.0));
    }
}
