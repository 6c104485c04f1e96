//! `run` with the bundled model puts a frame that is not H&E tissue (an IHC slide) in the idle
//! state, with the gate's reason in the JSONL log and on the status line; H&E frames are scored.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_histoscreen-edge");

#[test]
fn an_ihc_frame_is_idle_with_the_reason_and_he_frames_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let fixtures = common::shared().join("fixtures");
    std::fs::copy(common::malignant_png(), frames.join("1-breakhis.png")).unwrap();
    std::fs::copy(fixtures.join("ihc-colon-512.png"), frames.join("2-ihc.png")).unwrap();
    std::fs::copy(
        fixtures.join("he-tumour-tile-1000.png"),
        frames.join("3-other-lab-he.png"),
    )
    .unwrap();
    let log = dir.path().join("run.jsonl");
    let out = Command::new(BIN)
        .args(["run", "--fps=0", "--status-secs=0.01"])
        .arg(format!("--source=dir:{}", frames.display()))
        .arg(format!("--log={}", log.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{stderr}");

    for i in [0, 2] {
        let e = &events[i];
        assert_eq!(e["gate"]["pass"], true, "{e}");
        assert!(e["p_malignant"].is_number(), "{e}");
        assert!(e.get("idle_reason").is_none(), "{e}");
    }
    let ihc = &events[1];
    assert!(ihc["origin"].as_str().unwrap().ends_with("2-ihc.png"));
    assert_eq!(ihc["gate"]["pass"], false, "{ihc}");
    assert!(ihc["p_malignant"].is_null(), "{ihc}");
    let reason = ihc["idle_reason"].as_str().unwrap();
    assert!(reason.starts_with("not H&E: "), "{reason}");
    assert!(reason.contains("not H&E colours"), "{reason}");
    assert!(
        stderr.contains("idle 1 (last: not H&E: "),
        "the status line names the reason: {stderr}"
    );
}
