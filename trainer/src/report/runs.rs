//! Figures the plots and the Markdown share: the runs with a test set, their pooled
//! confusion matrix and per-group metrics, and how a number is printed.

use std::collections::BTreeMap;

use crate::eval::metrics::{Metrics, Scored};
use crate::eval::score::{Evaluation, ImageResult};
use crate::fit::history::{FoldReport, TrainReport};

pub(super) const NO_TEST: &[&str] = &[
    "No held-out test set: this run trained on every patient",
    "(--val-fraction 0 and no --folds), so no held-out figures exist.",
];

pub(super) fn runs_with_test(report: &TrainReport) -> Vec<(&FoldReport, &Evaluation)> {
    report
        .runs
        .iter()
        .filter_map(|r| r.test.as_ref().map(|t| (r, t)))
        .collect()
}

pub(super) fn run_label(report: &TrainReport, run: &FoldReport) -> String {
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

pub(super) fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".to_string()
    }
}

pub(super) fn pm((mean, sd): (f64, f64)) -> String {
    match (mean.is_finite(), sd.is_finite()) {
        (true, true) => format!("{mean:.3} ± {sd:.3}"),
        (true, false) => format!("{mean:.3}"),
        _ => "n/a".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

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
}
