//! The training report: PNG plots and `report.md`, written next to `report.json` so a run can
//! be judged (and quoted) without reading JSON.
//!
//! Text is drawn with the DejaVu Sans font compiled into the binary, never a system font: CI
//! machines have none, and a report must not depend on what a machine happens to have.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use histoscreen_edge::fsutil::write_atomic;

use crate::commands::{FoldReport, TrainReport};
use crate::eval::{Evaluation, ImageResult};
use crate::metrics::{roc_curve, Metrics, Scored};
use crate::train::EpochLog;

/// Size of every plot, in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 600;

const LEGEND_WIDTH: u32 = 230;
const FONT: &str = "sans-serif";
const DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// matplotlib's tab10: ten well-separated hues before a fold's colour repeats.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const INK: RGBColor = RGBColor(60, 60, 60);
const GRID: RGBColor = RGBColor(232, 232, 232);

/// What the plots are called in `out`, in the order `report.md` shows them.
const LOSS: &str = "loss.png";
const ACCURACY: &str = "accuracy.png";
const ROC: &str = "roc.png";
const CONFUSION: &str = "confusion.png";
const PER_GROUP: &str = "per_group.png";
const MARKDOWN: &str = "report.md";

const NO_TEST: &[&str] = &[
    "No held-out test set: this run trained on every patient",
    "(--val-fraction 0 and no --folds), so no held-out figures exist.",
];

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Plot = fn(&TrainReport, &Area<'_>) -> Result<()>;

/// Writes `loss.png`, `accuracy.png`, `roc.png`, `confusion.png`, `per_group.png` and
/// `report.md` into `out`, each atomically, and returns the paths written.
///
/// A plot that cannot be drawn is logged as a warning and left out (`report.md` says so), since
/// the model and `report.json` it describes are already on disk; only a failure to write a
/// file, i.e. an unusable `out`, is an error.
pub fn write_report(report: &TrainReport, out: &Path) -> Result<Vec<PathBuf>> {
    let plots: [(&str, Plot); 5] = [
        (LOSS, draw_loss),
        (ACCURACY, draw_accuracy),
        (ROC, draw_roc),
        (CONFUSION, draw_confusion),
        (PER_GROUP, draw_per_group),
    ];
    let mut written = Vec::new();
    let mut drawn = Vec::new();
    for (name, plot) in plots {
        let path = out.join(name);
        match render_png(|area| plot(report, area)) {
            Ok(png) => {
                write_atomic(&path, &png).context("writing the training report")?;
                written.push(path);
                drawn.push(name);
            }
            Err(e) => tracing::warn!(
                "{}: plot not drawn: {}",
                path.display(),
                crate::one_line(&e)
            ),
        }
    }
    let md = out.join(MARKDOWN);
    write_atomic(&md, markdown(report, &drawn).as_bytes())
        .context("writing the training report")?;
    written.push(md);
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Figures shared by the plots and the Markdown.

fn runs_with_test(report: &TrainReport) -> Vec<(&FoldReport, &Evaluation)> {
    report
        .runs
        .iter()
        .filter_map(|r| r.test.as_ref().map(|t| (r, t)))
        .collect()
}

fn run_label(report: &TrainReport, run: &FoldReport) -> String {
    match report.folds {
        Some(_) => format!("fold {}", run.fold),
        None => "hold-out".to_string(),
    }
}

/// The test confusion matrix summed over runs, `[true][predicted]` with 0 = benign as in
/// [`Metrics::confusion`]; `None` without a test set.
pub fn pooled_confusion(report: &TrainReport) -> Option<[[usize; 2]; 2]> {
    let tests = runs_with_test(report);
    if tests.is_empty() {
        return None;
    }
    let mut sum = [[0usize; 2]; 2];
    for (_, t) in tests {
        for (row, counts) in sum.iter_mut().zip(t.metrics.confusion) {
            for (cell, n) in row.iter_mut().zip(counts) {
                *cell += n;
            }
        }
    }
    Some(sum)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Magnification,
    /// A subtype whose test images are all benign (A, F, PT, TA in BreakHis).
    BenignSubtype,
    /// A subtype whose test images are all malignant (DC, LC, MC, PC).
    MalignantSubtype,
    /// A subtype with images of both classes, which BreakHis never has.
    MixedSubtype,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub kind: GroupKind,
    /// `40X` or a subtype code.
    pub name: String,
    pub metrics: Metrics,
}

/// Test metrics per magnification (in numeric order) then per subtype, recomputed over the
/// test images of all runs together rather than averaged, so small folds weigh what they hold.
///
/// Every run scores with the same `--threshold`; the first run's is used.
pub fn pooled_groups(report: &TrainReport) -> Vec<Group> {
    let tests = runs_with_test(report);
    let Some(threshold) = tests.first().map(|(_, t)| t.metrics.threshold) else {
        return Vec::new();
    };
    let results: Vec<&ImageResult> = tests.iter().flat_map(|(_, t)| &t.results).collect();
    let mut by_mag: BTreeMap<u32, Vec<Scored>> = BTreeMap::new();
    let mut by_subtype: BTreeMap<&str, Vec<Scored>> = BTreeMap::new();
    for r in &results {
        by_mag.entry(r.magnification).or_default().push(r.scored());
        by_subtype.entry(&r.subtype).or_default().push(r.scored());
    }
    let mut groups: Vec<Group> = by_mag
        .into_iter()
        .map(|(m, scored)| Group {
            kind: GroupKind::Magnification,
            name: format!("{m}X"),
            metrics: Metrics::compute(&scored, threshold),
        })
        .collect();
    groups.extend(by_subtype.into_iter().map(|(s, scored)| {
        let metrics = Metrics::compute(&scored, threshold);
        let benign: usize = metrics.confusion[0].iter().sum();
        let malignant: usize = metrics.confusion[1].iter().sum();
        let kind = match (benign > 0, malignant > 0) {
            (true, false) => GroupKind::BenignSubtype,
            (false, true) => GroupKind::MalignantSubtype,
            _ => GroupKind::MixedSubtype,
        };
        Group {
            kind,
            name: s.to_string(),
            metrics,
        }
    }));
    groups
}

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".to_string()
    }
}

