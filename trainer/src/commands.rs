//! What each subcommand does, from parsed arguments to files on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use histoscreen_edge::fsutil::write_atomic;
use histoscreen_edge::run::shutdown::StopFlag;

use crate::checkpoint::{Checkpointer, Completed, Interrupted};
use crate::checkpoint_export::Precision;
use crate::cli::{Cli, Command, DataArgs, EvalArgs, TrainArgs, UsageError};
use crate::dataset::{Dataset, Rejected, Sample, Summary};
use crate::eval::{self, EvalReport, Evaluation, PatientSplit};
use crate::export::{self, CardInfo};
use crate::feature_bank::FeatureBank;
use crate::images::{self, LoadedImage};
use crate::metrics::Metrics;
use crate::model::Head;
use crate::settings;
use crate::split::{self, Split};
use crate::train::{self, Checkpointing, EpochLog, TrainConfig};

/// Runs one subcommand; returns the process exit code for outcomes that are not errors.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Train(args) => {
            let stop = StopFlag::new();
            stop.on_signals()?;
            match train_command(&args, !cli.quiet, stop.clone()) {
                // 128 + the signal, as the edge's `run` exits: 130 for Ctrl-C, 143 for SIGTERM.
                Err(e) if e.is::<Interrupted>() => {
                    histoscreen_edge::stdio::eprint_line(&format!("histoscreen-train: {e}"));
                    Ok(stop.signal_exit_code().unwrap_or(130))
                }
                other => other.map(|_| 0),
            }
        }
        Command::Eval(args) => {
            let report = eval_command(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
        Command::Download(args) => crate::download::run(&args).map(|_| 0),
        Command::Export(args) => crate::checkpoint_export::export_command(&args).map(|_| 0),
        Command::Predict(args) => {
            let failed = crate::predict::predict_command(&args, &mut std::io::stdout().lock())?;
            Ok(if failed > 0 { 2 } else { 0 })
        }
    }
}

fn scan(data: &DataArgs) -> Result<Dataset> {
    let root = data.data.clone().unwrap_or_else(settings::default_data_dir);
    let ds = Dataset::scan(&root, &data.magnification)?;
    for r in &ds.rejected {
        tracing::warn!("skipped {}: {}", r.path.display(), r.reason);
    }
    Ok(ds)
}

/// `eval`: headline figures from the patients the model never trained on, the trained-on
/// ones apart under `seen_in_training`; data of trained-on patients only is refused unless
/// `--allow-seen`.
pub fn eval_command(args: &EvalArgs) -> Result<EvalReport> {
    let model = eval::load_model(&args.model)?;
    let ds = scan(&args.data)?;
    let samples: Vec<&Sample> = ds.samples.iter().collect();
    let trained = eval::trained_patients(model.card());
    let split = PatientSplit::new(&samples, trained.as_ref());
    check_seen(args, &split)?;
    let mut report = eval::evaluate_split(&model, &split);
    report.rejected.extend(ds.rejected.iter().cloned());
    for r in &report.rejected {
        tracing::warn!("not evaluated {}: {}", r.path.display(), r.reason);
    }
    if let Some(path) = &args.per_image {
        let mut csv =
            String::from("path,patient,class,subtype,magnification,p_malignant,seen_in_training\n");
        for (r, seen) in &report.results {
            csv.push_str(&format!(
                "{},{},{},{},{},{:.6},{}\n",
                r.path,
                r.patient,
                r.class,
                r.subtype,
                r.magnification,
                r.p_malignant,
                seen.as_str()
            ));
        }
        write_atomic(path, csv.as_bytes())?;
    }
    Ok(report)
}

/// At most `n` patient ids, for a one-line message.
fn some_ids(ids: &std::collections::BTreeSet<String>, n: usize) -> String {
    let mut shown: Vec<&str> = ids.iter().take(n).map(String::as_str).collect();
    if ids.len() > n {
        shown.push("...");
    }
    shown.join(", ")
}

