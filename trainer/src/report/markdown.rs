//! `report.md`: the protocol, the data, the tables and the plots in one page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fit::history::TrainReport;

use super::runs::runs_with_test;
use super::tables::{groups_markdown, kfold_table_markdown, views_table_markdown};

/// What the plots are called in `out`, in the order `report.md` shows them.
pub(super) const LOSS: &str = "loss.png";
pub(super) const ACCURACY: &str = "accuracy.png";
pub(super) const ROC: &str = "roc.png";
pub(super) const CONFUSION: &str = "confusion.png";
pub(super) const PER_GROUP: &str = "per_group.png";
pub(super) const MARKDOWN: &str = "report.md";

pub(super) fn protocol(report: &TrainReport) -> String {
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

pub(super) fn config_line(report: &TrainReport) -> String {
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

pub(super) fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

pub(super) fn counts(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runs' test patients under camera-like colour shifts, when `--colour-shift` asked.
fn colour_shift_markdown(report: &TrainReport) -> String {
    let Some(summary) = &report.colour_shift else {
        return String::new();
    };
    let stain = if report.config.stain_norm {
        "with stain normalisation (each run's reference fitted on its training patients)"
    } else {
        "without stain normalisation"
    };
    let augment = serde_json::to_value(report.config.colour_augment)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut s = format!(
        "\n## Under camera-like colour shifts\n\nEach run's model on its own test patients, whole \
         field through the exported file, {stain}, colour augmentation `{augment}`. The shifts \
         are fixed and deterministic (docs/colour.md).\n\n"
    );
    s.push_str(&summary.markdown());
    let per_run: Vec<String> = report
        .runs
        .iter()
        .filter_map(|r| {
            let t = r.colour_shift.as_ref()?;
            Some(format!(
                "run {} {:+.3} ({})",
                r.fold, t.worst_balanced.1, t.worst_balanced.0
            ))
        })
        .collect();
    let _ = write!(s, "\nWorst shift of each run: {}.\n\n", per_run.join(", "));
    s
}

pub(super) fn markdown(report: &TrainReport, drawn: &[&str]) -> String {
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
        s.push_str(&colour_shift_markdown(report));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

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
}
