//! Resumable HTTP GET into a `.part` file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use ureq::http::{header, Response, Uri};
use ureq::{Agent, Body};

use super::verify::hash_file_into;

/// Builds the agent used for every request of one download.
pub fn agent_for(url: &str) -> Result<Agent> {
    let uri: Uri = url
        .parse()
        .map_err(|e| anyhow!("invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => bail!("invalid URL {url:?}: only http:// and https:// are supported"),
    }
    let mut config = Agent::config_builder()
        // Status codes are turned into our own one-line errors, and 206/416 need inspecting.
        .http_status_as_error(false)
        .user_agent(concat!("histoscreen-train/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A per-read limit rather than a global one: the BreaKHis archive takes minutes,
        // but a stalled connection should fail (and be resumable) instead of hanging.
        .timeout_per_read(Some(Duration::from_secs(60)));
    if uri.host().is_some_and(is_loopback_host) {
        // An environment proxy cannot reach our own loopback (the tests' local server).
        config = config.proxy(None);
    }
    Ok(config.build().new_agent())
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Downloads `url` into `part`, continuing from whatever `part` already holds, and returns
/// the sha256 hex of the complete file. On a cut transfer the bytes received so far stay in
/// `part` so that the next call resumes with a Range request.
pub fn fetch_to_part(agent: &Agent, url: &str, part: &Path) -> Result<String> {
    // Each restart discards `part`, so two are enough: after that we never send Range.
    for _attempt in 0..3 {
        let offset = match fs::metadata(part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => bail!("cannot read {}: {e}", part.display()),
        };
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| anyhow!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let start = match status {
            206 if offset > 0 => {
                match content_range(&response) {
                    Some((Some(start), _)) if start == offset => offset,
                    _ => {
                        tracing::warn!("{url}: server answered the resume with an unexpected range; starting over");
                        remove_part(part)?;
                        continue;
                    }
                }
            }
            200 | 206 => {
                if offset > 0 {
                    // Servers without Range support send the whole file again.
                    tracing::warn!("{url}: server does not support resuming; starting over");
                }
                0
            }
            416 if offset > 0 => {
                // A previous run may have received every byte but stopped before the rename.
                if matches!(content_range(&response), Some((None, Some(total))) if total == offset)
                {
                    let mut hasher = Sha256::new();
                    hash_file_into(part, &mut hasher)?;
                    return Ok(hex::encode(hasher.finalize()));
                }
                tracing::warn!(
                    "{url}: partial download does not fit the remote file; starting over"
                );
                remove_part(part)?;
                continue;
            }
            _ => bail!("GET {url}: HTTP {status}"),
        };
        return stream_body(url, response, part, start);
    }
    bail!("GET {url}: server keeps rejecting the resume request")
}

fn remove_part(part: &Path) -> Result<()> {
    match fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot remove {}: {e}", part.display()),
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL` (206) or `bytes */TOTAL` (416).
fn content_range(response: &Response<Body>) -> Option<(Option<u64>, Option<u64>)> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = match range.trim() {
        "*" => None,
        r => Some(r.split_once('-')?.0.trim().parse().ok()?),
    };
    Some((start, total))
}

fn stream_body(url: &str, response: Response<Body>, part: &Path, start: u64) -> Result<String> {
    let total = response.body().content_length().map(|n| start + n);

    let mut hasher = Sha256::new();
    let opened = if start > 0 {
        // Hashing the kept prefix now means the new bytes never have to be read back.
        hash_file_into(part, &mut hasher)?;
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    };
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => bail!("cannot write {}: {e}", part.display()),
    };

    let bar = progress_bar(part, total);
    bar.set_position(start);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = start;
    let read_error = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    bar.abandon();
                    bail!("cannot write {}: {e}", part.display());
                }
                hasher.update(&buf[..n]);
                received += n as u64;
                bar.set_position(received);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    bar.finish_and_clear();
    // What we have must really be on disk, or the next run would resume from a wrong offset.
    if let Err(e) = file.sync_all() {
        bail!("cannot write {}: {e}", part.display());
    }

    let of_total = total.map(|t| format!(" of {t}")).unwrap_or_default();
    let keep = format!(
        "partial download kept in {}, rerun to resume",
        part.display()
    );
    if let Some(e) = read_error {
        bail!("GET {url}: transfer cut after {received}{of_total} bytes ({e}); {keep}");
    }
    if total.is_some_and(|t| t != received) {
        bail!("GET {url}: transfer cut after {received}{of_total} bytes; {keep}");
    }
    Ok(hex::encode(hasher.finalize()))
}

fn progress_bar(part: &Path, total: Option<u64>) -> ProgressBar {
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".part").to_string())
        .unwrap_or_default();
    // indicatif draws nothing when stderr is not a terminal, so logs and tests stay clean.
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("static template"),
        ),
    };
    bar.set_message(name);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_loopback_hosts_bypass_proxy() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("www.inf.ufpr.br"));
    }

    #[test]
    fn download_rejects_non_http_urls() {
        assert!(agent_for("ftp://example.org/x").is_err());
        assert!(agent_for("not a url").is_err());
    }
}
