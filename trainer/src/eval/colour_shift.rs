//! The same images under each of the edge's camera-like colour shifts: balanced accuracy and
//! AUC per shift beside the unshifted figures, and the worst drop.

use serde::Serialize;

use histoscreen_edge::colour::Shift;
use histoscreen_edge::model::Model;

use crate::data::dataset::Sample;
use crate::eval::metrics::{Metrics, Scored};
use crate::eval::score::{score_shifted, ImageResult, Scoring};

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
