//! A folder of precision variants of one model (`model.onnx`, `model-int8.onnx`,
//! `model-f16.onnx`, `model-int8-weights.onnx`, ...) and the choice among them.
//!
//! Which variant is fastest depends on the CPU: tract's int8 and f16 kernels are written for
//! ARM, so on x86 those files run many times slower than f32, while on a Pi 5 they may win.
//! `--precision auto` therefore measures, on the device itself, every variant whose recorded
//! accuracy against f32 (from its card, written by the trainer) is within tolerance, takes the
//! fastest, and remembers the choice per CPU so later starts skip the measurement.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::card::{ModelCard, Precision};
use crate::error::EdgeError;
use crate::model::{LoadOptions, Model};
use crate::{fsutil, paths, preprocess};

/// How the model is named on the command line: one file, or a folder of variants.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// ONNX model; its card (same name, .json) must sit beside it.
    #[arg(long, value_name = "ONNX", conflicts_with = "model_dir")]
    pub model: Option<PathBuf>,
    /// Folder of precision variants of one model (each with its card), chosen by --precision.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Variant of --model-dir: `auto` takes the fastest on this CPU whose recorded accuracy is
    /// within tolerance of f32 (measured once, then cached per CPU), or name one: f32, int8,
    /// f16, int8-weights, f16-weights.
    #[arg(long, default_value = "auto", value_name = "auto|PRECISION")]
    pub precision: PrecisionChoice,
    /// Where `--precision auto` keeps its per-CPU choices [default: $CACHE_DIRECTORY,
    /// $XDG_CACHE_HOME/histoscreen or ~/.cache/histoscreen, file precision-auto.json].
    #[arg(long, value_name = "FILE")]
    pub precision_cache: Option<PathBuf>,
    /// Measure again even when a choice for this CPU and these files is cached.
    #[arg(long)]
    pub retime: bool,
    /// Path of the convolutions: `tract`'s own, `winograd` (per layer the fastest Winograd form
    /// whose numerics hold: 3x3 and 5x5 layers, strided ones after space-to-depth), or `auto`
    /// (per layer, the faster of tract's and Winograd's, timed once at load)
    /// [default: $HISTOSCREEN_CONV, else tract].
    #[arg(long, value_name = "auto|tract|winograd")]
    pub conv: Option<crate::winograd::ConvChoice>,
}

/// `auto`, or one [`Precision`] by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrecisionChoice(pub Option<Precision>);

impl std::str::FromStr for PrecisionChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(PrecisionChoice(None));
        }
        Precision::from_str(s, true)
            .map(|p| PrecisionChoice(Some(p)))
            .map_err(|_| {
                let names: Vec<&str> = Precision::value_variants()
                    .iter()
                    .map(|p| p.name())
                    .collect();
                format!("'{s}' is not auto, {}", names.join(", "))
            })
    }
}

/// One file of the folder with its card.
#[derive(Debug, Clone)]
pub struct Variant {
    pub path: PathBuf,
    pub card: ModelCard,
}

impl Variant {
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// Every `*.onnx` in `dir` with a card beside it, f32 first, then by file name.
pub fn find(dir: &Path) -> Result<Vec<Variant>, EdgeError> {
    let entries = std::fs::read_dir(dir).map_err(|e| EdgeError::io("read folder", dir, &e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| EdgeError::io("read folder", dir, &e))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            continue;
        }
        let card_path = ModelCard::card_path_for(&path);
        if !card_path.is_file() {
            tracing::warn!("{}: no card beside it, not a candidate", path.display());
            continue;
        }
        found.push(Variant {
            card: ModelCard::load(&card_path)?,
            path,
        });
    }
    if found.is_empty() {
        return Err(EdgeError::Usage(format!(
            "{}: no ONNX model with its card (.json beside it) in this folder",
            dir.display()
        )));
    }
    let mut names: Vec<&str> = found.iter().map(|v| v.card.name.as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() > 1 {
        return Err(EdgeError::Usage(format!(
            "{}: holds different models ({}); give the folder of one model's variants",
            dir.display(),
            names.join(", ")
        )));
    }
    found.sort_by_key(|v| (v.card.precision != "f32", v.file_name()));
    Ok(found)
}

/// How far a variant's recorded accuracy may be from f32's.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Smallest share of images whose label must agree with f32.
    pub min_agreement: f64,
    /// Largest drop in balanced accuracy against f32.
    pub max_balanced_accuracy_drop: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            min_agreement: 0.98,
            max_balanced_accuracy_drop: 0.01,
        }
    }
}

