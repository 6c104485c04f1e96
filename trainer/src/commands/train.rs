//! `train`: fits on some patients, scores the others through the exported ONNX, and writes
//! the model, its card, `report.json` and the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use histoscreen_edge::card::{GateSpec, ModelCard, Precision, StainSpec};
use histoscreen_edge::colour::macenko::REFERENCE_PIXELS_PER_IMAGE;
use histoscreen_edge::colour::{fit_reference, Normaliser, Shift};
use histoscreen_edge::fsutil::write_atomic;
use histoscreen_edge::run::shutdown::StopFlag;

use crate::commands::eval::parse_shifts;
use crate::commands::export::export_variants;
use crate::commands::DataSource;
use crate::data::augment::ColourAugment;
use crate::data::dataset::{Class, Sample, Summary};
use crate::data::images::{self, LoadedImage};
use crate::data::split::{self, Split};
use crate::eval::colour_shift::{colour_shift_table, ShiftSummary, ShiftTable};
use crate::eval::metrics::{mean_sd, Metrics};
use crate::eval::score::{evaluate, load_model, Evaluation};
use crate::eval::seen::PATIENTS_TRAINED;
use crate::export::calibrate::Calibration;
use crate::export::model_file::{self, CardInfo};
use crate::fit::checkpoint::{Checkpointer, Completed, Interrupted};
use crate::fit::config::{Schedule, TrainConfig};
use crate::fit::history::{FoldReport, TrainReport};
use crate::fit::train::{self, Checkpointing};
use crate::model::alexnet::{AlexNet, Freeze, Head};
use crate::model::device::device;
use crate::model::feature_bank::FeatureBank;
use crate::model::pretrained::{load_pretrained, LoadReport};
use crate::report::write_report;

/// What `train` is asked to do.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub data: DataSource,
    /// ImageNet weights to start from; `None` trains from random initialisation.
    pub pretrained: Option<PathBuf>,
    pub out: PathBuf,
    pub epochs: usize,
    pub batch: usize,
    /// `None`: the head's own default.
    pub lr: Option<f64>,
    pub momentum: f64,
    /// `None`: the head's own default.
    pub weight_decay: Option<f64>,
    pub schedule: Schedule,
    pub seed: u64,
    pub head: Head,
    pub hidden: usize,
    pub freeze: Freeze,
    pub val_fraction: f64,
    pub select_fraction: f64,
    pub folds: Option<usize>,
    pub class_weighting: bool,
    pub augment: bool,
    pub feature_views: usize,
    /// Train on Macenko-normalised images (a reference per run, fitted on its training
    /// patients) and have the edge normalise likewise.
    pub stain_norm: bool,
    pub colour_augment: ColourAugment,
    /// `all` or a comma list of colour shifts each fold's test patients are also scored under.
    pub colour_shifts: Option<String>,
    pub threshold: f32,
    pub uncertain_band: f32,
    /// Continue the interrupted run whose checkpoint is in `out`.
    pub resume: bool,
    /// Precisions written beside `model.onnx`.
    pub export: Vec<Precision>,
    pub calibration: Calibration,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// Trains until done or stopped by a signal; a stopped run exits as the edge's `run` does.
pub fn run(job: &TrainJob) -> Result<i32> {
    let stop = StopFlag::new();
    stop.on_signals()?;
    match train_command(job, stop.clone()) {
        // 128 + the signal, as the edge's `run` exits: 130 for Ctrl-C, 143 for SIGTERM.
        Err(e) if e.is::<Interrupted>() => {
            histoscreen_edge::stdio::eprint_line(&format!("histoscreen-train: {e}"));
            Ok(stop.signal_exit_code().unwrap_or(130))
        }
        other => other.map(|_| 0),
    }
}

fn by_patients<'a>(all: &'a [LoadedImage], patients: &[String]) -> Vec<&'a LoadedImage> {
    all.iter()
        .filter(|x| patients.contains(&x.sample.patient))
        .collect()
}

fn patients_of(images: &[LoadedImage], names: &[String]) -> BTreeMap<String, Class> {
    images
        .iter()
        .filter(|x| names.contains(&x.sample.patient))
        .map(|x| (x.sample.patient.clone(), x.sample.class))
        .collect()
}

