//! Precision variants of a trained network (f32, f16, int8, and the storage-only int8-weights
//! and f16-weights), each written with its card, and each checked against the f32 file through
//! the edge's own runner on patients its calibration never saw.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use histoscreen_edge::card::{ModelCard, Precision};

use crate::data::dataset::Sample;
use crate::data::images::LoadedImage;
use crate::eval::score::{self, Evaluation};
use crate::export::calibrate::{self, Calibration};
use crate::export::model_file::{self, CardInfo};
use crate::export::onnx::{Numerics, WeightStorage};
use crate::model::alexnet::{AlexNet, Head};
use crate::model::device::device;

/// What the variant changed against f32 on one set of images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrecisionCheck {
    pub images: usize,
    pub patients: usize,
    pub label_agreement: f64,
    pub max_abs_diff: f64,
    pub balanced_accuracy_f32: f64,
    pub balanced_accuracy: f64,
}

/// A trained network and the images its variants are calibrated and checked on.
pub struct Variants<'a> {
    pub model: &'a AlexNet,
    pub head: Head,
    /// Loaded BreakHis images (training and held-out patients).
    pub images: &'a [&'a LoadedImage],
    /// Patients the network never trained on; empty when it trained on every patient.
    pub held_out: BTreeSet<String>,
    pub calibration: Calibration,
    /// The training run's card fields, copied into every variant's card.
    pub base: CardInfo,
    /// The f32 file's scores on the compared images, computed for the first variant checked
    /// and shared by the others.
    pub reference: OnceCell<Evaluation>,
}

/// Calibration pool and comparison set: held-out patients are compared, the rest calibrate.
/// Without held-out patients, every other patient (name order, per class) calibrates and the
/// remaining ones are compared: still disjoint, though the network has seen them.
fn partition<'a>(
    images: &[&'a LoadedImage],
    held_out: &BTreeSet<String>,
) -> (Vec<&'a LoadedImage>, Vec<&'a LoadedImage>) {
    let compare: BTreeSet<String> = if held_out.is_empty() {
        let mut by_class: std::collections::BTreeMap<String, BTreeSet<&str>> = Default::default();
        for i in images {
            by_class
                .entry(i.sample.class.to_string())
                .or_default()
                .insert(&i.sample.patient);
        }
        by_class
            .values()
            .flat_map(|ps| ps.iter().skip(1).step_by(2).map(|p| p.to_string()))
            .collect()
    } else {
        held_out.clone()
    };
    images
        .iter()
        .partition(|i| !compare.contains(&i.sample.patient))
}

fn compare(reference: &Evaluation, variant: &Path, samples: &[&Sample]) -> Result<PrecisionCheck> {
    let got = score::evaluate_with(
        &score::load_model(variant)?,
        samples,
        score::Scoring::CentreOnly,
    );
    anyhow::ensure!(
        !reference.results.is_empty() && reference.results.len() == got.results.len(),
        "no images both models could score ({} f32, {} variant)",
        reference.results.len(),
        got.results.len()
    );
    let threshold = reference.metrics.threshold;
    let (mut agree, mut max_diff) = (0usize, 0f64);
    for (a, b) in reference.results.iter().zip(&got.results) {
        agree += ((a.p_malignant >= threshold) == (b.p_malignant >= threshold)) as usize;
        max_diff = max_diff.max((a.p_malignant - b.p_malignant).abs() as f64);
    }
    Ok(PrecisionCheck {
        images: reference.results.len(),
        patients: got.metrics.patients,
        label_agreement: agree as f64 / reference.results.len() as f64,
        max_abs_diff: max_diff,
        balanced_accuracy_f32: reference.metrics.balanced_accuracy,
        balanced_accuracy: got.metrics.balanced_accuracy,
    })
}

