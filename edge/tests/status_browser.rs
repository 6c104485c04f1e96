//! The status page in a real browser: headless Chromium loads `/` from a `run` on real BreakHis
//! frames with the bundled model, and the rendered DOM must show the decision and the frame
//! counter changing. Without Chromium the test says SKIPPED, except in CI, where it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_histoscreen-edge");

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("HISTOSCREEN_CHROMIUM").map(PathBuf::from),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var_os("HISTOSCREEN_CI").is_some() || std::env::var_os("CI").is_some()
}

/// Flags for a headless Chromium on a machine without a network or a desktop session.
fn headless(chrome: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chrome);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // Lets the page's 1 Hz polling run a few rounds before the DOM is read.
        "--virtual-time-budget=2500",
        "--window-size=1100,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stderr(Stdio::null());
    c
}

/// The text of the element with `id`, from a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let open_end = at + dom[at..].find('>').unwrap() + 1;
    let close = open_end + dom[open_end..].find('<').unwrap();
    dom[open_end..close].trim().to_string()
}

struct Rig(Child);

impl Drop for Rig {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn the_page_shows_decisions_and_frames_changing_in_chromium() {
    let Some(chrome) = chromium() else {
        assert!(
            !in_ci(),
            "Chromium is missing in CI: .ci/install should have installed it"
        );
        eprintln!("SKIPPED the_page_shows_decisions_and_frames_changing_in_chromium: no Chromium (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    // A benign and a malignant field, alternating, so the decision has something to change.
    std::fs::copy(common::benign_png(), frames.join("1.png")).unwrap();
    std::fs::copy(common::malignant_png(), frames.join("2.png")).unwrap();
    let trace = dir.path().join("pins.trace");
    let mut child = Command::new(BIN)
        .args(["run", "--loop", "--fps=0", "--ema=1", "--status-secs=0"])
        .arg(format!("--source=dir:{}", frames.display()))
        .arg(format!("--gpio-trace={}", trace.display()))
        .args(["--status", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let rig = Rig(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("run: status page on http://")
                .map(|r| r.trim_end_matches('/').to_string())
        })
        .expect("status page line");
    std::thread::spawn(move || lines.for_each(drop));
    let url = format!("http://{addr}/");

    let mut decisions = Vec::new();
    let mut counters = Vec::new();
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let out = headless(&chrome, &dir.path().join("profile"))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        let frames: u64 = text_of(&dom, "frames").parse().unwrap();
        let decision = text_of(&dom, "decision");
        assert!(
            ["IDLE", "BENIGN", "UNCERTAIN", "MALIGNANT"].contains(&decision.as_str()),
            "{decision}"
        );
        counters.push(frames);
        if !decisions.contains(&decision) {
            decisions.push(decision);
        }
        let counted_up = counters.windows(2).any(|w| w[1] > w[0]);
        if counted_up && decisions.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        counters.windows(2).any(|w| w[1] > w[0]),
        "the frame counter never moved: {counters:?}"
    );
    assert!(
        decisions.len() >= 2,
        "the decision never changed: {decisions:?} over frames {counters:?}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let status = headless(&chrome, &dir.path().join("profile"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    let img = image::open(&shot).unwrap();
    assert_eq!((img.width(), img.height()), (1100, 1000));
    eprintln!("screenshot: {}", shot.display());
    drop(rig);
}
