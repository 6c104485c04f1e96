//! `histoscreen-train download`: fetches the BreaKHis dataset and the ImageNet AlexNet
//! weights that the trainer starts from.
//!
//! Sources:
//! * BreaKHis v1 (Spanhol et al., 2016), published by the VRI lab of UFPR at
//!   <http://www.inf.ufpr.br/vri/databases/BreaKHis_v1.tar.gz> (about 4 GB). UFPR publishes
//!   no checksum, so the digest is printed after download for pinning with `--sha256`.
//!   The archive unpacks to `BreaKHis_v1/histology_slides/breast/{benign,malignant}/...`.
//! * torchvision's ImageNet AlexNet weights
//!   <https://download.pytorch.org/models/alexnet-owt-7be5be79.pth>; torchvision names its
//!   files after the first hex digits of their sha256, and that prefix is verified.
//!
//! Downloads go to `DEST/<file>.part`, resume with an HTTP Range request when a previous
//! attempt was cut, and are renamed to `DEST/<file>` only once the checksum matches, so the
//! final name always means "complete and verified". `--url` points at a mirror; the file
//! keeps its canonical name so the rest of the trainer finds it.

mod archive;
mod http;
mod verify;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use archive::extract_tar_gz;
pub use verify::{sha256_file, Expected};

/// Official BreaKHis v1 archive at UFPR.
pub const BREAKHIS_URL: &str = "http://www.inf.ufpr.br/vri/databases/BreaKHis_v1.tar.gz";
/// torchvision's `AlexNet_Weights.IMAGENET1K_V1`.
pub const ALEXNET_URL: &str = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth";

/// What `download` can fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Asset {
    /// BreaKHis_v1.tar.gz from UFPR, extracted to DEST/BreaKHis_v1.
    Breakhis,
    /// torchvision's ImageNet AlexNet weights (alexnet-owt-7be5be79.pth).
    Alexnet,
}

/// Where an asset comes from and what it turns into.
#[derive(Clone, Copy, Debug)]
pub struct AssetSpec {
    pub url: &'static str,
    /// Name of the downloaded file inside DEST, whatever `--url` says.
    pub file_name: &'static str,
    /// Full published sha256, when one exists.
    pub sha256: Option<&'static str>,
    /// Top-level directory the archive unpacks to; `None` for files that are not archives.
    pub extracts_to: Option<&'static str>,
}

impl Asset {
    pub fn spec(self) -> AssetSpec {
        match self {
            Asset::Breakhis => AssetSpec {
                url: BREAKHIS_URL,
                file_name: "BreaKHis_v1.tar.gz",
                sha256: None,
                extracts_to: Some("BreaKHis_v1"),
            },
            Asset::Alexnet => AssetSpec {
                url: ALEXNET_URL,
                file_name: "alexnet-owt-7be5be79.pth",
                sha256: None,
                extracts_to: None,
            },
        }
    }
}

/// Download the BreaKHis dataset or the pretrained AlexNet weights.
#[derive(Clone, Debug, clap::Args)]
pub struct DownloadArgs {
    /// What to download.
    #[arg(value_enum)]
    pub asset: Asset,
    /// Directory that receives the file (and, for BreaKHis, the extracted BreaKHis_v1/).
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// Download from this URL (e.g. a mirror) instead of the official one.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Expected sha256 of the file (64 hex digits); overrides the built-in check.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Keep the BreaKHis archive packed.
    #[arg(long)]
    pub no_extract: bool,
}

/// Entry point of `histoscreen-train download`.
pub fn run(args: &DownloadArgs) -> Result<()> {
    let spec = args.asset.spec();
    let url = args.url.as_deref().unwrap_or(spec.url);
    let expected = match &args.sha256 {
        Some(hex) => Expected::from_user(hex)?,
        None => match spec.sha256 {
            Some(hex) => Expected::Sha256(hex.to_string()),
            None => Expected::from_torchvision_name(spec.file_name),
        },
    };
    let agent = http::agent_for(url)?;

    let dest = args.dest.as_path();
    if let Err(e) = fs::create_dir_all(dest) {
        bail!("cannot create destination {}: {e}", dest.display());
    }
    let extract_dir = spec
        .extracts_to
        .filter(|_| !args.no_extract)
        .map(|d| dest.join(d));
    if let Some(dir) = &extract_dir {
        // Extraction is all-or-nothing, so an existing tree is a finished one.
        if dir.exists() {
            tracing::info!("{} already exists, nothing to do", dir.display());
            return Ok(());
        }
    }

    let file = dest.join(spec.file_name);
    ensure_downloaded(&agent, url, &file, &expected)?;

    if extract_dir.is_some() {
        let created = extract_tar_gz(&file, dest)?;
        for path in created {
            tracing::info!("extracted {}", path.display());
        }
    }
    Ok(())
}

/// Leaves a verified copy of `url` at `file`, downloading only what is missing.
fn ensure_downloaded(
    agent: &ureq::Agent,
    url: &str,
    file: &Path,
    expected: &Expected,
) -> Result<()> {
    if file.exists() {
        if *expected == Expected::Unknown {
            // Nothing to compare with, and rehashing 4 GB on every run buys nothing.
            tracing::info!("{} already present, skipping download", file.display());
            return Ok(());
        }
        let actual = sha256_file(file)?;
        if expected.matches(&actual) {
            tracing::info!(
                "{} already present and verified, skipping download",
                file.display()
            );
            return Ok(());
        }
        // Left in place: the final rename replaces it only once a good copy has arrived.
        tracing::warn!(
            "{} has sha256 {actual}, expected {}; downloading it again",
            file.display(),
            expected.describe()
        );
    }

    let part = part_path(file);
    let actual = http::fetch_to_part(agent, url, &part)?;
    if !expected.matches(&actual) {
        // A bad file must not be resumed from either: it would keep failing forever.
        let _ = fs::remove_file(&part);
        bail!(
            "checksum mismatch for {url}: expected {}, got {actual}; the download was deleted",
            expected.describe()
        );
    }
    if let Err(e) = fs::rename(&part, file) {
        bail!("cannot move {} to {}: {e}", part.display(), file.display());
    }
    match expected {
        Expected::Unknown => tracing::info!(
            "downloaded {} (sha256 {actual}; no published checksum, pass --sha256 {actual} to pin it)",
            file.display()
        ),
        _ => tracing::info!("downloaded {} (sha256 {actual}, verified)", file.display()),
    }
    Ok(())
}

/// `name.ext` -> `name.ext.part`, next to it so the final rename is atomic.
pub fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}
