//! `demo`: the bundled samples through the real model, with the signals the
//! screening rig would raise, so the product can be shown without camera/GPIO.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::card::Label;
use crate::error::EdgeError;
use crate::model::Model;
use crate::{paths, preprocess};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// ONNX model (default: models/histoscreen-alexnet-compact.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder of sample images (default: models/samples).
    #[arg(long)]
    samples: Option<PathBuf>,
}

/// What the rig's LEDs/buzzer would do for a label.
pub fn rig_signal(label: Label) -> &'static str {
    match label {
        Label::Benign => "LED benign ON",
        Label::Malignant => "LED malignant ON, buzzer 1 beep",
        Label::Uncertain => "LED uncertain ON (re-image or refer)",
    }
}

pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<i32, EdgeError> {
    let model_path = args.model.clone().unwrap_or_else(paths::default_model);
    if !model_path.is_file() {
        return Err(EdgeError::Usage(format!(
            "{}: model missing (export it with histoscreen-train, or pass --model)",
            model_path.display()
        )));
    }
    let samples_dir = args
        .samples
        .clone()
        .unwrap_or_else(|| paths::models_dir().join("samples"));
    let samples = paths::images_under(&samples_dir)?;
    if samples.is_empty() {
        return Err(EdgeError::Usage(format!(
            "{}: no sample images found",
            samples_dir.display()
        )));
    }
    let model = Model::load(&model_path)?;
    let card = model.card();
    let mut text = format!(
        "model {} ({}, {}, threshold {:.3} ± {:.3})\n",
        model_path.display(),
        card.name,
        card.precision,
        card.threshold,
        card.uncertain_band
    );
    let (mut right, mut decided) = (0, 0);
    for path in &samples {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let truth = paths::breakhis_truth(path);
        let truth_text = truth.map_or("?", Label::as_str);
        match preprocess::load_image(path).and_then(|img| model.classify(&img)) {
            Ok(p) => {
                if truth.is_some() && p.label != Label::Uncertain {
                    decided += 1;
                    right += usize::from(Some(p.label) == truth);
                }
                text.push_str(&format!(
                    "{name:<36} truth {truth_text:<9} -> {:<9} p={:.3}  {:>6.1} ms  rig: {}\n",
                    p.label.as_str(),
                    p.p_malignant,
                    p.preprocess_ms + p.infer_ms,
                    rig_signal(p.label)
                ));
            }
            Err(e) => text.push_str(&format!("{name:<36} error: {e}\n")),
        }
    }
    text.push_str(&format!(
        "{right}/{decided} decided samples agree with the BreakHis label ({} uncertain or unlabelled)\n",
        samples.len() - decided
    ));
    if args.model.is_none() {
        // The bundled model learnt from every shared patient, these samples' included.
        text.push_str(
            "(the bundled model was trained on these samples' patients; its figures on unseen patients are in models/README.md)\n",
        );
    }
    super::emit(None, text.as_bytes(), out)?;
    Ok(0)
}
