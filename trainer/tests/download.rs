//! `histoscreen-train download` against a throw-away HTTP server on 127.0.0.1.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use flate2::write::GzEncoder;
use flate2::Compression;
use histoscreen_train::data::download::{part_path, run, Asset, DownloadArgs};
use sha2::{Digest, Sha256};

/// Upper bound for one `run` call: a hung client must fail the test, not the CI job.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// Server-side socket timeout, so a confused client cannot wedge the server thread.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Test HTTP server
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    /// Cut the body of the next response after this many bytes, then close.
    truncate_next: Option<usize>,
    /// Answer everything with HTTP 500.
    fail_500: bool,
    /// Behave like a server without Range support.
    ignore_range: bool,
    /// (path, Range header) of every request seen.
    log: Vec<(String, Option<String>)>,
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start(files: &[(&str, Vec<u8>)]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files: files
                .iter()
                .map(|(p, b)| (p.to_string(), b.clone()))
                .collect(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        // Detached: it dies with the test process, and each connection is bounded by timeouts.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &shared);
            }
        });
        Server { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn log(&self) -> Vec<(String, Option<String>)> {
        self.with(|s| s.log.clone())
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let (status, headers, body, cut) = {
        let mut st = state.lock().unwrap();
        st.log.push((path.to_string(), range.clone()));
        let cut = st.truncate_next.take();
        let file = st.files.get(path).cloned();
        match file {
            _ if method != "GET" => ("405 Method Not Allowed", vec![], b"no".to_vec(), None),
            _ if st.fail_500 => ("500 Internal Server Error", vec![], b"oops".to_vec(), None),
            None => ("404 Not Found", vec![], b"missing".to_vec(), None),
            Some(data) => {
                let len = data.len();
                let start = range
                    .as_deref()
                    .filter(|_| !st.ignore_range)
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse::<usize>().ok());
                match start {
                    Some(s) if s >= len => (
                        "416 Range Not Satisfiable",
                        vec![format!("Content-Range: bytes */{len}")],
                        vec![],
                        None,
                    ),
                    Some(s) => (
                        "206 Partial Content",
                        vec![format!("Content-Range: bytes {s}-{}/{len}", len - 1)],
                        data[s..].to_vec(),
                        cut,
                    ),
                    None => ("200 OK", vec![], data, cut),
                }
            }
        }
    };

    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    // A cut response still promises the full Content-Length, like a dropped connection.
    let sent = cut.map_or(body.len(), |c| c.min(body.len()));
    out.write_all(&body[..sent])?;
    out.flush()?;
    out.shutdown(std::net::Shutdown::Both)
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn shared_dir() -> PathBuf {
    std::env::var_os("HISTOSCREEN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// First `n` PNGs under `dir`, in sorted order so every run archives the same files.
fn first_pngs(dir: &Path, n: usize, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let goal = out.len() + n;
    for path in entries {
        if out.len() >= goal {
            return;
        }
        if path.is_dir() {
            let want = goal - out.len();
            first_pngs(&path, want, out);
        } else if path.extension().is_some_and(|e| e == "png") {
            out.push(path);
        }
    }
}

/// A few real BreakHis slides as (path inside the archive, bytes), in the official layout.
fn breakhis_sample() -> Vec<(String, Vec<u8>)> {
    let root = shared_dir().join("data/breakhis");
    let breast = root.join("BreaKHis_v1/histology_slides/breast");
    assert!(
        breast.is_dir(),
        "BreakHis sample data not found at {} (set HISTOSCREEN_SHARED)",
        breast.display()
    );
    let mut pngs = Vec::new();
    first_pngs(&breast.join("benign"), 2, &mut pngs);
    first_pngs(&breast.join("malignant"), 2, &mut pngs);
    assert_eq!(pngs.len(), 4, "expected 4 PNGs under {}", breast.display());
    pngs.into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect()
}

fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Deterministic bytes standing in for a `.pth`: big enough to span many reads.
fn weights() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn args(asset: Asset, dest: &Path, url: String, sha256: Option<String>) -> DownloadArgs {
    DownloadArgs {
        asset,
        dest: dest.to_path_buf(),
        url: Some(url),
        sha256,
        no_extract: false,
    }
}

/// Runs the command on its own thread so that a hang fails the test after `RUN_DEADLINE`.
fn run_bounded(args: &DownloadArgs) -> anyhow::Result<()> {
    let args = args.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(run(&args));
    });
    rx.recv_timeout(RUN_DEADLINE)
        .expect("download did not finish in time")
}

fn leftovers(dest: &Path) -> Vec<String> {
    fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part") || n.starts_with(".extract-"))
        .collect()
}

const WEIGHTS: &str = "alexnet-owt-7be5be79.pth";

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn download_breakhis_full_download_extracts_identical_files() {
    let sample = breakhis_sample();
    let archive = tar_gz(&sample);
    let server = Server::start(&[("/mirror/BreaKHis_v1.tar.gz", archive.clone())]);
    let dest = tempfile::tempdir().unwrap();

    let a = args(
        Asset::Breakhis,
        dest.path(),
        server.url("/mirror/BreaKHis_v1.tar.gz"),
        Some(sha256_hex(&archive)),
    );
    run_bounded(&a).unwrap();

    for (name, data) in &sample {
        let got = fs::read(dest.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} differs after extraction");
    }
    assert_eq!(
        fs::read(dest.path().join("BreaKHis_v1.tar.gz")).unwrap(),
        archive
    );
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
    assert_eq!(
        server.log(),
        vec![("/mirror/BreaKHis_v1.tar.gz".into(), None)]
    );
}

#[test]
fn download_breakhis_no_extract_keeps_archive_packed() {
    let archive = tar_gz(&breakhis_sample());
    let server = Server::start(&[("/BreaKHis_v1.tar.gz", archive.clone())]);
    let dest = tempfile::tempdir().unwrap();

    let mut a = args(
        Asset::Breakhis,
        dest.path(),
        server.url("/BreaKHis_v1.tar.gz"),
        None,
    );
    a.no_extract = true;
    run_bounded(&a).unwrap();

    assert_eq!(
        fs::read(dest.path().join("BreaKHis_v1.tar.gz")).unwrap(),
        archive
    );
    assert!(!dest.path().join("BreaKHis_v1").exists());
}

#[test]
fn download_resume_after_truncated_transfer_uses_range() {
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    server.with(|s| s.truncate_next = Some(100_000));
    let dest = tempfile::tempdir().unwrap();
    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    );
    let file = dest.path().join(WEIGHTS);

    let err = run_bounded(&a).unwrap_err().to_string();
    assert!(
        err.contains("transfer cut after 100000 of 300000 bytes"),
        "{err}"
    );
    assert!(!err.contains('\n'), "error should be one line: {err}");
    assert!(
        !file.exists(),
        "a cut transfer must not produce the final file"
    );
    assert_eq!(fs::metadata(part_path(&file)).unwrap().len(), 100_000);

    run_bounded(&a).unwrap();
    assert!(fs::read(&file).unwrap() == data);
    assert!(!part_path(&file).exists());
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1, None);
    assert_eq!(log[1].1.as_deref(), Some("bytes=100000-"));
}

