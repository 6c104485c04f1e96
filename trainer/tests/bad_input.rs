//! Bad input gives one line naming the file and the problem.

mod common;

use common::*;

fn one_error_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected failure, got success");
    let err = stderr(o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("histoscreen-train:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    lines[0].to_string()
}

#[test]
fn missing_data_folder_is_named() {
    let out = tempfile::tempdir().unwrap();
    let o = run(train_bin()
        .args(["train", "--data", "/nonexistent/breakhis", "--out"])
        .arg(out.path()));
    let line = one_error_line(&o);
    assert!(
        line.contains("/nonexistent/breakhis") && line.contains("does not exist"),
        "{line}"
    );
}

#[test]
fn folder_without_breakhis_files_is_named() {
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(
        shared().join("fixtures/ihc-colon-512.png"),
        data.path().join("colon.png"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run(train_bin()
        .arg("train")
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(out.path()));
    let line = one_error_line(&o);
    assert!(
        line.contains("no BreakHis images found")
            && line.contains(&data.path().display().to_string()),
        "{line}"
    );
}

#[test]
fn corrupt_png_is_listed_and_training_goes_on() {
    let data = tempfile::tempdir().unwrap();
    copy_images(&some_images(2), data.path());
    let bad = data.path().join("SOB_B_A-14-99999-100-001.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = train(
        data.path(),
        out.path(),
        &[
            "--val-fraction",
            "0",
            "--epochs",
            "1",
            "--feature-views",
            "1",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("SOB_B_A-14-99999-100-001.png"));
    assert!(!rejected[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(report["data"]["images"], 4);
}

#[test]
fn weights_file_that_is_not_weights_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("alexnet.pth");
    std::fs::write(&bogus, b"hello, I am a text file and not a checkpoint").unwrap();
    let o = run(train_bin()
        .arg("train")
        .arg("--pretrained")
        .arg(&bogus)
        .arg("--out")
        .arg(dir.path().join("out")));
    let line = one_error_line(&o);
    assert!(
        line.contains("alexnet.pth") && line.contains("not a weights file"),
        "{line}"
    );
}

#[test]
fn weights_of_the_wrong_shape_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.safetensors");
    // conv1 with 32 filters instead of 64
    write_safetensors(
        &wrong,
        &[
            (
                "features.0.weight",
                vec![32, 3, 11, 11],
                vec![0.0; 32 * 3 * 121],
            ),
            ("features.0.bias", vec![32], vec![0.0; 32]),
        ],
    );
    let o = run(train_bin()
        .arg("train")
        .arg("--pretrained")
        .arg(&wrong)
        .arg("--out")
        .arg(dir.path().join("out")));
    let line = one_error_line(&o);
    assert!(
        line.contains("wrong.safetensors") && line.contains("do not fit"),
        "{line}"
    );
}

#[test]
fn safetensors_without_alexnet_keys_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("resnet.safetensors");
    write_safetensors(&other, &[("conv1.weight", vec![2, 2], vec![0.0; 4])]);
    let o = run(train_bin()
        .arg("train")
        .arg("--pretrained")
        .arg(&other)
        .arg("--out")
        .arg(dir.path().join("out")));
    let line = one_error_line(&o);
    assert!(
        line.contains("resnet.safetensors") && line.contains("no AlexNet conv weights"),
        "{line}"
    );
}

#[test]
fn unwritable_output_is_named() {
    let o = run(train_bin().args(["train", "--out", "/proc/histoscreen-out"]));
    let line = one_error_line(&o);
    assert!(line.contains("/proc/histoscreen-out"), "{line}");
}
