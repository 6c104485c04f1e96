//! BreakHis: file-name parsing, folder walking, magnification filters and counts.
//!
//! The official archive encodes every label in the file name
//! (`SOB_<B|M>_<subtype>-<year>-<patient>-<mag>-<seq>.png`), so any folder holding such
//! files is a dataset, whatever its layout.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const CLASSES: [&str; 2] = ["benign", "malignant"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Benign = 0,
    Malignant = 1,
}

impl Class {
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLASSES[self.index()])
    }
}

/// One image with everything its BreakHis name says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub path: PathBuf,
    pub class: Class,
    /// Tumour type code: A, F, PT, TA (benign); DC, LC, MC, PC (malignant).
    pub subtype: String,
    /// `<year>-<slide id>`, e.g. `14-22549AB`: one patient's slide.
    pub patient: String,
    /// 40, 100, 200 or 400.
    pub magnification: u32,
    pub seq: u32,
}

/// Parses `SOB_B_TA-14-3411F-100-001.png` (any image extension).
pub fn parse_name(file_name: &str) -> Result<Sample, String> {
    let stem = file_name
        .rsplit_once('.')
        .map(|(s, _)| s)
        .ok_or("no file extension")?;
    let rest = stem
        .strip_prefix("SOB_")
        .ok_or("does not start with SOB_")?;
    let (class, rest) = match rest.split_once('_') {
        Some(("B", r)) => (Class::Benign, r),
        Some(("M", r)) => (Class::Malignant, r),
        _ => return Err("class is neither B nor M".into()),
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let [subtype, year, slide, mag, seq] = parts[..] else {
        return Err("expected <subtype>-<year>-<patient>-<mag>-<seq>".into());
    };
    if subtype.is_empty() || !subtype.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(format!("bad subtype {subtype:?}"));
    }
    if year.is_empty() || !year.chars().all(|c| c.is_ascii_digit()) || slide.is_empty() {
        return Err("bad patient id".into());
    }
    let magnification: u32 = mag
        .parse()
        .map_err(|_| format!("bad magnification {mag:?}"))?;
    if ![40, 100, 200, 400].contains(&magnification) {
        return Err(format!(
            "magnification {magnification} is not 40/100/200/400"
        ));
    }
    let seq: u32 = seq
        .parse()
        .map_err(|_| format!("bad sequence number {seq:?}"))?;
    Ok(Sample {
        path: PathBuf::new(),
        class,
        subtype: subtype.to_string(),
        patient: format!("{year}-{slide}"),
        magnification,
        seq,
    })
}

/// A file that looked like an image but cannot be used, with the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub rejected: Vec<Rejected>,
}

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read folder", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("{}: cannot read folder", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl Dataset {
    /// Walks `root` for BreakHis-named images. `magnifications` empty means all.
    /// Names that do not parse are kept in `rejected`; decoding is checked later by whoever
    /// reads the pixels, so a scan of 7,909 files stays quick.
    pub fn scan(root: &Path, magnifications: &[u32]) -> Result<Dataset> {
        if !root.exists() {
            bail!("{}: data folder does not exist", root.display());
        }
        if !root.is_dir() {
            bail!("{}: not a folder", root.display());
        }
        let mut files = Vec::new();
        walk(root, &mut files)?;
        files.sort();
        let mut ds = Dataset::default();
        for path in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            match parse_name(name) {
                Ok(mut s) => {
                    if magnifications.is_empty() || magnifications.contains(&s.magnification) {
                        s.path = path;
                        ds.samples.push(s);
                    }
                }
                Err(reason) => ds.rejected.push(Rejected {
                    path,
                    reason: format!("not a BreakHis file name: {reason}"),
                }),
            }
        }
        if ds.samples.is_empty() {
            let mags = if magnifications.is_empty() {
                String::new()
            } else {
                format!(" at magnification {magnifications:?}")
            };
            bail!(
                "{}: no BreakHis images found{mags} (expected names like SOB_B_A-14-22549AB-100-001.png)",
                root.display()
            );
        }
        Ok(ds)
    }

    pub fn patients(&self) -> BTreeMap<&str, Class> {
        self.samples
            .iter()
            .map(|s| (s.patient.as_str(), s.class))
            .collect()
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.samples)
    }
}

/// Counts for logs, reports and model cards.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub images: usize,
    pub patients: usize,
    pub images_per_class: BTreeMap<String, usize>,
    pub patients_per_class: BTreeMap<String, usize>,
    pub images_per_magnification: BTreeMap<String, usize>,
    pub images_per_subtype: BTreeMap<String, usize>,
}

impl Summary {
    pub fn of(samples: &[Sample]) -> Summary {
        let mut s = Summary {
            images: samples.len(),
            ..Default::default()
        };
        let mut patients = BTreeMap::new();
        for x in samples {
            *s.images_per_class.entry(x.class.to_string()).or_default() += 1;
            *s.images_per_magnification
                .entry(format!("{}X", x.magnification))
                .or_default() += 1;
            *s.images_per_subtype.entry(x.subtype.clone()).or_default() += 1;
            patients.insert(x.patient.clone(), x.class);
        }
        s.patients = patients.len();
        for c in patients.values() {
            *s.patients_per_class.entry(c.to_string()).or_default() += 1;
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} images from {} patients (",
            self.images, self.patients
        )?;
        let classes: Vec<String> = self
            .images_per_class
            .iter()
            .map(|(c, n)| {
                format!(
                    "{c}: {n} images, {} patients",
                    self.patients_per_class.get(c).copied().unwrap_or(0)
                )
            })
            .collect();
        write!(f, "{}; ", classes.join(", "))?;
        let mags: Vec<String> = self
            .images_per_magnification
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        write!(f, "{})", mags.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_official_names() {
        let s = parse_name("SOB_B_TA-14-3411F-100-001.png").unwrap();
        assert_eq!(s.class, Class::Benign);
        assert_eq!(s.subtype, "TA");
        assert_eq!(s.patient, "14-3411F");
        assert_eq!(s.magnification, 100);
        assert_eq!(s.seq, 1);
        let m = parse_name("SOB_M_DC-14-2523-40-010.png").unwrap();
        assert_eq!(
            (m.class, m.magnification, m.patient.as_str()),
            (Class::Malignant, 40, "14-2523")
        );
    }

    #[test]
    fn rejects_foreign_names_with_a_reason() {
        assert!(parse_name("photo.png").unwrap_err().contains("SOB_"));
        assert!(parse_name("SOB_X_TA-14-3411F-100-001.png")
            .unwrap_err()
            .contains("B nor M"));
        assert!(parse_name("SOB_B_TA-14-3411F-150-001.png")
            .unwrap_err()
            .contains("150"));
        assert!(parse_name("SOB_B_TA-14-3411F-100.png").is_err());
    }
}
