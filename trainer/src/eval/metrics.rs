//! Classification metrics at image and patient level (the BreakHis protocol).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One scored image: who it came from, the truth, and the model's malignant probability.
#[derive(Debug, Clone)]
pub struct Scored {
    pub patient: String,
    pub malignant: bool,
    pub p_malignant: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub images: usize,
    pub patients: usize,
    pub threshold: f32,
    #[serde(deserialize_with = "f64_or_nan")]
    pub accuracy: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub balanced_accuracy: f64,
    /// Recall of malignant images.
    #[serde(deserialize_with = "f64_or_nan")]
    pub sensitivity: f64,
    /// Recall of benign images.
    #[serde(deserialize_with = "f64_or_nan")]
    pub specificity: f64,
    /// `None` when only one class is present.
    pub roc_auc: Option<f64>,
    /// `[[true benign, benign called malignant], [malignant called benign, true malignant]]`.
    pub confusion: [[usize; 2]; 2],
    /// Mean over patients of the fraction of their images classified correctly.
    #[serde(deserialize_with = "f64_or_nan")]
    pub patient_accuracy: f64,
}

/// JSON has no NaN: serde_json writes an undefined figure (a class absent from a fold) as
/// `null`, and this reads it back.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

impl Metrics {
    pub fn compute(scored: &[Scored], threshold: f32) -> Metrics {
        let mut confusion = [[0usize; 2]; 2];
        let mut per_patient: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for s in scored {
            let predicted = s.p_malignant >= threshold;
            confusion[s.malignant as usize][predicted as usize] += 1;
            let e = per_patient.entry(&s.patient).or_default();
            e.0 += (predicted == s.malignant) as usize;
            e.1 += 1;
        }
        let correct = confusion[0][0] + confusion[1][1];
        let sensitivity = ratio(confusion[1][1], confusion[1][0] + confusion[1][1]);
        let specificity = ratio(confusion[0][0], confusion[0][0] + confusion[0][1]);
        let balanced_accuracy = match (sensitivity.is_nan(), specificity.is_nan()) {
            (false, false) => (sensitivity + specificity) / 2.0,
            (true, false) => specificity,
            (false, true) => sensitivity,
            (true, true) => f64::NAN,
        };
        let patient_accuracy = if per_patient.is_empty() {
            f64::NAN
        } else {
            per_patient
                .values()
                .map(|&(c, n)| c as f64 / n as f64)
                .sum::<f64>()
                / per_patient.len() as f64
        };
        Metrics {
            images: scored.len(),
            patients: per_patient.len(),
            threshold,
            accuracy: ratio(correct, scored.len()),
            balanced_accuracy,
            sensitivity,
            specificity,
            roc_auc: roc_auc(scored),
            confusion,
            patient_accuracy,
        }
    }
}

/// Area under the ROC curve as the Mann-Whitney statistic; ties count one half.
pub fn roc_auc(scored: &[Scored]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scored.len()).collect();
    idx.sort_by(|&a, &b| scored[a].p_malignant.total_cmp(&scored[b].p_malignant));
    let (mut rank_sum, mut positives) = (0.0f64, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scored[idx[j + 1]].p_malignant == scored[idx[i]].p_malignant {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if scored[k].malignant {
                rank_sum += mid_rank;
                positives += 1;
            }
        }
        i = j + 1;
    }
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// ROC curve points `(false positive rate, true positive rate)` from the highest threshold down.
pub fn roc_curve(scored: &[Scored]) -> Vec<(f64, f64)> {
    let mut v: Vec<&Scored> = scored.iter().collect();
    v.sort_by(|a, b| b.p_malignant.total_cmp(&a.p_malignant));
    let pos = v.iter().filter(|s| s.malignant).count().max(1) as f64;
    let neg = v.iter().filter(|s| !s.malignant).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut pts = vec![(0.0, 0.0)];
    for (i, s) in v.iter().enumerate() {
        if s.malignant {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if i + 1 == v.len() || v[i + 1].p_malignant != s.p_malignant {
            pts.push((fp / neg, tp / pos));
        }
    }
    pts
}

/// Mean and sample standard deviation of the finite values (NaN when there are none).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(patient: &str, malignant: bool, p: f32) -> Scored {
        Scored {
            patient: patient.into(),
            malignant,
            p_malignant: p,
        }
    }

    #[test]
    fn counts_and_rates() {
        let v = vec![
            s("a", false, 0.1),
            s("a", false, 0.7),
            s("b", true, 0.9),
            s("b", true, 0.2),
            s("c", true, 0.8),
            s("c", true, 0.6),
        ];
        let m = Metrics::compute(&v, 0.5);
        assert_eq!(m.confusion, [[1, 1], [1, 3]]);
        assert_eq!(m.images, 6);
        assert_eq!(m.patients, 3);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.sensitivity - 0.75).abs() < 1e-12);
        assert!((m.specificity - 0.5).abs() < 1e-12);
        assert!((m.balanced_accuracy - 0.625).abs() < 1e-12);
        // a: 1/2, b: 1/2, c: 2/2
        assert!((m.patient_accuracy - 2.0 / 3.0).abs() < 1e-12);
        // positives 0.9,0.2,0.8,0.6 vs negatives 0.1,0.7: pairs won = 4 + 3 = ... counted by hand: 6 of 8
        assert!((m.roc_auc.unwrap() - 6.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn auc_ties_count_half_and_one_class_has_none() {
        let v = vec![s("a", false, 0.5), s("b", true, 0.5)];
        assert_eq!(roc_auc(&v), Some(0.5));
        assert_eq!(roc_auc(&[s("a", true, 0.3)]), None);
        let curve = roc_curve(&v);
        assert_eq!(curve, vec![(0.0, 0.0), (1.0, 1.0)]);
    }
}
