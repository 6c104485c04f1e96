//! Where the shared data lives: one setting for the CLI defaults, tests and benchmarks.

use std::path::PathBuf;

/// `HISTOSCREEN_SHARED`, or `../shared` beside the workspace (the layout on CI and dev machines).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("HISTOSCREEN_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

pub fn default_data_dir() -> PathBuf {
    shared_dir().join("data/breakhis")
}

pub fn default_pretrained() -> PathBuf {
    shared_dir().join("weights/alexnet-features-imagenet.safetensors")
}
