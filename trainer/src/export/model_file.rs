//! From a trained burn network to what the device loads: an ONNX file and its model card.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::Linear;
use burn::tensor::Tensor;
use sha2::{Digest, Sha256};

use histoscreen_edge::card::{FieldSpec, GateSpec, InputSpec, ModelCard, OutputSpec, StainSpec};
use histoscreen_edge::field::Aggregate;
use histoscreen_edge::fsutil::write_atomic;

use crate::export::onnx::{
    self, AlexNetWeights, Array, ConvWeights, DenseWeights, ExportOptions, HeadWeights, Numerics,
    WeightStorage,
};
use crate::model::alexnet::{AlexNet, Head};

fn array<const D: usize>(t: &Tensor<D>) -> Array {
    let shape = t.dims().to_vec();
    let data: Vec<f32> = t
        .to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 weights");
    Array { shape, data }
}

fn bias(b: &Option<Param<Tensor<1>>>, n: usize) -> Array {
    match b {
        Some(b) => array(&b.val()),
        None => Array {
            shape: vec![n],
            data: vec![0.0; n],
        },
    }
}

fn conv(c: &Conv2d) -> ConvWeights {
    let weight = array(&c.weight.val());
    let out = weight.shape[0];
    ConvWeights {
        weight,
        bias: bias(&c.bias, out),
    }
}

/// burn stores a dense weight as `[in, out]`; ONNX Gemm with transB and PyTorch want `[out, in]`.
fn dense(l: &Linear) -> DenseWeights {
    let weight = array(&l.weight.val().transpose());
    let out = weight.shape[0];
    DenseWeights {
        weight,
        bias: bias(&l.bias, out),
    }
}

pub fn weights_of(model: &AlexNet) -> AlexNetWeights {
    let features = model.features.iter().map(conv).collect();
    let head = match model.head() {
        Head::Classic => HeadWeights::Classic {
            fc6: dense(&model.classifier[0]),
            fc7: dense(&model.classifier[1]),
            fc8: dense(&model.classifier[2]),
        },
        Head::Compact => match model.compact.as_slice() {
            [out] => HeadWeights::Compact {
                hidden: None,
                out: dense(out),
            },
            [hidden, out] => HeadWeights::Compact {
                hidden: Some(dense(hidden)),
                out: dense(out),
            },
            _ => unreachable!("the compact head has one or two layers"),
        },
    };
    AlexNetWeights { features, head }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The decision rule `train` writes unless told otherwise, and the one a card gets when no
/// training run's card says.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
pub const DEFAULT_UNCERTAIN_BAND: f32 = 0.1;

/// What the card says beyond the file itself.
pub struct CardInfo {
    pub name: String,
    pub precision: String,
    pub threshold: f32,
    pub uncertain_band: f32,
    pub split_seed: Option<u64>,
    pub training: serde_json::Value,
    pub metrics: serde_json::Value,
    /// The stain reference fitted on the training images (`normalise` says whether the model
    /// expects normalised input); `None` where none was fitted.
    pub stain: Option<StainSpec>,
    /// The not-H&E gate's thresholds.
    pub gate: Option<GateSpec>,
}

/// Writes `onnx_path` and its card beside it, both atomically; returns the card.
pub fn write_model(
    onnx_bytes: &[u8],
    onnx_path: &Path,
    head: Head,
    info: CardInfo,
) -> Result<ModelCard> {
    write_atomic(onnx_path, onnx_bytes)?;
    let card = ModelCard {
        onnx_file: onnx_path
            .file_name()
            .context("model path has no file name")?
            .to_string_lossy()
            .into_owned(),
        sha256: sha256_hex(onnx_bytes),
        size_bytes: onnx_bytes.len() as u64,
        ..card_for(head, info)?
    };
    card.save(&ModelCard::card_path_for(onnx_path))?;
    Ok(card)
}

/// The card of a `head` network described by `info`, without a file (name, checksum and size
/// empty): [`write_model`] adds them, and `predict` takes a checkpoint's decision rule from it.
pub fn card_for(head: Head, info: CardInfo) -> Result<ModelCard> {
    Ok(ModelCard {
        format_version: histoscreen_edge::card::CARD_FORMAT_VERSION,
        name: info.name,
        architecture: "alexnet".into(),
        head: serde_json::to_value(head)?
            .as_str()
            .unwrap_or_default()
            .to_string(),
        precision: info.precision,
        onnx_file: String::new(),
        sha256: String::new(),
        size_bytes: 0,
        classes: crate::data::dataset::CLASSES
            .iter()
            .map(|c| c.to_string())
            .collect(),
        input: InputSpec::imagenet(1),
        output: OutputSpec {
            name: onnx::OUTPUT_NAME.into(),
            shape: vec![1, 2],
        },
        threshold: info.threshold,
        uncertain_band: info.uncertain_band,
        split_seed: info.split_seed,
        training: info.training,
        metrics: info.metrics,
        // Every head is trained at this scale; the compact head's global pool also gives the
        // edge a dense form of every tile position.
        field: Some(FieldSpec::alexnet(
            crate::data::images::MODEL_UM_PER_PX,
            Aggregate::Mean,
        )),
        stain: info.stain,
        gate: info.gate,
    })
}

/// f32 ONNX bytes of `model`.
pub fn onnx_f32(model: &AlexNet, doc: &str) -> Result<Vec<u8>> {
    onnx_as(model, doc, &Numerics::Float(WeightStorage::F32))
}

/// ONNX bytes of `model` computing in `numerics`.
pub fn onnx_as(model: &AlexNet, doc: &str, numerics: &Numerics) -> Result<Vec<u8>> {
    onnx::alexnet_to_onnx_as(
        &weights_of(model),
        &ExportOptions {
            graph_name: "histoscreen-alexnet".into(),
            doc: doc.into(),
            metadata: vec![(
                "producer".into(),
                format!("histoscreen-train {}", env!("CARGO_PKG_VERSION")),
            )],
        },
        numerics,
    )
}