fn pm((mean, sd): (f64, f64)) -> String {
    match (mean.is_finite(), sd.is_finite()) {
        (true, true) => format!("{mean:.3} ± {sd:.3}"),
        (true, false) => format!("{mean:.3}"),
        _ => "n/a".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown.

const TABLE_KEYS: [(&str, &str); 6] = [
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("patient_accuracy", "patient-level accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("roc_auc", "ROC AUC"),
];

fn table_value(m: &Metrics, key: &str) -> f64 {
    match key {
        "accuracy" => m.accuracy,
        "balanced_accuracy" => m.balanced_accuracy,
        "patient_accuracy" => m.patient_accuracy,
        "sensitivity" => m.sensitivity,
        "specificity" => m.specificity,
        "roc_auc" => m.roc_auc.unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// The held-out results as a Markdown table: one row per fold (or the hold-out run) and, with
/// more than one run, a mean ± sd row taken from `report.summary`, so it matches `report.json`.
/// Without a test set it is a sentence saying that no held-out figures exist.
pub fn kfold_table_markdown(report: &TrainReport) -> String {
    let tests = runs_with_test(report);
    if tests.is_empty() {
        return format!("_{} {}_\n", NO_TEST[0], NO_TEST[1]);
    }
    let mut s = String::from("| run | test patients | test images | best epoch |");
    for (_, title) in TABLE_KEYS {
        let _ = write!(s, " {title} |");
    }
    s.push_str("\n|---|---:|---:|---:|");
    s.push_str(&"---:|".repeat(TABLE_KEYS.len()));
    s.push('\n');
    for (run, t) in &tests {
        let _ = write!(
            s,
            "| {} | {} | {} | {} |",
            run_label(report, run),
            t.metrics.patients,
            t.metrics.images,
            run.best_epoch
        );
        for (key, _) in TABLE_KEYS {
            let _ = write!(s, " {} |", f3(table_value(&t.metrics, key)));
        }
        s.push('\n');
    }
    if tests.len() > 1 {
        let _ = write!(s, "| **mean ± sd** ({} runs) | | | |", tests.len());
        for (key, _) in TABLE_KEYS {
            let v = report
                .summary
                .get(key)
                .copied()
                .unwrap_or((f64::NAN, f64::NAN));
            let _ = write!(s, " {} |", pm(v));
        }
        s.push('\n');
    }
    s
}

/// Mean ± sd over runs of whole-field scoring against the other views of the same images by
/// the same models (`Evaluation::views`): the centre tile alone and top-k tile means. Empty
/// when the models have no dense form.
pub fn views_table_markdown(report: &TrainReport) -> String {
    let tests = runs_with_test(report);
    let names: Vec<String> = tests
        .first()
        .map(|(_, t)| t.views.keys().cloned().collect())
        .unwrap_or_default();
    if names.is_empty() {
        return String::new();
    }
    let keys = [
        ("balanced_accuracy", "balanced accuracy"),
        ("patient_accuracy", "patient-level accuracy"),
        ("roc_auc", "ROC AUC"),
    ];
    let mut s = String::from("| image score | runs |");
    for (_, title) in keys {
        let _ = write!(s, " {title} |");
    }
    s.push_str("\n|---|---:|");
    s.push_str(&"---:|".repeat(keys.len()));
    s.push('\n');
    let row = |s: &mut String, name: &str, metrics: Vec<&Metrics>| {
        let _ = write!(s, "| {name} | {} |", metrics.len());
        for (key, _) in keys {
            let v: Vec<f64> = metrics.iter().map(|m| table_value(m, key)).collect();
            let _ = write!(s, " {} |", pm(crate::metrics::mean_sd(&v)));
        }
        s.push('\n');
    };
    row(
        &mut s,
        "**whole field, mean of tiles** (the card's)",
        tests.iter().map(|(_, t)| &t.metrics).collect(),
    );
    for name in &names {
        row(
            &mut s,
            name,
            tests
                .iter()
                .filter_map(|(_, t)| t.views.get(name))
                .collect(),
        );
    }
    s
}

fn protocol(report: &TrainReport) -> String {
    let selection = if report.select_fraction > 0.0 {
        format!(
            "{:.0}% of the training patients (the *selection* patients) chose the epoch",
            report.select_fraction * 100.0
        )
    } else {
        format!(
            "no epoch was chosen: every run trained for the fixed {} epochs",
            report.config.epochs
        )
    };
    match report.folds {
        Some(k) => format!(
            "{k}-fold cross-validation by patient: each patient is tested exactly once, by a \
             model that never saw any of their images. Within each fold {selection}; the \
             exported `model.onnx` was then trained on every patient."
        ),
        None if report.runs.is_empty() => {
            "none: every patient was used for training, nothing was held out.".to_string()
        }
        None => format!(
            "hold-out of {:.0}% of the patients for testing; of the others, {selection}. The \
             exported `model.onnx` is this run's model.",
            report.val_fraction * 100.0,
        ),
    }
}

fn config_line(report: &TrainReport) -> String {
    match serde_json::to_value(&report.config) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::Null => "none".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{} {v}", k.replace('_', " "))
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "unavailable".to_string(),
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn counts(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn markdown(report: &TrainReport, drawn: &[&str]) -> String {
    let mut s = String::from("# histoscreen training report\n\n");
    s.push_str("Command:\n\n```text\n");
    s.push_str(&report.command);
    s.push_str("\n```\n\n");
    let _ = writeln!(s, "- **Split seed:** {}", report.split_seed);
    let _ = writeln!(s, "- **Protocol:** {}", protocol(report));
    let _ = writeln!(s, "- **Data:** {}", report.data);
    if !report.data.images_per_subtype.is_empty() {
        let _ = writeln!(
            s,
            "- **Images per subtype:** {}",
            counts(&report.data.images_per_subtype)
        );
    }
    if !report.rejected.is_empty() {
        let _ = writeln!(
            s,
            "- **Skipped files:** {} (listed in `report.json`)",
            report.rejected.len()
        );
    }
    let _ = writeln!(
        s,
        "- **Pretrained weights:** {}",
        report.pretrained.as_deref().unwrap_or("none")
    );
    let _ = writeln!(s, "- **Training configuration:** {}", config_line(report));
    let _ = writeln!(
        s,
        "- **Exported model:** trained on {} patients for {} epochs",
        report.exported_model_trained_on_patients, report.exported_model_epochs
    );
    let _ = writeln!(s, "- **Wall time:** {}", duration(report.seconds));

    s.push_str("\n## Held-out test results\n\n");
    let tests = runs_with_test(report);
    if tests.is_empty() {
        s.push_str(
            "**No held-out figures exist.** This run used `--val-fraction 0` and no `--folds`, \
             so every patient was trained on and no image was ever scored by a model that had not \
             seen its patient. Any accuracy measured on these patients would be training \
             accuracy; rerun with `--folds` or `--val-fraction` for honest figures.\n\n",
        );
        if !report.runs.is_empty() {
            s.push_str(&kfold_table_markdown(report));
        }
    } else {
        let threshold = tests[0].1.metrics.threshold;
        s.push_str(&kfold_table_markdown(report));
        let views = views_table_markdown(report);
        if !views.is_empty() {
            s.push_str(
                "\n### Whole field against a single centre tile\n\nThe same models on the same \
                 test images, scored four ways: the mean over every tile of the whole field at \
                 the model's scale (what the device does), the centre tile alone, and the mean of \
                 the 3 or 5 highest tiles (same threshold, so their accuracy is biased upwards in \
                 p; AUC is not).\n\n",
            );
            s.push_str(&views);
        }
        let _ = write!(
            s,
            "\nAll figures are on test patients only, at the malignant threshold {threshold}. \
             *Accuracy* is image-level: the fraction of test images classified correctly. \
             *Patient-level accuracy* is the BreakHis protocol's **patient-level recognition \
             rate** (Spanhol et al., 2016): for each test patient the fraction of their images \
             classified correctly, averaged over patients. *Sensitivity* is the recall of \
             malignant images, *specificity* that of benign images, and *balanced accuracy* \
             their mean."
        );
        if tests.len() > 1 {
            s.push_str(
                " The mean ± sd row is over runs (sample standard deviation; a run whose \
                 value is undefined is left out).",
            );
        }
        s.push_str("\n\n");
        s.push_str(&groups_markdown(report));
    }

    while s.ends_with("\n\n") {
        s.pop();
    }
    s.push_str("\n## Plots\n\n");
    let figure = |s: &mut String, file: &str, alt: &str, caption: &str| {
        if drawn.contains(&file) {
            let _ = writeln!(s, "![{alt}]({file})\n\n{caption}\n");
        } else {
            let _ = writeln!(
                s,
                "_{file} could not be drawn; the training log says why._\n"
            );
        }
    };
    let train_note = format!(
        "Solid lines: the fitted patients, running averages over each epoch's training batches{}. \
         Dashed lines: the selection patients, scored after each epoch at threshold 0.5. \
         Dots and dotted verticals: the epoch each run kept.",
        match (report.config.augment, report.config.class_weighting) {
            (true, true) => " (augmented, class-weighted loss)",
            (true, false) => " (augmented)",
            (false, true) => " (class-weighted loss)",
            (false, false) => "",
        }
    );
    if report.runs.is_empty() {
        s.push_str(
            "No per-epoch curves: the runs that log them are the fold or hold-out runs, and this \
             run had none.\n\n",
        );
    } else {
        figure(&mut s, LOSS, "cross-entropy per epoch", &train_note);
        figure(
            &mut s,
            ACCURACY,
            "accuracy per epoch",
            "Training accuracy and selection balanced accuracy per epoch, styled as above.",
        );
    }
    if !tests.is_empty() {
        figure(
            &mut s,
            ROC,
            "ROC curves of the test patients",
            "ROC curve of each run's test patients, with its area under the curve.",
        );
        figure(
            &mut s,
            CONFUSION,
            "test confusion matrix",
            "Test images of all runs: rows are the true class, columns the predicted class; \
             each cell also gives its share of the true class.",
        );
        figure(
            &mut s,
            PER_GROUP,
            "test balanced accuracy per magnification and subtype",
            "Pooled test images of all runs. Each BreakHis subtype holds one class only, so its \
             bar is the recall of that class (specificity for benign subtypes, sensitivity for \
             malignant ones).",
        );
    }
    s
}

fn groups_markdown(report: &TrainReport) -> String {
    let groups = pooled_groups(report);
    if groups.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "### Per magnification and subtype\n\nTest images of all runs pooled, metrics recomputed \
         over the pool.\n\n| group | images | patients | accuracy | balanced accuracy | \
         sensitivity | specificity |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for g in &groups {
        let what = match g.kind {
            GroupKind::Magnification => "magnification",
            GroupKind::BenignSubtype => "benign subtype",
            GroupKind::MalignantSubtype => "malignant subtype",
            GroupKind::MixedSubtype => "subtype",
        };
        let m = &g.metrics;
        let _ = writeln!(
            s,
            "| {} ({what}) | {} | {} | {} | {} | {} | {} |",
            g.name,
            m.images,
            m.patients,
            f3(m.accuracy),
            f3(m.balanced_accuracy),
            f3(m.sensitivity),
            f3(m.specificity)
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if !ok {
        bail!("the embedded DejaVuSans.ttf is not a usable font");
    }
    Ok(())
}

/// Draws into an in-memory RGB canvas and encodes it as PNG; a panic inside plotters becomes
/// an error so that it cannot take down a run whose model is already written.
fn render_png(draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Vec<u8>> {
    register_font()?;
    let mut rgb = vec![255u8; WIDTH as usize * HEIGHT as usize * 3];
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root.margin(8, 8, 8, 8))?;
        root.present()?;
        Ok(())
    }));
    match outcome {
        Ok(result) => result?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            return Err(anyhow!("plotting panicked: {what}"));
        }
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, rgb)
        .ok_or_else(|| anyhow!("plot canvas has the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding PNG")?;
    Ok(png)
}

fn text_style(size: u32, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    let mut style = TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v));
    style.color = colour.to_backend_color();
    style
}

/// Centred grey lines in place of a plot that has nothing to show, so a stale plot from an
/// earlier run in the same folder is overwritten rather than left to mislead.
fn draw_message(area: &Area<'_>, lines: &[&str]) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let style = text_style(18, RGBColor(90, 90, 90), HPos::Center, VPos::Center);
    let top = h as i32 / 2 - (lines.len() as i32 - 1) * 14;
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            *line,
            (w as i32 / 2, top + i as i32 * 28),
            style.clone(),
        ))?;
    }
    Ok(())
}

enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Swatch(RGBColor),
}

/// A legend drawn beside the chart rather than over it, where it can hide no curve however
/// many folds there are. A label may hold `\n` for a second line.
fn draw_legend(area: &Area<'_>, entries: &[(Mark, String)]) -> Result<()> {
    let style = text_style(14, BLACK, HPos::Left, VPos::Center);
    let (x, mut y) = (12, 40);
    for (mark, label) in entries {
        match mark {
            Mark::Line(c) => area.draw(&PathElement::new(
                vec![(x, y), (x + 30, y)],
                c.stroke_width(2),
            ))?,
            Mark::Dashed(c) => {
                for k in 0..3 {
                    let a = x + k * 11;
                    area.draw(&PathElement::new(
                        vec![(a, y), (a + 7, y)],
                        c.stroke_width(2),
                    ))?;
                }
            }
            Mark::Dot(c) => area.draw(&Circle::new((x + 15, y), 5, c.filled()))?,
            Mark::Swatch(c) => area.draw(&Rectangle::new(
                [(x + 6, y - 7), (x + 24, y + 7)],
                c.filled(),
            ))?,
        }
        for line in label.split('\n') {
            area.draw(&Text::new(line, (x + 40, y), style.clone()))?;
            y += 19;
        }
        y += 6;
    }
    Ok(())
}