/// The trainer's check of a variant against f32, as its card records it.
#[derive(Debug, Clone, Copy, Default)]
struct RecordedCheck {
    agreement: Option<f64>,
    balanced_accuracy: Option<f64>,
    balanced_accuracy_f32: Option<f64>,
}

/// `None` when the card has no check at all.
fn recorded_check(card: &ModelCard) -> Option<RecordedCheck> {
    let check = card
        .metrics
        .get("precision_check")
        .and_then(|c| c.get("against_f32"))?;
    let number = |k: &str| check.get(k).and_then(serde_json::Value::as_f64);
    Some(RecordedCheck {
        agreement: number("label_agreement"),
        balanced_accuracy: number("balanced_accuracy"),
        balanced_accuracy_f32: number("balanced_accuracy_f32"),
    })
}

/// Why the card says this variant may not stand in for f32; `None` when it may.
pub fn accuracy_rejection(card: &ModelCard, tol: &Tolerance) -> Option<String> {
    if card.precision == "f32" {
        return None;
    }
    let Some(check) = recorded_check(card) else {
        return Some(
            "its card records no accuracy check against f32 (export it with --data)".into(),
        );
    };
    let (Some(agree), Some(bal), Some(bal_f32)) = (
        check.agreement,
        check.balanced_accuracy,
        check.balanced_accuracy_f32,
    ) else {
        return Some("its card's accuracy check against f32 is incomplete".into());
    };
    if agree < tol.min_agreement {
        return Some(format!(
            "labels agree with f32 on {:.1}% of images, below {:.1}%",
            agree * 100.0,
            tol.min_agreement * 100.0
        ));
    }
    // A bare comparison would reject a variant for rounding in the fourth decimal.
    if bal_f32 - bal > tol.max_balanced_accuracy_drop + 1e-9 {
        return Some(format!(
            "balanced accuracy {bal:.3} against f32's {bal_f32:.3}, more than {:.3} lower",
            tol.max_balanced_accuracy_drop
        ));
    }
    None
}

/// Latencies of one variant and the kernels tract chose for it.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub runs_ms: Vec<f64>,
    pub kernels: Vec<String>,
}

/// Something that can time a variant: the wall clock on the device, a script in tests.
pub trait Timer {
    /// `runs` timed inferences of `variant` (loading and warm-up are not timed).
    fn time(&mut self, variant: &Variant, runs: usize) -> Result<Timing, EdgeError>;
}

/// Times inference of the bench image with the edge's runner, each model loaded once.
pub struct WallClock {
    threads: usize,
    warmup: usize,
    image: image::RgbImage,
    models: HashMap<PathBuf, Model>,
}

impl WallClock {
    /// `image` to time on; without one, the shared bench image, or on a board that has none, a
    /// flat H&E-coloured frame (a network's time does not depend on what the pixels show).
    pub fn new(threads: usize, warmup: usize, image: Option<&Path>) -> Result<Self, EdgeError> {
        let image = match image {
            Some(path) => preprocess::load_image(path)?,
            None => preprocess::load_image(&paths::default_bench_image()).unwrap_or_else(|_| {
                let side = preprocess::INPUT_SIZE;
                image::RgbImage::from_pixel(side, side, image::Rgb([200, 150, 190]))
            }),
        };
        Ok(WallClock {
            threads,
            warmup,
            image,
            models: HashMap::new(),
        })
    }
}

