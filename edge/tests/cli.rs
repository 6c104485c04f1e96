//! The CLI end to end, in-process, on real BreakHis images.

mod common;

use common::{cli, TinySpec};

fn model_in(dir: &std::path::Path) -> String {
    common::write_tiny_model(dir, "model", &TinySpec::default())
        .display()
        .to_string()
}

#[test]
fn classify_folder_writes_sorted_csv_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let out = dir.path().join("report.csv");
    let patient = common::patient_dir();
    let (code, stdout) = cli(&[
        "classify",
        "--model",
        &model,
        patient.to_str().unwrap(),
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.is_empty(), "report goes to --out only");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,p_malignant,label,tiles,latency_ms,error,tissue_fraction,stain_angle_deg,not_he_reason")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut pngs = histoscreen_edge::paths::images_under(&patient).unwrap();
    pngs.sort();
    assert_eq!(rows.len(), pngs.len());
    for (row, png) in rows.iter().zip(&pngs) {
        assert_eq!(row[0], png.display().to_string());
        let p: f32 = row[1].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert!(["benign", "malignant", "uncertain"].contains(&row[2]));
        assert_eq!(
            row[3], "centre",
            "the tiny model's card has no whole-field spec"
        );
        assert!(row[4].parse::<f64>().unwrap() >= 0.0);
    }
}

#[test]
fn unreadable_image_becomes_an_error_row_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::copy(common::benign_png(), imgs.join("a_good.png")).unwrap();
    std::fs::write(imgs.join("b_broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    std::fs::copy(common::malignant_png(), imgs.join("c_good.png")).unwrap();
    let (code, stdout) = cli(&[
        "classify",
        "--model",
        &model,
        imgs.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert_eq!(code, 2);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "the run continues past the broken file");
    assert_eq!(rows[1]["label"], "error");
    let msg = rows[1]["error"].as_str().unwrap();
    assert!(msg.contains("b_broken.png: not a readable image"), "{msg}");
    for good in [&rows[0], &rows[2]] {
        assert_ne!(good["label"], "error");
        assert!(good["p_malignant"].as_f64().is_some());
    }
}

#[test]
fn table_format_lists_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let png = common::benign_png();
    let (code, stdout) = cli(&["classify", "--model", &model, png.to_str().unwrap()]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("path"));
    assert!(lines[1].starts_with(&png.display().to_string()));
}

#[test]
fn empty_directory_is_a_one_line_error_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), b"no images here").unwrap();
    let (code, stdout) = cli(&["classify", "--model", &model, empty.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
}

#[test]
fn bench_reports_percentiles_and_memory_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let json = dir.path().join("bench.json");
    let (code, stdout) = cli(&[
        "bench",
        "--model",
        &model,
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("inference"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["iterations"], 5);
    for key in ["preprocess_ms", "infer_ms"] {
        let p = &r[key];
        assert!(p["p50"].as_f64().unwrap() <= p["p99"].as_f64().unwrap());
    }
    assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(r["image"].as_str().unwrap().contains("BreaKHis"));
}

#[test]
fn demo_runs_bundled_samples_with_given_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_in(dir.path());
    let (code, stdout) = cli(&["demo", "--model", &model]);
    assert_eq!(code, 0, "{stdout}");
    let sample_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("SOB_")).collect();
    assert_eq!(sample_lines.len(), 8, "{stdout}");
    assert!(sample_lines.iter().all(|l| l.contains("rig: LED")));
    assert_eq!(
        sample_lines
            .iter()
            .filter(|l| l.contains("truth malignant"))
            .count(),
        4
    );
}

#[test]
fn demo_with_missing_model_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("histoscreen-alexnet-compact.onnx");
    let (code, _) = cli(&["demo", "--model", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
}

#[test]
fn usage_errors_exit_2() {
    let (code, _) = cli(&["classify"]);
    assert_eq!(code, 2);
}

/// The README's first command: the bundled model, its card and the samples ship together, and
/// the checksum in the card is the committed file's.
#[test]
fn demo_runs_with_the_bundled_default_model() {
    let default = histoscreen_edge::paths::default_model();
    assert!(default.is_file(), "{} is missing", default.display());
    let (code, stdout) = cli(&["demo"]);
    assert_eq!(code, 0, "{stdout}");
    let sample_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("SOB_")).collect();
    assert_eq!(sample_lines.len(), 8, "{stdout}");
    for line in sample_lines {
        let p: f32 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("p=").and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("no p= in {line}"));
        assert!((0.0..=1.0).contains(&p), "{line}");
    }
}
