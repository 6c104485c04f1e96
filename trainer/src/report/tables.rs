//! The Markdown tables: held-out figures per run, whole field against other views, and per
//! magnification and subtype.

use std::fmt::Write as _;

use crate::eval::metrics::{mean_sd, Metrics};
use crate::fit::history::TrainReport;

use super::runs::{f3, pm, pooled_groups, run_label, runs_with_test, GroupKind, NO_TEST};

pub(super) const TABLE_KEYS: [(&str, &str); 6] = [
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("patient_accuracy", "patient-level accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("roc_auc", "ROC AUC"),
];

pub(super) fn table_value(m: &Metrics, key: &str) -> f64 {
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
            let _ = write!(s, " {} |", pm(mean_sd(&v)));
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

pub(super) fn groups_markdown(report: &TrainReport) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

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
}
