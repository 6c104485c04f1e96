//! Where the shared data lives: one setting for the CLI defaults, tests and benchmarks.

use std::path::PathBuf;

/// `HISTOSCREEN_SHARED`, else `../shared` beside the workspace the executable runs from,
/// resolved at run time by the edge's helper so both binaries agree and neither bakes in the
/// build machine's path.
pub fn shared_dir() -> PathBuf {
    histoscreen_edge::paths::shared_dir()
}

pub fn default_data_dir() -> PathBuf {
    shared_dir().join("data/breakhis")
}

pub fn default_pretrained() -> PathBuf {
    shared_dir().join("weights/alexnet-features-imagenet.safetensors")
}
