//! ONNX export of the fine-tuned torchvision AlexNet, for histoscreen-edge (tract).
//!
//! The exporter works from plain `f32` arrays rather than from the training framework's
//! tensors so that it can be tested (and reused) without a training backend, and so that the
//! bytes it writes depend only on the weights.
//!
//! The graph is built for a fixed `[1, 3, 224, 224]` input. At that size the feature extractor
//! already yields `[1, 256, 6, 6]`, so torchvision's `AdaptiveAvgPool2d((6, 6))` is the identity
//! and is left out: adding it would force dynamic pooling windows that tract would have to
//! special-case for nothing.
//!
//! Three ways of storing the weights are offered (see [`WeightStorage`]). All three compute in
//! `f32`; the compact ones only shrink the file and are expanded back to `f32` when tract loads
//! the model (tract folds the constant `DequantizeLinear` / `Cast` nodes while optimising).

mod builder;
pub mod int8;
mod layers;
mod proto;
#[cfg(test)]
mod tests;
mod weights;

use anyhow::Result;
use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
};

pub use builder::{quantize_per_channel, WeightStorage};
pub use weights::{
    validate, AlexNetWeights, Array, ConvWeights, DenseWeights, ExportError, HeadWeights,
    CLASSIC_FEATURES, COMPACT_FEATURES, NUM_CLASSES,
};

use builder::GraphBuilder;
use int8::{quantized_features, ActivationRanges};
use layers::CONVS;
use proto::{int, node, value_info};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportOptions {
    pub graph_name: String,
    /// Stored in the model's `doc_string`.
    pub doc: String,
    /// Stored in the model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
}

/// What the graph computes in.
#[derive(Debug, Clone, PartialEq)]
pub enum Numerics {
    /// `f32` everywhere; the weights stored as given.
    Float(WeightStorage),
    /// The five convolutions in int8 (`QLinearConv`, int32 accumulation) on activations
    /// quantized per tensor with the given calibrated ranges; the small head stays `f32`.
    Int8(ActivationRanges),
    /// Weights, activations and arithmetic in IEEE half precision; input and output `f32`.
    F16,
}

/// Input tensor name of the exported graph.
pub const INPUT_NAME: &str = "image";
/// Output tensor name of the exported graph (softmax probabilities).
pub const OUTPUT_NAME: &str = "probs";
/// The only input size the graph is valid for (see the module documentation).
pub const INPUT_SHAPE: [usize; 4] = [1, 3, 224, 224];
/// ONNX opset and IR version written in the file. Opset 13 is the first with per-axis
/// `DequantizeLinear` and with `Softmax` over a single axis, which is what we mean.
pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 8;

/// Exports the network with `f32` weights; see [`alexnet_to_onnx_with`].
pub fn alexnet_to_onnx(w: &AlexNetWeights, opts: &ExportOptions) -> Result<Vec<u8>> {
    alexnet_to_onnx_with(w, opts, WeightStorage::F32)
}

/// Exports the network as a serialized ONNX `ModelProto`: input `image` f32 `[1,3,224,224]`,
/// output `probs` f32 `[1,2]` (softmax over classes).
pub fn alexnet_to_onnx_with(
    w: &AlexNetWeights,
    opts: &ExportOptions,
    storage: WeightStorage,
) -> Result<Vec<u8>> {
    alexnet_to_onnx_as(w, opts, &Numerics::Float(storage))
}

