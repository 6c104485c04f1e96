//! Crash-safe file output.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::EdgeError;

/// Write `bytes` to `path` atomically: a temporary file in the same directory is
/// written, fsynced and renamed over `path`.
///
/// Same directory because rename(2) is only atomic within one filesystem; fsync
/// before rename so a power cut on the device never leaves a truncated
/// report/card behind. On error the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EdgeError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| EdgeError::Io {
            action: "write",
            path: path.to_path_buf(),
            reason: "not a file path".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_then_rename(&tmp, path, bytes);
    if result.is_err() {
        // Best effort: the temp file may not even exist (e.g. permission denied).
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| EdgeError::io("write", path, &e))?;
    // fsync the directory so the rename itself is durable; failure here is not
    // fatal for correctness of the content, so it is ignored.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

/// Read a whole file, with an error naming the path.
pub fn read(path: &Path) -> Result<Vec<u8>, EdgeError> {
    fs::read(path).map_err(|e| EdgeError::io("read", path, &e))
}
