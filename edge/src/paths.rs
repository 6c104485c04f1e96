//! Where the shared data and the bundled models live.
//!
//! One setting each, so tests, benches and the demo never disagree about data
//! location: `HISTOSCREEN_SHARED` for the read-only shared data, and the
//! workspace's `models/` folder for the bundled model and samples.

use std::path::{Path, PathBuf};

/// Environment variable overriding the shared data folder.
pub const SHARED_ENV: &str = "HISTOSCREEN_SHARED";

/// The workspace root this crate was built from (compile-time fallback).
pub fn build_workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The workspace the running executable belongs to: the first ancestor of the
/// executable holding a `models/` folder (target/<profile>/exe -> root), else
/// the workspace the crate was compiled in if this machine has it (`cargo
/// install` from a checkout), else the current folder: a copied binary must not
/// go looking in, or report, the build machine's folders.
pub fn workspace_root() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("models").is_dir() && dir.join("Cargo.toml").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    let built = build_workspace_root();
    if built.join("Cargo.toml").is_file() {
        built
    } else {
        PathBuf::from(".")
    }
}

/// `HISTOSCREEN_SHARED`, defaulting to `../shared` next to the workspace root. The one
/// place both binaries (the edge's defaults, the trainer's data and weights) resolve it.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os(SHARED_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join("..").join("shared"),
    }
}

/// The BreakHis `breast` folder inside the shared data.
pub fn breakhis_dir() -> PathBuf {
    shared_dir().join("data/breakhis/BreaKHis_v1/histology_slides/breast")
}

/// The workspace `models/` folder.
pub fn models_dir() -> PathBuf {
    workspace_root().join("models")
}

/// Default model for `demo`.
pub fn default_model() -> PathBuf {
    models_dir().join("histoscreen-alexnet-compact.onnx")
}

/// Image file extensions `classify` picks up in folders.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// True when the file name has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// All image files under `dir`, recursively, sorted by path.
pub fn images_under(dir: &Path) -> Result<Vec<PathBuf>, crate::EdgeError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| crate::EdgeError::io("read", &d, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| crate::EdgeError::io("read", &d, &e))?;
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if has_image_extension(&p) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `classify`-style inputs: folders expanded (recursively, sorted); explicit files kept as
/// given even without an image extension, so a bad file shows up as an error row.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, crate::EdgeError> {
    let mut all = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = images_under(p)?;
            if found.is_empty() {
                return Err(crate::EdgeError::Usage(format!(
                    "{}: no images found (looked for {})",
                    p.display(),
                    IMAGE_EXTENSIONS.join("/")
                )));
            }
            all.extend(found);
        } else {
            all.push(p.clone());
        }
    }
    Ok(all)
}

/// Ground truth encoded in an official BreakHis file name (`SOB_B_...`/`SOB_M_...`).
pub fn breakhis_truth(path: &Path) -> Option<crate::Label> {
    let name = path.file_name()?.to_str()?;
    if name.contains("_B_") {
        Some(crate::Label::Benign)
    } else if name.contains("_M_") {
        Some(crate::Label::Malignant)
    } else {
        None
    }
}

/// A representative BreakHis image for benchmarks: the first benign PNG in
/// sorted order, or the H&E fixture tile if the data set is absent.
pub fn default_bench_image() -> PathBuf {
    let benign = breakhis_dir().join("benign");
    if let Ok(imgs) = images_under(&benign) {
        if let Some(first) = imgs.into_iter().next() {
            return first;
        }
    }
    shared_dir().join("fixtures/he-tumour-tile-1000.png")
}
