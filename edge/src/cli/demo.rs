//! `demo`: the bundled samples through the real model, with the signals the
//! screening rig would raise, so the product can be shown without camera/GPIO.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::card::Label;
use crate::error::EdgeError;
use crate::field::scale;
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
    /// Path of the convolutions: `tract`'s own, `winograd` (per layer the fastest Winograd form
    /// whose numerics hold: 3x3 and 5x5 layers, strided ones after space-to-depth), or `auto`
    /// (per layer, the faster of tract's and Winograd's, timed once at load)
    /// [default: $HISTOSCREEN_CONV, else tract].
    #[arg(long, value_name = "auto|tract|winograd")]
    conv: Option<crate::winograd::ConvChoice>,
}

/// What the rig's lamps would show for a label: `run` drives one GPIO line per label (plus
/// the heartbeat), and nothing else.
pub fn rig_signal(label: Label) -> &'static str {
    match label {
        Label::Benign => "LED benign ON",
        Label::Malignant => "LED malignant ON",
        Label::Uncertain => "LED uncertain ON (re-image or refer)",
    }
}

/// What the demo prints for one sample.
struct Screened {
    /// The not-H&E gate's verdict in a few words.
    gate: String,
    label: Label,
    p_malignant: f32,
    /// `rows x cols` of the tile map, or `centre`.
    tiles: String,
    ms: f64,
}

/// Whole field where the model can, else the centre view; the overlay into `overlays`.
fn screen(
    model: &Model,
    path: &Path,
    img: &image::RgbImage,
    overlays: &Option<PathBuf>,
) -> Result<Screened, EdgeError> {
    let um = scale::frame_um_per_px(None, Some(path));
    let verdict = model.gate(img);
    if let Some(reason) = verdict.reason.filter(|_| !verdict.pass) {
        return Err(EdgeError::Frame(format!(
            "not H&E, the rig stays idle: {reason}"
        )));
    }
    let gate = format!(
        "H&E (tissue {:.0}%, stains {:.0}° from the reference)",
        100.0 * verdict.tissue_fraction,
        verdict.stain_angle_deg.unwrap_or(f32::NAN)
    );
    let Some(dir) = overlays else {
        let p = model.classify_at(img, um)?;
        return Ok(Screened {
            gate,
            label: p.label,
            p_malignant: p.p_malignant,
            tiles: "centre".into(),
            ms: p.preprocess_ms + p.infer_ms,
        });
    };
    let f = model.screen(img, um)?;
    super::classify::write_heatmap(model, dir, path, img, &f)?;
    Ok(Screened {
        gate,
        label: f.label,
        p_malignant: f.p_malignant,
        tiles: format!("{}x{}", f.map.rows, f.map.cols),
        ms: f.preprocess_ms + f.infer_ms,
    })
}

/// A new folder under the system's temp dir: `histoscreen-demo-<pid>-<n>`.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000 {
        let dir = base.join(format!("histoscreen-demo-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free demo folder name"))
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
    let model = Model::load_with(
        &model_path,
        &crate::model::LoadOptions {
            conv: args.conv,
            ..crate::model::LoadOptions::default()
        },
    )?;
    let card = model.card();
    // Overlays go to a fresh folder the run names, so a demo never overwrites anything.
    let overlays = match model.has_field() {
        true => {
            Some(tempfile_dir().map_err(|e| EdgeError::io("create", &std::env::temp_dir(), &e))?)
        }
        false => None,
    };
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
        match preprocess::load_image(path).and_then(|img| screen(&model, path, &img, &overlays)) {
            Ok(p) => {
                if truth.is_some() && p.label != Label::Uncertain {
                    decided += 1;
                    right += usize::from(Some(p.label) == truth);
                }
                text.push_str(&format!(
                    "{name:<36} truth {truth_text:<9} -> {:<9} p={:.3} {:>6}  {:>6.1} ms  rig: {}  gate: {}\n",
                    p.label.as_str(),
                    p.p_malignant,
                    p.tiles,
                    p.ms,
                    rig_signal(p.label),
                    p.gate
                ));
            }
            Err(e) => text.push_str(&format!("{name:<36} error: {e}\n")),
        }
    }
    text.push_str(&format!(
        "{right}/{decided} decided samples agree with the BreakHis label ({} uncertain or unlabelled)\n",
        samples.len() - decided
    ));
    match &overlays {
        Some(dir) => text.push_str(&format!(
            "whole field at the model's scale, score = {}; heatmap overlays in {}\n",
            card.field
                .as_ref()
                .map(|f| f.aggregate.describe())
                .unwrap_or_default(),
            dir.display()
        )),
        None => text.push_str("centre crop only: this model's card has no whole-field spec\n"),
    }
    if args.model.is_none() {
        // The bundled model learnt from every shared patient, these samples' included.
        text.push_str(
            "(the bundled model was trained on these samples' patients; its figures on unseen patients are in models/README.md)\n",
        );
    }
    super::emit(None, text.as_bytes(), out)?;
    Ok(0)
}
