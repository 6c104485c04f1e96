//! `classify`: files and folders in, one row per image out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::error::EdgeError;
use crate::model::{LoadOptions, Model};
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
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Matrix-multiply threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// One output row: a prediction or the reason the image failed.
struct Row {
    path: String,
    outcome: Result<(f32, &'static str), String>,
    latency_ms: f64,
}

pub fn run(args: &ClassifyArgs, out: &mut dyn Write) -> Result<i32, EdgeError> {
    // Gather inputs before loading the model so a typo in a folder name fails
    // fast, without paying for model optimisation.
    let inputs = paths::expand_inputs(&args.paths)?;
    let model_path = args.model.resolve(args.threads, None)?;
    let model = Model::load_with(
        &model_path,
        &LoadOptions {
            threads: args.threads,
            ..LoadOptions::default()
        },
    )?;
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
        let row = classify_one(&model, path);
        if row.outcome.is_err() {
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

fn classify_one(model: &Model, path: &Path) -> Row {
    let t0 = Instant::now();
    let outcome = crate::preprocess::load_image(path)
        .and_then(|img| model.classify(&img))
        .map(|p| (p.p_malignant, p.label.as_str()))
        .map_err(|e| e.to_string());
    Row {
        path: path.display().to_string(),
        outcome,
        latency_ms: t0.elapsed().as_secs_f64() * 1e3,
    }
}

fn header(format: Format, width: usize) -> String {
    match format {
        Format::Table => format!(
            "{:<width$}  {:>11}  {:<9}  {:>10}\n",
            "path", "p_malignant", "label", "latency_ms"
        ),
        Format::Csv => "path,p_malignant,label,latency_ms,error\n".to_string(),
        Format::Jsonl => String::new(),
    }
}

fn render(format: Format, row: &Row, width: usize) -> String {
    match format {
        Format::Table => match &row.outcome {
            Ok((p, label)) => format!(
                "{:<width$}  {:>11.4}  {:<9}  {:>10.2}\n",
                row.path, p, label, row.latency_ms
            ),
            Err(msg) => format!("{:<width$}  {:>11}  {:<9}  {msg}\n", row.path, "-", "error"),
        },
        Format::Csv => match &row.outcome {
            Ok((p, label)) => format!(
                "{},{p:.6},{label},{:.3},\n",
                csv_field(&row.path),
                row.latency_ms
            ),
            Err(msg) => format!(
                "{},,error,{:.3},{}\n",
                csv_field(&row.path),
                row.latency_ms,
                csv_field(msg)
            ),
        },
        Format::Jsonl => {
            let value = match &row.outcome {
                Ok((p, label)) => serde_json::json!({
                    "path": row.path, "p_malignant": p, "label": label, "latency_ms": row.latency_ms,
                }),
                Err(msg) => serde_json::json!({
                    "path": row.path, "p_malignant": null, "label": "error",
                    "latency_ms": row.latency_ms, "error": msg,
                }),
            };
            format!("{value}\n")
        }
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