/// Like [`alexnet_to_onnx_with`], in any of the [`Numerics`]. Input and output stay `f32`
/// whatever the graph computes in, so the device feeds every variant the same tensor.
pub fn alexnet_to_onnx_as(
    w: &AlexNetWeights,
    opts: &ExportOptions,
    numerics: &Numerics,
) -> Result<Vec<u8>> {
    validate(w)?;
    let storage = match numerics {
        Numerics::Float(s) => *s,
        // The head is a sliver of the compute; int8 storage keeps the file small there too.
        Numerics::Int8(_) => WeightStorage::Int8PerChannel,
        Numerics::F16 => WeightStorage::F16,
    };
    let mut g = GraphBuilder::new(storage);
    g.half = matches!(numerics, Numerics::F16);

    let mut x = INPUT_NAME.to_string();
    if g.half {
        x = g.node(
            "Cast",
            "image.f16",
            &[&x],
            vec![int("to", DataType::Float16 as i64)],
        );
    }
    x = match numerics {
        Numerics::Int8(ranges) => quantized_features(&mut g, &x, &w.features, ranges)?,
        _ => float_features(&mut g, x, &w.features),
    };

    // The compact head stays f32 in the int8 forms: it is 1% of the file and reads features
    // scaled by their spread over the training set, where int8 weights cost the most (bundled
    // model, 182 images: labels agreed with f32 on 96.7% with an int8 head, 98.4% without).
    if matches!(w.head, HeadWeights::Compact { .. }) && g.storage == WeightStorage::Int8PerChannel {
        g.storage = WeightStorage::F32;
    }
    match &w.head {
        HeadWeights::Classic { fc6, fc7, fc8 } => {
            x = g.node("Flatten", "flatten", &[&x], vec![int("axis", 1)]);
            // PyTorch state-dict names of the classifier's Linear layers (dropouts sit at 0, 3).
            let layers = [(fc6, 6, 1, true), (fc7, 7, 4, true), (fc8, 8, 6, false)];
            for (d, n, torch_index, relu) in layers {
                x = g.dense(
                    &x,
                    d,
                    &format!("fc{n}"),
                    &format!("classifier.{torch_index}"),
                );
                if relu {
                    x = g.node("Relu", &format!("relu{n}"), &[&x], vec![]);
                }
            }
        }
        HeadWeights::Compact { hidden, out } => {
            x = g.node("GlobalAveragePool", "head.gap", &[&x], vec![]);
            x = g.node("Flatten", "head.flatten", &[&x], vec![int("axis", 1)]);
            if let Some(h) = hidden {
                x = g.dense(&x, h, "head.hidden", "head.hidden");
                x = g.node("Relu", "head.hidden.relu", &[&x], vec![]);
            }
            x = g.dense(&x, out, "head.out", "head.out");
        }
    }
    if g.half {
        // The softmax of f16 logits in f32: its exponentials are where half precision would
        // lose the most, and the output type stays what the device reads.
        x = g.node(
            "Cast",
            "logits.f32",
            &[&x],
            vec![int("to", DataType::Float as i64)],
        );
    }
    g.nodes.push(node(
        "Softmax",
        "softmax",
        &[&x],
        OUTPUT_NAME,
        vec![int("axis", 1)],
    ));

    let graph = GraphProto {
        name: opts.graph_name.clone(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(INPUT_NAME, &INPUT_SHAPE)],
        output: vec![value_info(OUTPUT_NAME, &[1, NUM_CLASSES])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "histoscreen-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: opts.doc.clone(),
        graph: Some(graph),
        metadata_props: opts
            .metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// torchvision's `features` in floating point: Conv, ReLU and the three max-pools.
fn float_features(g: &mut GraphBuilder, mut x: String, convs: &[ConvWeights]) -> String {
    for (i, (c, spec)) in convs.iter().zip(&CONVS).enumerate() {
        let n = i + 1;
        let prefix = format!("features.{}", spec.torch_index);
        let weight = g.weight(&format!("{prefix}.weight"), &c.weight);
        let bias = g.bias(&format!("{prefix}.bias"), &c.bias);
        x = g.node(
            "Conv",
            &format!("conv{n}"),
            &[&x, &weight, &bias],
            spec.attributes(),
        );
        x = g.node("Relu", &format!("relu{n}"), &[&x], vec![]);
        if spec.pool {
            x = g.max_pool(&format!("pool{n}"), &x);
        }
    }
    x
}
