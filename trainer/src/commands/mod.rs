//! What each subcommand does, from plain values to files on disk and lines on stdout.

pub mod eval;
pub mod export;
pub mod predict;
pub mod train;

use std::path::PathBuf;

use anyhow::Result;

use crate::data::dataset::Dataset;
use crate::data::settings;

/// A mistake in how the command was called (exit status 2, as clap's own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Which BreakHis images a command reads.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// `None`: the shared data folder.
    pub dir: Option<PathBuf>,
    /// Empty: every magnification.
    pub magnifications: Vec<u32>,
}

impl DataSource {
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(settings::default_data_dir)
    }

    /// Scans the folder, warning about each file that is not a usable BreakHis image.
    pub fn scan(&self) -> Result<Dataset> {
        let ds = Dataset::scan(&self.dir(), &self.magnifications)?;
        for r in &ds.rejected {
            tracing::warn!("skipped {}: {}", r.path.display(), r.reason);
        }
        Ok(ds)
    }
}
