//! What a downloaded file must hash to, and the hashing itself.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

/// The strongest check available for a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Full lowercase sha256 hex digest.
    Sha256(String),
    /// Leading lowercase hex digits of the sha256, as torchvision embeds in its file names.
    Sha256Prefix(String),
    /// Nothing published: the digest is only reported so that users can pin it with `--sha256`.
    Unknown,
}

impl Expected {
    /// Parses a user-supplied `--sha256`; only full digests are accepted because a typo'd
    /// prefix would silently weaken the check.
    pub fn from_user(hex: &str) -> Result<Self> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 must be 64 hex characters, got {:?}", hex);
        }
        Ok(Self::Sha256(hex))
    }

    /// torchvision names weights `<name>-<sha256 prefix>.pth` and checks that prefix itself,
    /// so it is the best hash we have for those files without hard-coding full digests.
    pub fn from_torchvision_name(file_name: &str) -> Self {
        let stem = file_name.split('.').next().unwrap_or(file_name);
        match stem.rsplit_once('-') {
            Some((_, tail))
                if (8..=64).contains(&tail.len())
                    && tail
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Self::Sha256Prefix(tail.to_string())
            }
            _ => Self::Unknown,
        }
    }

    pub fn matches(&self, actual_hex: &str) -> bool {
        match self {
            Self::Sha256(h) => actual_hex == h,
            Self::Sha256Prefix(p) => actual_hex.starts_with(p.as_str()),
            Self::Unknown => true,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Sha256(h) => h.clone(),
            Self::Sha256Prefix(p) => format!("{p}… (sha256 prefix)"),
            Self::Unknown => "any".to_string(),
        }
    }
}

/// Feeds a whole file through `hasher`.
pub fn hash_file_into(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("cannot read {}: {e}", path.display()),
        };
        hasher.update(&buf[..n]);
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    hash_file_into(path, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_torchvision_prefix_is_parsed_from_file_name() {
        assert_eq!(
            Expected::from_torchvision_name("alexnet-owt-7be5be79.pth"),
            Expected::Sha256Prefix("7be5be79".into())
        );
        assert_eq!(
            Expected::from_torchvision_name("BreaKHis_v1.tar.gz"),
            Expected::Unknown
        );
        assert_eq!(
            Expected::from_torchvision_name("alexnet-owt.pth"),
            Expected::Unknown
        );
    }

    #[test]
    fn download_user_hash_must_be_full_length() {
        assert!(Expected::from_user("7be5be79").is_err());
        let full = "AB".repeat(32);
        assert_eq!(
            Expected::from_user(&full).unwrap(),
            Expected::Sha256("ab".repeat(32))
        );
    }
}
