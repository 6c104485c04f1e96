//! The held-out test plots: ROC curves, the confusion matrix, and balanced accuracy per
//! magnification and subtype.

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::eval::metrics::{roc_curve, Scored};
use crate::eval::score::ImageResult;
use crate::fit::history::TrainReport;

use super::canvas::{
    draw_legend, draw_message, legend_split, text_style, Area, Mark, FONT, GRID, INK, LEGEND_WIDTH,
    PALETTE,
};
use super::runs::{
    f3, pooled_confusion, pooled_groups, run_label, runs_with_test, GroupKind, NO_TEST,
};

pub(super) fn draw_roc(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    let area = area.titled("ROC on held-out test patients", (FONT, 22))?;
    let tests = runs_with_test(report);
    if tests.is_empty() {
        return draw_message(&area, NO_TEST);
    }
    let (margin, x_labels, y_labels) = (12i32, 48i32, 70i32);
    // The legend goes right beside the square chart rather than at the far edge.
    let (w, h) = area.dim_in_pixel();
    let square = h as i32 - x_labels - 2 * margin + y_labels + 2 * margin;
    let (plot, legend) = area.split_horizontally(square.min(w as i32 - LEGEND_WIDTH as i32));
    let (w, h) = plot.dim_in_pixel();
    // Widen the right margin until the unit square is square.
    let extra = (w as i32 - y_labels - 2 * margin) - (h as i32 - x_labels - 2 * margin);
    let mut chart = ChartBuilder::on(&plot)
        .margin(margin)
        .margin_right(margin + extra.max(0))
        .x_label_area_size(x_labels)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("false positive rate")
        .y_desc("true positive rate")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    let chance = RGBColor(150, 150, 150);
    chart.draw_series(DashedLineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        6,
        6,
        chance.stroke_width(1),
    ))?;
    let mut entries = Vec::new();
    for (i, (run, t)) in tests.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let scored: Vec<Scored> = t.results.iter().map(ImageResult::scored).collect();
        chart.draw_series(LineSeries::new(roc_curve(&scored), colour.stroke_width(2)))?;
        let auc = match t.metrics.roc_auc {
            Some(a) => format!("AUC {a:.3}"),
            None => "AUC n/a (one class)".to_string(),
        };
        entries.push((
            Mark::Line(colour),
            format!("{}: {auc}", run_label(report, run)),
        ));
    }
    entries.push((Mark::Dashed(chance), "chance (AUC 0.5)".to_string()));
    draw_legend(&legend, &entries)
}

pub(super) fn draw_confusion(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    let tests = runs_with_test(report);
    let Some(confusion) = pooled_confusion(report) else {
        let area = area.titled("Test confusion matrix", (FONT, 22))?;
        return draw_message(&area, NO_TEST);
    };
    let threshold = tests[0].1.metrics.threshold;
    let title = format!(
        "Test confusion matrix, {} run{} summed (threshold {threshold})",
        tests.len(),
        if tests.len() == 1 { "" } else { "s" }
    );
    let area = area.titled(&title, (FONT, 22))?;
    let (w, h) = area.dim_in_pixel();
    let (x_labels, y_labels) = (60i32, 110i32);
    let side = (h as i32 - x_labels - 30).min(w as i32 - y_labels - 30);
    let left = (w as i32 - side - y_labels) / 2;
    let classes = ["benign", "malignant"];
    let mut chart = ChartBuilder::on(&area)
        .margin_top(10)
        .margin_left(left)
        .margin_right(w as i32 - left - y_labels - side)
        .x_label_area_size(x_labels)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(0f64..2f64, 0f64..2f64)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc("predicted class")
        .y_desc("true class")
        .axis_desc_style((FONT, 17))
        .draw()?;
    // Class names centred on the cells, which automatic ticks would not be.
    let base = area.get_base_pixel();
    let pixel = |x: f64, y: f64| {
        let (px, py) = chart.backend_coord(&(x, y));
        (px - base.0, py - base.1)
    };
    for (i, class) in classes.iter().enumerate() {
        let (px, py) = pixel(i as f64 + 0.5, 0.0);
        area.draw(&Text::new(
            *class,
            (px, py + 10),
            text_style(16, BLACK, HPos::Center, VPos::Top),
        ))?;
        // Row 0 (true benign) on top, as confusion matrices are read.
        let (px, py) = pixel(0.0, 1.5 - i as f64);
        area.draw(&Text::new(
            *class,
            (px - 10, py),
            text_style(16, BLACK, HPos::Right, VPos::Center),
        ))?;
    }
    for (t, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &n) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            };
            // White to dark blue by share of the true class, so the diagonal reads as recall.
            let shade = |lo: u8, hi: u8| (lo as f64 + (hi as f64 - lo as f64) * share) as u8;
            let fill = RGBColor(shade(247, 8), shade(251, 48), shade(255, 107));
            let (x0, y0) = (p as f64, 1.0 - t as f64);
            chart.draw_series([
                Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled()),
                Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], INK.stroke_width(1)),
            ])?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            chart.draw_series([
                Text::new(
                    n.to_string(),
                    (x0 + 0.5, y0 + 0.56),
                    text_style(34, ink, HPos::Center, VPos::Center),
                ),
                Text::new(
                    if total == 0 {
                        format!("no {} images", classes[t])
                    } else {
                        format!("{:.1}% of {}", share * 100.0, classes[t])
                    },
                    (x0 + 0.5, y0 + 0.36),
                    text_style(15, ink, HPos::Center, VPos::Center),
                ),
            ])?;
        }
    }
    Ok(())
}

