//! `run --status` as a person (or Prometheus, or an attacker) meets it: a real `run` process
//! on 127.0.0.1, spoken to over raw TCP so that every response is checked byte for byte.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_histoscreen-edge");
const TOKEN: &str = "s3cret-token-0123456789";

/// A `run` process with its status page; killed (SIGTERM) when dropped.
struct Rig {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    fn start(args: &[&str]) -> Rig {
        let mut child = Command::new(BIN)
            .arg("run")
            .args(["--status", "127.0.0.1:0", "--status-secs", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("run: status page on http://") {
                    let addr = rest.split('/').next().unwrap().to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no status page line; stderr: {:?}", lines.lock()));
        Rig {
            child,
            addr: addr.parse().unwrap(),
            stderr: lines,
        }
    }

    fn stderr_has(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    fn wait_for_stderr(&self, needle: &str, within: Duration) {
        let until = Instant::now() + within;
        while !self.stderr_has(needle) {
            assert!(
                Instant::now() < until,
                "no {needle:?} on stderr: {:?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        terminate(&self.child);
        let code = self.child.wait().unwrap().code();
        std::mem::forget(self);
        code
    }
}

fn terminate(child: &Child) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

/// One response, read to the end of a `Connection: close` exchange.
#[derive(Debug)]
struct Reply {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    parse_reply(&bytes)
}

fn parse_reply(bytes: &[u8]) -> Reply {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

fn get_with(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: rig\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, "")
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = get(addr, path);
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// Three real BreakHis frames and one blank one (idle: below the sharpness floor).
fn frames_dir(dir: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let mut real: Vec<PathBuf> = std::fs::read_dir(common::patient_dir().join("100X"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    real.sort();
    for (i, src) in real.iter().take(3).enumerate() {
        std::fs::copy(src, frames.join(format!("{}.png", i + 1))).unwrap();
    }
    image::RgbImage::from_pixel(320, 240, image::Rgb([235, 228, 232]))
        .save(frames.join("4.png"))
        .unwrap();
    frames
}

#[test]
fn api_status_and_metrics_agree_with_the_jsonl_log() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path());
    let log = dir.path().join("run.jsonl");
    let trace = dir.path().join("pins.trace");
    let rig = Rig::start(&[
        &format!("--source=dir:{}", frames.display()),
        "--loop",
        "--fps=0",
        "--fake-scores=0.05,0.9,0.9,0.9,0.5",
        "--ema=1",
        "--max-frames=23",
        "--status-linger=120",
        &format!("--log={}", log.display()),
        &format!("--gpio-trace={}", trace.display()),
    ]);
    rig.wait_for_stderr("status page stays up", Duration::from_secs(120));

    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |state: &str| events.iter().filter(|e| e["state"] == state).count() as u64;
    let idle_log = events.iter().filter(|e| e["p_malignant"].is_null()).count() as u64;

    let s = json(rig.addr, "/api/status");
    assert_eq!(s["frames"], 23);
    assert_eq!(events.len(), 23);
    assert_eq!(s["idle_frames"].as_u64().unwrap(), idle_log);
    assert!(
        idle_log >= 5,
        "every fourth frame is blank glass: {idle_log}"
    );
    for state in ["benign", "malignant", "uncertain", "idle"] {
        assert_eq!(
            s["decisions"][state].as_u64().unwrap(),
            count(state),
            "{state}"
        );
    }
    assert_eq!(s["dropped"], events.last().unwrap()["dropped"]);
    assert_eq!(s["running"], false);
    assert_eq!(s["stop_reason"], "max-frames reached");
    assert_eq!(s["health"], "stopped");
    let changes = events.iter().filter(|e| e["changed"] == true).count();
    assert_eq!(
        s["transitions"].as_array().unwrap().len(),
        changes.min(20),
        "the page lists the last 20 state changes"
    );
    // The loop ended with every line in its safe state, and the page says so.
    let pins = s["pins"].as_array().unwrap();
    let lines: Vec<(String, u64, bool)> = pins
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap(),
                p["on"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("malignant".into(), 17, false),
            ("uncertain".into(), 22, false),
            ("benign".into(), 27, false),
            ("heartbeat".into(), 23, false)
        ]
    );

    let m = get(rig.addr, "/metrics");
    assert_eq!(m.status, "HTTP/1.1 200 OK");
    let scrape = prometheus_parse::Scrape::parse(m.text().lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in {}", m.text()));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("histoscreen_frames_total", None), 23.0);
    assert_eq!(
        value("histoscreen_idle_frames_total", None),
        idle_log as f64
    );
    for state in ["benign", "malignant", "uncertain", "idle"] {
        assert_eq!(
            value("histoscreen_decisions_total", Some(("state", state))),
            count(state) as f64,
            "{state}"
        );
    }
    assert_eq!(value("histoscreen_running", None), 0.0);
    assert_eq!(value("histoscreen_pin_on", Some(("pin", "malignant"))), 0.0);
    let latency_count = scrape
        .samples
        .iter()
        .find(|s| s.metric == "histoscreen_latency_seconds")
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            other => panic!("latency is not a histogram: {other:?}"),
        })
        .expect("latency histogram");
    assert_eq!(latency_count, 23.0);

    let h = get(rig.addr, "/healthz");
    assert_eq!(h.status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(h.text(), "stopped: the loop stopped: max-frames reached\n");
    assert_eq!(
        rig.stop(),
        Some(143),
        "SIGTERM ends the linger like the loop"
    );
}

#[test]
fn healthz_turns_503_when_the_source_stalls() {
    let rig = Rig::start(&[
        &format!("--source=file:{}", common::benign_png().display()),
        "--loop",
        "--fps=0.25",
        "--fake-scores=0.1",
        "--status-stall-secs=1",
    ]);
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < until {
        let r = get(rig.addr, "/healthz");
        let entry = (r.status.clone(), r.text());
        if seen.last() != Some(&entry) {
            seen.push(entry);
        }
        let ok_then_stalled = seen
            .iter()
            .position(|(s, _)| s == "HTTP/1.1 200 OK")
            .is_some_and(|i| seen[i..].iter().any(|(_, t)| t.starts_with("stalled: ")));
        if ok_then_stalled {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = seen.iter().position(|(s, _)| s == "HTTP/1.1 200 OK");
    let ok = ok.unwrap_or_else(|| panic!("never healthy: {seen:?}"));
    assert_eq!(seen[ok].1, "ok: frames are flowing\n");
    let stalled = seen[ok..]
        .iter()
        .find(|(_, t)| t.starts_with("stalled: "))
        .unwrap_or_else(|| panic!("never stalled: {seen:?}"));
    assert_eq!(stalled.0, "HTTP/1.1 503 Service Unavailable");
    assert!(
        stalled.1.starts_with("stalled: no frame for "),
        "{stalled:?}"
    );
}

fn serving_rig() -> Rig {
    let rig = Rig::start(&[
        &format!("--source=file:{}", common::benign_png().display()),
        "--loop",
        "--fps=5",
        "--fake-scores=0.2,0.8",
        "--status-header-timeout=2",
    ]);
    // Wait for a frame, so /frame.jpg has something to show.
    let until = Instant::now() + Duration::from_secs(60);
    while get(rig.addr, "/healthz").status != "HTTP/1.1 200 OK" {
        assert!(Instant::now() < until, "no frame within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
    rig
}

#[test]
fn the_page_is_read_only_and_never_reaches_the_filesystem() {
    let rig = serving_rig();
    let a = rig.addr;

    let page = get(a, "/");
    assert_eq!(page.status, "HTTP/1.1 200 OK");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .text()
        .contains("<script src=\"/app.js\" defer></script>"));
    assert!(!page.text().contains("<script>"), "no inline scripts");
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    let frame = get(a, "/frame.jpg");
    assert_eq!(frame.status, "HTTP/1.1 200 OK");
    assert_eq!(frame.header("content-type"), Some("image/jpeg"));
    assert_eq!(frame.header("cache-control"), Some("no-store"));
    let img = image::load_from_memory(&frame.body).unwrap();
    assert_eq!((img.width(), img.height()), (700, 460));

    let head = raw(
        a,
        b"HEAD /api/status HTTP/1.1\r\nHost: rig\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert!(head.body.is_empty());

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = raw(
            a,
            format!("{method} /api/status HTTP/1.1\r\nHost: rig\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, "HTTP/1.1 405 Method Not Allowed", "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }

    for path in [
        "/../Cargo.toml",
        "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/etc/passwd",
        "/app.js/../../../etc/passwd",
        "//etc/passwd",
        "/static/../../models/histoscreen-alexnet-compact.json",
        "/thumb/..%2f..%2fmodel.onnx",
    ] {
        let r = get(a, path);
        let expected = if path.starts_with("/thumb/") {
            // The frame number does not parse: axum's path rejection, still nothing read.
            "HTTP/1.1 400 Bad Request"
        } else {
            "HTTP/1.1 404 Not Found"
        };
        assert_eq!(r.status, expected, "{path}: {}", r.text());
        if expected.contains("404") {
            assert_eq!(r.text(), "404 not found\n", "{path}");
        }
    }
}

#[test]
fn limits_hold_against_big_heads_floods_and_slow_clients() {
    let rig = serving_rig();
    let a = rig.addr;

    // An 16 KiB header: refused before any handler runs.
    let big = format!(
        "GET /api/status HTTP/1.1\r\nHost: rig\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let r = raw(a, big.as_bytes());
    assert_eq!(r.status, "HTTP/1.1 431 Request Header Fields Too Large");

    // A slow-loris client that never finishes its head is cut off after the header timeout.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /api/status HTTP/1.1\r\nHost: rig\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // hyper closes such a connection without a response: nothing to parse, nothing to hold.
    assert_eq!(String::from_utf8_lossy(&buf), "");

    // The same timeout ends an idle keep-alive connection after its last response.
    let mut kept = TcpStream::connect(a).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: rig\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 512];
    let n = kept.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK"));
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = kept.read_to_end(&mut rest);
    assert!(rest.is_empty() && t0.elapsed() < Duration::from_secs(10));

    // 64 connections that send nothing fill every slot; the 65th is told so and closed.
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = get(a, "/api/status");
    assert_eq!(r.status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(r.text(), "503 too many clients\n");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(idle);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(a, "/api/status");
        if r.status == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(
            Instant::now() < until,
            "slots never came back: {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_token_guards_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    // Beyond loopback without a token: refused before anything listens.
    let out = Command::new(BIN)
        .args(["run", "--fake-scores", "0.5", "--max-frames", "1"])
        .arg(format!("--source=file:{}", common::benign_png().display()))
        .args(["--status", "0.0.0.0:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("listens beyond this machine") && err.contains("--status-token FILE"),
        "{err}"
    );

    let rig = Rig::start(&[
        &format!("--source=file:{}", common::benign_png().display()),
        "--loop",
        "--fps=5",
        "--fake-scores=0.2",
        &format!("--status-token={}", token.display()),
    ]);
    rig.wait_for_stderr("(token required)", Duration::from_secs(5));
    let a = rig.addr;
    for path in [
        "/",
        "/api/status",
        "/metrics",
        "/healthz",
        "/frame.jpg",
        "/nope",
    ] {
        let r = get(a, path);
        assert_eq!(r.status, "HTTP/1.1 401 Unauthorized", "{path}");
        assert_eq!(r.text(), "401 unauthorized\n", "{path}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"histoscreen\"")
        );
        let wrong = get_with(a, path, "Authorization: Bearer s3cret-token-0123456788\r\n");
        assert_eq!(wrong.status, "HTTP/1.1 401 Unauthorized", "{path}");
    }
    let post = raw(
        a,
        b"POST /api/status HTTP/1.1\r\nHost: rig\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, "HTTP/1.1 401 Unauthorized");

    let ok = get_with(
        a,
        "/api/status",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(ok.status, "HTTP/1.1 200 OK");

    assert_eq!(
        get(a, "/login?token=not-the-token").status,
        "HTTP/1.1 401 Unauthorized"
    );
    let login = get(a, &format!("/login?token={TOKEN}"));
    assert_eq!(login.status, "HTTP/1.1 303 See Other");
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let page = get_with(a, "/", &format!("Cookie: {pair}\r\n"));
    assert_eq!(page.status, "HTTP/1.1 200 OK");
    let bad_cookie = get_with(a, "/", "Cookie: histoscreen_token=guess\r\n");
    assert_eq!(bad_cookie.status, "HTTP/1.1 401 Unauthorized");
}

/// The loop's frame rate from the stop summary, e.g. "60 frames in 3.0 s (20.0 fps)".
fn summary_fps(rig: &Rig) -> f64 {
    let lines = rig.stderr.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.contains("max-frames reached"))
        .unwrap_or_else(|| panic!("no summary: {lines:?}"));
    let at = line.find(" fps)").unwrap();
    let start = line[..at].rfind('(').unwrap() + 1;
    line[start..at].parse().unwrap()
}

#[test]
fn clients_never_slow_the_loop() {
    let run = |clients: bool| -> f64 {
        let rig = Rig::start(&[
            &format!("--source=file:{}", common::benign_png().display()),
            "--loop",
            "--fps=20",
            "--fake-scores=0.2,0.8",
            "--max-frames=60",
            "--status-linger=60",
        ]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut held = Vec::new();
        let mut pollers = Vec::new();
        if clients {
            // 50 connections that never send a request, and four that ask as fast as they can.
            held = (0..50)
                .map(|_| TcpStream::connect(rig.addr).unwrap())
                .collect();
            for path in ["/frame.jpg", "/api/status", "/metrics", "/frame.jpg"] {
                let (stop, a) = (stop.clone(), rig.addr);
                pollers.push(std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = get(a, path);
                        assert!(r.status.starts_with("HTTP/1.1 "), "{r:?}");
                        n += 1;
                    }
                    n
                }));
            }
        }
        rig.wait_for_stderr("status page stays up", Duration::from_secs(60));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let served: u64 = pollers.into_iter().map(|p| p.join().unwrap()).sum();
        if clients {
            assert!(served > 20, "the pollers were served: {served}");
        }
        drop(held);
        let fps = summary_fps(&rig);
        rig.stop();
        fps
    };
    let quiet = run(false);
    let busy = run(true);
    eprintln!("loop fps without clients {quiet:.2}, with 54 clients {busy:.2}");
    // The replay is paced at 20 fps: the same figure both times, within scheduling noise.
    assert!(
        (busy / quiet - 1.0).abs() < 0.1,
        "without clients {quiet:.2} fps, with {busy:.2} fps"
    );
}