fn summarise(runs: &[FoldReport]) -> BTreeMap<String, (f64, f64)> {
    let tests: Vec<&Metrics> = runs
        .iter()
        .filter_map(|r| r.test.as_ref().map(|t| &t.metrics))
        .collect();
    let pick = |f: fn(&Metrics) -> f64| mean_sd(&tests.iter().map(|m| f(m)).collect::<Vec<_>>());
    let mut s = BTreeMap::new();
    s.insert("accuracy".into(), pick(|m| m.accuracy));
    s.insert("balanced_accuracy".into(), pick(|m| m.balanced_accuracy));
    s.insert("patient_accuracy".into(), pick(|m| m.patient_accuracy));
    s.insert("sensitivity".into(), pick(|m| m.sensitivity));
    s.insert("specificity".into(), pick(|m| m.specificity));
    s.insert("roc_auc".into(), pick(|m| m.roc_auc.unwrap_or(f64::NAN)));
    s
}

/// What a run's exported model scored on its test patients.
struct Tested {
    evaluation: Option<Evaluation>,
    colour_shift: Option<ShiftTable>,
}

fn export_and_evaluate(
    model: &AlexNet,
    onnx_path: &Path,
    info: CardInfo,
    test: &[&LoadedImage],
    shifts: Option<(&[Shift], &str)>,
) -> Result<Tested> {
    let bytes = model_file::onnx_f32(model, "histoscreen AlexNet, benign vs malignant")?;
    model_file::write_model(&bytes, onnx_path, model.head(), info)?;
    if test.is_empty() {
        return Ok(Tested {
            evaluation: None,
            colour_shift: None,
        });
    }
    // The exported file through the edge, stain normalisation included: the device's path.
    let edge = load_model(onnx_path)?;
    let samples: Vec<&Sample> = test.iter().map(|x| &x.sample).collect();
    let evaluation = evaluate(&edge, &samples);
    let colour_shift = shifts
        .map(|(shifts, who)| colour_shift_table(&edge, &samples, &evaluation.metrics, shifts, who));
    Ok(Tested {
        evaluation: Some(evaluation),
        colour_shift,
    })
}

/// A stain reference fitted on `images` (the run's training patients), recorded in the card:
/// with `normalise` the model is trained on, and the edge applies, images normalised to it;
/// either way it anchors the not-H&E gate's stain angle.
fn stain_reference(images: &[&LoadedImage], normalise: bool, who: &str) -> Result<StainSpec> {
    let patients: std::collections::BTreeSet<&str> =
        images.iter().map(|x| x.sample.patient.as_str()).collect();
    let mut spec = fit_reference(
        images.iter().map(|x| x.field_view.clone()),
        REFERENCE_PIXELS_PER_IMAGE,
    )
    .map_err(|e| anyhow::anyhow!("cannot fit a stain reference on {who}: {e}"))?;
    spec.normalise = normalise;
    spec.fitted_on.patients = Some(patients.len());
    spec.fitted_on.source = format!("BreakHis, {who}, at the model's scale");
    Ok(spec)
}

/// The images a run trains on, and its feature bank: with stain normalisation both are the
/// run's own (normalised to its reference); otherwise the shared ones.
struct RunInputs<'a> {
    stain: StainSpec,
    normalised: Option<Vec<LoadedImage>>,
    bank: Option<FeatureBank>,
    shared_bank: Option<&'a FeatureBank>,
}

impl<'a> RunInputs<'a> {
    fn prepare(
        config: &TrainConfig,
        trunk: &AlexNet,
        training: &[&LoadedImage],
        who: &str,
        shared_bank: Option<&'a FeatureBank>,
        progress: bool,
    ) -> Result<Self> {
        let stain = stain_reference(training, config.stain_norm, who)?;
        if !config.stain_norm {
            return Ok(RunInputs {
                stain,
                normalised: None,
                bank: None,
                shared_bank,
            });
        }
        let normalised = images::all_stain_normalised(training, &Normaliser::new(&stain));
        let bank = config
            .stores_features()
            .then(|| build_bank(config, trunk, &normalised, progress));
        Ok(RunInputs {
            stain,
            normalised: Some(normalised),
            bank,
            shared_bank: None,
        })
    }