fn legend_split<'a>(area: &Area<'a>) -> (Area<'a>, Area<'a>) {
    let w = area.dim_in_pixel().0;
    area.split_horizontally(w.saturating_sub(LEGEND_WIDTH))
}

struct EpochCurves {
    colour: RGBColor,
    label: String,
    train: Vec<(i32, f64)>,
    select: Vec<(i32, f64)>,
    best: Option<(i32, f64)>,
}

type EpochValue = fn(&EpochLog) -> Option<f64>;

fn epoch_curves(report: &TrainReport, train: EpochValue, select: EpochValue) -> Vec<EpochCurves> {
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

fn draw_epochs(
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
fn data_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
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
fn epoch_legend(curves: &[EpochCurves]) -> Vec<(Mark, String)> {
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

fn draw_loss(report: &TrainReport, area: &Area<'_>) -> Result<()> {
    draw_epochs(
        area,
        report,
        "Loss per epoch",
        "cross-entropy",
        (|e| Some(e.train_loss), |e| e.select_loss),
        None,
    )
}

fn draw_accuracy(report: &TrainReport, area: &Area<'_>) -> Result<()> {
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

fn draw_roc(report: &TrainReport, area: &Area<'_>) -> Result<()> {
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

fn draw_confusion(report: &TrainReport, area: &Area<'_>) -> Result<()> {
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

fn draw_per_group(report: &TrainReport, area: &Area<'_>) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Summary;
    use crate::model::{Freeze, Head};
    use crate::train::{Schedule, TrainConfig};

    fn image(patient: &str, subtype: &str, mag: u32, p: f32) -> ImageResult {
        let malignant = matches!(subtype, "DC" | "LC" | "MC" | "PC");
        ImageResult {
            path: format!("SOB_{patient}_{subtype}_{mag}.png"),
            patient: patient.into(),
            class: if malignant { "malignant" } else { "benign" }.into(),
            subtype: subtype.into(),
            magnification: mag,
            p_malignant: p,
            p_centre: None,
            tiles: vec![],
        }
    }

    fn evaluation(results: Vec<ImageResult>) -> Evaluation {
        let metrics = Metrics::compute(
            &results.iter().map(ImageResult::scored).collect::<Vec<_>>(),
            0.5,
        );
        let grouped = |key: fn(&ImageResult) -> String| {
            let mut g: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
            for r in &results {
                g.entry(key(r)).or_default().push(r.scored());
            }
            g.into_iter()
                .map(|(k, v)| (k, Metrics::compute(&v, 0.5)))
                .collect()
        };
        Evaluation {
            model: "fold.onnx".into(),
            per_magnification: grouped(|r| format!("{}X", r.magnification)),
            per_subtype: grouped(|r| r.subtype.clone()),
            metrics,
            views: BTreeMap::new(),
            rejected: vec![],
            results,
        }
    }

    fn history(epochs: usize, offset: f64) -> Vec<EpochLog> {
        (1..=epochs)
            .map(|e| {
                let t = e as f64;
                EpochLog {
                    epoch: e,
                    lr: 0.001,
                    train_loss: 0.7 / t + offset,
                    train_accuracy: 0.6 + 0.05 * t,
                    select_loss: Some(0.8 / t + 0.1 + offset),
                    select: Some(Metrics {
                        balanced_accuracy: 0.55 + 0.06 * t - offset,
                        ..Metrics::default()
                    }),
                    seconds: t,
                }
            })
            .collect()
    }

    fn run(fold: usize, best_epoch: usize, test: Vec<ImageResult>) -> FoldReport {
        let mut patients: Vec<String> = test.iter().map(|r| r.patient.clone()).collect();
        patients.dedup();
        FoldReport {
            fold,
            train_patients: vec!["t1".into(), "t2".into()],
            select_patients: vec!["s1".into()],
            test_patients: patients,
            best_epoch,
            history: history(5, fold as f64 * 0.05),
            test: Some(evaluation(test)),
        }
    }

    /// Fold 1: one false positive and one false negative in 8 images (accuracy 0.75); fold 2:
    /// one false negative (accuracy 0.875). 40X and 100X in each, 400X in fold 2 only.
    fn synthetic(folds: Option<usize>) -> TrainReport {
        let fold1 = vec![
            image("b1", "A", 40, 0.1),
            image("b1", "A", 100, 0.6),
            image("b2", "F", 40, 0.2),
            image("b2", "F", 100, 0.3),
            image("m1", "DC", 40, 0.9),
            image("m1", "DC", 100, 0.25),
            image("m2", "LC", 40, 0.8),
            image("m2", "LC", 100, 0.7),
        ];
        let fold2 = vec![
            image("b3", "A", 40, 0.05),
            image("b3", "A", 400, 0.2),
            image("b4", "PT", 100, 0.3),
            image("b4", "PT", 40, 0.45),
            image("m3", "DC", 40, 0.95),
            image("m3", "DC", 400, 0.35),
            image("m4", "MC", 100, 0.85),
            image("m4", "MC", 40, 0.75),
        ];
        let mut summary = BTreeMap::new();
        // Distinct from what the runs give, to show the mean row is read from the summary.
        summary.insert("accuracy".to_string(), (0.811, 0.088));
        summary.insert("balanced_accuracy".to_string(), (0.812, 0.089));
        summary.insert("patient_accuracy".to_string(), (0.813, 0.087));
        summary.insert("sensitivity".to_string(), (0.75, 0.0));
        summary.insert("specificity".to_string(), (0.875, 0.177));
        summary.insert("roc_auc".to_string(), (0.9, f64::NAN));
        TrainReport {
            command: "histoscreen-train train --folds 2 --seed 7 --out runs/x".into(),
            config: TrainConfig {
                epochs: 5,
                batch: 32,
                lr: 0.001,
                momentum: 0.9,
                weight_decay: 0.0005,
                schedule: Schedule::Step,
                seed: 7,
                head: Head::Classic,
                hidden: 0,
                freeze: Freeze::Features,
                class_weighting: true,
                augment: true,
                feature_views: 0,
                pretrained: None,
            },
            split_seed: 7,
            val_fraction: 0.2,
            select_fraction: 0.2,
            folds,
            data: Summary {
                images: 40,
                patients: 12,
                ..Summary::default()
            },
            rejected: vec![],
            pretrained: None,
            runs: vec![run(1, 3, fold1), run(2, 4, fold2)],
            summary,
            exported_model_epochs: 4,
            exported_model_trained_on_patients: 12,
            seconds: 3725.0,
        }
    }

    fn no_test_set() -> TrainReport {
        let mut r = synthetic(None);
        r.runs.clear();
        r.summary = TABLE_KEYS
            .iter()
            .map(|(k, _)| (k.to_string(), (f64::NAN, f64::NAN)))
            .collect();
        r.command = "histoscreen-train train --val-fraction 0 --out runs/all".into();
        r.val_fraction = 0.0;
        r
    }

    /// Decodes `path` and checks that a plot, title text included, was drawn on it.
    fn assert_drawn(path: &Path) {
        let img = image::open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT), "{}", path.display());
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        // Anti-aliased glyphs alone give dozens of grey levels; a blank or flat canvas gives 1.
        assert!(
            colours.len() > 20,
            "{}: only {} colours",
            path.display(),
            colours.len()
        );
        // The title is text in the top strip: the embedded font must have rendered.
        let dark_title_pixels = (0..WIDTH)
            .flat_map(|x| (0..36).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 128))
            .count();
        assert!(
            dark_title_pixels > 100,
            "{}: no title text ({dark_title_pixels} dark pixels)",
            path.display()
        );
    }

    #[test]
    fn writes_every_plot_and_the_markdown() {
        let dir = tempfile::tempdir().unwrap();
        let report = synthetic(Some(2));
        let written = write_report(&report, dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [LOSS, ACCURACY, ROC, CONFUSION, PER_GROUP, MARKDOWN]);
        for path in &written[..5] {
            assert_drawn(path);
        }
        let md = std::fs::read_to_string(dir.path().join(MARKDOWN)).unwrap();
        for needle in [
            "histoscreen-train train --folds 2 --seed 7 --out runs/x",
            "**Split seed:** 7",
            "2-fold cross-validation by patient",
            "| fold 1 | 4 | 8 | 3 | 0.750 | 0.750 |",
            "| fold 2 | 4 | 8 | 4 | 0.875 | 0.875 |",
            "| **mean ± sd** (2 runs) |",
            "patient-level recognition rate",
            "![cross-entropy per epoch](loss.png)",
            "![accuracy per epoch](accuracy.png)",
            "(roc.png)",
            "(confusion.png)",
            "(per_group.png)",
            "| 400X (magnification) | 2 |",
            "| DC (malignant subtype) | 4 |",
            "1 h 2 min",
        ] {
            assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
        }
        // No temporary file may survive an atomic write.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn views_table_sets_the_whole_field_beside_the_centre_tile() {
        let mut report = synthetic(Some(2));
        assert_eq!(views_table_markdown(&report), "", "no views: no table");
        for run in &mut report.runs {
            let test = run.test.as_mut().unwrap();
            let mut centre = test.metrics.clone();
            centre.balanced_accuracy -= 0.25;
            test.views.insert("centre tile".into(), centre);
        }
        let table = views_table_markdown(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("| image score | runs | balanced accuracy |"));
        // Folds' balanced accuracy 0.750 and 0.875: mean 0.8125, sd 0.088.
        assert!(
            lines[2]
                .starts_with("| **whole field, mean of tiles** (the card's) | 2 | 0.812 ± 0.088 |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("| centre tile | 2 | 0.562 ± 0.088 |"),
            "{}",
            lines[3]
        );
        assert!(markdown(&report, &[]).contains("### Whole field against a single centre tile"));
    }

    #[test]
    fn kfold_table_has_a_row_per_fold_and_the_summary_mean() {
        let table = kfold_table_markdown(&synthetic(Some(2)));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("| run | test patients | test images | best epoch |"));
        assert!(lines[0].contains("patient-level accuracy | sensitivity | specificity | ROC AUC |"));
        // Fold 1: 3 of 4 benign, 3 of 4 malignant, every patient half or fully right.
        assert_eq!(
            lines[2],
            "| fold 1 | 4 | 8 | 3 | 0.750 | 0.750 | 0.750 | 0.750 | 0.750 | 0.875 |"
        );
        assert!(lines[3].starts_with("| fold 2 | 4 | 8 | 4 | 0.875 | 0.875 |"));
        assert_eq!(
            lines[4],
            "| **mean ± sd** (2 runs) | | | | 0.811 ± 0.088 | 0.812 ± 0.089 | 0.813 ± 0.087 | \
             0.750 ± 0.000 | 0.875 ± 0.177 | 0.900 |"
        );
    }

    #[test]
    fn a_single_hold_out_run_has_no_mean_row() {
        let mut report = synthetic(None);
        report.runs.truncate(1);
        let table = kfold_table_markdown(&report);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("| hold-out | 4 | 8 | 3 |"), "{table}");
        assert!(!table.contains("mean ± sd"), "{table}");
    }

    #[test]
    fn without_a_test_set_the_report_says_no_held_out_figures_exist() {
        let dir = tempfile::tempdir().unwrap();
        // A stale plot from an earlier run must not survive to mislead.
        std::fs::write(dir.path().join(ROC), b"stale").unwrap();
        let report = no_test_set();
        let written = write_report(&report, dir.path()).unwrap();
        assert_eq!(written.len(), 6);
        for path in &written[..5] {
            assert_drawn(path);
        }
        let md = std::fs::read_to_string(dir.path().join(MARKDOWN)).unwrap();
        assert!(md.contains("**No held-out figures exist.**"), "{md}");
        assert!(md.contains("`--val-fraction 0`"), "{md}");
        assert!(!md.contains("(roc.png)"), "{md}");
        assert!(!md.contains("| fold"), "{md}");
        assert!(kfold_table_markdown(&report).contains("no held-out figures exist"));
        assert!(pooled_confusion(&report).is_none());
        assert!(pooled_groups(&report).is_empty());
    }

    #[test]
    fn confusion_is_summed_true_class_by_predicted_class() {
        // Fold 1: [[3, 1], [1, 3]]; fold 2: [[4, 0], [1, 3]].
        assert_eq!(
            pooled_confusion(&synthetic(Some(2))),
            Some([[7, 1], [2, 6]])
        );
    }

    #[test]
    fn groups_pool_all_runs_and_order_magnifications_numerically() {
        let groups = pooled_groups(&synthetic(Some(2)));
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["40X", "100X", "400X", "A", "DC", "F", "LC", "MC", "PT"]
        );
        let get = |name: &str| groups.iter().find(|g| g.name == name).unwrap();
        assert_eq!(get("40X").metrics.images, 8);
        assert_eq!(get("40X").kind, GroupKind::Magnification);
        // 100X: b1 0.6 (wrong), b2 0.3, b4 0.3 | m1 0.4 (wrong), m2 0.7, m4 0.85.
        assert_eq!(get("100X").metrics.confusion, [[2, 1], [1, 2]]);
        // A single-class group's balanced accuracy is that class's recall, i.e. its accuracy.
        let a = get("A");
        assert_eq!(a.kind, GroupKind::BenignSubtype);
        assert_eq!((a.metrics.images, a.metrics.patients), (4, 2));
        assert!((a.metrics.balanced_accuracy - 0.75).abs() < 1e-12);
        assert!((a.metrics.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(get("DC").kind, GroupKind::MalignantSubtype);
        assert!((get("DC").metrics.balanced_accuracy - 0.5).abs() < 1e-12);
    }

    #[test]
    fn an_unusable_output_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        let err = write_report(&synthetic(Some(2)), &not_a_folder).unwrap_err();
        let msg = crate::one_line(&err);
        assert!(msg.contains("loss.png"), "{msg}");
    }

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
