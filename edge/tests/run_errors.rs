//! Misconfigurations of `run` fail before the loop starts, with exit status
//! 1 and exactly one stderr line naming the culprit.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_histoscreen-edge");

fn sample_png(dir: &Path) -> String {
    let path = dir.join("frame.png");
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 4) as u8])
    })
    .save(&path)
    .unwrap();
    format!("file:{}", path.display())
}

/// Run with scripted scores plus `extra`; return the single stderr line.
fn fails_with(source: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args([
            "run",
            "--fake-scores",
            "0.5",
            "--max-frames",
            "1",
            "--status-secs",
            "0",
        ])
        .arg(format!("--source={source}"))
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("histoscreen-edge: "), "{stderr}");
    lines[0].to_string()
}

#[cfg(feature = "camera")]
#[test]
fn missing_camera_names_the_device_and_what_to_check() {
    let line = fails_with("camera:/dev/video-histoscreen-missing", &[]);
    assert!(line.contains("/dev/video-histoscreen-missing"), "{line}");
    assert!(line.contains("v4l2-ctl --list-devices"), "{line}");
}

#[cfg(not(feature = "camera"))]
#[test]
fn camera_without_the_feature_says_so() {
    let line = fails_with("camera:/dev/video0", &[]);
    assert!(
        line.contains("/dev/video0") && line.contains("camera"),
        "{line}"
    );
}

#[test]
fn missing_gpiochip_names_the_chip() {
    let tmp = tempfile::tempdir().unwrap();
    let line = fails_with(
        &sample_png(tmp.path()),
        &["--gpio-chip", "/dev/gpiochip-histoscreen-missing"],
    );
    assert!(
        line.contains("cannot open GPIO chip /dev/gpiochip-histoscreen-missing"),
        "{line}"
    );
    assert!(line.contains("gpiodetect"), "{line}");
}

#[test]
fn a_pin_used_twice_names_the_pin_and_both_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("pins.trace");
    let line = fails_with(
        &sample_png(tmp.path()),
        &[
            "--pin-benign",
            "17",
            "--gpio-trace",
            trace.to_str().unwrap(),
        ],
    );
    assert_eq!(
        line,
        "histoscreen-edge: GPIO pin 17 is given for both --pin-malignant and --pin-benign"
    );
}

#[test]
fn unwritable_log_fails_before_any_pin_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("pins.trace");
    let log = tmp.path().join("no-such-dir").join("events.jsonl");
    let line = fails_with(
        &sample_png(tmp.path()),
        &[
            "--log",
            log.to_str().unwrap(),
            "--gpio-trace",
            trace.to_str().unwrap(),
        ],
    );
    assert!(
        line.contains(&format!("cannot open event log {}", log.display())),
        "{line}"
    );
    assert!(
        !trace.exists(),
        "pins were touched before the log was checked"
    );
}

#[test]
fn missing_model_and_bad_sources_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_png(tmp.path());
    let out = Command::new(BIN)
        .args([
            "run",
            "--model",
            "/nonexistent/model.onnx",
            "--status-secs",
            "0",
        ])
        .arg(format!("--source={src}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/model.onnx"), "{stderr}");

    let line = fails_with("dir:/nonexistent/slides", &[]);
    assert!(line.contains("/nonexistent/slides"), "{line}");
    let line = fails_with("webcam0", &[]);
    assert!(line.contains("camera:DEVICE"), "{line}");
}