    /// The images the run trains on: its training patients' normalised, or `all` as they are.
    fn images<'b>(&'b self, all: &'b [LoadedImage]) -> &'b [LoadedImage] {
        self.normalised.as_deref().unwrap_or(all)
    }

    fn bank(&self) -> Option<&FeatureBank> {
        self.bank.as_ref().or(self.shared_bank)
    }
}

/// Runs the frozen trunk once over every image and augmented view (see [`FeatureBank`]).
fn build_bank(
    config: &TrainConfig,
    trunk: &AlexNet,
    images: &[LoadedImage],
    progress: bool,
) -> FeatureBank {
    let views = if config.augment {
        config.feature_views
    } else {
        0
    };
    FeatureBank::build(
        trunk,
        images,
        views,
        config.seed,
        &config.augmentation(),
        &device(),
        progress,
    )
}

fn card_info(
    job: &TrainJob,
    name: &str,
    training: serde_json::Value,
    metrics: serde_json::Value,
    stain: StainSpec,
) -> CardInfo {
    CardInfo {
        name: name.into(),
        precision: "f32".into(),
        threshold: job.threshold,
        uncertain_band: job.uncertain_band,
        split_seed: Some(job.seed),
        training,
        metrics,
        stain: Some(stain),
        gate: Some(GateSpec::default()),
    }
}

/// Everything that decides a training result, hashed: `--resume` refuses a checkpoint made
/// with anything else.
fn fingerprint(job: &TrainJob, config: &TrainConfig, images: &[LoadedImage]) -> Result<String> {
    let files: Vec<String> = images
        .iter()
        .map(|x| x.sample.path.display().to_string())
        .collect();
    let v = json!({
        "config": config,
        "folds": job.folds,
        "val_fraction": job.val_fraction,
        "select_fraction": job.select_fraction,
        "threshold": job.threshold,
        "uncertain_band": job.uncertain_band,
        "images": files,
    });
    Ok(model_file::sha256_hex(&serde_json::to_vec(&v)?))
}

