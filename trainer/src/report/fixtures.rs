//! A synthetic two-fold training report for the report's tests.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::dataset::Summary;
use crate::eval::metrics::{Metrics, Scored};
use crate::eval::score::{Evaluation, ImageResult};
use crate::fit::config::{Schedule, TrainConfig};
use crate::fit::history::{EpochLog, FoldReport, TrainReport};
use crate::model::alexnet::{Freeze, Head};

use super::canvas::{HEIGHT, WIDTH};
use super::tables::TABLE_KEYS;

pub(super) fn image(patient: &str, subtype: &str, mag: u32, p: f32) -> ImageResult {
    let malignant = matches!(subtype, "DC" | "LC" | "MC" | "PC");
    ImageResult {
        path: format!("SOB_{patient}_{subtype}_{mag}.png"),
        patient: patient.into(),
        class: if malignant { "malignant" } else { "benign" }.into(),
        subtype: subtype.into(),
        magnification: mag,
        p_malignant: p,
        p_centre: None,
        tiles: vec![],
    }
}

pub(super) fn evaluation(results: Vec<ImageResult>) -> Evaluation {
    let metrics = Metrics::compute(
        &results.iter().map(ImageResult::scored).collect::<Vec<_>>(),
        0.5,
    );
    let grouped = |key: fn(&ImageResult) -> String| {
        let mut g: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
        for r in &results {
            g.entry(key(r)).or_default().push(r.scored());
        }
        g.into_iter()
            .map(|(k, v)| (k, Metrics::compute(&v, 0.5)))
            .collect()
    };
    Evaluation {
        model: "fold.onnx".into(),
        per_magnification: grouped(|r| format!("{}X", r.magnification)),
        per_subtype: grouped(|r| r.subtype.clone()),
        metrics,
        views: BTreeMap::new(),
        rejected: vec![],
        results,
    }
}

pub(super) fn history(epochs: usize, offset: f64) -> Vec<EpochLog> {
    (1..=epochs)
        .map(|e| {
            let t = e as f64;
            EpochLog {
                epoch: e,
                lr: 0.001,
                train_loss: 0.7 / t + offset,
                train_accuracy: 0.6 + 0.05 * t,
                select_loss: Some(0.8 / t + 0.1 + offset),
                select: Some(Metrics {
                    balanced_accuracy: 0.55 + 0.06 * t - offset,
                    ..Metrics::default()
                }),
                seconds: t,
            }
        })
        .collect()
}

pub(super) fn run(fold: usize, best_epoch: usize, test: Vec<ImageResult>) -> FoldReport {
    let mut patients: Vec<String> = test.iter().map(|r| r.patient.clone()).collect();
    patients.dedup();
    FoldReport {
        fold,
        train_patients: vec!["t1".into(), "t2".into()],
        select_patients: vec!["s1".into()],
        test_patients: patients,
        best_epoch,
        history: history(5, fold as f64 * 0.05),
        test: Some(evaluation(test)),
        colour_shift: None,
    }
}

/// Fold 1: one false positive and one false negative in 8 images (accuracy 0.75); fold 2:
/// one false negative (accuracy 0.875). 40X and 100X in each, 400X in fold 2 only.
pub(super) fn synthetic(folds: Option<usize>) -> TrainReport {
    let fold1 = vec![
        image("b1", "A", 40, 0.1),
        image("b1", "A", 100, 0.6),
        image("b2", "F", 40, 0.2),
        image("b2", "F", 100, 0.3),
        image("m1", "DC", 40, 0.9),
        image("m1", "DC", 100, 0.25),
        image("m2", "LC", 40, 0.8),
        image("m2", "LC", 100, 0.7),
    ];
    let fold2 = vec![
        image("b3", "A", 40, 0.05),
        image("b3", "A", 400, 0.2),
        image("b4", "PT", 100, 0.3),
        image("b4", "PT", 40, 0.45),
        image("m3", "DC", 40, 0.95),
        image("m3", "DC", 400, 0.35),
        image("m4", "MC", 100, 0.85),
        image("m4", "MC", 40, 0.75),
    ];
    let mut summary = BTreeMap::new();
    // Distinct from what the runs give, to show the mean row is read from the summary.
    summary.insert("accuracy".to_string(), (0.811, 0.088));
    summary.insert("balanced_accuracy".to_string(), (0.812, 0.089));
    summary.insert("patient_accuracy".to_string(), (0.813, 0.087));
    summary.insert("sensitivity".to_string(), (0.75, 0.0));
    summary.insert("specificity".to_string(), (0.875, 0.177));
    summary.insert("roc_auc".to_string(), (0.9, f64::NAN));
    TrainReport {
        command: "histoscreen-train train --folds 2 --seed 7 --out runs/x".into(),
        config: TrainConfig {
            epochs: 5,
            batch: 32,
            lr: 0.001,
            momentum: 0.9,
            weight_decay: 0.0005,
            schedule: Schedule::Step,
            seed: 7,
            head: Head::Classic,
            hidden: 0,
            freeze: Freeze::Features,
            class_weighting: true,
            augment: true,
            feature_views: 0,
            colour_augment: Default::default(),
            stain_norm: false,
            pretrained: None,
        },
        split_seed: 7,
        val_fraction: 0.2,
        select_fraction: 0.2,
        folds,
        data: Summary {
            images: 40,
            patients: 12,
            ..Summary::default()
        },
        rejected: vec![],
        pretrained: None,
        runs: vec![run(1, 3, fold1), run(2, 4, fold2)],
        summary,
        colour_shift: None,
        exported_model_epochs: 4,
        exported_model_trained_on_patients: 12,
        seconds: 3725.0,
    }
}

pub(super) fn no_test_set() -> TrainReport {
    let mut r = synthetic(None);
    r.runs.clear();
    r.summary = TABLE_KEYS
        .iter()
        .map(|(k, _)| (k.to_string(), (f64::NAN, f64::NAN)))
        .collect();
    r.command = "histoscreen-train train --val-fraction 0 --out runs/all".into();
    r.val_fraction = 0.0;
    r
}

/// Decodes `path` and checks that a plot, title text included, was drawn on it.
pub(super) fn assert_drawn(path: &Path) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT), "{}", path.display());
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    // Anti-aliased glyphs alone give dozens of grey levels; a blank or flat canvas gives 1.
    assert!(
        colours.len() > 20,
        "{}: only {} colours",
        path.display(),
        colours.len()
    );
    // The title is text in the top strip: the embedded font must have rendered.
    let dark_title_pixels = (0..WIDTH)
        .flat_map(|x| (0..36).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 128))
        .count();
    assert!(
        dark_title_pixels > 100,
        "{}: no title text ({dark_title_pixels} dark pixels)",
        path.display()
    );
}
