//! Fit a Macenko stain reference on a folder of training images and write it (or put it in model cards).
//!
//! ```text
//! cargo run --release -p histoscreen-edge --example stain_fit -- --data DIR [--out FILE.json]
//!     [--card models/x.json ...] [--normalise] [--source TEXT]
//! ```
//! `--out` gets the `stain` section as JSON; each `--card` gets it (and the default `gate`
//! thresholds where it has none) written in place. The trainer calls the same library function,
//! `colour::macenko::fit_reference`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use histoscreen_edge::card::{GateSpec, ModelCard, StainSpec};
use histoscreen_edge::colour::macenko::{fit_reference, REFERENCE_PIXELS_PER_IMAGE};
use histoscreen_edge::{paths, preprocess};

struct Args {
    data: PathBuf,
    out: Option<PathBuf>,
    cards: Vec<PathBuf>,
    normalise: bool,
    source: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut data, mut out, mut cards, mut normalise, mut source) =
        (None, None, vec![], false, None);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--data" => data = Some(PathBuf::from(value("--data")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--card" => cards.push(PathBuf::from(value("--card")?)),
            "--source" => source = Some(value("--source")?),
            "--normalise" => normalise = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        data: data.ok_or("--data DIR is required")?,
        out,
        cards,
        normalise,
        source,
    })
}

/// BreakHis keeps each patient's images in `SOB_<B|M>_<T>_<patient>/<mag>X/`.
fn patient_of(path: &Path) -> Option<String> {
    let dir = path.parent()?.parent()?.file_name()?.to_str()?;
    dir.starts_with("SOB_").then(|| dir.to_string())
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let images = paths::images_under(&args.data).map_err(|e| e.to_string())?;
    if images.is_empty() {
        return Err(format!("{}: no images found", args.data.display()));
    }
    let patients: BTreeSet<String> = images.iter().filter_map(|p| patient_of(p)).collect();
    let mut failed = None;
    let decoded = images
        .iter()
        .map_while(|p| match preprocess::load_image(p) {
            Ok(img) => Some(img),
            Err(e) => {
                failed = Some(e.to_string());
                None
            }
        });
    let mut spec = fit_reference(decoded, REFERENCE_PIXELS_PER_IMAGE)
        .map_err(|e| format!("{}: {e}", args.data.display()))?;
    if let Some(e) = failed {
        return Err(e);
    }
    spec.normalise = args.normalise;
    spec.fitted_on.patients = (!patients.is_empty()).then_some(patients.len());
    spec.fitted_on.source = args.source.unwrap_or_else(|| {
        format!(
            "{} ({} pixels per image on a fixed grid, pooled)",
            args.data.display(),
            REFERENCE_PIXELS_PER_IMAGE
        )
    });
    let text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())? + "\n";
    match &args.out {
        Some(out) => histoscreen_edge::fsutil::write_atomic(out, text.as_bytes())
            .map_err(|e| e.to_string())?,
        None => print!("{text}"),
    }
    for path in &args.cards {
        add_to_card(path, &spec)?;
        eprintln!("{}: stain reference and gate written", path.display());
    }
    Ok(())
}

/// Append `stain` (and the default `gate` where the card has none) to the card's JSON text,
/// leaving every byte before them as it was (a serde round trip would reorder `training`'s keys
/// and re-print its floats).
fn add_to_card(path: &Path, spec: &StainSpec) -> Result<(), String> {
    let card = ModelCard::load(path).map_err(|e| e.to_string())?;
    if card.stain.is_some() {
        return Err(format!(
            "{}: already has a stain section; remove it to refit",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = text
        .trim_end()
        .strip_suffix('}')
        .ok_or_else(|| format!("{}: does not end with a JSON object", path.display()))?
        .trim_end();
    let mut out = format!("{body},\n  \"stain\": {}", pretty(spec)?);
    if card.gate.is_none() {
        out.push_str(&format!(",\n  \"gate\": {}", pretty(&GateSpec::default())?));
    }
    out.push_str("\n}\n");
    let updated: ModelCard =
        serde_json::from_str(&out).map_err(|e| format!("{}: {e}", path.display()))?;
    if updated.stain.as_ref() != Some(spec) {
        return Err(format!(
            "{}: the written stain section does not read back",
            path.display()
        ));
    }
    histoscreen_edge::fsutil::write_atomic(path, out.as_bytes()).map_err(|e| e.to_string())
}

/// Pretty JSON indented to sit one level inside the card.
fn pretty<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v)
        .map(|t| t.replace('\n', "\n  "))
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stain_fit: {e}");
            ExitCode::FAILURE
        }
    }
}
