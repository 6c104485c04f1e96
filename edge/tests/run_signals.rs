//! End-to-end runs of `histoscreen-edge run` as a separate process, with the
//! pins recorded through the hidden `--gpio-trace` and scripted scores
//! (`--fake-scores`) so the outcome does not depend on a trained model.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_histoscreen-edge");

/// Shutdown order the signals module promises: alarm line first, heartbeat last.
const SAFE_SEQUENCE: [&str; 4] = [
    "malignant 17 low",
    "uncertain 22 low",
    "benign 27 low",
    "heartbeat 23 low",
];

/// In-focus looking texture (deterministic noise), well above the default
/// sharpness threshold.
fn textured(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(320, 240, |x, y| {
        let mut h =
            x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791);
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        let v = (h >> 24) as u8;
        image::Rgb([v, v / 2 + 60, 255 - v / 3])
    })
}

fn blank() -> image::RgbImage {
    image::RgbImage::from_pixel(320, 240, image::Rgb([235, 228, 232]))
}

/// 1.png, 2.png and 4.png textured, 3.png blank glass.
fn slides(dir: &Path) -> PathBuf {
    let slides = dir.join("slides");
    std::fs::create_dir_all(&slides).unwrap();
    for i in 1..=4u32 {
        let img = if i == 3 { blank() } else { textured(i) };
        img.save(slides.join(format!("{i}.png"))).unwrap();
    }
    slides
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn parse_log(path: &Path) -> Vec<serde_json::Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn log line {l:?}: {e}")))
        .collect()
}

