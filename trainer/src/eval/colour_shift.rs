//! The same images under each of the edge's camera-like colour shifts: balanced accuracy and
//! AUC per shift beside the unshifted figures, and the worst drop.

use serde::{Deserialize, Serialize};

use histoscreen_edge::colour::Shift;
use histoscreen_edge::model::Model;

use crate::data::dataset::Sample;
use crate::eval::metrics::{mean_sd, Metrics, Scored};
use crate::eval::score::{score_shifted, ImageResult, Scoring};

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftRow {
    /// `none` for the unshifted images, else the shift's stable name.
    pub shift: String,
    pub what: String,
    pub images: usize,
    pub balanced_accuracy: f64,
    pub roc_auc: Option<f64>,
    /// Unshifted minus shifted: positive is a loss.
    pub balanced_drop: f64,
    pub auc_drop: Option<f64>,
}

/// Every shift on the same images, the unshifted row first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftTable {
    /// Which patients the images are from (unseen, or seen with `--allow-seen`).
    pub patients: String,
    pub rows: Vec<ShiftRow>,
    /// The shift with the largest balanced-accuracy drop, and that drop.
    pub worst_balanced: (String, f64),
    /// The shift with the largest AUC drop, and that drop (absent when AUC is undefined).
    pub worst_auc: Option<(String, f64)>,
}

fn metrics(results: &[ImageResult], threshold: f32) -> Metrics {
    let scored: Vec<Scored> = results.iter().map(ImageResult::scored).collect();
    Metrics::compute(&scored, threshold)
}

/// Scores `samples` under every shift in `shifts`, whole field, the device's way, beside
/// `base`: the same samples' unshifted figures, which the caller has already scored.
pub fn colour_shift_table(
    model: &Model,
    samples: &[&Sample],
    base: &Metrics,
    shifts: &[Shift],
    patients: &str,
) -> ShiftTable {
    let threshold = model.card().threshold;
    let row = |shift: String, what: String, m: &Metrics| ShiftRow {
        shift,
        what,
        images: m.images,
        balanced_accuracy: m.balanced_accuracy,
        roc_auc: m.roc_auc,
        balanced_drop: base.balanced_accuracy - m.balanced_accuracy,
        auc_drop: base.roc_auc.zip(m.roc_auc).map(|(b, s)| b - s),
    };
    let mut rows = vec![row("none".into(), "the images as they are".into(), base)];
    for &shift in shifts {
        let (results, _) = score_shifted(model, samples, Scoring::WholeField, Some(shift));
        let m = metrics(&results, threshold);
        rows.push(row(shift.name().into(), shift.describe().into(), &m));
    }
    let worst_balanced = rows[1..]
        .iter()
        .map(|r| (r.shift.clone(), r.balanced_drop))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_else(|| ("none".into(), 0.0));
    let worst_auc = rows[1..]
        .iter()
        .filter_map(|r| Some((r.shift.clone(), r.auc_drop?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    ShiftTable {
        patients: patients.to_string(),
        rows,
        worst_balanced,
        worst_auc,
    }
}

impl ShiftTable {
    /// The table as markdown, for stderr and reports.
    pub fn markdown(&self) -> String {
        let auc = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
        let drop = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:+.3}"));
        let mut out = format!(
            "Colour shifts ({}):\n\n| shift | what | images | balanced accuracy | drop | ROC AUC | drop |\n|---|---|---|---|---|---|---|\n",
            self.patients
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {:+.3} | {} | {} |\n",
                r.shift,
                r.what,
                r.images,
                r.balanced_accuracy,
                r.balanced_drop,
                auc(r.roc_auc),
                drop(r.auc_drop)
            ));
        }
        out.push_str(&format!(
            "\nWorst balanced-accuracy drop: {:+.3} ({}); worst AUC drop: {}.\n",
            self.worst_balanced.1,
            self.worst_balanced.0,
            self.worst_auc
                .as_ref()
                .map_or_else(|| "-".into(), |(s, d)| format!("{d:+.3} ({s})"))
        ));
        out
    }
}

/// One shift over several runs' test patients: mean and sample sd over the runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftSummaryRow {
    pub shift: String,
    pub what: String,
    pub runs: usize,
    pub balanced_accuracy: (f64, f64),
    pub roc_auc: (f64, f64),
    pub balanced_drop: (f64, f64),
    pub auc_drop: (f64, f64),
}

/// The shift tables of every run (fold) in one: each shift's figures over the runs, and the
/// shift whose mean drop is largest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftSummary {
    pub rows: Vec<ShiftSummaryRow>,
    /// Largest mean balanced-accuracy drop over the runs, and its shift.
    pub worst_balanced: (String, f64),
    /// Largest mean AUC drop over the runs, and its shift.
    pub worst_auc: (String, f64),
}