/// Warns when trained-on patients are in the data (or when the card cannot tell), and
/// refuses data of trained-on patients only unless `--allow-seen`.
fn check_seen(args: &EvalArgs, split: &PatientSplit<'_>) -> Result<()> {
    let card = histoscreen_edge::card::ModelCard::card_path_for(&args.model);
    if !split.known {
        tracing::warn!(
            "{}: the card records no training patients (written before histoscreen-train listed them): cannot tell seen from unseen patients, so these figures may include patients the model was trained on",
            card.display()
        );
        return Ok(());
    }
    let seen = split.seen_patients();
    if seen.is_empty() {
        return Ok(());
    }
    let unseen = split.unseen_patients().len();
    if unseen == 0 && !args.allow_seen {
        let data = args
            .data
            .data
            .clone()
            .unwrap_or_else(settings::default_data_dir);
        return Err(UsageError(format!(
            "{}: all {} patients were trained on (per {}), so its figures would measure memory, not screening: give data of other patients, or --allow-seen to score them anyway",
            data.display(),
            seen.len(),
            card.display()
        ))
        .into());
    }
    tracing::warn!(
        "{} of {} patients were trained on ({}): their figures are under seen_in_training, the headline figures are from the {unseen} unseen patients only",
        seen.len(),
        seen.len() + unseen,
        some_ids(&seen, 5)
    );
    Ok(())
}

/// One patient-disjoint run: fit on `split.train` minus the selection patients, choose the
/// epoch on the selection patients, score `split.test` through the exported ONNX.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FoldReport {
    pub fold: usize,
    pub train_patients: Vec<String>,
    pub select_patients: Vec<String>,
    pub test_patients: Vec<String>,
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    pub test: Option<Evaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub command: String,
    pub config: TrainConfig,
    pub split_seed: u64,
    pub val_fraction: f64,
    pub select_fraction: f64,
    pub folds: Option<usize>,
    pub data: Summary,
    pub rejected: Vec<Rejected>,
    pub pretrained: Option<String>,
    pub runs: Vec<FoldReport>,
    /// Mean and standard deviation over folds (or the single held-out run).
    pub summary: BTreeMap<String, (f64, f64)>,
    pub exported_model_epochs: usize,
    pub exported_model_trained_on_patients: usize,
    pub seconds: f64,
}

fn by_patients<'a>(all: &'a [LoadedImage], patients: &[String]) -> Vec<&'a LoadedImage> {
    all.iter()
        .filter(|x| patients.contains(&x.sample.patient))
        .collect()
}

fn patients_of(
    images: &[LoadedImage],
    names: &[String],
) -> BTreeMap<String, crate::dataset::Class> {
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
    let pick = |f: fn(&Metrics) -> f64| {
        crate::metrics::mean_sd(&tests.iter().map(|m| f(m)).collect::<Vec<_>>())
    };
    let mut s = BTreeMap::new();
    s.insert("accuracy".into(), pick(|m| m.accuracy));
    s.insert("balanced_accuracy".into(), pick(|m| m.balanced_accuracy));
    s.insert("patient_accuracy".into(), pick(|m| m.patient_accuracy));
    s.insert("sensitivity".into(), pick(|m| m.sensitivity));
    s.insert("specificity".into(), pick(|m| m.specificity));
    s.insert("roc_auc".into(), pick(|m| m.roc_auc.unwrap_or(f64::NAN)));
    s
}

fn export_and_evaluate(
    model: &crate::model::AlexNet,
    onnx_path: &Path,
    info: CardInfo,
    test: &[&LoadedImage],
) -> Result<Option<Evaluation>> {
    let bytes = export::onnx_f32(model, "histoscreen AlexNet, benign vs malignant")?;
    export::write_model(&bytes, onnx_path, model.head(), info)?;
    if test.is_empty() {
        return Ok(None);
    }
    let edge = eval::load_model(onnx_path)?;
    let samples: Vec<&Sample> = test.iter().map(|x| &x.sample).collect();
    Ok(Some(eval::evaluate(&edge, &samples)))
}

fn card_info(
    args: &TrainArgs,
    name: &str,
    training: serde_json::Value,
    metrics: serde_json::Value,
) -> CardInfo {
    CardInfo {
        name: name.into(),
        precision: "f32".into(),
        threshold: args.threshold,
        uncertain_band: args.uncertain_band,
        split_seed: Some(args.seed),
        training,
        metrics,
    }
}

/// Everything that decides a training result, hashed: `--resume` refuses a checkpoint made
/// with anything else.
fn fingerprint(args: &TrainArgs, config: &TrainConfig, images: &[LoadedImage]) -> Result<String> {
    let files: Vec<String> = images
        .iter()
        .map(|x| x.sample.path.display().to_string())
        .collect();
    let v = json!({
        "config": config,
        "folds": args.folds,
        "val_fraction": args.val_fraction,
        "select_fraction": args.select_fraction,
        "threshold": args.threshold,
        "uncertain_band": args.uncertain_band,
        "images": files,
    });
    Ok(export::sha256_hex(&serde_json::to_vec(&v)?))
}

