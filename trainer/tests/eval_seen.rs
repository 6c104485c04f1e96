//! `eval` keeps the patients a model was trained on out of its headline figures, the card
//! names them (and its weights file without a path), and a closed pipe ends either binary
//! quietly. One tiny hold-out run serves every test.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// A model trained on 4 patients (2 per class, 3 images each) holding out one per class:
/// `(folder with model.onnx, data folder)`. Trained once per test binary.
fn trained() -> &'static (PathBuf, PathBuf) {
    static TRAINED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval_seen");
        let _ = std::fs::remove_dir_all(&root);
        let (data, out) = (root.join("data"), root.join("out"));
        copy_few_patients(2, 3, &data);
        let o = train(
            &data,
            &out,
            &[
                "--val-fraction",
                "0.5",
                "--epochs",
                "1",
                "--feature-views",
                "1",
                "--quiet",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        (out, data)
    })
}

fn card() -> Value {
    json(&trained().0.join("model.json"))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn trained_patients() -> BTreeSet<String> {
    card()["training"]["patients_trained"]
        .as_array()
        .expect("the card lists the training patients")
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// A folder with the images of the patients `keep` accepts.
fn data_of(keep: impl Fn(&str) -> bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&trained().1).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // SOB_B_A-14-22549AB-100-001.png: the patient is the 2nd and 3rd dash-separated fields.
        let fields: Vec<&str> = name.split('-').collect();
        if keep(&format!("{}-{}", fields[1], fields[2])) {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

fn eval(model: &Path, data: &Path, extra: &[&str]) -> Output {
    run(train_bin()
        .arg("eval")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(extra))
}

fn eval_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn unseen_patients_only_are_the_headline_without_a_warning() {
    let trained_on = trained_patients();
    assert_eq!(trained_on.len(), 2, "the two patients not held out");
    let data = data_of(|p| !trained_on.contains(p));
    let o = eval(&trained().0.join("model.onnx"), data.path(), &[]);
    let e = eval_json(&o);
    assert_eq!(e["patients"], 2);
    assert!(e["balanced_accuracy"].is_number(), "{e}");
    assert!(ids(&e["patient_ids"]).is_disjoint(&trained_on));
    assert!(e["seen_in_training"].is_null(), "{e}");
    assert!(!stderr(&o).contains("trained on"), "{}", stderr(&o));
}

#[test]
fn mixed_data_keeps_seen_patients_apart_and_warns() {
    let trained_on = trained_patients();
    let o = eval(&trained().0.join("model.onnx"), &trained().1, &[]);
    let e = eval_json(&o);
    // The headline is the 2 unseen patients; the 2 trained-on ones sit apart, labelled.
    assert_eq!(e["patients"], 2);
    assert!(ids(&e["patient_ids"]).is_disjoint(&trained_on));
    let seen = &e["seen_in_training"];
    assert_eq!(ids(&seen["patient_ids"]), trained_on);
    assert_eq!(seen["patients"], 2);
    assert!(seen["note"]
        .as_str()
        .unwrap()
        .contains("not how it screens"));
    assert!(
        stderr(&o).contains("2 of 4 patients were trained on"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn trained_on_patients_alone_are_refused_in_one_line_with_status_2() {
    let trained_on = trained_patients();
    let data = data_of(|p| trained_on.contains(p));
    let o = eval(&trained().0.join("model.onnx"), data.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("all 2 patients were trained on") && err.contains("--allow-seen"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    // --allow-seen scores them, apart: no headline figures at all.
    let e = eval_json(&eval(
        &trained().0.join("model.onnx"),
        data.path(),
        &["--allow-seen"],
    ));
    assert!(e.get("balanced_accuracy").is_none(), "{e}");
    assert!(e["headline"].as_str().unwrap().starts_with("none"));
    assert_eq!(ids(&e["seen_in_training"]["patient_ids"]), trained_on);
}

#[test]
fn a_card_without_training_patients_is_scored_whole_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("old.onnx");
    std::fs::copy(trained().0.join("model.onnx"), &model).unwrap();
    let mut old = card();
    old["training"]
        .as_object_mut()
        .unwrap()
        .remove("patients_trained");
    std::fs::write(
        dir.path().join("old.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let o = eval(&model, &trained().1, &[]);
    let e = eval_json(&o);
    assert_eq!(e["patients"], 4);
    assert!(e["seen_in_training"].is_null());
    assert!(
        stderr(&o).contains("cannot tell seen from unseen patients"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_card_names_the_weights_file_by_name_and_sha256_never_by_path() {
    let card = card();
    let pretrained = &card["training"]["config"]["pretrained"];
    assert_eq!(pretrained["file"], "alexnet-features-imagenet.safetensors");
    let bytes = std::fs::read(common::pretrained()).unwrap();
    assert_eq!(
        pretrained["sha256"].as_str().unwrap(),
        histoscreen_train::export::model_file::sha256_hex(&bytes)
    );
    let text = serde_json::to_string(&card).unwrap();
    let shared = common::shared().display().to_string();
    assert!(!text.contains(&shared), "the card holds a path: {text}");
    assert!(
        !text.contains("\"/"),
        "the card holds an absolute path: {text}"
    );
}

/// Spawns `eval` on the mixed data (a warning on stderr, JSON on stdout) with stdout or stderr
/// a pipe whose reading end is closed before anything is written.
fn eval_into_closed_pipe(close_stdout: bool) -> (Option<i32>, String) {
    let mut cmd = train_bin();
    cmd.env("HISTOSCREEN_SHARED", shared())
        .arg("eval")
        .arg("--model")
        .arg(trained().0.join("model.onnx"))
        .arg("--data")
        .arg(&trained().1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut kept: Box<dyn Read> = if close_stdout {
        drop(child.stdout.take());
        Box::new(child.stderr.take().unwrap())
    } else {
        drop(child.stderr.take());
        Box::new(child.stdout.take().unwrap())
    };
    let mut text = String::new();
    let _ = kept.read_to_string(&mut text);
    (child.wait().unwrap().code(), text)
}

#[test]
fn a_closed_stdout_or_stderr_ends_quietly_with_141_not_a_panic() {
    // 141 = 128 + SIGPIPE, what a shell shows for `... | head` cutting a program short.
    let (code, err) = eval_into_closed_pipe(true);
    assert_eq!(code, Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (code, out) = eval_into_closed_pipe(false);
    assert_eq!(code, Some(141), "stdout: {out}");
}

#[test]
fn colour_shifts_are_scored_on_the_unseen_patients_beside_the_unshifted_figures() {
    let trained_on = trained_patients();
    let o = eval(
        &trained().0.join("model.onnx"),
        &trained().1,
        &["--colour-shift", "desaturate-0.5,wb-warm"],
    );
    let e = eval_json(&o);
    let table = &e["colour_shift"];
    assert_eq!(
        table["patients"], "patients the model was not trained on",
        "{table}"
    );
    let rows = table["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["shift"].as_str().unwrap()).collect();
    assert_eq!(names, ["none", "desaturate-0.5", "wb-warm"]);
    // The unshifted row is the headline itself, on the unseen patients' images only.
    assert_eq!(rows[0]["balanced_accuracy"], e["balanced_accuracy"]);
    assert_eq!(rows[0]["images"], e["images"]);
    assert_eq!(rows[0]["balanced_drop"], 0.0);
    for r in &rows[1..] {
        let drop = r["balanced_drop"].as_f64().unwrap();
        let shifted = r["balanced_accuracy"].as_f64().unwrap();
        let base = rows[0]["balanced_accuracy"].as_f64().unwrap();
        assert!((base - shifted - drop).abs() < 1e-12, "{r}");
    }
    let worst = table["worst_balanced"].as_array().unwrap();
    let max_drop = rows[1..]
        .iter()
        .map(|r| r["balanced_drop"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(worst[1].as_f64().unwrap(), max_drop);
    assert!(
        stderr(&o).contains("| desaturate-0.5 |"),
        "the table is printed: {}",
        stderr(&o)
    );
    assert!(!trained_on.is_empty());

    let bad = eval(
        &trained().0.join("model.onnx"),
        &trained().1,
        &["--colour-shift", "sepia"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("unknown colour shift \"sepia\""),
        "{}",
        stderr(&bad)
    );
}
