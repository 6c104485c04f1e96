//! `predict --checkpoint`: a training run's best network on some images, without exporting.
//! It runs the training framework's forward on the device's own preprocessing, so its
//! probabilities match the exported model's (within float rounding).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use histoscreen_edge::card::ModelCard;
use histoscreen_edge::colour::Normaliser;
use histoscreen_edge::paths;
use histoscreen_edge::preprocess;

use crate::data::images;
use crate::export::model_file::{self, CardInfo, DEFAULT_THRESHOLD, DEFAULT_UNCERTAIN_BAND};
use crate::fit::checkpoint;
use crate::model::alexnet::Head;
use crate::model::device::device;
use crate::model::feature_bank::tile_window;
use crate::model::infer;

/// What `predict` is asked to label.
#[derive(Debug, Clone)]
pub struct PredictJob {
    /// A `train --out` folder or its checkpoint folder.
    pub checkpoint: PathBuf,
    /// Image files or folders.
    pub images: Vec<PathBuf>,
    /// Override the decision rule the run's card gives.
    pub threshold: Option<f32>,
    pub uncertain_band: Option<f32>,
}

/// Prints the rows on stdout; exit status 2 when an image could not be read.
pub fn run(job: &PredictJob) -> Result<i32> {
    let failed = predict_command(job, &mut std::io::stdout().lock())?;
    Ok(if failed > 0 { 2 } else { 0 })
}

/// Image files of `args`, folders expanded; a path that does not exist stops the command.
fn image_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if let Some(missing) = args.iter().find(|p| !p.exists()) {
        bail!("{}: no such file or folder", missing.display());
    }
    Ok(paths::expand_inputs(args)?)
}

/// The card whose threshold and uncertain band label the probabilities, so a row reads as
/// `classify` would label the exported model's: the finished run's `model.json` (beside the
/// checkpoint folder), else train's defaults; `--threshold` and `--uncertain-band` override.
fn decision_rule(job: &PredictJob, finished: bool, head: Head) -> Result<ModelCard> {
    let out_dir = checkpoint::locate(&job.checkpoint)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let card_path = ModelCard::card_path_for(&out_dir.join("model.onnx"));
    // An unfinished run's folder may hold the card of an earlier run, not of this network.
    let mut card = if finished && card_path.is_file() {
        ModelCard::load(&card_path)?
    } else {
        model_file::card_for(
            head,
            CardInfo {
                name: "checkpoint".into(),
                precision: "f32".into(),
                threshold: DEFAULT_THRESHOLD,
                uncertain_band: DEFAULT_UNCERTAIN_BAND,
                split_seed: None,
                training: serde_json::Value::Null,
                metrics: serde_json::Value::Null,
                stain: None,
                gate: None,
            },
        )?
    };
    card.threshold = job.threshold.unwrap_or(card.threshold);
    card.uncertain_band = job.uncertain_band.unwrap_or(card.uncertain_band);
    if !(0.0..=1.0).contains(&card.threshold) {
        bail!("--threshold {}: must be within [0, 1]", card.threshold);
    }
    if !(0.0..1.0).contains(&card.uncertain_band) {
        bail!(
            "--uncertain-band {}: must be within [0, 1)",
            card.uncertain_band
        );
    }
    tracing::info!(
        "labels: malignant at or above {}, uncertain within {} of it ({})",
        card.threshold,
        card.uncertain_band,
        if card.sha256.is_empty() {
            "train's defaults".to_string()
        } else {
            card_path.display().to_string()
        }
    );
    Ok(card)
}

/// Prints one tab-separated row per image; returns how many images could not be read.
pub fn predict_command(job: &PredictJob, out: &mut dyn Write) -> Result<usize> {
    let device = device();
    let (model, state) = checkpoint::load_predict_model(&job.checkpoint, &device)?;
    tracing::info!(
        "checkpoint {}: {} run(s) finished{}",
        checkpoint::locate(&job.checkpoint).display(),
        state.completed.len(),
        if state.finished {
            ", training finished"
        } else {
            ", training not finished"
        }
    );
    let rule = decision_rule(job, state.finished, model.head())?;
    let files = image_files(&job.images)?;
    writeln!(out, "p_malignant\tlabel\tpath")?;
    let mut failed = 0;
    // The whole field where the head allows it, as `eval` and the device score an image;
    // a classic head sees the centre tile.
    let whole_field = model.head() == Head::Compact;
    let k = tile_window(&model, &device);
    // A network trained on stain-normalised images sees them normalised here too, as the edge
    // does (the finished run's card holds the reference).
    let stain = rule
        .stain
        .as_ref()
        .filter(|s| s.normalise)
        .map(Normaliser::new);
    for chunk in files.chunks(16) {
        let mut views = Vec::new();
        let mut ok = Vec::new();
        for path in chunk {
            let mag = histoscreen_edge::field::scale::breakhis_magnification(path).unwrap_or(100);
            match preprocess::load_image(path)
                .map_err(|e| e.to_string())
                .and_then(|img| {
                    images::field_view(&img, mag).map_err(|e| format!("{}: {e}", path.display()))
                }) {
                Ok(field) => {
                    views.push(field);
                    ok.push(path);
                }
                Err(e) => {
                    failed += 1;
                    writeln!(out, "-\terror\t{e}")?;
                }
            }
        }
        let probs: Vec<f32> = if whole_field {
            views
                .iter()
                .map(|f| {
                    let f = preprocess::stain_normalised(f, stain.as_ref());
                    infer::predict_field(&model, &f, k, &device)
                })
                .collect()
        } else {
            let tiles: Vec<image::RgbImage> = views
                .iter()
                .map(|f| {
                    preprocess::stain_normalised(&images::eval_view(f), stain.as_ref()).into_owned()
                })
                .collect();
            let refs: Vec<&image::RgbImage> = tiles.iter().collect();
            infer::predict(&model, &refs, 16, &device)
        };
        for (path, p) in ok.into_iter().zip(probs) {
            let label = rule.label_for(p);
            writeln!(out, "{p:.6}\t{label}\t{}", path.display())?;
        }
    }
    out.flush()?;
    Ok(failed)
}
