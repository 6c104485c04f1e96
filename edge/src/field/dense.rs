//! The dense form of a compact-head model: the same weights scoring every tile of a frame at once.
//!
//! The compact head is `GlobalAveragePool -> Flatten -> (Gemm | MatMul+Add, Relu)* -> Softmax`.
//! Averaging the trunk's last map over each tile's `k x k` window (stride 1 on the map, i.e. the
//! trunk's stride in pixels) instead of over the whole map, then running the unchanged head on
//! every window's row, gives each tile the probability the tile model would give it, up to the
//! trunk's zero padding at the tile's borders. Rewriting the ONNX graph (not the tract plan)
//! keeps one implementation for every precision variant and lets ONNX Runtime run the same file.

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

/// Names of the symbolic axes the dense file declares.
pub const HEIGHT: &str = "H";
pub const WIDTH: &str = "W";
pub const CELLS: &str = "cells";

/// The pooling window of one tile on the trunk's last map, and that map's channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub cells: usize,
    pub channels: usize,
}

/// Name of the node that pools the trunk's map for the head (the one the rewrite replaces).
pub fn pool_node(proto: &ModelProto) -> Result<&NodeProto, String> {
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let mut gaps = graph
        .node
        .iter()
        .filter(|n| n.op_type == "GlobalAveragePool");
    match (gaps.next(), gaps.next()) {
        (Some(n), None) => Ok(n),
        (None, _) => Err("no GlobalAveragePool: only compact-head models have a dense form".into()),
        _ => Err("more than one GlobalAveragePool: not a compact-head model".into()),
    }
}

/// `proto` rewritten so that input `[1,3,H,W]` gives output `[cells, 2]`: one softmax row per
/// tile position, row-major over the tile grid.
pub fn densify(proto: &ModelProto, window: Window) -> Result<ModelProto, String> {
    let gap = pool_node(proto)?.clone();
    let mut out = proto.clone();
    let graph = out.graph.as_mut().expect("pool_node checked the graph");
    let pooled = gap
        .output
        .first()
        .ok_or("GlobalAveragePool has no output")?;
    let flatten_at = graph
        .node
        .iter()
        .position(|n| n.input.first() == Some(pooled))
        .ok_or("nothing reads the pooled features")?;
    if graph.node[flatten_at].op_type != "Flatten" {
        return Err(format!(
            "the pooled features feed {}, expected Flatten",
            graph.node[flatten_at].op_type
        ));
    }
    let rows = graph.node[flatten_at].output[0].clone();
    let gap_at = graph
        .node
        .iter()
        .position(|n| n.name == gap.name && n.op_type == gap.op_type)
        .expect("found above");
    let k = window.cells as i64;
    graph.node[gap_at] = NodeProto {
        op_type: "AveragePool".into(),
        attribute: vec![ints("kernel_shape", &[k, k]), ints("strides", &[1, 1])],
        ..gap.clone()
    };
    let nhwc = format!("{}.nhwc", gap.name);
    let shape_name = format!("{}.rows_shape", gap.name);
    graph.initializer.push(TensorProto {
        name: shape_name.clone(),
        dims: vec![2],
        data_type: DataType::Int64 as i32,
        int64_data: vec![-1, window.channels as i64],
        ..Default::default()
    });
    let transpose = NodeProto {
        name: nhwc.clone(),
        op_type: "Transpose".into(),
        input: vec![pooled.clone()],
        output: vec![nhwc.clone()],
        attribute: vec![ints("perm", &[0, 2, 3, 1])],
        ..Default::default()
    };
    let reshape = NodeProto {
        name: graph.node[flatten_at].name.clone(),
        op_type: "Reshape".into(),
        input: vec![nhwc, shape_name],
        output: vec![rows],
        ..Default::default()
    };
    graph
        .node
        .splice(flatten_at..=flatten_at, [transpose, reshape]);
    for input in &mut graph.input {
        set_dims(
            input,
            &[
                Dim::Fixed(1),
                Dim::Fixed(3),
                Dim::Sym(HEIGHT),
                Dim::Sym(WIDTH),
            ],
        );
    }
    for output in &mut graph.output {
        set_dims(output, &[Dim::Sym(CELLS), Dim::Fixed(2)]);
    }
    // Declared shapes of intermediate values were computed for a 224 input.
    graph.value_info.clear();
    out.doc_string = format!(
        "dense form ({k}x{k} window on the trunk map) of: {}",
        proto.doc_string
    );
    Ok(out)
}

enum Dim {
    Fixed(i64),
    Sym(&'static str),
}

fn set_dims(v: &mut ValueInfoProto, dims: &[Dim]) {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        return;
    };
    let shape = t.shape.get_or_insert_with(Default::default);
    shape.dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
                Dim::Sym(s) => dimension::Value::DimParam((*s).into()),
            }),
            ..Default::default()
        })
        .collect();
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