/// Trains as asked and writes `model.onnx`, `model.json`, `report.json` into `--out`; a
/// checkpoint in `--out/checkpoint` after every epoch and when `stop` is raised.
pub fn train_command(args: &TrainArgs, progress: bool, stop: StopFlag) -> Result<TrainReport> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create output folder", args.out.display()))?;
    let probe = args.out.join(".histoscreen-write-test");
    write_atomic(&probe, b"")?;
    let _ = std::fs::remove_file(&probe);

    // Loading the weights here fails fast on a bad file, before a minute of decoding images;
    // the loaded trunk then computes the stored features.
    let mut trunk = crate::model::AlexNet::new(args.head, &train::device());
    let pretrained = if args.no_pretrained {
        None
    } else {
        let p = args
            .pretrained
            .clone()
            .unwrap_or_else(settings::default_pretrained);
        if !p.is_file() {
            bail!(
                "{}: pretrained weights file not found (pass --pretrained FILE or --no-pretrained)",
                p.display()
            );
        }
        crate::weights::load_pretrained(&mut trunk, &p)?;
        Some(p)
    };
    let ds = scan(&args.data)?;
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
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr.unwrap_or(match args.head {
            Head::Classic => 0.001,
            Head::Compact => 0.01,
        }),
        momentum: args.momentum,
        weight_decay: args.weight_decay.unwrap_or(match args.head {
            Head::Classic => 5e-4,
            Head::Compact => 0.05,
        }),
        schedule: args.schedule,
        seed: args.seed,
        head: args.head,
        hidden: args.hidden,
        freeze: args.freeze,
        class_weighting: !args.no_class_weighting,
        augment: !args.no_augment,
        feature_views: args.feature_views,
        pretrained: pretrained.clone(),
    };
    let mut checkpointer = Checkpointer::open(
        &args.out,
        fingerprint(args, &config, &images)?,
        args.head,
        args.hidden,
        args.resume,
        stop,
    )?;
    // The frozen trunk's output never changes: run it once over every image and view.
    let bank = config.stores_features().then(|| {
        let views = if config.augment {
            config.feature_views
        } else {
            0
        };
        FeatureBank::build(
            &trunk,
            &images,
            views,
            config.seed,
            config.batch,
            &train::device(),
            progress,
        )
    });
    let all_patients: BTreeMap<String, crate::dataset::Class> = images
        .iter()
        .map(|x| (x.sample.patient.clone(), x.sample.class))
        .collect();
    let all_refs: BTreeMap<&str, crate::dataset::Class> =
        all_patients.iter().map(|(p, c)| (p.as_str(), *c)).collect();

    let outer: Vec<Split> = match args.folds {
        Some(k) => split::kfold(&all_refs, k, args.seed)?,
        None if args.val_fraction > 0.0 => {
            vec![split::holdout(&all_refs, args.val_fraction, args.seed)?]
        }
        None => vec![],
    };

    let mut runs = Vec::new();
    let mut pretrained_note = None;
    let scratch = args.out.join("folds");
    for (i, outer_split) in outer.iter().enumerate() {
        let inner_patients = patients_of(&images, &outer_split.train);
        let inner_refs: BTreeMap<&str, _> = inner_patients
            .iter()
            .map(|(p, c)| (p.as_str(), *c))
            .collect();
        let inner = split::holdout(
            &inner_refs,
            args.select_fraction,
            args.seed.wrapping_add(1000 + i as u64),
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
        let fit_set = by_patients(&images, &inner.train);
        let select_set = by_patients(&images, &inner.test);
        let test_set = by_patients(&images, &outer_split.test);
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
        cfg.seed = args.seed.wrapping_add(i as u64);
        let fitted = train::fit(
            &cfg,
            &fit_set,
            &select_set,
            progress,
            bank.as_ref(),
            Some(Checkpointing {
                checkpointer: &mut checkpointer,
                run: i,
            }),
        )?;
        pretrained_note = fitted.pretrained.as_ref().map(weights_note);
        let onnx_path = if args.folds.is_some() {
            std::fs::create_dir_all(&scratch)?;
            scratch.join(format!("fold{}.onnx", i + 1))
        } else {
            args.out.join("model.onnx")
        };
        let training = json!({
            "fit_patients": inner.train,
            "select_patients": inner.test,
            eval::PATIENTS_TRAINED: union_sorted(&inner.train, &inner.test),
            "best_epoch": fitted.best_epoch,
        });
        let test = export_and_evaluate(
            &fitted.model,
            &onnx_path,
            card_info(args, "fold", training, json!({})),
            &test_set,
        )?;
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

    // With folds (or no hold-out) the exported model learns from every patient for the median
    // chosen epoch count; its figures are the cross-validated ones above.
    let (exported_epochs, patients_trained) = if args.folds.is_some() || outer.is_empty() {
        let mut epochs: Vec<usize> = runs.iter().map(|r| r.best_epoch).collect();
        epochs.sort();
        let e = epochs.get(epochs.len() / 2).copied().unwrap_or(args.epochs);
        let mut cfg = config.clone();
        cfg.epochs = e;
        let refs: Vec<&LoadedImage> = images.iter().collect();
        tracing::info!(
            "final model: {} images from {} patients, {e} epochs",
            refs.len(),
            all_patients.len()
        );
        let fitted = train::fit(
            &cfg,
            &refs,
            &[],
            progress,
            bank.as_ref(),
            Some(Checkpointing {
                checkpointer: &mut checkpointer,
                run: outer.len(),
            }),
        )?;
        pretrained_note = fitted.pretrained.as_ref().map(weights_note);
        let training = json!({"trained_on": "all patients", "epochs": e});
        export_and_evaluate(
            &fitted.model,
            &args.out.join("model.onnx"),
            card_info(args, "histoscreen-alexnet", training, json!({})),
            &[],
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
        split_seed: args.seed,
        val_fraction: args.val_fraction,
        select_fraction: args.select_fraction,
        folds: args.folds,
        data: summary.clone(),
        rejected,
        pretrained: pretrained_note,
        runs,
        summary: summary_metrics.clone(),
        exported_model_epochs: exported_epochs,
        exported_model_trained_on_patients: exported_patients,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The card carries the honest figures: held-out or cross-validated, never training data.
    let onnx = args.out.join("model.onnx");
    let card_path = histoscreen_edge::card::ModelCard::card_path_for(&onnx);
    let mut card = histoscreen_edge::card::ModelCard::load(&card_path)?;
    card.name = format!(
        "histoscreen-alexnet-{}",
        serde_json::to_value(args.head)?.as_str().unwrap_or("model")
    );
    card.training = json!({
        "data": summary,
        "config": card_config,
        "pretrained": report.pretrained,
        "epochs": exported_epochs,
        "patients": exported_patients,
        eval::PATIENTS_TRAINED: patients_trained,
    });
    card.metrics = json!({
        "protocol": match args.folds {
            Some(k) => format!("{k}-fold cross-validation by patient (seed {}); model trained on all patients", args.seed),
            None if outer.is_empty() => "none: trained on every patient, no held-out figures".to_string(),
            None => format!("hold-out of {} of patients (seed {}), best epoch chosen on other patients", args.val_fraction, args.seed),
        },
        "summary": summary_metrics,
        "test": report.runs.iter().filter_map(|r| r.test.as_ref().map(|t| &t.metrics)).collect::<Vec<_>>(),
    });
    card.save(&card_path)?;
    write_atomic(
        &args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    // Only now, with model and report.json safe: a plot that fails is a warning, and only an
    // output folder that can no longer be written fails the run.
    let files = crate::report::write_report(&report, &args.out)?;
    checkpointer.finish()?;
    let variants: Vec<_> = args
        .export
        .iter()
        .filter(|&&p| p != Precision::F32)
        .map(|&p| (p, args.out.join(p.file_name())))
        .collect();
    if !variants.is_empty() {
        let refs: Vec<&LoadedImage> = images.iter().collect();
        crate::checkpoint_export::export_variants(&args.out, &variants, &refs, &args.calibration)?;
    }
    tracing::info!(
        "report: {}",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_summary(&report, &args.out);
    Ok(report)
}

/// Both lists as one, sorted: the patients a run learnt from (fitted on or chose its epoch on).
fn union_sorted(a: &[String], b: &[String]) -> Vec<String> {
    let all: std::collections::BTreeSet<&String> = a.iter().chain(b).collect();
    all.into_iter().cloned().collect()
}

/// What the weights file gave the network, naming the file without the folder it had on
/// the training machine.
fn weights_note(r: &crate::weights::LoadReport) -> String {
    let name = Path::new(&r.file)
        .file_name()
        .map_or_else(|| r.file.clone(), |n| n.to_string_lossy().into_owned());
    crate::weights::LoadReport {
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
}
