//! The training report: PNG plots and `report.md`, written next to `report.json` so a run can
//! be judged (and quoted) without reading JSON.
//!
//! Text is drawn with the DejaVu Sans font compiled into the binary, never a system font: CI
//! machines have none, and a report must not depend on what a machine happens to have.

mod canvas;
mod charts;
mod epochs;
#[cfg(test)]
mod fixtures;
mod markdown;
mod runs;
mod tables;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use histoscreen_edge::fsutil::write_atomic;

use crate::error_text::one_line;
use crate::fit::history::TrainReport;

use canvas::{render_png, Area};
use charts::{draw_confusion, draw_per_group, draw_roc};
use epochs::{draw_accuracy, draw_loss};
use markdown::{markdown, ACCURACY, CONFUSION, LOSS, MARKDOWN, PER_GROUP, ROC};

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
            Err(e) => tracing::warn!("{}: plot not drawn: {}", path.display(), one_line(&e)),
        }
    }
    let md = out.join(MARKDOWN);
    write_atomic(&md, markdown(report, &drawn).as_bytes())
        .context("writing the training report")?;
    written.push(md);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;
    use crate::report::runs::{pooled_confusion, pooled_groups};
    use crate::report::tables::kfold_table_markdown;

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
    fn an_unusable_output_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        let err = write_report(&synthetic(Some(2)), &not_a_folder).unwrap_err();
        let msg = one_line(&err);
        assert!(msg.contains("loss.png"), "{msg}");
    }
}
