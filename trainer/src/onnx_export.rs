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

use anyhow::Result;
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use tract_onnx::prelude::f16;

/// A dense row-major `f32` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// Builds an array, refusing a data length that disagrees with the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        anyhow::ensure!(
            data.len() == expected,
            "array of shape {shape:?} needs {expected} values, got {}",
            data.len()
        );
        Ok(Self { shape, data })
    }

    /// An all-zero array of the given shape.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; len],
        }
    }
}

/// A convolution layer: weight is OIHW, bias is `[O]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWeights {
    pub weight: Array,
    pub bias: Array,
}

/// A fully connected layer: weight is `[out, in]` (PyTorch convention), bias is `[out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseWeights {
    pub weight: Array,
    pub bias: Array,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeadWeights {
    /// torchvision classifier: flatten 256*6*6=9216 -> fc6 -> ReLU -> fc7 -> ReLU -> fc8 (2).
    /// Dropout is the identity at inference and is not exported.
    Classic {
        fc6: DenseWeights,
        fc7: DenseWeights,
        fc8: DenseWeights,
    },
    /// GlobalAveragePool over the conv features (256) -> optional hidden dense + ReLU -> out (2).
    Compact {
        hidden: Option<DenseWeights>,
        out: DenseWeights,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlexNetWeights {
    /// The five convolutions of `torchvision.models.alexnet().features`, in order.
    pub features: Vec<ConvWeights>,
    pub head: HeadWeights,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportOptions {
    pub graph_name: String,
    /// Stored in the model's `doc_string`.
    pub doc: String,
    /// Stored in the model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
}

/// How the weight tensors are stored in the file. Biases always stay `f32`: they are a few
/// kilobytes and quantising them would only add error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightStorage {
    /// Plain `f32` initializers (about 4 bytes per parameter).
    #[default]
    F32,
    /// `int8` with one symmetric scale per output channel, expanded by `DequantizeLinear`
    /// (about 1 byte per parameter).
    Int8PerChannel,
    /// IEEE half precision, expanded by `Cast` (about 2 bytes per parameter).
    F16,
}

/// What the graph computes in.
#[derive(Debug, Clone, PartialEq)]
pub enum Numerics {
    /// `f32` everywhere; the weights stored as given.
    Float(WeightStorage),
    /// The five convolutions in int8 (`QLinearConv`, int32 accumulation) on activations
    /// quantized per tensor with the given calibrated ranges; the small head stays `f32`.
    Int8(crate::onnx_int8::ActivationRanges),
    /// Weights, activations and arithmetic in IEEE half precision; input and output `f32`.
    F16,
}

/// Input tensor name of the exported graph.
pub const INPUT_NAME: &str = "image";
/// Output tensor name of the exported graph (softmax probabilities).
pub const OUTPUT_NAME: &str = "probs";
/// The only input size the graph is valid for (see the module documentation).
pub const INPUT_SHAPE: [usize; 4] = [1, 3, 224, 224];
/// Number of classes (benign, malignant).
pub const NUM_CLASSES: usize = 2;
/// Flattened size of the conv features at 224x224 input: 256 channels of 6x6.
pub const CLASSIC_FEATURES: usize = 256 * 6 * 6;
/// Size of the globally pooled conv features.
pub const COMPACT_FEATURES: usize = 256;

/// ONNX opset and IR version written in the file. Opset 13 is the first with per-axis
/// `DequantizeLinear` and with `Softmax` over a single axis, which is what we mean.
pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 8;

/// Static description of one torchvision AlexNet convolution.
pub(crate) struct ConvSpec {
    pub(crate) out_ch: usize,
    in_ch: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    /// Whether a `MaxPool(3, 2)` follows the ReLU.
    pub(crate) pool: bool,
    /// Index in `torchvision.models.alexnet().features`, used to name initializers as in the
    /// PyTorch state dict, so a file can be traced back to a checkpoint.
    pub(crate) torch_index: usize,
}

impl ConvSpec {
    const fn new(out_ch: usize, in_ch: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        Self {
            out_ch,
            in_ch,
            kernel,
            stride,
            pad,
            pool: false,
            torch_index: 0,
        }
    }

    const fn at(self, torch_index: usize, pool: bool) -> Self {
        Self {
            torch_index,
            pool,
            ..self
        }
    }
}

impl ConvSpec {
    /// The attributes `Conv` and `QLinearConv` share.
    pub(crate) fn attributes(&self) -> Vec<AttributeProto> {
        let (k, s, p) = (self.kernel as i64, self.stride as i64, self.pad as i64);
        vec![
            ints("kernel_shape", &[k, k]),
            ints("strides", &[s, s]),
            ints("pads", &[p, p, p, p]),
            ints("dilations", &[1, 1]),
            int("group", 1),
        ]
    }
}

/// torchvision `alexnet().features`: (out, in, kernel, stride, pad), then the index of the Conv
/// in that `Sequential` and whether a `MaxPool(3, 2)` follows.
pub(crate) const CONVS: [ConvSpec; 5] = [
    ConvSpec::new(64, 3, 11, 4, 2).at(0, true),
    ConvSpec::new(192, 64, 5, 1, 2).at(3, true),
    ConvSpec::new(384, 192, 3, 1, 1).at(6, false),
    ConvSpec::new(256, 384, 3, 1, 1).at(8, false),
    ConvSpec::new(256, 256, 3, 1, 1).at(10, true),
];

/// A weight array whose shape or length does not fit the AlexNet graph.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    #[error("{name} has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{name} has shape {shape:?} ({expected} values) but holds {got} values")]
    DataLen {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("expected exactly 5 feature convolutions, got {0}")]
    FeatureCount(usize),
    #[error("{name} has non-finite values")]
    NonFinite { name: String },
}

fn check(name: &str, a: &Array, expected: &[usize]) -> Result<(), ExportError> {
    if a.shape != expected {
        return Err(ExportError::Shape {
            name: name.to_string(),
            got: a.shape.clone(),
            expected: expected.to_vec(),
        });
    }
    let len: usize = expected.iter().product();
    if a.data.len() != len {
        return Err(ExportError::DataLen {
            name: name.to_string(),
            shape: a.shape.clone(),
            expected: len,
            got: a.data.len(),
        });
    }
    // A NaN weight would export fine and then silently turn every prediction into NaN on the
    // device, so it is cheaper to refuse here.
    if a.data.iter().any(|v| !v.is_finite()) {
        return Err(ExportError::NonFinite {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks a dense layer against an input width, returns its output width. Hidden widths are
/// free (torchvision uses 4096) so that slimmer heads can be exported too.
fn check_dense(
    name: &str,
    d: &DenseWeights,
    in_features: usize,
    out_features: Option<usize>,
) -> Result<usize, ExportError> {
    let out = out_features.unwrap_or_else(|| d.weight.shape.first().copied().unwrap_or(0));
    check(&format!("{name}.weight"), &d.weight, &[out, in_features])?;
    check(&format!("{name}.bias"), &d.bias, &[out])?;
    Ok(out)
}

/// Validates every array against the graph before anything is built.
pub fn validate(w: &AlexNetWeights) -> Result<(), ExportError> {
    if w.features.len() != CONVS.len() {
        return Err(ExportError::FeatureCount(w.features.len()));
    }
    for (i, (c, spec)) in w.features.iter().zip(&CONVS).enumerate() {
        let k = spec.kernel;
        check(
            &format!("features[{i}].weight"),
            &c.weight,
            &[spec.out_ch, spec.in_ch, k, k],
        )?;
        check(&format!("features[{i}].bias"), &c.bias, &[spec.out_ch])?;
    }
    match &w.head {
        HeadWeights::Classic { fc6, fc7, fc8 } => {
            let h6 = check_dense("fc6", fc6, CLASSIC_FEATURES, None)?;
            let h7 = check_dense("fc7", fc7, h6, None)?;
            check_dense("fc8", fc8, h7, Some(NUM_CLASSES))?;
        }
        HeadWeights::Compact { hidden, out } => {
            let width = match hidden {
                Some(h) => check_dense("head.hidden", h, COMPACT_FEATURES, None)?,
                None => COMPACT_FEATURES,
            };
            check_dense("head.out", out, width, Some(NUM_CLASSES))?;
        }
    }
    Ok(())
}

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
        Numerics::Int8(ranges) => {
            crate::onnx_int8::quantized_features(&mut g, &x, &w.features, ranges)?
        }
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

pub(crate) struct GraphBuilder {
    storage: WeightStorage,
    /// Weights and biases as `float16` initializers used directly (f16 compute), not cast.
    half: bool,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    fn new(storage: WeightStorage) -> Self {
        Self {
            storage,
            half: false,
            nodes: vec![],
            initializers: vec![],
        }
    }

    /// Adds a node whose single output is named after the node, returns that output name.
    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(node(op, name, inputs, name, attributes));
        name.to_string()
    }

    fn dense(&mut self, x: &str, d: &DenseWeights, name: &str, prefix: &str) -> String {
        if self.half {
            // tract's Gemm answers f32 for f16 operands; MatMul + Add keep the type. MatMul has
            // no transB, so this weight is stored [in, out].
            let [out, inp] = d.weight.shape[..] else {
                unreachable!("validated dense weights are 2-D")
            };
            let mut t = vec![0f32; d.weight.data.len()];
            for o in 0..out {
                for i in 0..inp {
                    t[i * out + o] = d.weight.data[o * inp + i];
                }
            }
            let wt = Array {
                shape: vec![inp, out],
                data: t,
            };
            let weight = self.weight(&format!("{prefix}.weight.t"), &wt);
            let bias = self.bias(&format!("{prefix}.bias"), &d.bias);
            let product = self.node("MatMul", &format!("{name}.matmul"), &[x, &weight], vec![]);
            return self.node("Add", name, &[&product, &bias], vec![]);
        }
        let weight = self.weight(&format!("{prefix}.weight"), &d.weight);
        let bias = self.bias(&format!("{prefix}.bias"), &d.bias);
        // transB keeps the PyTorch [out, in] layout on disk, so the file matches the state dict.
        let attrs = vec![float("alpha", 1.0), float("beta", 1.0), int("transB", 1)];
        self.node("Gemm", name, &[x, &weight, &bias], attrs)
    }

    pub(crate) fn max_pool(&mut self, name: &str, x: &str) -> String {
        let attrs = vec![ints("kernel_shape", &[3, 3]), ints("strides", &[2, 2])];
        self.node("MaxPool", name, &[x], attrs)
    }

    /// Adds an initializer, returns its name.
    pub(crate) fn constant(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.initializers.push(t);
        name
    }

    fn bias(&mut self, name: &str, a: &Array) -> String {
        if self.half {
            self.initializers.push(tensor_f16(name, a));
        } else {
            self.initializers.push(tensor_f32(name, a));
        }
        name.to_string()
    }

    /// Adds `a` quantized per output channel as `{name}.int8` and its scales as
    /// `{name}.scale`; returns both names and the scales.
    pub(crate) fn int8_weight(&mut self, name: &str, a: &Array) -> (String, String, Vec<f32>) {
        let (q, scales) = quantize_per_channel(a);
        let q_name = self.constant(raw_tensor(
            &format!("{name}.int8"),
            &a.shape,
            DataType::Int8,
            q.iter().map(|&v| v as u8).collect(),
        ));
        let scale_name = self.constant(raw_tensor(
            &format!("{name}.scale"),
            &[a.shape[0]],
            DataType::Float,
            scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        (q_name, scale_name, scales)
    }

    /// Stores a weight in the selected format and returns the name of an `f32` tensor holding
    /// it (the initializer itself, or the output of the node that expands it).
    fn weight(&mut self, name: &str, a: &Array) -> String {
        if self.half {
            self.initializers.push(tensor_f16(name, a));
            return name.to_string();
        }
        match self.storage {
            WeightStorage::F32 => {
                self.initializers.push(tensor_f32(name, a));
            }
            WeightStorage::Int8PerChannel => {
                let (qn, sn, _) = self.int8_weight(name, a);
                let zn = format!("{name}.zero_point");
                let channels = a.shape[0];
                // Explicit int8 zero points: the default zero point is uint8, and runtimes
                // disagree on whether it may then be combined with int8 data.
                self.initializers.push(raw_tensor(
                    &zn,
                    &[channels],
                    DataType::Int8,
                    vec![0; channels],
                ));
                let attrs = vec![int("axis", 0)];
                self.nodes.push(node(
                    "DequantizeLinear",
                    name,
                    &[&qn, &sn, &zn],
                    name,
                    attrs,
                ));
            }
            WeightStorage::F16 => {
                let hn = format!("{name}.f16");
                self.initializers.push(tensor_f16(&hn, a));
                let attrs = vec![int("to", DataType::Float as i64)];
                self.nodes.push(node("Cast", name, &[&hn], name, attrs));
            }
        }
        name.to_string()
    }
}

/// Symmetric per-output-channel (axis 0) int8 quantization. The range is [-127, 127] rather
/// than [-128, 127] so that the scale maps the largest magnitude exactly, in both signs.
pub fn quantize_per_channel(a: &Array) -> (Vec<i8>, Vec<f32>) {
    let channels = a.shape[0];
    let per = a.data.len() / channels.max(1);
    let mut q = Vec::with_capacity(a.data.len());
    let mut scales = Vec::with_capacity(channels);
    for chunk in a.data.chunks(per.max(1)) {
        let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        // An all-zero channel would give a zero scale, which ONNX forbids.
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(
            chunk
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn raw_tensor(
    name: &str,
    shape: &[usize],
    dt: DataType,
    raw_data: Vec<u8>,
) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data,
        ..Default::default()
    }
}

fn tensor_f16(name: &str, a: &Array) -> TensorProto {
    let bytes = a
        .data
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    raw_tensor(name, &a.shape, DataType::Float16, bytes)
}

fn tensor_f32(name: &str, a: &Array) -> TensorProto {
    // raw_data is little-endian by the ONNX spec, whatever the host.
    let bytes = a.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, &a.shape, DataType::Float, bytes)
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use tract_onnx::prelude::*;

    /// xorshift64*: deterministic weights without pulling a RNG into the test build.
    struct Rng(u64);

    impl Rng {
        fn next_f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            bits as f32 / (1u64 << 24) as f32
        }

        fn uniform(&mut self, shape: Vec<usize>, bound: f32) -> Array {
            let len = shape.iter().product();
            let data = (0..len)
                .map(|_| (self.next_f32() * 2.0 - 1.0) * bound)
                .collect();
            Array { shape, data }
        }

        /// He-uniform weights keep activations O(1) through the ReLU stack, so the softmax is
        /// not saturated and comparing probabilities actually tests something.
        fn layer(&mut self, shape: Vec<usize>, gain: f32) -> (Array, Array) {
            let fan_in: usize = shape[1..].iter().product();
            let bound = (3.0 * gain / fan_in as f32).sqrt();
            let bias = self.uniform(vec![shape[0]], 0.1);
            (self.uniform(shape, bound), bias)
        }

        fn conv(&mut self, shape: [usize; 4]) -> ConvWeights {
            let (weight, bias) = self.layer(shape.to_vec(), 2.0);
            ConvWeights { weight, bias }
        }

        fn dense(&mut self, out: usize, inp: usize, gain: f32) -> DenseWeights {
            let (weight, bias) = self.layer(vec![out, inp], gain);
            DenseWeights { weight, bias }
        }
    }

    struct Fixture {
        classic: AlexNetWeights,
        compact: AlexNetWeights,
        input: Vec<f32>,
        /// Reference conv features `[256, 6, 6]` for `input`, shared by both heads.
        features: Vec<f32>,
    }

    /// Built once: the full-size weights are ~230 MB and the naive reference conv takes
    /// seconds, so every test shares them.
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let mut rng = Rng(0x5eed_1234_abcd_0001);
            let features: Vec<_> = CONVS
                .iter()
                .map(|s| rng.conv([s.out_ch, s.in_ch, s.kernel, s.kernel]))
                .collect();
            let classic = AlexNetWeights {
                features: features.clone(),
                head: HeadWeights::Classic {
                    fc6: rng.dense(4096, CLASSIC_FEATURES, 2.0),
                    fc7: rng.dense(4096, 4096, 2.0),
                    fc8: rng.dense(NUM_CLASSES, 4096, 1.0),
                },
            };
            let compact = AlexNetWeights {
                features,
                head: HeadWeights::Compact {
                    hidden: Some(rng.dense(128, COMPACT_FEATURES, 2.0)),
                    out: rng.dense(NUM_CLASSES, 128, 1.0),
                },
            };
            let input = rng.uniform(INPUT_SHAPE.to_vec(), 1.7).data;
            let features = reference_features(&classic.features, &input);
            Fixture {
                classic,
                compact,
                input,
                features,
            }
        })
    }

    fn options() -> ExportOptions {
        ExportOptions {
            graph_name: "alexnet-test".into(),
            doc: "exported by onnx_export tests".into(),
            metadata: vec![("labels".into(), "benign,malignant".into())],
        }
    }

    /// Cross-correlation as in PyTorch/ONNX `Conv`, on a single CHW image.
    fn conv2d(
        x: &[f32],
        (c, h, w): (usize, usize, usize),
        cw: &ConvWeights,
        stride: usize,
        pad: usize,
    ) -> (Vec<f32>, (usize, usize, usize)) {
        let [o, i, k, _] = cw.weight.shape[..] else {
            panic!("conv weight is not 4D")
        };
        assert_eq!(i, c);
        let oh = (h + 2 * pad - k) / stride + 1;
        let ow = (w + 2 * pad - k) / stride + 1;
        let mut out = vec![0f32; o * oh * ow];
        for (oc, plane) in out.chunks_mut(oh * ow).enumerate() {
            plane.fill(cw.bias.data[oc]);
            for ic in 0..c {
                let input = &x[ic * h * w..][..h * w];
                for ky in 0..k {
                    for kx in 0..k {
                        let wv = cw.weight.data[((oc * c + ic) * k + ky) * k + kx];
                        for oy in 0..oh {
                            let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|&v| v < h)
                            else {
                                continue;
                            };
                            for ox in 0..ow {
                                if let Some(ix) =
                                    (ox * stride + kx).checked_sub(pad).filter(|&v| v < w)
                                {
                                    plane[oy * ow + ox] += wv * input[iy * w + ix];
                                }
                            }
                        }
                    }
                }
            }
        }
        (out, (o, oh, ow))
    }

    fn relu(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }

    /// MaxPool(kernel 3, stride 2, no padding, floor mode).
    fn maxpool(x: &[f32], (c, h, w): (usize, usize, usize)) -> (Vec<f32>, (usize, usize, usize)) {
        let (oh, ow) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
        let mut out = Vec::with_capacity(c * oh * ow);
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            m = m.max(x[(ch * h + oy * 2 + ky) * w + ox * 2 + kx]);
                        }
                    }
                    out.push(m);
                }
            }
        }
        (out, (c, oh, ow))
    }

    fn reference_features(convs: &[ConvWeights], input: &[f32]) -> Vec<f32> {
        let mut x = input.to_vec();
        let mut dims = (3, 224, 224);
        for (cw, spec) in convs.iter().zip(&CONVS) {
            (x, dims) = conv2d(&x, dims, cw, spec.stride, spec.pad);
            relu(&mut x);
            if spec.pool {
                (x, dims) = maxpool(&x, dims);
            }
        }
        assert_eq!(dims, (256, 6, 6));
        x
    }

    fn dense(x: &[f32], d: &DenseWeights) -> Vec<f32> {
        d.weight
            .data
            .chunks(x.len())
            .zip(&d.bias.data)
            .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
            .collect()
    }

    fn softmax(x: &[f32]) -> Vec<f32> {
        let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// Reference logits of a head applied to the shared conv features.
    fn reference_logits(head: &HeadWeights, features: &[f32]) -> Vec<f32> {
        match head {
            HeadWeights::Classic { fc6, fc7, fc8 } => {
                let mut x = dense(features, fc6);
                relu(&mut x);
                let mut x = dense(&x, fc7);
                relu(&mut x);
                dense(&x, fc8)
            }
            HeadWeights::Compact { hidden, out } => {
                let mut x: Vec<f32> = features
                    .chunks(36)
                    .map(|c| c.iter().sum::<f32>() / 36.0)
                    .collect();
                if let Some(h) = hidden {
                    x = dense(&x, h);
                    relu(&mut x);
                }
                dense(&x, out)
            }
        }
    }

    fn run_tract(bytes: &[u8], input: &[f32]) -> Vec<f32> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .expect("tract parses the model")
            .into_optimized()
            .expect("tract optimises the model")
            .into_runnable()
            .expect("tract plans the model");
        let x = Tensor::from_shape(&INPUT_SHAPE, input).unwrap();
        let out = model.run(tvec!(x.into())).expect("tract runs the model");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape(), &[1, NUM_CLASSES]);
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    fn param_count(w: &AlexNetWeights) -> usize {
        let dense = |d: &DenseWeights| d.weight.data.len() + d.bias.data.len();
        let convs: usize = w
            .features
            .iter()
            .map(|c| c.weight.data.len() + c.bias.data.len())
            .sum();
        convs
            + match &w.head {
                HeadWeights::Classic { fc6, fc7, fc8 } => dense(fc6) + dense(fc7) + dense(fc8),
                HeadWeights::Compact { hidden, out } => {
                    hidden.as_ref().map_or(0, dense) + dense(out)
                }
            }
    }

    /// Checks tract's probabilities against the reference logits and returns the largest
    /// absolute difference.
    fn compare(label: &str, got: &[f32], logits: &[f32], rel_tol: f32) -> f32 {
        let want = softmax(logits);
        // Unsaturated probabilities, or a broken graph could still match a one-hot output.
        assert!(
            want.iter().all(|&p| p > 1e-3),
            "{label}: reference saturated: {logits:?}"
        );
        let mut max_abs = 0f32;
        for (g, w) in got.iter().zip(&want) {
            max_abs = max_abs.max((g - w).abs());
            assert!(
                (g - w).abs() <= rel_tol * w.abs(),
                "{label}: tract {got:?} vs reference {want:?} (logits {logits:?})"
            );
        }
        eprintln!("{label}: tract {got:?} reference {want:?} max |diff| {max_abs:e}");
        max_abs
    }

    #[test]
    fn classic_head_matches_reference() {
        let f = fixture();
        let bytes = alexnet_to_onnx(&f.classic, &options()).unwrap();
        let logits = reference_logits(&f.classic.head, &f.features);
        compare("classic f32", &run_tract(&bytes, &f.input), &logits, 1e-4);

        // f32 raw data dominates the file; everything else (names, attributes) is tiny.
        let params = param_count(&f.classic);
        assert_eq!(params, 57_012_034, "torchvision AlexNet with a 2-class fc8");
        let overhead = bytes.len() - 4 * params;
        eprintln!(
            "classic f32: {} bytes, {params} params, overhead {overhead}",
            bytes.len()
        );
        assert!(
            bytes.len() > 4 * params && overhead < 16 * 1024,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn compact_head_matches_reference() {
        let f = fixture();
        let bytes = alexnet_to_onnx(&f.compact, &options()).unwrap();
        let logits = reference_logits(&f.compact.head, &f.features);
        compare("compact f32", &run_tract(&bytes, &f.input), &logits, 1e-4);
        let params = param_count(&f.compact);
        eprintln!("compact f32: {} bytes, {params} params", bytes.len());
        assert!(bytes.len() > 4 * params && bytes.len() - 4 * params < 16 * 1024);
    }

    #[test]
    fn compact_head_without_hidden_layer_matches_reference() {
        let f = fixture();
        let mut rng = Rng(7);
        let head = HeadWeights::Compact {
            hidden: None,
            out: rng.dense(2, 256, 1.0),
        };
        let w = AlexNetWeights {
            features: f.compact.features.clone(),
            head,
        };
        let bytes = alexnet_to_onnx(&w, &options()).unwrap();
        let logits = reference_logits(&w.head, &f.features);
        compare(
            "compact (no hidden) f32",
            &run_tract(&bytes, &f.input),
            &logits,
            1e-4,
        );
    }

    #[test]
    fn int8_weights_are_a_quarter_the_size_and_close_to_f32() {
        let f = fixture();
        let bytes =
            alexnet_to_onnx_with(&f.classic, &options(), WeightStorage::Int8PerChannel).unwrap();
        let logits = reference_logits(&f.classic.head, &f.features);
        let diff = compare("classic int8", &run_tract(&bytes, &f.input), &logits, 0.1);
        assert!(diff < 0.02, "int8 probabilities drift by {diff}");
        let params = param_count(&f.classic);
        eprintln!(
            "classic int8: {} bytes ({:.3} bytes/param)",
            bytes.len(),
            bytes.len() as f64 / params as f64
        );
        assert!(
            bytes.len() < params + params / 50,
            "{} bytes for {params} params",
            bytes.len()
        );
    }

    #[test]
    fn f16_weights_are_half_the_size_and_close_to_f32() {
        let f = fixture();
        let bytes = alexnet_to_onnx_with(&f.classic, &options(), WeightStorage::F16).unwrap();
        let logits = reference_logits(&f.classic.head, &f.features);
        let diff = compare("classic f16", &run_tract(&bytes, &f.input), &logits, 0.01);
        assert!(diff < 2e-3, "f16 probabilities drift by {diff}");
        let params = param_count(&f.classic);
        eprintln!(
            "classic f16: {} bytes ({:.3} bytes/param)",
            bytes.len(),
            bytes.len() as f64 / params as f64
        );
        assert!(
            bytes.len() < 2 * params + params / 50,
            "{} bytes for {params} params",
            bytes.len()
        );
    }

    #[test]
    fn compact_int8_and_f16_run_in_tract() {
        let f = fixture();
        let logits = reference_logits(&f.compact.head, &f.features);
        for storage in [WeightStorage::Int8PerChannel, WeightStorage::F16] {
            let bytes = alexnet_to_onnx_with(&f.compact, &options(), storage).unwrap();
            compare(
                &format!("compact {storage:?}"),
                &run_tract(&bytes, &f.input),
                &logits,
                0.1,
            );
        }
    }

    #[test]
    fn quantization_round_trips_within_half_a_step() {
        let a = Array::new(
            vec![3, 4],
            vec![
                0.5, -1.0, 0.25, 0.0, //
                0.0, 0.0, 0.0, 0.0, // all-zero channel must not yield a zero scale
                3.0, 2.9, -3.0, 1e-4,
            ],
        )
        .unwrap();
        let (q, scales) = quantize_per_channel(&a);
        assert_eq!(&q[..4], &[64, -127, 32, 0]);
        assert_eq!(&q[4..8], &[0; 4]);
        assert_eq!(scales[1], 1.0);
        for (i, (&v, &qv)) in a.data.iter().zip(&q).enumerate() {
            let s = scales[i / 4];
            assert!(
                (qv as f32 * s - v).abs() <= s / 2.0 + 1e-7,
                "{v} -> {qv} * {s}"
            );
        }
    }

    /// Cheap weights of the right shapes, for the validation tests.
    fn zero_weights() -> AlexNetWeights {
        let zero_dense = |o, i| DenseWeights {
            weight: Array::zeros(vec![o, i]),
            bias: Array::zeros(vec![o]),
        };
        AlexNetWeights {
            features: CONVS
                .iter()
                .map(|s| ConvWeights {
                    weight: Array::zeros(vec![s.out_ch, s.in_ch, s.kernel, s.kernel]),
                    bias: Array::zeros(vec![s.out_ch]),
                })
                .collect(),
            head: HeadWeights::Compact {
                hidden: Some(zero_dense(64, 256)),
                out: zero_dense(2, 64),
            },
        }
    }

    fn export_error(w: &AlexNetWeights) -> String {
        let err = alexnet_to_onnx(w, &options()).unwrap_err();
        assert!(
            err.downcast_ref::<ExportError>().is_some(),
            "typed error: {err}"
        );
        err.to_string()
    }

    #[test]
    fn wrong_shapes_are_reported_clearly() {
        let mut w = zero_weights();
        w.features[2].weight = Array::zeros(vec![384, 192, 5, 5]);
        assert_eq!(
            export_error(&w),
            "features[2].weight has shape [384, 192, 5, 5], expected [384, 192, 3, 3]"
        );

        let mut w = zero_weights();
        w.features[4].bias = Array::zeros(vec![128]);
        assert_eq!(
            export_error(&w),
            "features[4].bias has shape [128], expected [256]"
        );

        let mut w = zero_weights();
        w.features.pop();
        assert_eq!(
            export_error(&w),
            "expected exactly 5 feature convolutions, got 4"
        );

        let mut w = zero_weights();
        w.features[0].weight.data.pop();
        assert_eq!(
            export_error(&w),
            "features[0].weight has shape [64, 3, 11, 11] (23232 values) but holds 23231 values"
        );

        let mut w = zero_weights();
        w.features[1].bias.data[3] = f32::NAN;
        assert_eq!(export_error(&w), "features[1].bias has non-finite values");
    }

    #[test]
    fn wrong_head_shapes_are_reported_clearly() {
        let d = |o, i| DenseWeights {
            weight: Array::zeros(vec![o, i]),
            bias: Array::zeros(vec![o]),
        };
        let mut w = zero_weights();
        // A classifier fed from globally pooled features instead of the 6x6 flatten.
        w.head = HeadWeights::Classic {
            fc6: d(4096, 256),
            fc7: d(4096, 4096),
            fc8: d(2, 4096),
        };
        assert_eq!(
            export_error(&w),
            "fc6.weight has shape [4096, 256], expected [4096, 9216]"
        );

        w.head = HeadWeights::Classic {
            fc6: d(64, 9216),
            fc7: d(32, 64),
            fc8: d(1000, 32),
        };
        assert_eq!(
            export_error(&w),
            "fc8.weight has shape [1000, 32], expected [2, 32]"
        );

        w.head = HeadWeights::Classic {
            fc6: d(64, 9216),
            fc7: d(32, 48),
            fc8: d(2, 32),
        };
        assert_eq!(
            export_error(&w),
            "fc7.weight has shape [32, 48], expected [32, 64]"
        );

        w.head = HeadWeights::Compact {
            hidden: None,
            out: d(2, 9216),
        };
        assert_eq!(
            export_error(&w),
            "head.out.weight has shape [2, 9216], expected [2, 256]"
        );

        w.head = HeadWeights::Compact {
            hidden: Some(d(64, 256)),
            out: d(2, 256),
        };
        assert_eq!(
            export_error(&w),
            "head.out.weight has shape [2, 256], expected [2, 64]"
        );

        w.head = HeadWeights::Compact {
            hidden: Some(d(64, 256)),
            out: d(2, 64),
        };
        w.head = match w.head {
            HeadWeights::Compact { hidden, mut out } => {
                out.bias = Array::zeros(vec![3]);
                HeadWeights::Compact { hidden, out }
            }
            other => other,
        };
        assert_eq!(
            export_error(&w),
            "head.out.bias has shape [3], expected [2]"
        );
    }

    #[test]
    fn model_carries_names_metadata_and_opset() {
        let bytes = alexnet_to_onnx(&zero_weights(), &options()).unwrap();
        let m = ModelProto::decode(&bytes[..]).unwrap();
        assert_eq!(
            (m.ir_version, m.opset_import[0].version),
            (IR_VERSION, OPSET)
        );
        assert_eq!(m.doc_string, "exported by onnx_export tests");
        assert_eq!(m.metadata_props[0].key, "labels");
        assert_eq!(m.metadata_props[0].value, "benign,malignant");
        let g = m.graph.unwrap();
        assert_eq!(g.name, "alexnet-test");
        let names: Vec<&str> = g.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1",
                "relu1",
                "pool1",
                "conv2",
                "relu2",
                "pool2",
                "conv3",
                "relu3",
                "conv4",
                "relu4",
                "conv5",
                "relu5",
                "pool5",
                "head.gap",
                "head.flatten",
                "head.hidden",
                "head.hidden.relu",
                "head.out",
                "softmax"
            ]
        );
        assert_eq!(g.initializer[0].name, "features.0.weight");
        assert_eq!(g.input[0].name, INPUT_NAME);
        assert_eq!(g.output[0].name, OUTPUT_NAME);
        // Zero weights give uniform probabilities: a cheap end-to-end check of the small graph.
        let probs = run_tract(&bytes, &vec![0.5; 3 * 224 * 224]);
        assert_eq!(probs, [0.5, 0.5]);
    }

    #[test]
    fn runtime_may_choose_the_batch_size() {
        // histoscreen-edge replaces the input fact to run batches; the declared [1, 2] output
        // must not pin the batch (tract ignores declared output shapes by default).
        let bytes = alexnet_to_onnx(&zero_weights(), &options()).unwrap();
        let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
        let shape = [3, 3, 224, 224];
        model.set_input_fact(0, f32::fact(shape).into()).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan
            .run(tvec!(Tensor::zero::<f32>(&shape).unwrap().into()))
            .unwrap();
        assert_eq!(out[0].shape(), &[3, NUM_CLASSES]);
    }
}
