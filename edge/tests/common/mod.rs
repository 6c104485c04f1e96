//! Shared helpers for the edge integration tests.
//!
//! Real images come from the shared data folder (`HISTOSCREEN_SHARED`). The
//! model is a tiny but genuine ONNX graph built here with tract's own protobuf
//! types (conv -> relu -> global average pool -> gemm -> softmax), so the edge
//! can be tested before the trainer's AlexNet export exists.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use histoscreen_edge::card::{InputSpec, ModelCard, OutputSpec};
use prost::Message;
use sha2::Digest;
use tract_onnx::pb;

/// The shared data folder: `HISTOSCREEN_SHARED` or `<workspace>/../shared`.
pub fn shared() -> PathBuf {
    match std::env::var_os("HISTOSCREEN_SHARED") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

pub fn breakhis() -> PathBuf {
    shared().join("data/breakhis/BreaKHis_v1/histology_slides/breast")
}

/// A real benign BreakHis PNG (700x460).
pub fn benign_png() -> PathBuf {
    breakhis().join("benign/SOB/adenosis/SOB_B_A_14-22549AB/100X/SOB_B_A-14-22549AB-100-001.png")
}

/// A real malignant BreakHis PNG.
pub fn malignant_png() -> PathBuf {
    breakhis()
        .join("malignant/SOB/ductal_carcinoma/SOB_M_DC_14-10926/100X/SOB_M_DC-14-10926-100-001.png")
}

/// A real patient folder with several PNGs.
pub fn patient_dir() -> PathBuf {
    breakhis().join("benign/SOB/adenosis/SOB_B_A_14-22549AB")
}

/// How to shape the generated model and its card.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// Input shape declared in the ONNX file; `None` entries are symbolic ("N").
    pub declared_input: Vec<Option<i64>>,
    /// Input shape written in the card.
    pub card_input: Vec<usize>,
    pub threshold: f32,
    pub uncertain_band: f32,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            declared_input: vec![None, Some(3), Some(224), Some(224)],
            card_input: vec![1, 3, 224, 224],
            threshold: 0.5,
            uncertain_band: 0.05,
        }
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: data,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Value::DimValue(*v),
                None => Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Serialized tiny model: 4 conv filters (per-channel averages plus a red-minus-
/// blue filter), so the malignant probability genuinely depends on the colours
/// of the image, then a 4->2 Gemm and a softmax.
pub fn tiny_onnx_bytes(declared_input: &[Option<i64>]) -> Vec<u8> {
    let mut w = vec![0f32; 4 * 3 * 3 * 3];
    for o in 0..4 {
        for c in 0..3 {
            for k in 0..9 {
                let v = match o {
                    0..=2 if o == c => 1.0 / 9.0,
                    3 => [1.0, 0.0, -1.0][c] / 9.0,
                    _ => 0.0,
                };
                w[((o * 3 + c) * 9) + k] = v;
            }
        }
    }
    let graph = pb::GraphProto {
        name: "tiny".into(),
        node: vec![
            node(
                "Conv",
                &["image", "conv.w", "conv.b"],
                "conv",
                vec![ints("kernel_shape", &[3, 3]), ints("strides", &[4, 4])],
            ),
            node("Relu", &["conv"], "relu", vec![]),
            node("GlobalAveragePool", &["relu"], "gap", vec![]),
            node("Flatten", &["gap"], "flat", vec![int("axis", 1)]),
            node(
                "Gemm",
                &["flat", "fc.w", "fc.b"],
                "logits",
                vec![int("transB", 1)],
            ),
            node("Softmax", &["logits"], "probs", vec![int("axis", 1)]),
        ],
        initializer: vec![
            tensor("conv.w", &[4, 3, 3, 3], w),
            tensor("conv.b", &[4], vec![0.0, 0.0, 0.0, 0.5]),
            tensor(
                "fc.w",
                &[2, 4],
                vec![0.2, 0.1, 0.3, -1.0, -0.2, 0.4, -0.1, 1.5],
            ),
            tensor("fc.b", &[2], vec![0.05, -0.05]),
        ],
        input: vec![value_info("image", declared_input)],
        output: vec![value_info("probs", &[declared_input[0], Some(2)])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "histoscreen-edge-tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// A card describing `onnx_bytes` as if the trainer had exported it.
pub fn card_for(onnx_path: &Path, onnx_bytes: &[u8], spec: &TinySpec) -> ModelCard {
    let mut input = InputSpec::imagenet(1);
    input.shape = spec.card_input.clone();
    ModelCard {
        format_version: 1,
        name: "tiny-test".into(),
        architecture: "tiny-conv".into(),
        head: "gap-gemm".into(),
        precision: "f32".into(),
        onnx_file: onnx_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        sha256: hex::encode(sha2::Sha256::digest(onnx_bytes)),
        size_bytes: onnx_bytes.len() as u64,
        classes: vec!["benign".into(), "malignant".into()],
        input,
        output: OutputSpec {
            name: "probs".into(),
            shape: vec![1, 2],
        },
        threshold: spec.threshold,
        uncertain_band: spec.uncertain_band,
        split_seed: Some(7),
        training: serde_json::json!({ "note": "synthetic test model" }),
        metrics: serde_json::Value::Null,
        field: None,
        stain: None,
        gate: None,
    }
}

/// Write `<dir>/<stem>.onnx` and its card; returns the onnx path.
pub fn write_tiny_model(dir: &Path, stem: &str, spec: &TinySpec) -> PathBuf {
    let bytes = tiny_onnx_bytes(&spec.declared_input);
    let onnx = dir.join(format!("{stem}.onnx"));
    std::fs::write(&onnx, &bytes).unwrap();
    card_for(&onnx, &bytes, spec)
        .save(&ModelCard::card_path_for(&onnx))
        .unwrap();
    onnx
}

/// Run the CLI in-process and capture its stdout.
pub fn cli(args: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let argv = std::iter::once("histoscreen-edge")
        .chain(args.iter().copied())
        .map(String::from);
    let code = histoscreen_edge::run_cli_to(argv, &mut out);
    (code, String::from_utf8(out).unwrap())
}

/// `n` deterministic values in [-1, 1) from `seed` (xorshift), for random layers and inputs.
pub fn uniform(n: usize, seed: u64) -> impl Iterator<Item = f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n).map(move |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    })
}