impl Variants<'_> {
    /// Writes `out` (and its card) in `precision`; returns the card.
    pub fn write(&self, precision: Precision, out: &Path) -> Result<ModelCard> {
        let device = device();
        let doc = format!(
            "histoscreen AlexNet, benign vs malignant, {}",
            precision.name()
        );
        let (pool, compared) = partition(self.images, &self.held_out);
        let mut calibration_note = serde_json::Value::Null;
        let numerics = match precision {
            Precision::F32 => Numerics::Float(WeightStorage::F32),
            Precision::Int8Weights => Numerics::Float(WeightStorage::Int8PerChannel),
            Precision::F16Weights => Numerics::Float(WeightStorage::F16),
            Precision::F16 => Numerics::F16,
            Precision::Int8 => {
                let chosen = calibrate::spread_over_patients(&pool, self.calibration.images);
                if chosen.is_empty() {
                    bail!("int8 needs calibration images from training patients; none were given (pass --data)");
                }
                let ranges =
                    calibrate::calibrate(self.model, &chosen, self.calibration.method, &device)?;
                let patients = calibrate::patients_of(chosen.iter().map(|i| &i.sample));
                tracing::info!(
                    "int8 calibration on {} images of {} patients: input [{:.3}, {:.3}], ReLU maxima {:?}",
                    chosen.len(),
                    patients.len(),
                    ranges.input.0,
                    ranges.input.1,
                    ranges.conv_max
                );
                calibration_note = json!({"ranges": ranges, "patients": patients});
                Numerics::Int8(ranges)
            }
        };
        let bytes = model_file::onnx_as(self.model, &doc, &numerics)?;
        let mut metrics = self.base.metrics.clone();
        if precision != Precision::F32 && !compared.is_empty() {
            let check = self.check(&bytes, precision, out, &compared)?;
            tracing::info!(
                "{} against f32 on {} images of {} patients: labels agree on {:.1}%, max |dp| {:.2e}, balanced accuracy {:.3} (f32 {:.3})",
                precision.name(),
                check.images,
                check.patients,
                check.label_agreement * 100.0,
                check.max_abs_diff,
                check.balanced_accuracy,
                check.balanced_accuracy_f32
            );
            let held_out = !self.held_out.is_empty();
            if let serde_json::Value::Object(m) = &mut metrics {
                m.insert(
                    "precision_check".into(),
                    json!({
                        "against_f32": check,
                        "patients": calibrate::patients_of(compared.iter().map(|i| &i.sample)),
                        "held_out": held_out,
                        "note": if held_out {
                            "patients the network never trained on and calibration never saw"
                        } else {
                            "patients calibration never saw; the network trained on them, so the accuracies are not held-out figures"
                        },
                    }),
                );
            }
        }
        if let (serde_json::Value::Object(m), false) = (&mut metrics, calibration_note.is_null()) {
            m.insert("calibration".into(), calibration_note);
        }
        let card = model_file::write_model(
            &bytes,
            out,
            self.head,
            CardInfo {
                name: self.base.name.clone(),
                precision: precision.name().into(),
                threshold: self.base.threshold,
                uncertain_band: self.base.uncertain_band,
                split_seed: self.base.split_seed,
                training: self.base.training.clone(),
                metrics,
                stain: self.base.stain.clone(),
                gate: self.base.gate.clone(),
            },
        )?;
        eprintln!(
            "wrote {} ({}, {:.1} MB)",
            out.display(),
            precision.name(),
            card.size_bytes as f64 / 1e6
        );
        Ok(card)
    }

    /// Runs the f32 file and the variant through the edge's runner, both from disk, so both
    /// take the device's path.
    fn check(
        &self,
        variant: &[u8],
        precision: Precision,
        out: &Path,
        compared: &[&LoadedImage],
    ) -> Result<PrecisionCheck> {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
        let scratch = tempfile::Builder::new()
            .prefix(".histoscreen-export-")
            .tempdir_in(parent)
            .with_context(|| format!("{}: cannot write here", parent.display()))?;
        let info = |precision: &str| CardInfo {
            name: "comparison".into(),
            precision: precision.into(),
            threshold: self.base.threshold,
            uncertain_band: self.base.uncertain_band,
            split_seed: None,
            training: json!({}),
            metrics: json!({}),
            // Both files see the same (normalised, where the base is) input.
            stain: self.base.stain.clone(),
            gate: self.base.gate.clone(),
        };
        let samples: Vec<&Sample> = compared.iter().map(|i| &i.sample).collect();
        let reference = match self.reference.get() {
            Some(r) => r,
            None => {
                let f32_path = scratch.path().join("f32.onnx");
                let doc = "histoscreen AlexNet, f32 reference";
                model_file::write_model(
                    &model_file::onnx_f32(self.model, doc)?,
                    &f32_path,
                    self.head,
                    info("f32"),
                )?;
                let r = score::evaluate_with(
                    &score::load_model(&f32_path)?,
                    &samples,
                    score::Scoring::CentreOnly,
                );
                self.reference.get_or_init(|| r)
            }
        };
        let variant_path = scratch.path().join("variant.onnx");
        model_file::write_model(variant, &variant_path, self.head, info(precision.name()))?;
        compare(reference, &variant_path, &samples)
    }
}
