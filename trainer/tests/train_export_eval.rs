//! Train on real BreakHis images, export, and evaluate through the edge runtime.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn holdout_training_is_patient_disjoint_and_eval_matches_card() {
    // Five patients of each class, eight images each: every split is non-empty and the
    // whole-field feature bank stays small.
    let all = tempfile::tempdir().unwrap();
    copy_few_patients(5, 8, all.path());
    let out = tempfile::tempdir().unwrap();
    let o = train(
        all.path(),
        out.path(),
        &[
            "--epochs",
            "2",
            "--seed",
            "3",
            "--select-fraction",
            "0.2",
            // One augmented view per image keeps the feature bank (run once) cheap.
            "--feature-views",
            "1",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let report = json(&out.path().join("report.json"));
    let run0 = &report["runs"][0];
    let (fit, select, test) = (
        names(&run0["train_patients"]),
        names(&run0["select_patients"]),
        names(&run0["test_patients"]),
    );
    assert!(!fit.is_empty() && !select.is_empty() && !test.is_empty());
    assert!(fit.is_disjoint(&test) && select.is_disjoint(&test) && fit.is_disjoint(&select));
    assert_eq!(
        fit.len() + select.len() + test.len(),
        report["data"]["patients"].as_u64().unwrap() as usize
    );
    assert_eq!(report["split_seed"], 3);
    assert_eq!(run0["history"].as_array().unwrap().len(), 2);

    // The card's checksum is the file's, and its figures are the held-out run's.
    let card = json(&out.path().join("model.json"));
    let onnx = std::fs::read(out.path().join("model.onnx")).unwrap();
    assert_eq!(
        card["sha256"].as_str().unwrap(),
        histoscreen_train::export::model_file::sha256_hex(&onnx)
    );
    assert_eq!(card["input"]["shape"], serde_json::json!([1, 3, 224, 224]));
    let held_out = &run0["test"];
    assert_eq!(card["metrics"]["test"][0]["images"], held_out["images"]);

    // `eval` on a folder holding only the held-out patients reproduces the held-out figures.
    let data = tempfile::tempdir().unwrap();
    let ds = histoscreen_train::data::dataset::Dataset::scan(all.path(), &[]).unwrap();
    let files: Vec<_> = ds
        .samples
        .iter()
        .filter(|s| test.contains(&s.patient))
        .map(|s| s.path.clone())
        .collect();
    copy_images(&files, data.path());
    let o = run(train_bin()
        .arg("eval")
        .arg("--model")
        .arg(out.path().join("model.onnx"))
        .arg("--data")
        .arg(data.path())
        .arg("--quiet"));
    assert!(o.status.success(), "{}", stderr(&o));
    let eval: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["images"], held_out["images"]);
    assert_eq!(eval["patients"].as_u64().unwrap() as usize, test.len());
    for key in [
        "accuracy",
        "balanced_accuracy",
        "patient_accuracy",
        "sensitivity",
        "specificity",
        "roc_auc",
    ] {
        let (a, b) = (eval[key].as_f64().unwrap(), held_out[key].as_f64().unwrap());
        assert!(
            (a - b).abs() < 1e-9,
            "{key}: eval {a} vs training report {b}"
        );
    }
    assert_eq!(eval["confusion"], held_out["confusion"]);
}

#[test]
fn kfold_reports_every_fold_and_trains_the_export_on_all_patients() {
    let data = tempfile::tempdir().unwrap();
    // Three patients of each class, a few images each: enough for 3 folds, quick to train.
    copy_few_patients(3, 4, data.path());
    let out = tempfile::tempdir().unwrap();
    let o = train(
        data.path(),
        out.path(),
        &[
            "--folds",
            "3",
            "--epochs",
            "1",
            "--select-fraction",
            "0.3",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = json(&out.path().join("report.json"));
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let mut tested = BTreeSet::new();
    for r in runs {
        let test = names(&r["test_patients"]);
        assert!(names(&r["train_patients"]).is_disjoint(&test));
        assert!(names(&r["select_patients"]).is_disjoint(&test));
        assert!(r["test"]["images"].as_u64().unwrap() > 0);
        tested.extend(test);
    }
    assert_eq!(tested.len(), 6, "every patient is tested exactly once");
    assert_eq!(report["exported_model_trained_on_patients"], 6);
    let card = json(&out.path().join("model.json"));
    assert!(card["metrics"]["protocol"]
        .as_str()
        .unwrap()
        .contains("3-fold"));
}

#[test]
fn stain_normalised_folds_fit_their_own_reference_and_score_colour_shifts() {
    let data = tempfile::tempdir().unwrap();
    copy_few_patients(2, 3, data.path());
    let out = tempfile::tempdir().unwrap();
    let o = train(
        data.path(),
        out.path(),
        &[
            "--folds",
            "2",
            "--epochs",
            "1",
            "--feature-views",
            "1",
            "--stain-norm",
            "on",
            "--colour-aug",
            "od",
            "--colour-shift",
            "gamma-0.8,jpeg-70",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = json(&out.path().join("report.json"));
    assert_eq!(report["config"]["stain_norm"], true);
    assert_eq!(report["config"]["colour_augment"], "od");
    let mut references = Vec::new();
    for r in report["runs"].as_array().unwrap() {
        let fold = r["fold"].as_u64().unwrap();
        let card = json(&out.path().join(format!("folds/fold{fold}.json")));
        let stain = &card["stain"];
        assert_eq!(stain["normalise"], true);
        // Fitted on the run's training patients only: 2 of the 4.
        assert_eq!(stain["fitted_on"]["patients"], 2, "{stain}");
        assert_eq!(stain["fitted_on"]["images"], 6, "{stain}");
        assert!(card["gate"].is_object());
        references.push(stain["he"].clone());

        let table = &r["colour_shift"];
        let shifts: Vec<&str> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["shift"].as_str().unwrap())
            .collect();
        assert_eq!(shifts, ["none", "gamma-0.8", "jpeg-70"]);
        // The unshifted row is the fold's own test figure, on the same images.
        assert_eq!(
            table["rows"][0]["balanced_accuracy"],
            r["test"]["balanced_accuracy"]
        );
        assert_eq!(
            table["rows"][1]["images"], r["test"]["images"],
            "every test image is scored shifted too"
        );
    }
    assert_ne!(
        references[0], references[1],
        "each fold fits its own reference"
    );
    let card = json(&out.path().join("model.json"));
    assert_eq!(card["stain"]["normalise"], true);
    assert_eq!(card["stain"]["fitted_on"]["patients"], 4);
    let summary = &report["colour_shift"];
    assert_eq!(summary["rows"].as_array().unwrap().len(), 3);
    assert_eq!(summary["rows"][2]["runs"], 2);
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("## Under camera-like colour shifts"), "{md}");
    assert!(md.contains("with stain normalisation"), "{md}");
}
