//! Checkpoints: Ctrl-C mid-training saves one, `--resume` finishes the run with exactly the
//! model an uninterrupted run makes, and `predict --checkpoint` agrees with the exported model.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Two patients of each class, six images each: quick, and enough for 2 folds.
fn small_data(dir: &Path) {
    copy_few_patients(2, 6, dir);
}

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--folds",
        "2",
        "--epochs",
        "3",
        "--batch",
        "4",
        "--select-fraction",
        "0",
        // Through the trunk at every step: slow enough epochs for the signal to land mid-run.
        "--feature-views",
        "0",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `path -> p_malignant` from `predict` (tab-separated) or `eval --per-image` (CSV) output.
fn probabilities(text: &str, sep: char, p_col: usize, path_col: usize) -> BTreeMap<String, f64> {
    text.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split(sep).collect();
            let name = Path::new(cols[path_col]).file_name().unwrap();
            (
                name.to_string_lossy().into_owned(),
                cols[p_col].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn interrupted_training_resumes_to_the_same_model_and_predict_matches_it() {
    let data = tempfile::tempdir().unwrap();
    small_data(data.path());
    let whole = tempfile::tempdir().unwrap();
    let o = run(train_bin().args(train_args(data.path(), whole.path())));
    assert!(o.status.success(), "{}", stderr(&o));

    // Interrupt as soon as the first epoch is on disk: SIGINT, as Ctrl-C sends it.
    let cut = tempfile::tempdir().unwrap();
    let child = train_bin()
        .args(train_args(data.path(), cut.path()))
        .env("HISTOSCREEN_SHARED", shared())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = cut.path().join("checkpoint/state.json");
    let started = Instant::now();
    while !state.is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "cannot signal the training process");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let message = stderr(&o);
    assert!(message.contains("--resume"), "{message}");
    assert!(!cut.path().join("model.onnx").exists());
    let saved = json(&state);
    assert!(!saved["finished"].as_bool().unwrap());

    let mut args = train_args(data.path(), cut.path());
    args.push("--resume".into());
    let o = run(train_bin().args(&args));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&whole.path().join("model.json"))["sha256"],
        json(&cut.path().join("model.json"))["sha256"],
        "a resumed run exports the same model as an uninterrupted one"
    );
    assert_eq!(
        json(&whole.path().join("report.json"))["summary"],
        json(&cut.path().join("report.json"))["summary"]
    );
    // Finished: a second --resume has nothing to do, and says so.
    let o = run(train_bin().args(&args));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already finished"), "{}", stderr(&o));

    // The checkpoint's network is the exported one: same probabilities through burn and tract.
    let o = run(train_bin()
        .args(["predict", "--quiet", "--checkpoint"])
        .arg(cut.path())
        .arg(data.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let predicted = probabilities(&String::from_utf8_lossy(&o.stdout), '\t', 0, 2);
    let csv = cut.path().join("per-image.csv");
    // The exported model trained on every one of these patients: scored apart, on purpose.
    let o = run(train_bin()
        .args(["eval", "--quiet", "--allow-seen", "--model"])
        .arg(cut.path().join("model.onnx"))
        .arg("--data")
        .arg(data.path())
        .arg("--per-image")
        .arg(&csv));
    assert!(o.status.success(), "{}", stderr(&o));
    let exported = probabilities(&std::fs::read_to_string(&csv).unwrap(), ',', 5, 0);
    assert_eq!(
        predicted.len(),
        std::fs::read_dir(data.path()).unwrap().count()
    );
    assert_eq!(
        predicted.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>()
    );
    for (name, p) in &predicted {
        assert!(
            (p - exported[name]).abs() < 1e-4,
            "{name}: predict {p} vs exported {}",
            exported[name]
        );
    }

    // The same network in int8 (calibrated) and with int8 weights: a quarter of the file each.
    // The checkpoint's network trained on all 4 patients (2 folds + final), so one patient per
    // class calibrates and the other is compared.
    let f32_size = std::fs::metadata(cut.path().join("model.onnx"))
        .unwrap()
        .len();
    for precision in ["int8", "int8-weights"] {
        let file = cut.path().join(format!("model-{precision}.onnx"));
        let o = run(train_bin()
            .args([
                "export",
                "--quiet",
                "--precision",
                precision,
                "--checkpoint",
            ])
            .arg(cut.path())
            .arg("--out")
            .arg(&file)
            .arg("--data")
            .arg(data.path()));
        assert!(o.status.success(), "{}", stderr(&o));
        let card = json(&file.with_extension("json"));
        assert_eq!(card["precision"], precision);
        let size = std::fs::metadata(&file).unwrap().len();
        assert_eq!(card["size_bytes"].as_u64().unwrap(), size);
        assert!(
            size * 10 <= f32_size * 3,
            "{precision}: {size} vs f32 {f32_size}"
        );
        let check = &card["metrics"]["precision_check"];
        assert_eq!(check["held_out"], false, "{check}");
        assert_eq!(check["patients"].as_array().unwrap().len(), 2, "{check}");
        let against = &check["against_f32"];
        let compared: Vec<String> = check["patients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("-{}-", p.as_str().unwrap()))
            .collect();
        let images = std::fs::read_dir(data.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                compared.iter().any(|p| name.to_string_lossy().contains(p))
            })
            .count();
        assert_eq!(against["images"].as_u64().unwrap() as usize, images);
        // A 3-epoch network on 4 patients sits near the threshold, where any rounding can
        // flip a label; the accuracy bar proper is tested on the bundled model (variants.rs).
        assert!(
            against["label_agreement"].as_f64().unwrap() >= 0.9,
            "{against}"
        );
        assert!(against["max_abs_diff"].as_f64().unwrap() < 0.2, "{against}");
        if precision == "int8" {
            let calibration = &card["metrics"]["calibration"];
            let calibrated = calibration["patients"].as_array().unwrap();
            assert_eq!(calibrated.len(), 2, "{calibration}");
            for p in calibrated {
                assert!(!check["patients"].as_array().unwrap().contains(p));
            }
            let calibration_images = calibration["ranges"]["images"].as_u64().unwrap() as usize;
            assert_eq!(
                calibration_images + images,
                predicted.len(),
                "{calibration}"
            );
            assert_eq!(
                calibration["ranges"]["conv_max"].as_array().unwrap().len(),
                5
            );
        }
    }
    // f16 arithmetic runs in tract's generic kernels on x86 (about 12 s a tile in this build),
    // so its check here is the centre tile of four real images, through the edge, against f32:
    // the view does not change the arithmetic, and a whole field is 120 tiles.
    let f16 = cut.path().join("model-f16.onnx");
    let o = run(train_bin()
        .args(["export", "--quiet", "--precision", "f16", "--checkpoint"])
        .arg(cut.path())
        .arg("--out")
        .arg(&f16));
    assert!(o.status.success(), "{}", stderr(&o));
    let f16_size = std::fs::metadata(&f16).unwrap().len();
    assert!(
        f16_size * 100 <= f32_size * 55,
        "f16: {f16_size} vs f32 {f32_size}"
    );
    let few = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names.iter().step_by(names.len() / 4).take(4) {
        std::fs::copy(p, few.path().join(p.file_name().unwrap())).unwrap();
    }
    let edge = std::path::Path::new(env!("CARGO_BIN_EXE_histoscreen-train"))
        .with_file_name("histoscreen-edge");
    assert!(
        edge.is_file(),
        "{} not built (cargo test --workspace builds it)",
        edge.display()
    );
    let classify = |precision: &str| {
        let o = run(std::process::Command::new(&edge)
            .args([
                "classify",
                "--view",
                "centre",
                "--format",
                "csv",
                "--precision",
                precision,
                "--model-dir",
            ])
            .arg(cut.path())
            .arg(few.path()));
        assert!(o.status.success(), "{}", stderr(&o));
        probabilities(&String::from_utf8_lossy(&o.stdout), ',', 1, 0)
    };
    let (p16, p32) = (classify("f16"), classify("f32"));
    assert_eq!(p16.len(), 4);
    for (name, p) in &p32 {
        assert!(
            (p - p16[name]).abs() < 0.02,
            "{name}: f16 {} vs f32 {p}",
            p16[name]
        );
    }

    // The folder now holds four variants of one model: the edge benchmarks them all (f16 is
    // cut short after one run: more than 3x slower than f32 here).
    let o = run(std::process::Command::new(&edge)
        .args(["bench", "--iterations", "2", "--warmup", "0", "--model-dir"])
        .arg(cut.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for file in [
        "model.onnx",
        "model-int8.onnx",
        "model-int8-weights.onnx",
        "model-f16.onnx",
    ] {
        assert!(table.contains(file), "{table}");
    }
    assert!(table.contains("auto takes it"), "{table}");
}

#[test]
fn resume_and_predict_without_a_checkpoint_are_one_line_errors() {
    let data = tempfile::tempdir().unwrap();
    small_data(data.path());
    let out = tempfile::tempdir().unwrap();
    let mut args = train_args(data.path(), out.path());
    args.push("--resume".into());
    let o = run(train_bin().args(&args));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("checkpoint") && e.contains("nothing to resume"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let o = run(train_bin()
        .args(["predict", "--quiet", "--checkpoint"])
        .arg(out.path())
        .arg(data.path()));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("state.json") && e.contains("no checkpoint"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}