impl Timer for WallClock {
    fn time(&mut self, variant: &Variant, runs: usize) -> Result<Timing, EdgeError> {
        if !self.models.contains_key(&variant.path) {
            let model = Model::load_with(
                &variant.path,
                &LoadOptions {
                    threads: self.threads,
                    ..LoadOptions::default()
                },
            )?;
            for _ in 0..self.warmup {
                model.classify(&self.image)?;
            }
            self.models.insert(variant.path.clone(), model);
        }
        let model = &self.models[&variant.path];
        let mut chw = vec![0f32; model.image_len()];
        model.preprocess_into(&self.image, &mut chw);
        let mut runs_ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            model.predict(&chw)?;
            runs_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(Timing {
            runs_ms,
            kernels: model.kernels(),
        })
    }
}

/// A variant whose first run is this many times slower than the fastest median so far is
/// not timed further: it cannot win, and an f16 file on a CPU without FP16 takes seconds.
pub const SLOW_FACTOR: f64 = 3.0;

/// One variant's line in the survey.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub file: String,
    pub precision: String,
    pub size_bytes: u64,
    /// Median latency, milliseconds; `None` for a variant not timed (cut short after one
    /// run, rejected, or failing).
    pub ms: Option<f64>,
    pub runs: usize,
    /// The single run of a variant cut short as hopelessly slow: not a median.
    #[serde(default)]
    pub first_run_ms: Option<f64>,
    pub kernels: Vec<String>,
    /// Recorded label agreement and balanced-accuracy change against f32, when the card has them.
    pub agreement: Option<f64>,
    pub balanced_accuracy_change: Option<f64>,
    /// Why the card's accuracy rules it out.
    pub accuracy_rejection: Option<String>,
    /// Why its timing was cut short.
    pub speed_note: Option<String>,
    pub error: Option<String>,
}

impl Row {
    fn eligible(&self) -> bool {
        self.accuracy_rejection.is_none() && self.error.is_none() && self.ms.is_some()
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
}

/// Times the variants (f32 first) `runs` times each. Variants the card rules out are timed
/// only when `time_rejected` (bench shows them; auto skips them).
pub fn survey(
    variants: &[Variant],
    tol: &Tolerance,
    timer: &mut dyn Timer,
    runs: usize,
    time_rejected: bool,
) -> Vec<Row> {
    let mut best: Option<(f64, String)> = None;
    let mut rows = Vec::with_capacity(variants.len());
    for v in variants {
        let check = recorded_check(&v.card).unwrap_or_default();
        let mut row = Row {
            file: v.file_name(),
            precision: v.card.precision.clone(),
            size_bytes: v.card.size_bytes,
            ms: None,
            runs: 0,
            first_run_ms: None,
            kernels: Vec::new(),
            agreement: check.agreement,
            balanced_accuracy_change: check
                .balanced_accuracy
                .zip(check.balanced_accuracy_f32)
                .map(|(b, f)| b - f),
            accuracy_rejection: accuracy_rejection(&v.card, tol),
            speed_note: None,
            error: None,
        };
        if row.accuracy_rejection.is_some() && !time_rejected {
            rows.push(row);
            continue;
        }
        let first = match timer.time(v, 1) {
            Ok(t) => t,
            Err(e) => {
                row.error = Some(e.to_string());
                rows.push(row);
                continue;
            }
        };
        row.kernels = first.kernels;
        let first_ms = first.runs_ms.first().copied().unwrap_or(f64::NAN);
        match &best {
            Some((best_ms, best_file)) if first_ms > SLOW_FACTOR * best_ms => {
                row.first_run_ms = Some(first_ms);
                row.runs = 1;
                row.speed_note = Some(format!(
                    "not timed: {:.1}x slower than {best_file} in its first run ({first_ms:.1} ms)",
                    first_ms / best_ms
                ));
            }
            _ => match timer.time(v, runs.max(1)) {
                Ok(t) => {
                    row.ms = median(&t.runs_ms);
                    row.runs = t.runs_ms.len();
                }
                Err(e) => row.error = Some(e.to_string()),
            },
        }
        if let Some(ms) = row
            .ms
            .filter(|_| row.eligible() && row.speed_note.is_none())
        {
            if best.as_ref().is_none_or(|(b, _)| ms < *b) {
                best = Some((ms, row.file.clone()));
            }
        }
        rows.push(row);
    }
    rows
}

/// Medians within this fraction of the fastest count as equally fast: two calls on an idle
/// machine differ by a few percent, and a choice that followed that noise would change the
/// deployed file from one start to the next.
pub const TIE_FRACTION: f64 = 0.10;

/// What wins a tie: f32 (the reference itself), then the smaller file, then the name.
fn tie_order(r: &Row) -> (bool, u64, &str) {
    (r.precision != "f32", r.size_bytes, &r.file)
}

/// The eligible row `--precision auto` takes: the fastest, or among the rows within
/// [`TIE_FRACTION`] of it, f32, then the smaller file.
pub fn fastest(rows: &[Row]) -> Option<&Row> {
    let eligible = || rows.iter().filter(|r| r.eligible());
    let min = eligible().filter_map(|r| r.ms).min_by(f64::total_cmp)?;
    eligible()
        .filter(|r| r.ms.is_some_and(|ms| ms <= min * (1.0 + TIE_FRACTION)))
        .min_by_key(|r| tie_order(r))
}

const TIE_RULE: &str = "ties go to f32, then to the smaller file";

/// The variant `--precision auto` settled on, and how.
#[derive(Debug, Clone)]
pub struct Choice {
    pub path: PathBuf,
    pub rows: Vec<Row>,
    pub from_cache: bool,
}

/// This CPU as `/proc/cpuinfo` names it, and the architecture.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    let name = field("model name")
        .or_else(|| field("Model"))
        .or_else(|| field("Hardware"))
        .or_else(|| field("CPU part").map(|p| format!("CPU part {p}")))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{name} ({})", std::env::consts::ARCH)
}

