//! Pretrained ImageNet weights: torchvision `.pth` checkpoints and safetensors with torchvision
//! key names, whole or partial.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::model::alexnet::{AlexNet, Head};

/// What a pretrained file put into the network, for the log and the model card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub file: String,
    pub loaded: Vec<String>,
    /// Layers left at their fresh initialisation.
    pub fresh: Vec<String>,
}

impl LoadReport {
    pub fn describe(&self) -> String {
        // A layer is a weight and a bias.
        let layers =
            |prefix: &str| self.loaded.iter().filter(|k| k.starts_with(prefix)).count() / 2;
        let (convs, fcs) = (layers("features."), layers("classifier."));
        let mut fresh: Vec<&str> = self
            .fresh
            .iter()
            .map(|k| k.rsplit_once('.').map(|(l, _)| l).unwrap_or(k))
            .collect();
        fresh.dedup();
        format!(
            "{}: loaded {convs} conv layer(s) and {fcs} fully connected layer(s); freshly initialised: {}",
            self.file,
            if fresh.is_empty() { "nothing".to_string() } else { fresh.join(", ") }
        )
    }
}

/// Keys of the network that a torchvision checkpoint may fill. fc8 is torchvision's 1000-way
/// ImageNet output, never ours.
fn wanted(head: Head) -> &'static str {
    match head {
        Head::Classic => r"^(features\.[0-4]|classifier\.[01])\.(weight|bias)$",
        Head::Compact => r"^features\.[0-4]\.(weight|bias)$",
    }
}

enum Format {
    Safetensors,
    Pytorch,
}

fn sniff(path: &Path) -> Result<Format> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open weights file", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("{}: cannot read weights file", path.display()))?;
    if n >= 2 && &head[..2] == b"PK" || n >= 1 && head[0] == 0x80 {
        // zip (torch.save since 1.6) or a legacy pickle
        return Ok(Format::Pytorch);
    }
    if n == 8 {
        let header_len = u64::from_le_bytes(head);
        let size = std::fs::metadata(path)?.len();
        if header_len > 1 && header_len < size {
            return Ok(Format::Safetensors);
        }
    }
    bail!(
        "{}: not a weights file (expected safetensors or a PyTorch .pth checkpoint)",
        path.display()
    )
}

/// Loads whatever the file holds of AlexNet into `model`; a file that fills no conv layer, or
/// holds a layer of the wrong shape, is an error naming the file.
pub fn load_pretrained(model: &mut AlexNet, path: &Path) -> Result<LoadReport> {
    let head = model.head();
    let result: ApplyResult = match sniff(path)? {
        Format::Safetensors => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .map_indices_contiguous(true)
                .with_regex(wanted(head))
                .allow_partial(true)
                // Shape errors come back in the result so they can be reported as a misfit.
                .validate(false);
            model
                .load_from(&mut store)
                .map_err(|e| anyhow!("{}: cannot read safetensors weights: {e}", path.display()))?
        }
        Format::Pytorch => {
            let mut store = PytorchStore::from_file(path)
                .map_indices_contiguous(true)
                .with_regex(wanted(head))
                .allow_partial(true)
                // Shape errors come back in the result so they can be reported as a misfit.
                .validate(false);
            model
                .load_from(&mut store)
                .map_err(|e| anyhow!("{}: cannot read PyTorch weights: {e}", path.display()))?
        }
    };
    if let Some(e) = result.errors.first() {
        bail!("{}: weights do not fit AlexNet: {e}", path.display());
    }
    if !result.applied.iter().any(|k| k.starts_with("features.")) {
        bail!(
            "{}: holds no AlexNet conv weights (expected torchvision keys features.0.weight ... features.10.bias)",
            path.display()
        );
    }
    let mut loaded = result.applied.clone();
    loaded.sort();
    let mut fresh: Vec<String> = result.missing.iter().map(|(k, _)| k.clone()).collect();
    fresh.extend(
        result
            .skipped
            .iter()
            .filter(|k| !loaded.contains(k))
            .cloned(),
    );
    fresh.sort();
    fresh.dedup();
    Ok(LoadReport {
        file: path.display().to_string(),
        loaded,
        fresh,
    })
}
