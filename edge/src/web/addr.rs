//! Where the status page listens and the secret it asks for: `--status` and `--status-token`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A token shorter than this is guessable by anyone on the network who tries for a while.
const MIN_TOKEN_BYTES: usize = 16;
/// A token file is a line of text; anything bigger is the wrong file.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// `8080` means 127.0.0.1:8080; `HOST:PORT` binds that address (`localhost:PORT` included).
pub fn parse_listen(spec: &str) -> Result<SocketAddr> {
    let spec = spec.trim();
    if let Ok(port) = spec.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = spec.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    spec.parse::<SocketAddr>().with_context(|| {
        format!("--status {spec:?}: expected a port (8080) or ADDRESS:PORT (0.0.0.0:8080)")
    })
}

/// The page shows patient tissue: beyond this machine it is served only with a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&[u8]>) -> Result<()> {
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "--status {addr} listens beyond this machine and the page shows patient tissue: \
             give --status-token FILE (a secret of at least {MIN_TOKEN_BYTES} characters), \
             or listen on 127.0.0.1"
        );
    }
    Ok(())
}

/// The secret, from a file so that it never shows in `ps` or the shell history.
pub fn read_token(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--status-token {}: cannot read", path.display()))?;
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        bail!(
            "--status-token {}: {} bytes; expected one line holding the secret",
            path.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--status-token {}: cannot read", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_BYTES {
        bail!(
            "--status-token {}: the secret has {} characters; use at least {MIN_TOKEN_BYTES} \
             (e.g. `openssl rand -hex 16 > {}`)",
            path.display(),
            token.len(),
            path.display()
        );
    }
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        bail!(
            "--status-token {}: the secret must be one line of printable characters without spaces",
            path.display()
        );
    }
    warn_if_shared(path, &meta);
    Ok(token.as_bytes().to_vec())
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "--status-token {}: other users can read it; `chmod 600` it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &std::fs::Metadata) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback() {
        assert_eq!(
            parse_listen("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        let err = parse_listen("eighty").unwrap_err().to_string();
        assert!(err.contains("expected a port"), "{err}");
    }

    #[test]
    fn beyond_loopback_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = check_exposure(any, None).unwrap_err().to_string();
        assert!(err.contains("--status-token"), "{err}");
        check_exposure(any, Some(b"0123456789abcdef")).unwrap();
        check_exposure("127.0.0.1:8080".parse().unwrap(), None).unwrap();
        check_exposure("[::1]:8080".parse().unwrap(), None).unwrap();
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token(&good).unwrap(), b"0123456789abcdef0123");
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let err = read_token(&short).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, "0123456789 abcdef0123\n").unwrap();
        assert!(read_token(&spaced).is_err());
        let err = read_token(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing: cannot read"), "{err}");
    }
}
