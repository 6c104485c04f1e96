//! `predict --checkpoint`: a training run's best network on some images, without exporting.
//! It runs the training framework's forward on the device's own preprocessing, so its
//! probabilities match the exported model's (within float rounding).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};

use histoscreen_edge::paths;
use histoscreen_edge::preprocess;

use crate::checkpoint;
use crate::cli::PredictArgs;
use crate::images;
use crate::train;

/// Image files of `args`, folders expanded; a path that does not exist stops the command.
fn image_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if let Some(missing) = args.iter().find(|p| !p.exists()) {
        bail!("{}: no such file or folder", missing.display());
    }
    Ok(paths::expand_inputs(args)?)
}

/// Prints one tab-separated row per image; returns how many images could not be read.
pub fn predict_command(args: &PredictArgs, out: &mut dyn Write) -> Result<usize> {
    let device = train::device();
    let (model, state) = checkpoint::load_predict_model(&args.checkpoint, &device)?;
    tracing::info!(
        "checkpoint {}: {} run(s) finished{}",
        checkpoint::locate(&args.checkpoint).display(),
        state.completed.len(),
        if state.finished {
            ", training finished"
        } else {
            ", training not finished"
        }
    );
    let files = image_files(&args.images)?;
    writeln!(out, "p_malignant\tlabel\tpath")?;
    let mut failed = 0;
    for chunk in files.chunks(16) {
        let mut views = Vec::new();
        let mut ok = Vec::new();
        for path in chunk {
            match preprocess::load_image(path) {
                Ok(img) => {
                    views.push(images::eval_view(&img));
                    ok.push(path);
                }
                Err(e) => {
                    failed += 1;
                    writeln!(out, "-\terror\t{e}")?;
                }
            }
        }
        let refs: Vec<&image::RgbImage> = views.iter().collect();
        let probs = train::predict(&model, &refs, 16, &device);
        for (path, p) in ok.into_iter().zip(probs) {
            let label = if p >= args.threshold {
                "malignant"
            } else {
                "benign"
            };
            writeln!(out, "{p:.6}\t{label}\t{}", path.display())?;
        }
    }
    out.flush()?;
    Ok(failed)
}
