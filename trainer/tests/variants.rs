//! The bundled precision variants on real BreakHis images: each is a fraction of the f32 file,
//! and on the patients its card names (never used for calibration) it gives f32's labels on at
//! least 98% of images with balanced accuracy within 1 point. The figures are recomputed here
//! through the edge's runner, not read from the card, and must also match what the card claims.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use histoscreen_edge::card::ModelCard;
use histoscreen_train::data::dataset::{Dataset, Sample};
use histoscreen_train::eval::score;

use common::*;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

const F32: &str = "histoscreen-alexnet-compact.onnx";

fn check(variant: &str, precision: &str, max_size_share: f64) {
    let f32_path = models().join(F32);
    let path = models().join(variant);
    let card = ModelCard::load(&ModelCard::card_path_for(&path)).unwrap();
    assert_eq!(card.precision, precision);
    let f32_size = std::fs::metadata(&f32_path).unwrap().len() as f64;
    let size = std::fs::metadata(&path).unwrap().len() as f64;
    assert!(
        size <= max_size_share * f32_size,
        "{variant}: {size} bytes, f32 {f32_size}"
    );

    let recorded = &card.metrics["precision_check"];
    let patients: BTreeSet<String> = recorded["patients"]
        .as_array()
        .expect("the card names the compared patients")
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    if let Some(calibrated) = card.metrics["calibration"]["patients"].as_array() {
        for p in calibrated {
            assert!(
                !patients.contains(p.as_str().unwrap()),
                "{variant}: patient {p} was used for calibration and for the check"
            );
        }
    }
    let ds = Dataset::scan(&breakhis(), &[]).unwrap();
    let samples: Vec<&Sample> = ds
        .samples
        .iter()
        .filter(|s| patients.contains(&s.patient))
        .collect();
    assert!(samples.len() >= 100, "only {} images", samples.len());

    let reference = score::evaluate_with(
        &score::load_model(&f32_path).unwrap(),
        &samples,
        score::Scoring::CentreOnly,
    );
    let got = score::evaluate_with(
        &score::load_model(&path).unwrap(),
        &samples,
        score::Scoring::CentreOnly,
    );
    // A 400X field is smaller than one tile at the model's scale: refused by both, nothing else.
    for r in reference.rejected.iter().chain(&got.rejected) {
        assert!(
            r.reason.contains("smaller than one"),
            "{}: {}",
            r.path.display(),
            r.reason
        );
    }
    assert_eq!(
        reference.results.len() + reference.rejected.len(),
        samples.len()
    );
    assert_eq!(got.results.len(), reference.results.len());
    let threshold = card.threshold;
    let agree = reference
        .results
        .iter()
        .zip(&got.results)
        .filter(|(a, b)| (a.p_malignant >= threshold) == (b.p_malignant >= threshold))
        .count() as f64
        / got.results.len() as f64;
    let change = got.metrics.balanced_accuracy - reference.metrics.balanced_accuracy;
    eprintln!(
        "{variant}: {} images of {} patients, labels agree {:.1}%, balanced accuracy {:.3} vs f32 {:.3}",
        got.results.len(),
        patients.len(),
        agree * 100.0,
        got.metrics.balanced_accuracy,
        reference.metrics.balanced_accuracy
    );
    assert!(agree >= 0.98, "{variant}: labels agree on {agree}");
    assert!(
        change.abs() <= 0.01,
        "{variant}: balanced accuracy moved by {change}"
    );

    let claimed = &recorded["against_f32"];
    assert_eq!(
        claimed["images"].as_u64().unwrap() as usize,
        got.results.len()
    );
    assert!((claimed["label_agreement"].as_f64().unwrap() - agree).abs() < 1e-9);
    assert!(
        (claimed["balanced_accuracy"].as_f64().unwrap() - got.metrics.balanced_accuracy).abs()
            < 1e-9
    );
}

#[test]
fn int8_keeps_f32_labels_on_patients_calibration_never_saw() {
    check("histoscreen-alexnet-compact-int8.onnx", "int8", 0.30);
}

#[test]
fn int8_weights_keeps_f32_labels() {
    check(
        "histoscreen-alexnet-compact-int8-weights.onnx",
        "int8-weights",
        0.30,
    );
}