#[test]
fn download_restarts_when_server_ignores_range() {
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    server.with(|s| s.ignore_range = true);
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join(WEIGHTS);
    // Stale bytes that match nothing: appending to them would corrupt the file.
    fs::write(part_path(&file), vec![0xAB; 1234]).unwrap();

    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    );
    run_bounded(&a).unwrap();

    assert!(fs::read(&file).unwrap() == data);
    assert_eq!(server.log()[0].1.as_deref(), Some("bytes=1234-"));
}

#[test]
fn download_complete_part_file_is_finished_without_refetching() {
    // A run that received everything but died before the rename: the server answers 416.
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join(WEIGHTS);
    fs::write(part_path(&file), &data).unwrap();

    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    );
    run_bounded(&a).unwrap();

    assert!(fs::read(&file).unwrap() == data);
    assert!(!part_path(&file).exists());
    assert_eq!(server.log().len(), 1);
    assert_eq!(server.log()[0].1.as_deref(), Some("bytes=300000-"));
}

#[test]
fn download_wrong_checksum_is_rejected_and_leaves_no_file() {
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    let dest = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(wrong.clone()),
    );

    let err = run_bounded(&a).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&sha256_hex(&data)),
        "{err}"
    );
    assert!(!dest.path().join(WEIGHTS).exists());
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
}

#[test]
fn download_alexnet_checks_torchvision_hash_prefix_by_default() {
    // Without --sha256 the `7be5be79` in the file name is the check; these bytes fail it.
    let data = weights();
    let server = Server::start(&[("/w.pth", data)]);
    let dest = tempfile::tempdir().unwrap();
    let a = args(Asset::Alexnet, dest.path(), server.url("/w.pth"), None);

    let err = run_bounded(&a).unwrap_err().to_string();
    assert!(err.contains("expected 7be5be79"), "{err}");
    assert!(!dest.path().join(WEIGHTS).exists());
}

#[test]
fn download_server_error_is_reported_and_leaves_no_file() {
    let server = Server::start(&[("/w.pth", weights())]);
    server.with(|s| s.fail_500 = true);
    let dest = tempfile::tempdir().unwrap();
    let url = server.url("/w.pth");
    let a = args(Asset::Alexnet, dest.path(), url.clone(), None);

    let err = run_bounded(&a).unwrap_err().to_string();
    assert_eq!(err, format!("GET {url}: HTTP 500"));
    assert!(!dest.path().join(WEIGHTS).exists());
    assert!(leftovers(dest.path()).is_empty());
}

