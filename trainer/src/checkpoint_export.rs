//! `export --checkpoint`: a training run's network written again as ONNX, with its weights
//! stored in f32, int8 or f16, and (given images) checked against the f32 file through the
//! edge's own runner.
//!
//! The compact storages only shrink the file: tract expands them to f32 when it loads the model
//! (it folds the constant `DequantizeLinear` / `Cast` nodes), so they run at f32 speed on every
//! CPU and their error is the rounding of the weights alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use histoscreen_edge::card::ModelCard;

use crate::checkpoint;
use crate::dataset::{Dataset, Sample};
use crate::eval;
use crate::export::{self, CardInfo};
use crate::metrics::Metrics;
use crate::onnx_export::WeightStorage;
use crate::train;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// f32 weights (about 4 bytes per parameter).
    F32,
    /// int8 weights, one symmetric scale per output channel, expanded to f32 on load.
    #[value(name = "int8-weights")]
    Int8Weights,
    /// IEEE half-precision weights, expanded to f32 on load.
    #[value(name = "f16-weights")]
    F16Weights,
}

impl Precision {
    fn storage(self) -> WeightStorage {
        match self {
            Precision::F32 => WeightStorage::F32,
            Precision::Int8Weights => WeightStorage::Int8PerChannel,
            Precision::F16Weights => WeightStorage::F16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8Weights => "int8-weights",
            Precision::F16Weights => "f16-weights",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A `train --out` folder or its `checkpoint` subfolder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, value_enum, default_value_t = Precision::Int8Weights)]
    pub precision: Precision,
    /// The ONNX file to write; its model card goes beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// BreakHis folder to compare the export's labels and balanced accuracy with the f32
    /// network's on (use patients the model never trained on for the accuracy figure).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

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

/// The card of the `train` run the checkpoint belongs to, when it sits beside it.
fn training_card(checkpoint_dir: &Path) -> Option<ModelCard> {
    let card = checkpoint_dir.parent()?.join("model.json");
    ModelCard::load(&card).ok()
}

fn compare(f32_model: &Path, variant: &Path, data: &Path) -> Result<PrecisionCheck> {
    let ds = Dataset::scan(data, &[])?;
    let samples: Vec<&Sample> = ds.samples.iter().collect();
    let reference = eval::evaluate(&eval::load_model(f32_model)?, &samples);
    let got = eval::evaluate(&eval::load_model(variant)?, &samples);
    anyhow::ensure!(
        !reference.results.is_empty(),
        "{}: no readable BreakHis images to compare on",
        data.display()
    );
    let threshold = reference.metrics.threshold;
    let (mut agree, mut max_diff) = (0usize, 0f64);
    for (a, b) in reference.results.iter().zip(&got.results) {
        agree += ((a.p_malignant >= threshold) == (b.p_malignant >= threshold)) as usize;
        max_diff = max_diff.max((a.p_malignant - b.p_malignant).abs() as f64);
    }
    let metrics: &Metrics = &got.metrics;
    Ok(PrecisionCheck {
        images: reference.results.len(),
        patients: metrics.patients,
        label_agreement: agree as f64 / reference.results.len() as f64,
        max_abs_diff: max_diff,
        balanced_accuracy_f32: reference.metrics.balanced_accuracy,
        balanced_accuracy: metrics.balanced_accuracy,
    })
}

pub fn export_command(args: &ExportArgs) -> Result<ModelCard> {
    let device = train::device();
    let (model, state) = checkpoint::load_predict_model(&args.checkpoint, &device)?;
    let dir = checkpoint::locate(&args.checkpoint);
    let base = training_card(&dir);
    if base.is_none() {
        tracing::warn!(
            "{}: no model.json of the training run beside the checkpoint; the card gets threshold 0.5 and no metrics",
            dir.display()
        );
    }
    let doc = format!(
        "histoscreen AlexNet, benign vs malignant, {} weights",
        args.precision.name()
    );
    let bytes = export::onnx_with(&model, &doc, args.precision.storage())?;
    // The training run's decision rule, or the trainer's defaults without its card.
    let threshold = base.as_ref().map_or(0.5, |c| c.threshold);
    let uncertain_band = base.as_ref().map_or(0.1, |c| c.uncertain_band);
    let mut metrics = base.as_ref().map_or(json!({}), |c| c.metrics.clone());
    if let Some(data) = &args.data {
        // The f32 reference goes through a file as well, so both sides take the device's path.
        let parent = args
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let scratch = tempfile::Builder::new()
            .prefix(".histoscreen-export-")
            .tempdir_in(parent)
            .with_context(|| format!("{}: cannot write here", parent.display()))?;
        let f32_path = scratch.path().join("f32.onnx");
        let variant_path = scratch.path().join("variant.onnx");
        let info = |precision: &str| CardInfo {
            name: "comparison".into(),
            precision: precision.into(),
            threshold,
            uncertain_band,
            split_seed: None,
            training: json!({}),
            metrics: json!({}),
        };
        export::write_model(
            &export::onnx_f32(&model, &doc)?,
            &f32_path,
            state.head,
            info("f32"),
        )?;
        export::write_model(
            &bytes,
            &variant_path,
            state.head,
            info(args.precision.name()),
        )?;
        let check = compare(&f32_path, &variant_path, data)?;
        tracing::info!(
            "{} against f32 on {} images: labels agree on {:.1}%, max |dp| {:.2e}, balanced accuracy {:.3} (f32 {:.3})",
            args.precision.name(),
            check.images,
            check.label_agreement * 100.0,
            check.max_abs_diff,
            check.balanced_accuracy,
            check.balanced_accuracy_f32
        );
        if let serde_json::Value::Object(m) = &mut metrics {
            m.insert(
                "precision_check".into(),
                json!({"data": data.display().to_string(), "against_f32": check}),
            );
        }
    }
    let card = export::write_model(
        &bytes,
        &args.out,
        state.head,
        CardInfo {
            name: base
                .as_ref()
                .map_or_else(|| "histoscreen-alexnet".to_string(), |c| c.name.clone()),
            precision: args.precision.name().into(),
            threshold,
            uncertain_band,
            split_seed: base.as_ref().and_then(|c| c.split_seed),
            training: base.as_ref().map_or(json!({}), |c| c.training.clone()),
            metrics,
        },
    )?;
    eprintln!(
        "wrote {} ({}, {:.1} MB)",
        args.out.display(),
        args.precision.name(),
        card.size_bytes as f64 / 1e6
    );
    Ok(card)
}