/// Default place of the per-CPU choices: systemd's `CacheDirectory=`, XDG, or ~/.cache.
pub fn default_cache_file() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("CACHE_DIRECTORY")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("histoscreen")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("histoscreen")))?;
    Some(dir.join("precision-auto.json"))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// Key: hash of CPU, thread count, tract's switches and the candidate files.
    entries: BTreeMap<String, CachedChoice>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedChoice {
    cpu: String,
    threads: usize,
    chosen: String,
    sha256: String,
    rows: Vec<Row>,
}

/// Everything that may change the answer: the CPU, the threads, tract's CPU switches (qemu and
/// tests force kernels with them) and the exact files.
fn cache_key(variants: &[Variant], threads: usize, cpu: &str) -> String {
    let mut h = Sha256::new();
    h.update(cpu.as_bytes());
    h.update(threads.to_le_bytes());
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TRACT_") || k == "QEMU_CPU")
        .collect();
    env.sort();
    for (k, v) in env {
        h.update(format!("\n{k}={v}").as_bytes());
    }
    for v in variants {
        h.update(format!("\n{}:{}", v.file_name(), v.card.sha256).as_bytes());
    }
    hex::encode(h.finalize())
}

fn read_cache(path: &Path) -> CacheFile {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: unreadable precision cache, ignored ({e})",
                path.display()
            );
            CacheFile::default()
        }),
        Err(_) => CacheFile::default(),
    }
}

