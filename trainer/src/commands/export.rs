//! `export --checkpoint` and `train --export`: a checkpoint's network written in other
//! precisions, calibrated and checked on BreakHis images.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::json;

use histoscreen_edge::card::{ModelCard, Precision};
use histoscreen_edge::colour::Normaliser;

use crate::data::dataset::Dataset;
use crate::data::images::{self, LoadedImage};
use crate::export::calibrate::Calibration;
use crate::export::model_file::{CardInfo, DEFAULT_THRESHOLD, DEFAULT_UNCERTAIN_BAND};
use crate::export::variants::Variants;
use crate::fit::checkpoint;
use crate::model::device::device;

/// What `export` is asked to write.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// A `train --out` folder or its checkpoint folder.
    pub checkpoint: PathBuf,
    pub precision: Precision,
    /// The ONNX file; its card goes beside it.
    pub out: PathBuf,
    /// BreakHis folder to calibrate and compare on.
    pub data: Option<PathBuf>,
    pub calibration: Calibration,
}

/// Writes the file and its card; returns the card.
pub fn export_command(job: &ExportJob) -> Result<ModelCard> {
    if job.precision == Precision::Int8 && job.data.is_none() {
        bail!("--precision int8 needs --data: its activation ranges are calibrated on training images");
    }
    let loaded = match &job.data {
        Some(data) => {
            let ds = Dataset::scan(data, &[])?;
            let (loaded, rejected) = images::load(&ds.samples);
            for r in &rejected {
                tracing::warn!("{}: skipped ({})", r.path.display(), r.reason);
            }
            loaded
        }
        None => Vec::new(),
    };
    let refs: Vec<&LoadedImage> = loaded.iter().collect();
    let mut cards = export_variants(
        &job.checkpoint,
        &[(job.precision, job.out.clone())],
        &refs,
        &job.calibration,
    )?;
    Ok(cards.remove(0))
}

/// The card of the `train` run the checkpoint belongs to, when it sits beside it.
fn training_card(checkpoint_dir: &Path) -> Option<ModelCard> {
    let card = checkpoint_dir.parent()?.join("model.json");
    ModelCard::load(&card).ok()
}

/// Writes each `(precision, file)` of a checkpoint's predict network, calibrating and checking
/// on `images`.
pub fn export_variants(
    checkpoint_path: &Path,
    outputs: &[(Precision, PathBuf)],
    images: &[&LoadedImage],
    calibration: &Calibration,
) -> Result<Vec<ModelCard>> {
    let device = device();
    let (model, state) = checkpoint::load_predict_model(checkpoint_path, &device)?;
    let dir = checkpoint::locate(checkpoint_path);
    let base = training_card(&dir);
    if base.is_none() {
        tracing::warn!(
            "{}: no model.json of the training run beside the checkpoint; the card gets threshold 0.5 and no metrics",
            dir.display()
        );
    }
    // The predict network is the newest run's. With no run in progress and a single finished
    // one, that is a hold-out run, whose test patients the network never saw; a network
    // trained on every patient (k-fold's final model, --val-fraction 0) has no such patients.
    let held_out: BTreeSet<String> = match (&state.current, state.completed.as_slice()) {
        (None, [only]) => only.report.test_patients.iter().cloned().collect(),
        _ => BTreeSet::new(),
    };
    // A network trained on stain-normalised images is calibrated on them too; the comparison
    // runs through the edge, which normalises as the card says.
    let normalised = base
        .as_ref()
        .and_then(|c| c.stain.as_ref())
        .filter(|s| s.normalise)
        .map(|s| images::all_stain_normalised(images, &Normaliser::new(s)));
    let normalised_refs: Option<Vec<&LoadedImage>> =
        normalised.as_ref().map(|v| v.iter().collect());
    let variants = Variants {
        model: &model,
        head: state.head,
        images: normalised_refs.as_deref().unwrap_or(images),
        held_out,
        calibration: calibration.clone(),
        base: CardInfo {
            name: base
                .as_ref()
                .map_or_else(|| "histoscreen-alexnet".to_string(), |c| c.name.clone()),
            precision: String::new(),
            // The training run's decision rule, or the trainer's defaults without its card.
            threshold: base.as_ref().map_or(DEFAULT_THRESHOLD, |c| c.threshold),
            uncertain_band: base
                .as_ref()
                .map_or(DEFAULT_UNCERTAIN_BAND, |c| c.uncertain_band),
            split_seed: base.as_ref().and_then(|c| c.split_seed),
            training: base.as_ref().map_or(json!({}), |c| c.training.clone()),
            metrics: base.as_ref().map_or(json!({}), |c| c.metrics.clone()),
            stain: base.as_ref().and_then(|c| c.stain.clone()),
            gate: base.as_ref().and_then(|c| c.gate.clone()),
        },
        reference: OnceCell::new(),
    };
    outputs
        .iter()
        .map(|(precision, out)| variants.write(*precision, out))
        .collect()
}
