//! The whole product on real BreakHis images: train, export, then classify the same folder on
//! the edge; the edge's probabilities must be the trainer evaluation's, image for image.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared() -> PathBuf {
    histoscreen_train::settings::shared_dir()
}

fn csv_column(text: &str, key_col: &str, value_col: &str) -> BTreeMap<String, f64> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("csv header").split(',').collect();
    let k = header
        .iter()
        .position(|h| *h == key_col)
        .expect("key column");
    let v = header
        .iter()
        .position(|h| *h == value_col)
        .expect("value column");
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let name = PathBuf::from(cells[k])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, cells[v].parse::<f64>().expect("probability"))
        })
        .collect()
}

#[test]
fn edge_classify_equals_trainer_eval() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("model");
    // Every third real image (every patient, both classes) to train on: the contract under
    // test is that the edge reproduces the trainer's figures, which needs a real model, not
    // the whole data set; a third of it keeps the newcomer's `cargo test` minutes down.
    let ds =
        histoscreen_train::dataset::Dataset::scan(&shared().join("data/breakhis"), &[]).unwrap();
    let train_data = work.path().join("train");
    std::fs::create_dir_all(&train_data).unwrap();
    for s in ds.samples.iter().step_by(3) {
        std::fs::copy(&s.path, train_data.join(s.path.file_name().unwrap())).unwrap();
    }
    // A small folder of real images from both classes.
    let data = work.path().join("images");
    std::fs::create_dir_all(&data).unwrap();
    for s in ds.samples.iter().step_by(29) {
        std::fs::copy(&s.path, data.join(s.path.file_name().unwrap())).unwrap();
    }

    let args = [
        "histoscreen-train",
        "train",
        "--data",
        train_data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--val-fraction",
        "0",
        "--feature-views",
        "1",
        "--export",
        "int8-weights",
        "--quiet",
    ];
    std::env::set_var("HISTOSCREEN_SHARED", shared());
    assert_eq!(histoscreen_train::run_cli(args), 0);

    let model = out.join("model.onnx");
    let per_image = work.path().join("eval.csv");
    let eval_args = [
        "histoscreen-train",
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--per-image",
        per_image.to_str().unwrap(),
        // Trained on every patient: only the per-image scores are compared here.
        "--allow-seen",
        "--quiet",
    ];
    assert_eq!(histoscreen_train::run_cli(eval_args), 0);
    let trainer = csv_column(
        &std::fs::read_to_string(&per_image).unwrap(),
        "path",
        "p_malignant",
    );

    let classified = work.path().join("classify.csv");
    let edge_args = [
        "histoscreen-edge",
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--format",
        "csv",
        "--out",
        classified.to_str().unwrap(),
        data.to_str().unwrap(),
    ];
    assert_eq!(histoscreen_edge::run_cli(edge_args.map(String::from)), 0);
    let edge = csv_column(
        &std::fs::read_to_string(&classified).unwrap(),
        "path",
        "p_malignant",
    );

    assert!(trainer.len() >= 10, "only {} images", trainer.len());
    assert_eq!(
        trainer.keys().collect::<Vec<_>>(),
        edge.keys().collect::<Vec<_>>()
    );
    for (name, p) in &trainer {
        // Both print rounded probabilities; the code path is the same, so they agree to print precision.
        assert!(
            (p - edge[name]).abs() < 1e-4,
            "{name}: trainer {p} vs edge {}",
            edge[name]
        );
    }

    // `--export` wrote the int8-weights variant beside model.onnx, checked against it on
    // patients calibration never saw; the edge picks between the two by itself.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model-int8-weights.json")).unwrap())
            .unwrap();
    assert_eq!(card["precision"], "int8-weights");
    let check = &card["metrics"]["precision_check"]["against_f32"];
    assert!(check["images"].as_u64().unwrap() >= 20, "{check}");
    let auto = work.path().join("auto.csv");
    let cache = work.path().join("cache.json");
    let auto_args = [
        "histoscreen-edge",
        "classify",
        "--model-dir",
        out.to_str().unwrap(),
        "--precision",
        "auto",
        "--precision-cache",
        cache.to_str().unwrap(),
        "--format",
        "csv",
        "--out",
        auto.to_str().unwrap(),
        data.to_str().unwrap(),
    ];
    assert_eq!(histoscreen_edge::run_cli(auto_args.map(String::from)), 0);
    let auto = csv_column(
        &std::fs::read_to_string(&auto).unwrap(),
        "path",
        "p_malignant",
    );
    assert_eq!(auto.len(), edge.len());
    assert!(cache.is_file());
}
