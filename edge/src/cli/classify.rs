//! `classify`: files and folders in, one row per image out.
//!
//! Each readable image the model can take is first put through the card's not-H&E gate
//! (`colour::gate`): a frame that is not H&E tissue gets the label `not-he` and the gate's
//! reason instead of a probability (`--no-gate` skips the gate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::colour::GateVerdict;
use crate::error::EdgeError;
use crate::field::view::{View, ViewArgs};
use crate::field::{scale, ProbMap};
use crate::model::{FieldPrediction, LoadOptions, Model};
use crate::paths;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: crate::variants::ModelArgs,
    /// Image files and/or folders (searched recursively for png/jpg/jpeg/tif/tiff).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output rows as an aligned table, CSV, or JSON lines (the only one with the tile map).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Matrix-multiply threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    view: ViewArgs,
    /// Write a heatmap overlay PNG per image here (whole-field view): the tile map over the
    /// frame, the threshold contour, a legend, the score and the label.
    #[arg(long, value_name = "DIR")]
    heatmap: Option<PathBuf>,
    /// Classify every image, H&E or not: skip the not-H&E gate (tissue, colour, stain vectors,
    /// sharpness) that otherwise labels such images `not-he`.
    #[arg(long)]
    no_gate: bool,
}

/// One output row: a prediction, the gate's refusal, or the reason the image failed.
struct Row {
    path: String,
    outcome: Outcome,
    /// What the gate measured (None with `--no-gate` or when the image failed first).
    gate: Option<GateVerdict>,
    latency_ms: f64,
}

enum Outcome {
    Scored(Scored),
    /// Not H&E tissue: the gate's reason.
    NotHe(String),
    Error(String),
}

/// The label of rows the gate refused.
pub const NOT_HE: &str = "not-he";

struct Scored {
    p: f32,
    label: &'static str,
    map: Option<ProbMap>,
}

pub fn run(args: &ClassifyArgs, out: &mut dyn Write) -> Result<i32, EdgeError> {
    // Gather inputs before loading the model so a typo in a folder name fails
    // fast, without paying for model optimisation.
    let inputs = paths::expand_inputs(&args.paths)?;
    let model_path = args
        .model
        .resolve(args.threads, Some(paths::default_model()))?;
    let model = Model::load_with(
        &model_path,
        &LoadOptions {
            threads: args.threads,
            conv: args.model.conv,
            ..LoadOptions::default()
        },
    )?;
    let view = args.view.resolve(&model)?;
    if args.heatmap.is_some() && view != View::Field {
        return Err(EdgeError::Usage(
            "--heatmap needs the whole-field view (--view field)".into(),
        ));
    }
    if let Some(dir) = &args.heatmap {
        std::fs::create_dir_all(dir).map_err(|e| EdgeError::io("create", dir, &e))?;
    }
    let width = inputs
        .iter()
        .map(|p| p.display().to_string().chars().count())
        .max()
        .unwrap_or(4)
        .max(4);

    // Stream rows to stdout as they come; buffer them for an atomic --out.
    let mut buf: Vec<u8> = Vec::new();
    let streaming = args.out.is_none();
    let mut errors = 0usize;
    let header = header(args.format, width);
    write_chunk(&header, streaming, &mut buf, out)?;
    for path in &inputs {
        let row = classify_one(&model, path, view, args);
        if matches!(row.outcome, Outcome::Error(_)) {
            errors += 1;
        }
        write_chunk(&render(args.format, &row, width), streaming, &mut buf, out)?;
    }
    if let Some(file) = &args.out {
        crate::fsutil::write_atomic(file, &buf)?;
    }
    tracing::info!(images = inputs.len(), errors, "classify finished");
    if errors > 0 {
        eprintln!(
            "histoscreen-edge: {errors} of {} image(s) could not be classified",
            inputs.len()
        );
        return Ok(2);
    }
    Ok(0)
}

