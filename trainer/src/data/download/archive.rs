//! Safe, all-or-nothing extraction of a `.tar.gz` archive.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use tar::EntryType;

/// Extracts `archive` into `dest` and returns the top-level paths it created there.
///
/// Everything is unpacked into a hidden temporary directory inside `dest` first and only
/// renamed into place once the whole archive has been read, so an interrupted or corrupt
/// extraction never leaves a half-filled tree that a later run would mistake for a good one.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<Vec<PathBuf>> {
    let shown = archive.display();
    let file = File::open(archive).map_err(|e| anyhow!("cannot read {shown}: {e}"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Same directory as the final tree, so the closing renames stay on one filesystem.
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(dest)
        .map_err(|e| {
            anyhow!(
                "cannot create a temporary directory in {}: {e}",
                dest.display()
            )
        })?;

    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("extracting {msg} [{bar:40.cyan/blue}] {bytes}/{total_bytes}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(
        archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    // Progress counts compressed bytes: the only size known before decompressing.
    let gz = MultiGzDecoder::new(BufReader::new(bar.wrap_read(file)));
    let mut tar = tar::Archive::new(gz);
    // Modes from a downloaded archive should not decide who may read our data.
    tar.set_preserve_permissions(false);

    let fail = |e: std::io::Error| anyhow!("cannot extract {shown}: {e}");
    for entry in tar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let path = entry.path().map_err(fail)?.into_owned();
        if !is_safe_relative(&path) {
            bail!("refusing to extract {shown}: unsafe entry path {path:?}");
        }
        if matches!(
            entry.header().entry_type(),
            EntryType::Symlink | EntryType::Link
        ) {
            if let Some(target) = entry.link_name().map_err(fail)? {
                if !is_safe_relative(&target) {
                    bail!("refusing to extract {shown}: entry {path:?} links outside the archive ({target:?})");
                }
            }
        }
        // `unpack_in` has its own traversal guard and reports a refusal as `false`.
        if !entry.unpack_in(tmp.path()).map_err(fail)? {
            bail!("refusing to extract {shown}: unsafe entry path {path:?}");
        }
    }
    bar.finish_and_clear();

    let mut tops = Vec::new();
    for item in fs::read_dir(tmp.path())
        .map_err(|e| anyhow!("cannot list {}: {e}", tmp.path().display()))?
    {
        let item = item.map_err(|e| anyhow!("cannot list {}: {e}", tmp.path().display()))?;
        tops.push(item.file_name());
    }
    tops.sort();
    // Check every target before moving any, so a conflict leaves `dest` untouched.
    for name in &tops {
        let target = dest.join(name);
        if target.symlink_metadata().is_ok() {
            bail!(
                "cannot extract {shown}: {} already exists; remove it to extract again",
                target.display()
            );
        }
    }
    let mut created = Vec::with_capacity(tops.len());
    for name in &tops {
        let target = dest.join(name);
        fs::rename(tmp.path().join(name), &target)
            .map_err(|e| anyhow!("cannot move extracted {} into place: {e}", target.display()))?;
        created.push(target);
    }
    Ok(created)
}

/// Only plain relative paths may come out of an archive: `..`, a root or a drive prefix
/// could place files outside the destination.
fn is_safe_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_archive_paths_must_stay_inside() {
        assert!(is_safe_relative(Path::new(
            "BreaKHis_v1/histology_slides/a.png"
        )));
        assert!(is_safe_relative(Path::new("./BreaKHis_v1")));
        assert!(!is_safe_relative(Path::new("../evil")));
        assert!(!is_safe_relative(Path::new("a/../../evil")));
        assert!(!is_safe_relative(Path::new("/etc/passwd")));
    }
}
