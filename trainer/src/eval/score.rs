//! Scores a data set through the edge's own runner, so the figures are the device's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use histoscreen_edge::colour::{apply_shift, Shift};
use histoscreen_edge::field::{scale, Aggregate};
use histoscreen_edge::model::{LoadOptions, Model};
use histoscreen_edge::preprocess;
use histoscreen_edge::EdgeError;

use crate::data::dataset::{Rejected, Sample};
use crate::eval::metrics::{Metrics, Scored};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResult {
    pub path: String,
    pub patient: String,
    pub class: String,
    pub subtype: String,
    pub magnification: u32,
    /// The image's score: the aggregate over its whole field where the model has a dense form,
    /// else its centre view's.
    pub p_malignant: f32,
    /// The centre tile alone (at the model's scale), for the side-by-side comparison.
    #[serde(default)]
    pub p_centre: Option<f32>,
    /// Every tile's probability, row-major (whole-field models only).
    #[serde(skip)]
    pub tiles: Vec<f32>,
}

impl ImageResult {
    pub fn scored(&self) -> Scored {
        self.scored_as(self.p_malignant)
    }

    fn scored_as(&self, p_malignant: f32) -> Scored {
        Scored {
            patient: self.patient.clone(),
            malignant: self.class == "malignant",
            p_malignant,
        }
    }
}

/// The same images scored by other rules than the card's: the centre tile alone, and the mean
/// of the top k tiles, so a report can set them beside the whole-field mean.
pub fn alternative_views(results: &[ImageResult], threshold: f32) -> BTreeMap<String, Metrics> {
    let mut out = BTreeMap::new();
    let centre: Option<Vec<Scored>> = results
        .iter()
        .map(|r| r.p_centre.map(|p| r.scored_as(p)))
        .collect();
    if let Some(c) = centre.filter(|c| !c.is_empty()) {
        out.insert("centre tile".to_string(), Metrics::compute(&c, threshold));
    }
    if results.iter().all(|r| !r.tiles.is_empty()) && !results.is_empty() {
        for k in [3, 5] {
            let scored: Vec<Scored> = results
                .iter()
                .map(|r| r.scored_as(Aggregate::TopK(k).apply(&r.tiles).unwrap_or(r.p_malignant)))
                .collect();
            out.insert(
                format!("top-{k} tiles"),
                Metrics::compute(&scored, threshold),
            );
        }
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub model: String,
    /// Flattened: `images` and `patients` counts sit beside the other figures.
    #[serde(flatten)]
    pub metrics: Metrics,
    pub per_magnification: BTreeMap<String, Metrics>,
    pub per_subtype: BTreeMap<String, Metrics>,
    /// The same images under other views (centre tile alone, top-k tiles), same threshold.
    #[serde(default)]
    pub views: BTreeMap<String, Metrics>,
    pub rejected: Vec<Rejected>,
    #[serde(skip)]
    pub results: Vec<ImageResult>,
}

pub fn load_model(onnx: &Path) -> Result<Model> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(Model::load_with(
        onnx,
        &LoadOptions {
            threads,
            ..LoadOptions::default()
        },
    )?)
}

/// What of each image is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// The whole field (the device's default) where the model has a dense form, with the
    /// centre tile and the tile map kept beside it; the centre view otherwise.
    WholeField,
    /// The centre tile only: a sixth of the work, for checks of a variant's arithmetic
    /// against f32, which the view does not change.
    CentreOnly,
}

/// Decodes in parallel, then runs each image through the calls the device makes for a frame.
pub fn score(
    model: &Model,
    samples: &[&Sample],
    scoring: Scoring,
) -> (Vec<ImageResult>, Vec<Rejected>) {
    score_shifted(model, samples, scoring, None)
}

/// [`score`] with each decoded image first put through a camera-like colour `shift`.
pub fn score_shifted(
    model: &Model,
    samples: &[&Sample],
    scoring: Scoring,
    shift: Option<Shift>,
) -> (Vec<ImageResult>, Vec<Rejected>) {
    let mut results = Vec::with_capacity(samples.len());
    let mut rejected = Vec::new();
    for chunk in samples.chunks(32) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|s| {
                let img = preprocess::load_image(&s.path)?;
                Ok::<_, EdgeError>(match shift {
                    Some(shift) => apply_shift(&img, shift),
                    None => img,
                })
            })
            .collect();
        for (s, img) in chunk.iter().zip(decoded) {
            let outcome = img.map_err(|e| e.to_string()).and_then(|img| {
                score_one(model, &img, s.magnification, scoring).map_err(|e| e.to_string())
            });
            match outcome {
                Ok((p_malignant, p_centre, tiles)) => results.push(ImageResult {
                    path: s.path.display().to_string(),
                    patient: s.patient.clone(),
                    class: s.class.to_string(),
                    subtype: s.subtype.clone(),
                    magnification: s.magnification,
                    p_malignant,
                    p_centre,
                    tiles,
                }),
                Err(reason) => rejected.push(Rejected {
                    path: s.path.clone(),
                    reason,
                }),
            }
        }
    }
    (results, rejected)
}

/// Whole-field score, centre-tile score and tile map of one BreakHis image (at its file's
/// magnification), the calls the device makes; a model without a dense form gives its centre
/// view only.
fn score_one(
    model: &Model,
    img: &image::RgbImage,
    magnification: u32,
    scoring: Scoring,
) -> Result<(f32, Option<f32>, Vec<f32>), EdgeError> {
    let um = Some(scale::breakhis_um_per_px(magnification));
    if !model.has_field() || scoring == Scoring::CentreOnly {
        return Ok((model.classify_at(img, um)?.p_malignant, None, Vec::new()));
    }
    let field = model.screen(img, um)?;
    let centre = model.classify_at(img, um)?.p_malignant;
    Ok((field.p_malignant, Some(centre), field.map.values))
}

fn grouped(
    results: &[ImageResult],
    key: impl Fn(&ImageResult) -> String,
    threshold: f32,
) -> BTreeMap<String, Metrics> {
    let mut groups: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
    for r in results {
        groups.entry(key(r)).or_default().push(r.scored());
    }
    groups
        .into_iter()
        .map(|(k, v)| (k, Metrics::compute(&v, threshold)))
        .collect()
}

/// Scores `samples` the device's way ([`Scoring::WholeField`]).
pub fn evaluate(model: &Model, samples: &[&Sample]) -> Evaluation {
    evaluate_with(model, samples, Scoring::WholeField)
}

pub fn evaluate_with(model: &Model, samples: &[&Sample], scoring: Scoring) -> Evaluation {
    let threshold = model.card().threshold;
    let (results, rejected) = score(model, samples, scoring);
    let scored: Vec<Scored> = results.iter().map(ImageResult::scored).collect();
    let metrics = Metrics::compute(&scored, threshold);
    Evaluation {
        model: model.path().display().to_string(),
        per_magnification: grouped(&results, |r| format!("{}X", r.magnification), threshold),
        per_subtype: grouped(&results, |r| r.subtype.clone(), threshold),
        views: alternative_views(&results, threshold),
        metrics,
        rejected,
        results,
    }
}