#[test]
fn download_already_present_file_is_not_downloaded_again() {
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    let dest = tempfile::tempdir().unwrap();
    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    );

    run_bounded(&a).unwrap();
    run_bounded(&a).unwrap();
    assert_eq!(server.log().len(), 1);

    // A file placed by hand counts too, as long as it verifies.
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join(WEIGHTS), &data).unwrap();
    run_bounded(&args(
        Asset::Alexnet,
        other.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    ))
    .unwrap();
    assert_eq!(server.log().len(), 1);
}

#[test]
fn download_corrupt_present_file_is_replaced() {
    let data = weights();
    let server = Server::start(&[("/w.pth", data.clone())]);
    let dest = tempfile::tempdir().unwrap();
    fs::write(dest.path().join(WEIGHTS), b"not the weights").unwrap();

    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some(sha256_hex(&data)),
    );
    run_bounded(&a).unwrap();
    assert!(fs::read(dest.path().join(WEIGHTS)).unwrap() == data);
    assert_eq!(server.log().len(), 1);
}

#[test]
fn download_failed_refresh_keeps_the_existing_file() {
    // A file that fails the check is only replaced by a verified copy, never just deleted.
    let server = Server::start(&[("/w.pth", weights())]);
    server.with(|s| s.fail_500 = true);
    let dest = tempfile::tempdir().unwrap();
    fs::write(dest.path().join(WEIGHTS), b"user's own file").unwrap();

    let a = args(
        Asset::Alexnet,
        dest.path(),
        server.url("/w.pth"),
        Some("1".repeat(64)),
    );
    assert!(run_bounded(&a).is_err());
    assert_eq!(
        fs::read(dest.path().join(WEIGHTS)).unwrap(),
        b"user's own file"
    );
}

#[test]
fn download_breakhis_already_extracted_is_not_downloaded_again() {
    let archive = tar_gz(&breakhis_sample());
    let server = Server::start(&[("/BreaKHis_v1.tar.gz", archive.clone())]);
    let dest = tempfile::tempdir().unwrap();
    let a = args(
        Asset::Breakhis,
        dest.path(),
        server.url("/BreaKHis_v1.tar.gz"),
        Some(sha256_hex(&archive)),
    );

    run_bounded(&a).unwrap();
    // Even without the archive, the extracted tree is enough.
    fs::remove_file(dest.path().join("BreaKHis_v1.tar.gz")).unwrap();
    run_bounded(&a).unwrap();
    assert_eq!(server.log().len(), 1);
}

#[test]
fn download_archive_with_parent_dir_entry_is_refused() {
    let mut good = breakhis_sample();
    good.truncate(1);
    // tar::Builder refuses `..` itself, so the hostile name is written into the header raw.
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in &good {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    let evil = b"../escaped.txt";
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..evil.len()].copy_from_slice(evil);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, &b"evil"[..]).unwrap();
    let archive = builder.into_inner().unwrap().finish().unwrap();

    let server = Server::start(&[("/BreaKHis_v1.tar.gz", archive.clone())]);
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("data");
    let a = args(
        Asset::Breakhis,
        &dest,
        server.url("/BreaKHis_v1.tar.gz"),
        Some(sha256_hex(&archive)),
    );

    let err = run_bounded(&a).unwrap_err().to_string();
    assert!(err.contains("unsafe entry path"), "{err}");
    assert!(!root.path().join("escaped.txt").exists());
    // All or nothing: the good entry before the bad one did not land either.
    assert!(!dest.join("BreaKHis_v1").exists());
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
}

#[test]
fn download_unwritable_dest_is_a_clear_error() {
    // A regular file where the directory should be fails even when tests run as root.
    let root = tempfile::tempdir().unwrap();
    let blocker = root.path().join("blocker");
    fs::write(&blocker, b"x").unwrap();
    let dest = blocker.join("models");
    let a = args(
        Asset::Alexnet,
        &dest,
        "http://127.0.0.1:9/w.pth".into(),
        None,
    );

    let err = run_bounded(&a).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot create destination {}", dest.display())),
        "{err}"
    );
}

#[test]
fn download_cli_parses_asset_and_flags() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        download: DownloadArgs,
    }
    let cli = Cli::try_parse_from([
        "download",
        "breakhis",
        "--dest",
        "/tmp/x",
        "--url",
        "http://127.0.0.1:1/a.tar.gz",
        "--sha256",
        &"ab".repeat(32),
        "--no-extract",
    ])
    .unwrap();
    let d = cli.download;
    assert_eq!(d.asset, Asset::Breakhis);
    assert_eq!(d.dest, PathBuf::from("/tmp/x"));
    assert_eq!(d.url.as_deref(), Some("http://127.0.0.1:1/a.tar.gz"));
    assert!(d.no_extract);
    assert!(Cli::try_parse_from(["download", "alexnet", "--dest", "m"]).is_ok());
    assert!(Cli::try_parse_from(["download", "imagenet", "--dest", "m"]).is_err());
}