/// `--precision auto` over `dir`: the cached choice for this CPU and these files, or a fresh
/// survey (saved to `cache` when given; a cache that cannot be written is only a warning).
pub fn choose(
    dir: &Path,
    tol: &Tolerance,
    threads: usize,
    cache: Option<&Path>,
    retime: bool,
    timer: &mut dyn Timer,
) -> Result<Choice, EdgeError> {
    let variants = find(dir)?;
    let cpu = cpu_description();
    let key = cache_key(&variants, threads, &cpu);
    let mut file = cache.map(read_cache).unwrap_or_default();
    if !retime {
        if let Some(hit) = file.entries.get(&key) {
            if let Some(v) = variants.iter().find(|v| v.file_name() == hit.chosen) {
                return Ok(Choice {
                    path: v.path.clone(),
                    rows: hit.rows.clone(),
                    from_cache: true,
                });
            }
        }
    }
    let rows = survey(&variants, tol, timer, AUTO_RUNS, false);
    let Some(best) = fastest(&rows) else {
        let reasons: Vec<String> = rows
            .iter()
            .map(|r| format!("{}: {}", r.file, rejection(r, None)))
            .collect();
        return Err(EdgeError::Usage(format!(
            "{}: no variant is both within tolerance of f32 and runnable here ({})",
            dir.display(),
            reasons.join("; ")
        )));
    };
    let chosen = variants
        .iter()
        .find(|v| v.file_name() == best.file)
        .expect("rows come from the variants");
    if let Some(path) = cache {
        file.entries.insert(
            key,
            CachedChoice {
                cpu,
                threads,
                chosen: best.file.clone(),
                sha256: chosen.card.sha256.clone(),
                rows: rows.clone(),
            },
        );
        let saved = serde_json::to_vec_pretty(&file)
            .map_err(|e| EdgeError::Usage(e.to_string()))
            .and_then(|bytes| {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| EdgeError::io("create folder", parent, &e))?;
                }
                fsutil::write_atomic(path, &bytes)
            });
        if let Err(e) = saved {
            tracing::warn!("precision choice not cached: {e}");
        }
    }
    Ok(Choice {
        path: chosen.path.clone(),
        rows,
        from_cache: false,
    })
}

/// Timed runs per variant for `--precision auto`: enough for a stable median of a 20 ms
/// network, few enough that the choice costs a second or two at start-up.
pub const AUTO_RUNS: usize = 10;

/// Why `row` was not (or would not be) chosen over `chosen`.
pub fn rejection(row: &Row, chosen: Option<&Row>) -> String {
    if let Some(e) = &row.error {
        return format!("does not run here: {e}");
    }
    if let Some(r) = &row.accuracy_rejection {
        return r.clone();
    }
    if let Some(n) = &row.speed_note {
        return n.clone();
    }
    match (row.ms, chosen.and_then(|c| c.ms)) {
        // Faster than the choice yet not chosen: it tied with it.
        (Some(ms), Some(best)) if ms < best => format!(
            "{ms:.1} ms against {best:.1} ms is a tie (within {:.0}%): {TIE_RULE}",
            TIE_FRACTION * 100.0
        ),
        (Some(ms), Some(best)) => format!("slower: {ms:.1} ms against {best:.1} ms"),
        _ => "not timed".into(),
    }
}

/// Why the choice is not the fastest row, when it is not; empty otherwise.
fn tie_note(rows: &[Row], chosen: &Row) -> String {
    let faster: Vec<&str> = rows
        .iter()
        .filter(|r| r.eligible() && r.ms.zip(chosen.ms).is_some_and(|(a, b)| a < b))
        .map(|r| r.file.as_str())
        .collect();
    if faster.is_empty() {
        return String::new();
    }
    format!(
        "; tied with the faster {} (within {:.0}%): {TIE_RULE}",
        faster.join(", "),
        TIE_FRACTION * 100.0
    )
}

/// One line per variant on stderr: what auto chose, with its kernels, and why not the others.
pub fn explain(choice: &Choice) -> Vec<String> {
    let chosen_file = choice
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let chosen = choice.rows.iter().find(|r| r.file == chosen_file);
    let mut lines = Vec::new();
    if let Some(c) = chosen {
        lines.push(format!(
            "precision auto: {} ({}, {:.1} ms median{}{}; kernels {})",
            c.file,
            c.precision,
            c.ms.unwrap_or(f64::NAN),
            if choice.from_cache {
                ", cached for this CPU"
            } else {
                ""
            },
            tie_note(&choice.rows, c),
            if c.kernels.is_empty() {
                "none reported".to_string()
            } else {
                c.kernels.join(", ")
            }
        ));
    }
    for r in &choice.rows {
        if r.file != chosen_file {
            lines.push(format!(
                "precision auto: not {} ({}): {}",
                r.file,
                r.precision,
                rejection(r, chosen)
            ));
        }
    }
    lines
}