impl ShiftSummary {
    /// The runs' tables combined; `None` without tables or when they name different shifts.
    pub fn across(tables: &[&ShiftTable]) -> Option<Self> {
        let first = tables.first()?;
        let names: Vec<&str> = first.rows.iter().map(|r| r.shift.as_str()).collect();
        if tables.iter().any(|t| {
            t.rows
                .iter()
                .map(|r| r.shift.as_str())
                .ne(names.iter().copied())
        }) {
            return None;
        }
        let rows: Vec<ShiftSummaryRow> = first
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let over = |f: &dyn Fn(&ShiftRow) -> Option<f64>| {
                    let v: Vec<f64> = tables.iter().filter_map(|t| f(&t.rows[i])).collect();
                    mean_sd(&v)
                };
                ShiftSummaryRow {
                    shift: r.shift.clone(),
                    what: r.what.clone(),
                    runs: tables.len(),
                    balanced_accuracy: over(&|r| Some(r.balanced_accuracy)),
                    roc_auc: over(&|r| r.roc_auc),
                    balanced_drop: over(&|r| Some(r.balanced_drop)),
                    auc_drop: over(&|r| r.auc_drop),
                }
            })
            .collect();
        let worst = |f: fn(&ShiftSummaryRow) -> f64| {
            rows[1..]
                .iter()
                .filter(|r| f(r).is_finite())
                .map(|r| (r.shift.clone(), f(r)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or_else(|| ("none".into(), 0.0))
        };
        Some(ShiftSummary {
            worst_balanced: worst(|r| r.balanced_drop.0),
            worst_auc: worst(|r| r.auc_drop.0),
            rows,
        })
    }

    /// The combined table as markdown.
    pub fn markdown(&self) -> String {
        let pm = |(m, sd): (f64, f64)| {
            if m.is_finite() {
                format!("{m:.3} ± {sd:.3}")
            } else {
                "-".into()
            }
        };
        let signed = |(m, sd): (f64, f64)| {
            if m.is_finite() {
                format!("{m:+.3} ± {sd:.3}")
            } else {
                "-".into()
            }
        };
        let runs = self.rows.first().map_or(0, |r| r.runs);
        let mut out = format!(
            "Mean ± sd over {runs} runs, each on its own test patients (drop: unshifted minus \
             shifted, positive is a loss).\n\n| shift | what | balanced accuracy | drop | ROC AUC | drop |\n|---|---|---|---|---|---|\n"
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.shift,
                r.what,
                pm(r.balanced_accuracy),
                signed(r.balanced_drop),
                pm(r.roc_auc),
                signed(r.auc_drop)
            ));
        }
        out.push_str(&format!(
            "\nWorst mean balanced-accuracy drop: {:+.3} ({}); worst mean AUC drop: {:+.3} ({}).\n",
            self.worst_balanced.1, self.worst_balanced.0, self.worst_auc.1, self.worst_auc.0
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(drops: [(f64, f64); 2]) -> ShiftTable {
        let row = |shift: &str, balanced: f64, auc: f64, base: (f64, f64)| ShiftRow {
            shift: shift.into(),
            what: String::new(),
            images: 10,
            balanced_accuracy: balanced,
            roc_auc: Some(auc),
            balanced_drop: base.0 - balanced,
            auc_drop: Some(base.1 - auc),
        };
        let base = (0.8, 0.9);
        ShiftTable {
            patients: "test".into(),
            rows: vec![
                row("none", base.0, base.1, base),
                row("a", base.0 - drops[0].0, base.1 - drops[0].1, base),
                row("b", base.0 - drops[1].0, base.1 - drops[1].1, base),
            ],
            worst_balanced: ("a".into(), 0.0),
            worst_auc: None,
        }
    }

    #[test]
    fn runs_combine_into_mean_drops_and_the_worst_mean() {
        // Shift a costs 0.1 then 0.3 balanced (mean 0.2), b 0.25 then 0.05 (mean 0.15); in AUC
        // b is the worse (0.1 mean against 0.05).
        let t1 = table([(0.1, 0.0), (0.25, 0.1)]);
        let t2 = table([(0.3, 0.1), (0.05, 0.1)]);
        let s = ShiftSummary::across(&[&t1, &t2]).unwrap();
        assert_eq!(s.rows.len(), 3);
        assert!((s.rows[1].balanced_drop.0 - 0.2).abs() < 1e-12);
        assert!(
            (s.rows[1].balanced_drop.1 - 0.02f64.sqrt()).abs() < 1e-9,
            "sample sd"
        );
        assert_eq!(s.worst_balanced.0, "a");
        assert!((s.worst_balanced.1 - 0.2).abs() < 1e-12);
        assert_eq!(s.worst_auc.0, "b");
        assert!((s.worst_auc.1 - 0.1).abs() < 1e-12);
        assert_eq!(s.rows[0].balanced_drop.0, 0.0);
        let mut other = table([(0.1, 0.0), (0.2, 0.0)]);
        other.rows[2].shift = "c".into();
        assert!(
            ShiftSummary::across(&[&t1, &other]).is_none(),
            "different shifts"
        );
        assert!(ShiftSummary::across(&[]).is_none());
    }
}