fn write_chunk(
    text: &str,
    streaming: bool,
    buf: &mut Vec<u8>,
    out: &mut dyn Write,
) -> Result<(), EdgeError> {
    if streaming {
        super::emit(None, text.as_bytes(), out)
    } else {
        buf.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

fn classify_one(model: &Model, path: &Path, view: View, args: &ClassifyArgs) -> Row {
    let t0 = Instant::now();
    let um = scale::frame_um_per_px(args.view.um_per_px, Some(path));
    let mut gate = None;
    let outcome = crate::preprocess::load_image(path)
        // A frame the model cannot take (size, scale) is an error before it is anything else.
        .and_then(|img| model.check_frame(&img, um).map(|()| img))
        .and_then(|img| {
            if !args.no_gate {
                let verdict = model.gate(&img);
                let refused = verdict.reason.clone().filter(|_| !verdict.pass);
                gate = Some(verdict);
                if let Some(reason) = refused {
                    return Ok(Outcome::NotHe(reason));
                }
            }
            match view {
                View::Centre => model.classify_at(&img, um).map(|p| Scored {
                    p: p.p_malignant,
                    label: p.label.as_str(),
                    map: None,
                }),
                View::Field => {
                    let f = model.screen(&img, um)?;
                    if let Some(dir) = &args.heatmap {
                        write_heatmap(model, dir, path, &img, &f)?;
                    }
                    Ok(Scored {
                        p: f.p_malignant,
                        label: f.label.as_str(),
                        map: Some(f.map),
                    })
                }
            }
            .map(Outcome::Scored)
        })
        .unwrap_or_else(|e| Outcome::Error(e.to_string()));
    Row {
        path: path.display().to_string(),
        outcome,
        gate,
        latency_ms: t0.elapsed().as_secs_f64() * 1e3,
    }
}

/// `DIR/<file stem>.heatmap.png`, written atomically.
pub(super) fn write_heatmap(
    model: &Model,
    dir: &Path,
    path: &Path,
    img: &image::RgbImage,
    f: &FieldPrediction,
) -> Result<(), EdgeError> {
    let png = model.overlay_png(img, f)?;
    let stem = path
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    crate::fsutil::write_atomic(&dir.join(format!("{stem}.heatmap.png")), &png)
}

fn grid_text(map: &Option<ProbMap>) -> String {
    map.as_ref()
        .map_or_else(|| "centre".into(), |m| format!("{}x{}", m.rows, m.cols))
}

fn header(format: Format, width: usize) -> String {
    match format {
        Format::Table => format!(
            "{:<width$}  {:>11}  {:<9}  {:>6}  {:>10}\n",
            "path", "p_malignant", "label", "tiles", "latency_ms"
        ),
        Format::Csv => "path,p_malignant,label,tiles,latency_ms,error,tissue_fraction,stain_angle_deg,not_he_reason\n".to_string(),
        Format::Jsonl => String::new(),
    }
}

fn render(format: Format, row: &Row, width: usize) -> String {
    match format {
        Format::Table => match &row.outcome {
            Outcome::Scored(s) => format!(
                "{:<width$}  {:>11.4}  {:<9}  {:>6}  {:>10.2}\n",
                row.path,
                s.p,
                s.label,
                grid_text(&s.map),
                row.latency_ms
            ),
            // The message goes last so the other columns stay aligned with the header.
            Outcome::NotHe(msg) | Outcome::Error(msg) => format!(
                "{:<width$}  {:>11}  {:<9}  {:>6}  {:>10.2}  {msg}\n",
                row.path,
                "-",
                row_label(&row.outcome),
                "-",
                row.latency_ms
            ),
        },
        Format::Csv => {
            let gate = match &row.gate {
                Some(g) => format!(
                    "{:.4},{}",
                    g.tissue_fraction,
                    g.stain_angle_deg
                        .map_or(String::new(), |a| format!("{a:.2}"))
                ),
                None => ",".to_string(),
            };
            match &row.outcome {
                Outcome::Scored(s) => format!(
                    "{},{:.6},{},{},{:.3},,{gate},\n",
                    csv_field(&row.path),
                    s.p,
                    s.label,
                    grid_text(&s.map),
                    row.latency_ms
                ),
                Outcome::NotHe(msg) => format!(
                    "{},,{NOT_HE},,{:.3},,{gate},{}\n",
                    csv_field(&row.path),
                    row.latency_ms,
                    csv_field(msg)
                ),
                Outcome::Error(msg) => format!(
                    "{},,error,,{:.3},{},{gate},\n",
                    csv_field(&row.path),
                    row.latency_ms,
                    csv_field(msg)
                ),
            }
        }
        Format::Jsonl => {
            let mut value = match &row.outcome {
                Outcome::Scored(s) => serde_json::json!({
                    "path": row.path, "p_malignant": s.p, "label": s.label,
                    "latency_ms": row.latency_ms, "map": s.map,
                }),
                Outcome::NotHe(msg) => serde_json::json!({
                    "path": row.path, "p_malignant": null, "label": NOT_HE,
                    "latency_ms": row.latency_ms, "reason": msg,
                }),
                Outcome::Error(msg) => serde_json::json!({
                    "path": row.path, "p_malignant": null, "label": "error",
                    "latency_ms": row.latency_ms, "error": msg,
                }),
            };
            if let Some(g) = &row.gate {
                value["gate"] = serde_json::to_value(g).unwrap_or_default();
            }
            format!("{value}\n")
        }
    }
}

fn row_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Scored(s) => s.label,
        Outcome::NotHe(_) => NOT_HE,
        Outcome::Error(_) => "error",
    }
}

/// RFC 4180 quoting, only when needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a/b.png"), "a/b.png");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
