//! Helpers shared by the trainer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn shared() -> PathBuf {
    histoscreen_train::data::settings::shared_dir()
}

pub fn breakhis() -> PathBuf {
    shared().join("data/breakhis")
}

pub fn pretrained() -> PathBuf {
    shared().join("weights/alexnet-features-imagenet.safetensors")
}

/// The first `n` images of each class, for tests that need a few real images.
pub fn some_images(n: usize) -> Vec<PathBuf> {
    let ds =
        histoscreen_train::data::dataset::Dataset::scan(&breakhis(), &[]).expect("shared BreakHis");
    let mut out = Vec::new();
    for class in ["benign", "malignant"] {
        out.extend(
            ds.samples
                .iter()
                .filter(|s| s.class.to_string() == class)
                .step_by(37)
                .take(n)
                .map(|s| s.path.clone()),
        );
    }
    out
}

pub fn train_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_histoscreen-train"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.env("HISTOSCREEN_SHARED", shared())
        .output()
        .expect("run histoscreen-train")
}

/// `histoscreen-train train --data DATA --out OUT ARGS...`, run to completion.
pub fn train(data: &Path, out: &Path, args: &[&str]) -> Output {
    run(train_bin()
        .arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(args))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copies real BreakHis files into `dir`, keeping their names.
pub fn copy_images(files: &[PathBuf], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
}

/// Copies the first `images` images of the first `patients` patients of each class into `dir`.
pub fn copy_few_patients(patients: usize, images: usize, dir: &Path) {
    let ds =
        histoscreen_train::data::dataset::Dataset::scan(&breakhis(), &[]).expect("shared BreakHis");
    let mut files = Vec::new();
    for class in ["benign", "malignant"] {
        let mut names: Vec<&str> = ds
            .samples
            .iter()
            .filter(|s| s.class.to_string() == class)
            .map(|s| s.patient.as_str())
            .collect();
        names.dedup();
        for p in names.iter().take(patients) {
            files.extend(
                ds.samples
                    .iter()
                    .filter(|s| s.patient == *p)
                    .take(images)
                    .map(|s| s.path.clone()),
            );
        }
    }
    copy_images(&files, dir);
}

/// A minimal safetensors file: 8-byte little-endian header length, JSON header, raw data.
pub fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}