impl ModelArgs {
    /// The model file these arguments name; `default` when they name none.
    pub fn resolve(&self, threads: usize, default: Option<PathBuf>) -> Result<PathBuf, EdgeError> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let Some(dir) = &self.model_dir else {
            return default.ok_or_else(|| {
                EdgeError::Usage("give a model: --model FILE or --model-dir DIR".into())
            });
        };
        if let Some(precision) = self.precision.0 {
            let variants = find(dir)?;
            let want = precision.name();
            return variants
                .iter()
                .find(|v| v.card.precision == want)
                .map(|v| v.path.clone())
                .ok_or_else(|| {
                    EdgeError::Usage(format!(
                        "{}: no {want} variant (has {})",
                        dir.display(),
                        variants
                            .iter()
                            .map(|v| format!("{} {}", v.file_name(), v.card.precision))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                });
        }
        let cache = self.precision_cache.clone().or_else(default_cache_file);
        let mut timer = WallClock::new(threads, 2, None)?;
        let choice = choose(
            dir,
            &Tolerance::default(),
            threads,
            cache.as_deref(),
            self.retime,
            &mut timer,
        )?;
        for line in explain(&choice) {
            eprintln!("{line}");
        }
        Ok(choice.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{InputSpec, OutputSpec};
    use serde_json::json;

    /// Scripted latencies per precision; counts how often each variant was timed.
    struct FakeTimer {
        ms: BTreeMap<&'static str, f64>,
        calls: BTreeMap<String, usize>,
    }

    impl FakeTimer {
        fn x86() -> Self {
            // The shape measured on x86: int8 and f16 far slower than f32, the storage-only
            // variants as fast as f32.
            FakeTimer {
                ms: BTreeMap::from([
                    ("f32", 24.0),
                    ("int8-weights", 23.5),
                    ("f16-weights", 24.5),
                    ("int8", 310.0),
                    ("f16", 9000.0),
                ]),
                calls: BTreeMap::new(),
            }
        }
    }

    impl Timer for FakeTimer {
        fn time(&mut self, v: &Variant, runs: usize) -> Result<Timing, EdgeError> {
            *self.calls.entry(v.file_name()).or_default() += runs;
            let ms = self.ms[v.card.precision.as_str()];
            Ok(Timing {
                runs_ms: vec![ms; runs],
                kernels: vec![format!("fake_{}", v.card.precision)],
            })
        }
    }

    fn card(precision: &str, check: Option<(f64, f64, f64)>) -> ModelCard {
        let metrics = match check {
            Some((agree, bal, bal_f32)) => json!({"precision_check": {"against_f32": {
                "label_agreement": agree, "balanced_accuracy": bal,
                "balanced_accuracy_f32": bal_f32}}}),
            None => json!({}),
        };
        ModelCard {
            format_version: crate::card::CARD_FORMAT_VERSION,
            name: "histoscreen-alexnet-compact".into(),
            architecture: "alexnet".into(),
            head: "compact".into(),
            precision: precision.into(),
            onnx_file: "x.onnx".into(),
            sha256: format!("{precision}-hash"),
            size_bytes: 1000,
            classes: vec!["benign".into(), "malignant".into()],
            input: InputSpec::imagenet(1),
            output: OutputSpec {
                name: "probs".into(),
                shape: vec![1, 2],
            },
            threshold: 0.5,
            uncertain_band: 0.1,
            split_seed: Some(1),
            training: json!({}),
            metrics,
            field: None,
            stain: None,
            gate: None,
        }
    }

    /// Writes the cards (the ONNX files are empty: the fake timer never opens them).
    fn folder(cards: &[(&str, ModelCard)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (file, card) in cards {
            let onnx = dir.path().join(file);
            std::fs::write(&onnx, b"").unwrap();
            card.save(&ModelCard::card_path_for(&onnx)).unwrap();
        }
        dir
    }

    fn auto(
        dir: &Path,
        threads: usize,
        cache: Option<&Path>,
        retime: bool,
        timer: &mut FakeTimer,
    ) -> Choice {
        choose(dir, &Tolerance::default(), threads, cache, retime, timer).unwrap()
    }

    fn standard_folder() -> tempfile::TempDir {
        folder(&[
            ("model.onnx", card("f32", None)),
            ("model-int8.onnx", card("int8", Some((0.988, 0.640, 0.635)))),
            (
                "model-int8-weights.onnx",
                card("int8-weights", Some((1.0, 0.635, 0.635))),
            ),
            ("model-f16.onnx", card("f16", Some((1.0, 0.635, 0.635)))),
        ])
    }

    #[test]
    fn auto_on_x86_timings_keeps_f32_on_a_tie_and_never_the_slow_int8_or_f16() {
        let dir = standard_folder();
        let mut timer = FakeTimer::x86();
        let choice = auto(dir.path(), 1, None, false, &mut timer);
        // int8-weights at 23.5 ms is within 10% of f32's 24.0 ms: a tie, which f32 wins.
        assert_eq!(
            choice.path.file_name().unwrap(),
            "model.onnx",
            "{:?}",
            choice.rows
        );
        // The slow variants were run once, not the full AUTO_RUNS, and have no median.
        assert_eq!(timer.calls["model-int8.onnx"], 1);
        assert_eq!(timer.calls["model-f16.onnx"], 1);
        assert_eq!(timer.calls["model.onnx"], 1 + AUTO_RUNS);
        let int8 = choice.rows.iter().find(|r| r.precision == "int8").unwrap();
        assert_eq!((int8.ms, int8.first_run_ms), (None, Some(310.0)));
        let text = explain(&choice).join("\n");
        assert!(text.contains("precision auto: model.onnx (f32, 24.0 ms median; tied with the faster model-int8-weights.onnx (within 10%): ties go to f32, then to the smaller file; kernels fake_f32)"), "{text}");
        assert!(text.contains("not model-int8.onnx (int8): not timed: 13.2x slower than model-int8-weights.onnx in its first run (310.0 ms)"), "{text}");
        assert!(
            text.contains("not model-int8-weights.onnx (int8-weights): 23.5 ms against 24.0 ms is a tie (within 10%)"),
            "{text}"
        );
    }

    #[test]
    fn a_tie_without_f32_goes_to_the_smaller_file_whichever_is_faster_this_time() {
        let mut small = card("int8-weights", Some((1.0, 0.635, 0.635)));
        small.size_bytes = 250;
        let mut large = card("f16-weights", Some((1.0, 0.635, 0.635)));
        large.size_bytes = 500;
        let dir = folder(&[
            ("model.onnx", card("f32", None)),
            ("model-int8-weights.onnx", small),
            ("model-f16-weights.onnx", large),
        ]);
        for (int8_weights, f16_weights) in [(20.0, 21.0), (21.0, 20.0)] {
            let mut timer = FakeTimer::x86();
            timer.ms.insert("f32", 40.0);
            timer.ms.insert("int8-weights", int8_weights);
            timer.ms.insert("f16-weights", f16_weights);
            let choice = auto(dir.path(), 1, None, false, &mut timer);
            assert_eq!(
                choice.path.file_name().unwrap(),
                "model-int8-weights.onnx",
                "{:?}",
                choice.rows
            );
        }
    }

    #[test]
    fn auto_on_arm_like_timings_takes_int8_when_its_accuracy_holds() {
        let dir = standard_folder();
        let mut timer = FakeTimer::x86();
        timer.ms.insert("int8", 9.0);
        timer.ms.insert("f16", 14.0);
        let choice = auto(dir.path(), 1, None, false, &mut timer);
        assert_eq!(choice.path.file_name().unwrap(), "model-int8.onnx");
    }

    #[test]
    fn inaccurate_or_unchecked_variants_are_rejected_with_the_reason_and_never_timed() {
        let dir = folder(&[
            ("model.onnx", card("f32", None)),
            ("model-int8.onnx", card("int8", Some((0.95, 0.64, 0.635)))),
            ("model-f16.onnx", card("f16", Some((0.99, 0.60, 0.635)))),
            ("model-int8-weights.onnx", card("int8-weights", None)),
        ]);
        let mut timer = FakeTimer::x86();
        timer.ms.insert("int8", 1.0);
        timer.ms.insert("f16", 1.0);
        timer.ms.insert("int8-weights", 1.0);
        let choice = auto(dir.path(), 1, None, false, &mut timer);
        assert_eq!(choice.path.file_name().unwrap(), "model.onnx");
        assert_eq!(
            timer.calls.len(),
            1,
            "only f32 was timed: {:?}",
            timer.calls
        );
        let text = explain(&choice).join("\n");
        assert!(
            text.contains("labels agree with f32 on 95.0% of images, below 98.0%"),
            "{text}"
        );
        assert!(
            text.contains("balanced accuracy 0.600 against f32's 0.635, more than 0.010 lower"),
            "{text}"
        );
        assert!(text.contains("no accuracy check against f32"), "{text}");
    }

    #[test]
    fn the_choice_is_cached_per_cpu_and_files_and_retimed_on_request() {
        let dir = standard_folder();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("sub/precision-auto.json");
        let mut first = FakeTimer::x86();
        let a = auto(dir.path(), 1, Some(&cache), false, &mut first);
        assert!(!a.from_cache);
        assert!(cache.is_file());

        let mut second = FakeTimer::x86();
        let b = auto(dir.path(), 1, Some(&cache), false, &mut second);
        assert!(b.from_cache);
        assert_eq!(a.path, b.path);
        assert!(second.calls.is_empty(), "a cached choice times nothing");

        // Another thread count is another measurement.
        let mut third = FakeTimer::x86();
        let c = auto(dir.path(), 2, Some(&cache), false, &mut third);
        assert!(!c.from_cache);

        let mut fourth = FakeTimer::x86();
        fourth.ms.insert("int8", 5.0);
        let d = auto(dir.path(), 1, Some(&cache), true, &mut fourth);
        assert!(!d.from_cache);
        assert_eq!(d.path.file_name().unwrap(), "model-int8.onnx");
    }

    #[test]
    fn a_folder_of_different_models_or_no_models_is_refused() {
        let mut other = card("int8", Some((1.0, 0.6, 0.6)));
        other.name = "another-model".into();
        let dir = folder(&[("model.onnx", card("f32", None)), ("b.onnx", other)]);
        let e = find(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("holds different models (another-model, histoscreen-alexnet-compact)"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = find(empty.path()).unwrap_err().to_string();
        assert!(e.contains("no ONNX model with its card"), "{e}");
    }

    #[test]
    fn an_explicit_precision_names_its_file_or_lists_what_there_is() {
        let dir = standard_folder();
        let args = ModelArgs {
            model_dir: Some(dir.path().to_path_buf()),
            precision: PrecisionChoice(Some(Precision::Int8)),
            ..ModelArgs::default()
        };
        assert_eq!(
            args.resolve(1, None).unwrap().file_name().unwrap(),
            "model-int8.onnx"
        );
        let args = ModelArgs {
            precision: PrecisionChoice(Some(Precision::F16Weights)),
            ..args
        };
        let e = args.resolve(1, None).unwrap_err().to_string();
        assert!(
            e.contains("no f16-weights variant (has model.onnx f32, "),
            "{e}"
        );
    }
}
