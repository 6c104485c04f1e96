//! Assembling a graph node by node, each weight stored in the chosen format.

use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, NodeProto, TensorProto};
use tract_onnx::prelude::f16;

use super::proto::{float, int, ints, node, raw_tensor};
use super::weights::{Array, DenseWeights};

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

pub(crate) struct GraphBuilder {
    pub(crate) storage: WeightStorage,
    /// Weights and biases as `float16` initializers used directly (f16 compute), not cast.
    pub(crate) half: bool,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    pub(crate) fn new(storage: WeightStorage) -> Self {
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

    pub(crate) fn dense(&mut self, x: &str, d: &DenseWeights, name: &str, prefix: &str) -> String {
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

    pub(crate) fn bias(&mut self, name: &str, a: &Array) -> String {
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
    pub(crate) fn weight(&mut self, name: &str, a: &Array) -> String {
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
