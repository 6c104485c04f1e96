//! Scores a data set through the edge's own runner, so the figures are the device's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use histoscreen_edge::model::{LoadOptions, Model};
use histoscreen_edge::preprocess;

use crate::dataset::{Rejected, Sample};
use crate::metrics::{Metrics, Scored};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResult {
    pub path: String,
    pub patient: String,
    pub class: String,
    pub subtype: String,
    pub magnification: u32,
    pub p_malignant: f32,
}

impl ImageResult {
    pub fn scored(&self) -> Scored {
        Scored {
            patient: self.patient.clone(),
            malignant: self.class == "malignant",
            p_malignant: self.p_malignant,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub model: String,
    /// Flattened: `images` and `patients` counts sit beside the other figures.
    #[serde(flatten)]
    pub metrics: Metrics,
    pub per_magnification: BTreeMap<String, Metrics>,
    pub per_subtype: BTreeMap<String, Metrics>,
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

/// Decodes in parallel, then runs each image through `Model::classify`, the call the device
/// makes for every frame.
pub fn score(model: &Model, samples: &[&Sample]) -> (Vec<ImageResult>, Vec<Rejected>) {
    let mut results = Vec::with_capacity(samples.len());
    let mut rejected = Vec::new();
    for chunk in samples.chunks(32) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|s| preprocess::load_image(&s.path))
            .collect();
        for (s, img) in chunk.iter().zip(decoded) {
            let outcome = img
                .map_err(|e| e.to_string())
                .and_then(|img| model.classify(&img).map_err(|e| e.to_string()));
            match outcome {
                Ok(p) => results.push(ImageResult {
                    path: s.path.display().to_string(),
                    patient: s.patient.clone(),
                    class: s.class.to_string(),
                    subtype: s.subtype.clone(),
                    magnification: s.magnification,
                    p_malignant: p.p_malignant,
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

pub fn evaluate(model: &Model, samples: &[&Sample]) -> Evaluation {
    let threshold = model.card().threshold;
    let (results, rejected) = score(model, samples);
    let scored: Vec<Scored> = results.iter().map(ImageResult::scored).collect();
    let metrics = Metrics::compute(&scored, threshold);
    Evaluation {
        model: model.path().display().to_string(),
        per_magnification: grouped(&results, |r| format!("{}X", r.magnification), threshold),
        per_subtype: grouped(&results, |r| r.subtype.clone(), threshold),
        metrics,
        rejected,
        results,
    }
}
