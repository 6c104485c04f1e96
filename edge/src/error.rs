//! One error type for the whole edge crate.
//!
//! Every variant renders as a single line that names the file (or input) and the
//! problem, because these messages end up verbatim on a technician's terminal as
//! `histoscreen-edge: <message>` and in CSV/JSONL error rows.

use std::path::{Path, PathBuf};

/// Everything that can go wrong on the device side.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Filesystem failure while reading or writing `path`.
    #[error("cannot {action} {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The bytes could not be decoded as an image.
    #[error("{what}: not a readable image ({reason})")]
    Image { what: String, reason: String },
    /// The model card is missing, unparsable or inconsistent.
    #[error("{}: {reason}", path.display())]
    Card { path: PathBuf, reason: String },
    /// The ONNX file could not be parsed or prepared by tract.
    #[error("{}: not a valid ONNX model ({reason})", path.display())]
    InvalidModel { path: PathBuf, reason: String },
    /// The ONNX file does not match its card or the expected contract.
    #[error("{}: {reason}", path.display())]
    ModelMismatch { path: PathBuf, reason: String },
    /// Inference failed at run time (wrong input length, tract error, ...).
    #[error("inference failed: {0}")]
    Inference(String),
    /// A frame the model cannot screen (too small, too large, or at a scale far from the
    /// model's); the run loop treats it as idle, `classify` as an error row.
    #[error("{0}")]
    Frame(String),
    /// Bad command-line or caller input that is not tied to one file.
    #[error("{0}")]
    Usage(String),
}

/// Collapse a possibly multi-line error chain into one line.
///
/// tract/anyhow errors carry a cause chain separated by newlines; the contract is
/// one line per message, so causes are joined with ": ".
pub(crate) fn one_line(err: impl std::fmt::Display) -> String {
    let text = format!("{err:#}");
    text.split('\n')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Human wording of an io::Error without the "(os error 13)" suffix.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let kind = err.kind();
    let reason = match kind {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(ix) => text[..ix].to_string(),
                None => text,
            }
        }
    };
    reason.to_lowercase()
}

impl EdgeError {
    pub(crate) fn io(action: &'static str, path: &Path, err: &std::io::Error) -> Self {
        EdgeError::Io {
            action,
            path: path.to_path_buf(),
            reason: io_reason(err),
        }
    }
}