/// Trains as asked and writes `model.onnx`, `model.json`, `report.json` into `--out`; a
/// checkpoint in `--out/checkpoint` after every epoch and when `stop` is raised.
pub fn train_command(job: &TrainJob, stop: StopFlag) -> Result<TrainReport> {
    let started = Instant::now();
    std::fs::create_dir_all(&job.out)
        .with_context(|| format!("{}: cannot create output folder", job.out.display()))?;
    let probe = job.out.join(".histoscreen-write-test");
    write_atomic(&probe, b"")?;
    let _ = std::fs::remove_file(&probe);

    // Loading the weights here fails fast on a bad file, before a minute of decoding images;
    // the loaded trunk then computes the stored features.
    let mut trunk = AlexNet::new(job.head, &device());
    let pretrained = if let Some(p) = job.pretrained.clone() {
        if !p.is_file() {
            bail!(
                "{}: pretrained weights file not found (pass --pretrained FILE or --no-pretrained)",
                p.display()
            );
        }
        load_pretrained(&mut trunk, &p)?;
        Some(p)
    } else {
        None
    };
    let ds = job.data.scan()?;
    let (images, mut rejected) = images::load(&ds.samples);
    rejected.extend(ds.rejected.iter().cloned());
    for r in &rejected {
        tracing::warn!("skipped {}: {}", r.path.display(), r.reason);
    }
    if images.is_empty() {
        bail!("no readable BreakHis images");
    }
    let usable: Vec<Sample> = images.iter().map(|x| x.sample.clone()).collect();
    let summary = Summary::of(&usable);
    tracing::info!("data: {summary}");

    let config = TrainConfig {
        epochs: job.epochs,
        batch: job.batch,
        lr: job.lr.unwrap_or(match job.head {
            Head::Classic => 0.001,
            Head::Compact => 0.01,
        }),
        momentum: job.momentum,
        weight_decay: job.weight_decay.unwrap_or(match job.head {
            Head::Classic => 5e-4,
            Head::Compact => 0.05,
        }),
        schedule: job.schedule,
        seed: job.seed,
        head: job.head,
        hidden: job.hidden,
        freeze: job.freeze,
        class_weighting: job.class_weighting,
        augment: job.augment,
        feature_views: job.feature_views,
        colour_augment: job.colour_augment,
        stain_norm: job.stain_norm,
        pretrained: pretrained.clone(),
    };
    let mut checkpointer = Checkpointer::open(
        &job.out,
        fingerprint(job, &config, &images)?,
        job.head,
        job.hidden,
        job.resume,
        stop,
    )?;
    let shifts = job.colour_shifts.as_deref().map(parse_shifts).transpose()?;
    // The frozen trunk's output never changes: run it once over every image and view (once per
    // run instead when each run normalises to its own stain reference).
    let shared_bank = (config.stores_features() && !config.stain_norm)
        .then(|| build_bank(&config, &trunk, &images, job.progress));
    let all_patients: BTreeMap<String, Class> = images
        .iter()
        .map(|x| (x.sample.patient.clone(), x.sample.class))
        .collect();
    let all_refs: BTreeMap<&str, Class> =
        all_patients.iter().map(|(p, c)| (p.as_str(), *c)).collect();

    let outer: Vec<Split> = match job.folds {
        Some(k) => split::kfold(&all_refs, k, job.seed)?,
        None if job.val_fraction > 0.0 => {
            vec![split::holdout(&all_refs, job.val_fraction, job.seed)?]
        }
        None => vec![],
    };

    let mut runs = Vec::new();
    let mut pretrained_note = None;
    let scratch = job.out.join("folds");
    for (i, outer_split) in outer.iter().enumerate() {
        let inner_patients = patients_of(&images, &outer_split.train);
        let inner_refs: BTreeMap<&str, _> = inner_patients
            .iter()
            .map(|(p, c)| (p.as_str(), *c))
            .collect();
        let inner = split::holdout(
            &inner_refs,
            job.select_fraction,
            job.seed.wrapping_add(1000 + i as u64),
        )?;
        if let Some(done) = checkpointer.completed(i) {
            tracing::info!(
                "run {}/{}: finished before the interruption",
                i + 1,
                outer.len()
            );
            let mut report = done.report.clone();
            if let Some(t) = report.test.as_mut() {
                t.results = done.results.clone();
            }
            runs.push(report);
            continue;
        }
        let test_set = by_patients(&images, &outer_split.test);
        let inputs = RunInputs::prepare(
            &config,
            &trunk,
            &by_patients(&images, &outer_split.train),
            &format!(
                "the {} training patients of run {}",
                outer_split.train.len(),
                i + 1
            ),
            shared_bank.as_ref(),
            job.progress,
        )?;
        let fit_set = by_patients(inputs.images(&images), &inner.train);
        let select_set = by_patients(inputs.images(&images), &inner.test);
        tracing::info!(
            "run {}/{}: fit {} images ({} patients), select {} images ({} patients), test {} images ({} patients)",
            i + 1,
            outer.len(),
            fit_set.len(),
            inner.train.len(),
            select_set.len(),
            inner.test.len(),
            test_set.len(),
            outer_split.test.len()
        );
        let mut cfg = config.clone();
        cfg.seed = job.seed.wrapping_add(i as u64);
        let fitted = train::fit(
            &cfg,
            &fit_set,
            &select_set,
            job.progress,
            inputs.bank(),
            Some(Checkpointing {
                checkpointer: &mut checkpointer,
                run: i,
            }),
        )?;
        pretrained_note = fitted.pretrained.as_ref().map(weights_note);
        let onnx_path = if job.folds.is_some() {
            std::fs::create_dir_all(&scratch)?;
            scratch.join(format!("fold{}.onnx", i + 1))
        } else {
            job.out.join("model.onnx")
        };
        let training = json!({
            "fit_patients": inner.train,
            "select_patients": inner.test,
            PATIENTS_TRAINED: union_sorted(&inner.train, &inner.test),
            "best_epoch": fitted.best_epoch,
        });
        let who = format!("run {} test patients", i + 1);
        let tested = export_and_evaluate(
            &fitted.model,
            &onnx_path,
            card_info(job, "fold", training, json!({}), inputs.stain.clone()),
            &test_set,
            shifts.as_deref().map(|s| (s, who.as_str())),
        )?;
        let test = tested.evaluation;
        if let Some(t) = &test {
            tracing::info!(
                "run {}: test patients {}: accuracy {:.3}, balanced {:.3}, patient-level {:.3}, AUC {:.3}",
                i + 1,
                t.metrics.patients,
                t.metrics.accuracy,
                t.metrics.balanced_accuracy,
                t.metrics.patient_accuracy,
                t.metrics.roc_auc.unwrap_or(f64::NAN)
            );
        }
        let report = FoldReport {
            fold: i + 1,
            train_patients: inner.train,
            select_patients: inner.test,
            test_patients: outer_split.test.clone(),
            best_epoch: fitted.best_epoch,
            history: fitted.history,
            test,
            colour_shift: tested.colour_shift,
        };
        checkpointer.complete_run(Completed {
            results: report
                .test
                .as_ref()
                .map(|t| t.results.clone())
                .unwrap_or_default(),
            report: report.clone(),
        })?;
        runs.push(report);
    }
    let summary_metrics = summarise(&runs);
    let colour_shift = ShiftSummary::across(&runs_tables(&runs));

    // With folds (or no hold-out) the exported model learns from every patient for the median
    // chosen epoch count; its figures are the cross-validated ones above.
    let (exported_epochs, patients_trained) = if job.folds.is_some() || outer.is_empty() {
        let mut epochs: Vec<usize> = runs.iter().map(|r| r.best_epoch).collect();
        epochs.sort();
        let e = epochs.get(epochs.len() / 2).copied().unwrap_or(job.epochs);
        let mut cfg = config.clone();
        cfg.epochs = e;
        let all: Vec<&LoadedImage> = images.iter().collect();
        let inputs = RunInputs::prepare(
            &config,
            &trunk,
            &all,
            &format!("all {} patients", all_patients.len()),
            shared_bank.as_ref(),
            job.progress,
        )?;
        let refs: Vec<&LoadedImage> = inputs.images(&images).iter().collect();
        tracing::info!(
            "final model: {} images from {} patients, {e} epochs",
            refs.len(),
            all_patients.len()
        );
        let fitted = train::fit(
            &cfg,
            &refs,
            &[],
            job.progress,
            inputs.bank(),
            Some(Checkpointing {
                checkpointer: &mut checkpointer,
                run: outer.len(),
            }),
        )?;
        pretrained_note = fitted.pretrained.as_ref().map(weights_note);
        let training = json!({"trained_on": "all patients", "epochs": e});
        export_and_evaluate(
            &fitted.model,
            &job.out.join("model.onnx"),
            card_info(
                job,
                "histoscreen-alexnet",
                training,
                json!({}),
                inputs.stain.clone(),
            ),
            &[],
            None,
        )?;
        (e, all_patients.keys().cloned().collect())
    } else {
        (
            runs[0].best_epoch,
            union_sorted(&runs[0].train_patients, &runs[0].select_patients),
        )
    };
    let exported_patients = patients_trained.len();
    // Hashed before the report drops the weights' folder.
    let card_config = card_config(&config)?;
    let mut config = config;
    config.pretrained = config
        .pretrained
        .as_deref()
        .and_then(Path::file_name)
        .map(PathBuf::from);

    let report = TrainReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        config,
        split_seed: job.seed,
        val_fraction: job.val_fraction,
        select_fraction: job.select_fraction,
        folds: job.folds,
        data: summary.clone(),
        rejected,
        pretrained: pretrained_note,
        runs,
        summary: summary_metrics.clone(),
        colour_shift,
        exported_model_epochs: exported_epochs,
        exported_model_trained_on_patients: exported_patients,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The card carries the honest figures: held-out or cross-validated, never training data.
    let onnx = job.out.join("model.onnx");
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&card_path)?;
    card.name = format!(
        "histoscreen-alexnet-{}",
        serde_json::to_value(job.head)?.as_str().unwrap_or("model")
    );
    card.training = json!({
        "data": summary,
        "config": card_config,
        "pretrained": report.pretrained,
        "epochs": exported_epochs,
        "patients": exported_patients,
        PATIENTS_TRAINED: patients_trained,
    });
    card.metrics = json!({
        "protocol": match job.folds {
            Some(k) => format!("{k}-fold cross-validation by patient (seed {}); model trained on all patients", job.seed),
            None if outer.is_empty() => "none: trained on every patient, no held-out figures".to_string(),
            None => format!("hold-out of {} of patients (seed {}), best epoch chosen on other patients", job.val_fraction, job.seed),
        },
        "summary": summary_metrics,
        "test": report.runs.iter().filter_map(|r| r.test.as_ref().map(|t| &t.metrics)).collect::<Vec<_>>(),
    });
    card.save(&card_path)?;
    write_atomic(
        &job.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    // Only now, with model and report.json safe: a plot that fails is a warning, and only an
    // output folder that can no longer be written fails the run.
    let files = write_report(&report, &job.out)?;
    checkpointer.finish()?;
    let variants: Vec<_> = job
        .export
        .iter()
        .filter(|&&p| p != Precision::F32)
        .map(|&p| (p, job.out.join(p.file_name())))
        .collect();
    if !variants.is_empty() {
        let refs: Vec<&LoadedImage> = images.iter().collect();
        export_variants(&job.out, &variants, &refs, &job.calibration)?;
    }
    tracing::info!(
        "report: {}",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_summary(&report, &job.out);
    Ok(report)
}

fn runs_tables(runs: &[FoldReport]) -> Vec<&ShiftTable> {
    runs.iter()
        .filter_map(|r| r.colour_shift.as_ref())
        .collect()
}

/// Both lists as one, sorted: the patients a run learnt from (fitted on or chose its epoch on).
fn union_sorted(a: &[String], b: &[String]) -> Vec<String> {
    let all: std::collections::BTreeSet<&String> = a.iter().chain(b).collect();
    all.into_iter().cloned().collect()
}

/// What the weights file gave the network, naming the file without the folder it had on
/// the training machine.
fn weights_note(r: &LoadReport) -> String {
    let name = Path::new(&r.file)
        .file_name()
        .map_or_else(|| r.file.clone(), |n| n.to_string_lossy().into_owned());
    LoadReport {
        file: name,
        ..r.clone()
    }
    .describe()
}

/// The configuration as the card records it: the weights file by name and sha256, never by
/// a path, which would only name a folder on the training machine.
fn card_config(config: &TrainConfig) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(config)?;
    if let Some(path) = &config.pretrained {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot read the pretrained weights", path.display()))?;
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("{}: cannot read the pretrained weights", path.display()))?;
        v["pretrained"] = json!({
            "file": path.file_name().map(|n| n.to_string_lossy()),
            "sha256": hex::encode(hasher.finalize()),
        });
    }
    Ok(v)
}

fn print_summary(report: &TrainReport, out: &Path) {
    // A spread over one run would read as certainty it does not have.
    let several = report.runs.len() > 1;
    let pm = |k: &str| {
        let (m, sd) = report
            .summary
            .get(k)
            .copied()
            .unwrap_or((f64::NAN, f64::NAN));
        if several {
            format!("{m:.3}±{sd:.3}")
        } else {
            format!("{m:.3}")
        }
    };
    eprintln!("wrote {}", out.join("model.onnx").display());
    if report.runs.iter().any(|r| r.test.is_some()) {
        eprintln!(
            "held-out patients ({} run(s), split seed {}): accuracy {}  balanced {}  patient-level {}  AUC {}",
            report.runs.len(),
            report.split_seed,
            pm("accuracy"),
            pm("balanced_accuracy"),
            pm("patient_accuracy"),
            pm("roc_auc"),
        );
    }
    if let Some(c) = &report.colour_shift {
        eprintln!(
            "under camera-like colour shifts: worst mean drop in balanced accuracy {:+.3} ({}), in AUC {:+.3} ({}); table in report.md",
            c.worst_balanced.1, c.worst_balanced.0, c.worst_auc.1, c.worst_auc.0
        );
    }
}