pub(super) fn draw_per_group(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    let groups = pooled_groups(report);
    let runs = runs_with_test(report).len();
    let title = format!(
        "Test balanced accuracy by magnification and subtype ({runs} run{} pooled)",
        if runs == 1 { "" } else { "s" }
    );
    let titled = area.titled(&title, (FONT, 20))?;
    if groups.is_empty() {
        return draw_message(&titled, NO_TEST);
    }
    let colour = |k: GroupKind| match k {
        GroupKind::Magnification => PALETTE[0],
        GroupKind::BenignSubtype => PALETTE[2],
        GroupKind::MalignantSubtype => PALETTE[3],
        GroupKind::MixedSubtype => PALETTE[7],
    };
    let (plot, legend) = legend_split(&titled);
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, 0f64..1.12f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("balanced accuracy")
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .y_labels(7)
        .y_label_formatter(&|y| {
            if *y <= 1.0 {
                format!("{y:.1}")
            } else {
                String::new()
            }
        })
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    let overall = pooled_confusion(report).map(|c| {
        let recall = |t: usize| c[t][t] as f64 / (c[t][0] + c[t][1]).max(1) as f64;
        (recall(0) + recall(1)) / 2.0
    });
    if let Some(v) = overall {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, v), (n, v)],
            6,
            5,
            INK.stroke_width(1),
        ))?;
    }
    let magnifications = groups
        .iter()
        .filter(|g| g.kind == GroupKind::Magnification)
        .count();
    if magnifications > 0 && magnifications < groups.len() {
        let x = magnifications as f64;
        chart.draw_series(LineSeries::new([(x, 0.0), (x, 1.12)], INK.stroke_width(1)))?;
    }
    let base = area.get_base_pixel();
    let label_style = text_style(14, BLACK, HPos::Center, VPos::Top);
    let count_style = text_style(12, INK, HPos::Center, VPos::Top);
    for (i, g) in groups.iter().enumerate() {
        let x = i as f64;
        let v = g.metrics.balanced_accuracy;
        if v.is_finite() {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, v)],
                colour(g.kind).filled(),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            f3(v),
            (x + 0.5, if v.is_finite() { v } else { 0.0 } + 0.012),
            text_style(13, BLACK, HPos::Center, VPos::Bottom),
        )))?;
        // Under the axis, outside the plotting area, so drawn on the whole area; backend_coord
        // is in canvas pixels, the area's are relative to its corner.
        let (px, py) = chart.backend_coord(&(x + 0.5, 0.0));
        let (px, py) = (px - base.0, py - base.1);
        area.draw(&Text::new(
            g.name.clone(),
            (px, py + 10),
            label_style.clone(),
        ))?;
        area.draw(&Text::new(
            format!("n={}", g.metrics.images),
            (px, py + 28),
            count_style.clone(),
        ))?;
    }
    let mut entries = vec![
        (
            Mark::Swatch(colour(GroupKind::Magnification)),
            "magnification".to_string(),
        ),
        (
            Mark::Swatch(colour(GroupKind::BenignSubtype)),
            "benign subtype:\nspecificity".to_string(),
        ),
        (
            Mark::Swatch(colour(GroupKind::MalignantSubtype)),
            "malignant subtype:\nsensitivity".to_string(),
        ),
    ];
    if groups.iter().any(|g| g.kind == GroupKind::MixedSubtype) {
        entries.push((
            Mark::Swatch(colour(GroupKind::MixedSubtype)),
            "mixed subtype".to_string(),
        ));
    }
    if let Some(v) = overall {
        entries.push((Mark::Dashed(INK), format!("all test images:\n{}", f3(v))));
    }
    entries.push((Mark::Swatch(WHITE), "n = test images".to_string()));
    draw_legend(&legend, &entries)
}