#[test]
fn scripted_run_drives_the_exact_pin_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let log = tmp.path().join("events.jsonl");
    let trace = tmp.path().join("pins.trace");
    let flagged = tmp.path().join("flagged");
    let out = Command::new(BIN)
        .args([
            "run",
            "--fake-scores",
            "0.1,0.9,0.2",
            "--ema",
            "1",
            "--loop",
        ])
        .args(["--fps", "0", "--max-frames", "8", "--status-secs", "0"])
        .arg(format!("--source=dir:{}", slides.display()))
        .arg("--log")
        .arg(&log)
        .arg("--gpio-trace")
        .arg(&trace)
        .arg("--save-flagged")
        .arg(&flagged)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("max-frames reached: 8 frames"), "{stderr}");

    // Scores go to classified frames only; 3.png is blank and never classified.
    let events = parse_log(&log);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "benign",
            "malignant",
            "idle",
            "benign",
            "benign",
            "malignant",
            "idle",
            "benign"
        ]
    );
    let frames: Vec<u64> = events
        .iter()
        .map(|e| e["frame"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, (1..=8).collect::<Vec<_>>());
    assert!(events[2]["p_malignant"].is_null());
    assert!((events[1]["p_malignant"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert!(events.iter().all(|e| e["dropped"] == 0));

    let expected = [
        // startup: everything off
        "malignant 17 low",
        "uncertain 22 low",
        "benign 27 low",
        "heartbeat 23 low",
        // 1 benign
        "benign 27 high",
        "heartbeat 23 high",
        // 2 malignant: break before make
        "benign 27 low",
        "malignant 17 high",
        "heartbeat 23 low",
        // 3 idle
        "malignant 17 low",
        "heartbeat 23 high",
        // 4 benign
        "benign 27 high",
        "heartbeat 23 low",
        // 5 benign: heartbeat only
        "heartbeat 23 high",
        // 6 malignant
        "benign 27 low",
        "malignant 17 high",
        "heartbeat 23 low",
        // 7 idle
        "malignant 17 low",
        "heartbeat 23 high",
        // 8 benign
        "benign 27 high",
        "heartbeat 23 low",
        // shutdown
        "malignant 17 low",
        "uncertain 22 low",
        "benign 27 low",
        "heartbeat 23 low",
    ];
    assert_eq!(read_lines(&trace), expected);

    // Frames that raised malignant (2 and 6) were saved and logged as such.
    let mut saved: Vec<String> = std::fs::read_dir(&flagged)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert!(saved[0].starts_with("flagged-00000002-"), "{saved:?}");
    assert!(events[1]["saved"].as_str().unwrap().ends_with(&saved[0]));
    assert!(image::open(flagged.join(&saved[1])).is_ok());
}

/// Waits until `child`'s event log has `lines` lines and `ready` holds; the deadline only
/// guards against a hang.
fn wait_running(
    child: &mut std::process::Child,
    log: &Path,
    lines: usize,
    ready: impl Fn() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = read_lines(log).len();
        if have >= lines && ready() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "run produced only {have} log lines"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_mid_run_exits_143_with_pins_safe_and_log_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let log = tmp.path().join("events.jsonl");
    let trace = tmp.path().join("pins.trace");
    let mut child = Command::new(BIN)
        .args(["run", "--fake-scores", "0.2,0.95,0.95,0.5", "--loop"])
        .args(["--fps", "200", "--status-secs", "0"])
        .arg(format!("--source=dir:{}", slides.display()))
        .arg("--log")
        .arg(&log)
        .arg("--gpio-trace")
        .arg(&trace)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Clearly running, and the alarm raised at least once.
    wait_running(&mut child, &log, 20, || {
        read_lines(&trace).iter().any(|l| l == "malignant 17 high")
    });
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 128 + SIGTERM, as a shell reports a program SIGTERM ended (and systemd accepts it).
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stop requested"), "{stderr}");
    assert!(
        stderr.contains("pins safe (trace ")
            && stderr.contains("malignant 17, uncertain 22, benign 27, heartbeat 23 low"),
        "the summary names the pins now safe: {stderr}"
    );

    // Every line whole, frames numbered without gaps.
    let events = parse_log(&log);
    assert!(events.len() >= 20);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["frame"].as_u64(), Some(i as u64 + 1));
    }

    let trace = read_lines(&trace);
    assert_eq!(&trace[trace.len() - 4..], SAFE_SEQUENCE, "{trace:?}");
    assert_eq!(&trace[..4], SAFE_SEQUENCE, "startup must also be safe");
}

#[test]
fn active_low_pins_rest_high() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let trace = tmp.path().join("pins.trace");
    let out = Command::new(BIN)
        .args(["run", "--fake-scores", "0.9", "--active-low", "--fps", "0"])
        .args(["--max-frames", "1", "--status-secs", "0"])
        .arg(format!("--source=file:{}", slides.join("1.png").display()))
        .arg("--gpio-trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = read_lines(&trace);
    let inverted: Vec<String> = SAFE_SEQUENCE
        .iter()
        .map(|l| l.replace("low", "high"))
        .collect();
    assert_eq!(&trace[..4], inverted.as_slice());
    assert_eq!(&trace[4..6], ["malignant 17 low", "heartbeat 23 low"]);
    assert_eq!(&trace[trace.len() - 4..], inverted.as_slice());
}

#[test]
fn console_sink_prints_transitions_without_gpio() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let out = Command::new(BIN)
        .args([
            "run",
            "--fake-scores",
            "0.1,0.9",
            "--ema",
            "1",
            "--fps",
            "0",
        ])
        .args(["--status-secs", "0"])
        .arg(format!("--source=dir:{}", slides.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Without --loop the 4 files are replayed once.
    assert!(stderr.contains("end of source: 4 frames"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("frame 1: idle -> benign"), "{stdout}");
    assert!(
        lines[1].starts_with("frame 2: benign -> malignant"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("frame 3: malignant -> idle"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("frame 4: idle -> benign"), "{stdout}");
}

#[test]
fn sigint_in_console_mode_exits_130_and_says_no_pins_were_driven() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let log = tmp.path().join("events.jsonl");
    let mut child = Command::new(BIN)
        .args(["run", "--fake-scores", "0.2", "--loop"])
        .args(["--fps", "200", "--status-secs", "0", "--pin-heartbeat", "5"])
        .arg(format!("--source=dir:{}", slides.display()))
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&mut child, &log, 5, || true);
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "console mode, no pins driven (with --gpio-chip they would now be safe: \
             malignant 17, uncertain 22, benign 27, heartbeat 5 low)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("; ema alpha 0.3 hi "),
        "no Rust debug text: {stderr}"
    );
}

#[test]
fn a_closed_stderr_ends_the_run_with_141_and_pins_safe_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let slides = slides(tmp.path());
    let trace = tmp.path().join("pins.trace");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--fake-scores",
            "0.9",
            "--loop",
            "--status-secs",
            "0",
        ])
        // A third of a second: the summary is written long after the pipe closed.
        .args(["--fps", "100", "--max-frames", "30"])
        .arg(format!("--source=dir:{}", slides.display()))
        .arg("--gpio-trace")
        .arg(&trace)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // As `run ... 2>&1 | head -0` would: nobody reads stderr any more.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    // 128 + SIGPIPE, what a shell shows for a program a closed pipe ended; not 101 (a panic).
    assert_eq!(status.code(), Some(141));
    let trace = read_lines(&trace);
    assert_eq!(&trace[trace.len() - 4..], SAFE_SEQUENCE, "{trace:?}");
}
