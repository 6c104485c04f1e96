//! Keeping the patients a model trained on out of its headline figures: the card's list of
//! them, the split of a data set by it, and what `eval` prints.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use histoscreen_edge::card::ModelCard;
use histoscreen_edge::model::Model;

use crate::data::dataset::{Rejected, Sample};
use crate::eval::colour_shift::ShiftTable;
use crate::eval::metrics::Metrics;
use crate::eval::score::{evaluate, Evaluation, ImageResult};

/// Key of the card's `training` object listing the patients the model learnt from (fitted
/// on or chose its epoch on); `eval` reads it to keep them out of the headline figures.
pub const PATIENTS_TRAINED: &str = "patients_trained";

/// The patients `card` says its model learnt from; `None` for a card written before the
/// trainer recorded them.
pub fn trained_patients(card: &ModelCard) -> Option<BTreeSet<String>> {
    let list = card.training.get(PATIENTS_TRAINED)?.as_array()?;
    list.iter()
        .map(|p| p.as_str().map(str::to_string))
        .collect()
}

/// `samples` split by whether the model saw their patient in training.
pub struct PatientSplit<'a> {
    pub unseen: Vec<&'a Sample>,
    pub seen: Vec<&'a Sample>,
    /// `false` when the card lists no training patients: everything is in `unseen`, unchecked.
    pub known: bool,
}

impl<'a> PatientSplit<'a> {
    pub fn new(samples: &[&'a Sample], trained: Option<&BTreeSet<String>>) -> Self {
        let (seen, unseen) = samples
            .iter()
            .partition(|s| trained.is_some_and(|t| t.contains(&s.patient)));
        PatientSplit {
            unseen,
            seen,
            known: trained.is_some(),
        }
    }

    fn patients(samples: &[&Sample]) -> BTreeSet<String> {
        samples.iter().map(|s| s.patient.clone()).collect()
    }

    pub fn seen_patients(&self) -> BTreeSet<String> {
        Self::patients(&self.seen)
    }

    pub fn unseen_patients(&self) -> BTreeSet<String> {
        Self::patients(&self.unseen)
    }
}

/// One group of patients' figures, as `eval` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub patient_ids: BTreeSet<String>,
    /// Flattened: `images` and `patients` counts sit beside the other figures.
    #[serde(flatten)]
    pub metrics: Metrics,
    pub per_magnification: BTreeMap<String, Metrics>,
    pub per_subtype: BTreeMap<String, Metrics>,
    pub views: BTreeMap<String, Metrics>,
}

impl Figures {
    fn of(e: &Evaluation, patient_ids: BTreeSet<String>) -> Self {
        Figures {
            patient_ids,
            metrics: e.metrics.clone(),
            per_magnification: e.per_magnification.clone(),
            per_subtype: e.per_subtype.clone(),
            views: e.views.clone(),
        }
    }
}

/// Figures of patients the model trained on, labelled so that nobody quotes them.
#[derive(Debug, Clone, Serialize)]
pub struct SeenFigures {
    pub note: &'static str,
    #[serde(flatten)]
    pub figures: Figures,
}

const SEEN_NOTE: &str = "patients the model was trained on: these figures measure how well it \
     remembers them, not how it screens new patients; never quote them as its accuracy";

/// What `eval` prints: headline figures from unseen patients only, seen ones apart.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    /// Which patients the top-level figures cover.
    pub headline: String,
    /// Top-level figures; absent when every patient was seen (`--allow-seen`).
    #[serde(flatten)]
    pub unseen: Option<Figures>,
    pub seen_in_training: Option<SeenFigures>,
    /// The same images under camera-like colour shifts (`--colour-shift`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour_shift: Option<ShiftTable>,
    pub rejected: Vec<Rejected>,
    /// Every scored image, seen or not, for `--per-image`.
    #[serde(skip)]
    pub results: Vec<(ImageResult, Seen)>,
}

/// Whether an image's patient was in the model's training data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Yes,
    No,
    /// The card does not say.
    Unknown,
}

impl Seen {
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Yes => "yes",
            Seen::No => "no",
            Seen::Unknown => "unknown",
        }
    }
}

fn headline(split: &PatientSplit<'_>) -> String {
    let unseen = split.unseen_patients().len();
    match (split.known, unseen) {
        (false, _) => format!(
            "all {unseen} patients: the model card does not record its training patients, so \
             some of these may have been trained on"
        ),
        (true, 0) => "none: every patient was trained on (see seen_in_training)".to_string(),
        (true, n) => format!("{n} patients the model never saw in training"),
    }
}

/// Scores `split`'s two groups separately, so that seen patients never reach the headline.
pub fn evaluate_split(model: &Model, split: &PatientSplit<'_>) -> EvalReport {
    let mut rejected = Vec::new();
    let mut results = Vec::new();
    let mut run = |samples: &[&Sample], seen: Seen| {
        let e = evaluate(model, samples);
        rejected.extend(e.rejected.iter().cloned());
        results.extend(e.results.iter().cloned().map(|r| (r, seen)));
        Figures::of(&e, PatientSplit::patients(samples))
    };
    let unseen_label = if split.known { Seen::No } else { Seen::Unknown };
    let unseen = (!split.unseen.is_empty()).then(|| run(&split.unseen, unseen_label));
    let seen = (!split.seen.is_empty()).then(|| SeenFigures {
        note: SEEN_NOTE,
        figures: run(&split.seen, Seen::Yes),
    });
    EvalReport {
        model: model.path().display().to_string(),
        headline: headline(split),
        unseen,
        seen_in_training: seen,
        colour_shift: None,
        rejected,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::Class;

    fn sample(patient: &str) -> Sample {
        Sample {
            path: format!("SOB_B_A-{patient}-100-001.png").into(),
            class: Class::Benign,
            subtype: "A".into(),
            patient: patient.into(),
            magnification: 100,
            seq: 1,
        }
    }

    #[test]
    fn samples_split_by_the_cards_training_patients() {
        let all = [
            sample("14-1"),
            sample("14-2"),
            sample("14-2"),
            sample("14-3"),
        ];
        let refs: Vec<&Sample> = all.iter().collect();
        let trained: BTreeSet<String> = ["14-2".to_string()].into();
        let split = PatientSplit::new(&refs, Some(&trained));
        assert!(split.known);
        assert_eq!(split.seen.len(), 2);
        assert_eq!(split.seen_patients(), trained);
        assert_eq!(split.unseen_patients().len(), 2);
        assert_eq!(
            headline(&split),
            "2 patients the model never saw in training"
        );

        let unknown = PatientSplit::new(&refs, None);
        assert!(!unknown.known && unknown.seen.is_empty());
        assert!(headline(&unknown).starts_with("all 3 patients: the model card does not record"));
    }
}
