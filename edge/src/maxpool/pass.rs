//! The model pass that puts [`MaxPool2d`] in place of tract's `MaxPool` wherever it can.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::op::MaxPool2d;

/// Replaces every eligible `MaxPool` of a decluttered `model` by a [`MaxPool2d`] and returns
/// how many it replaced. Eligible: f32 input of a fixed NCHW shape, 2D, no dilation, no indices
/// output. The others stay tract's.
///
/// It runs before `optimize`, which would otherwise lower them to `OptMaxPool` first.
pub fn replace_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    let pools: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<MaxPool>())
        .map(|n| n.id)
        .collect();
    let mut replaced = 0;
    for id in pools {
        if let Some(op) = eligible(model, &model.nodes()[id])? {
            crate::graph_patch::replace_node(model, id, "maxpool", op)?;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// The op that computes this pool, or `None` when it cannot.
fn eligible(model: &TypedModel, node: &TypedNode) -> TractResult<Option<MaxPool2d>> {
    let Some(pool) = node.op_as::<MaxPool>() else {
        return Ok(None);
    };
    let ps = &pool.pool_spec;
    if pool.with_index_outputs.is_some()
        || node.outputs.len() != 1
        || ps.data_format != DataFormat::NCHW
        || ps.rank() != 2
        || ps.dilations().iter().any(|&d| d != 1)
    {
        return Ok(None);
    }
    let Some(shape) = crate::graph_patch::f32_nchw(model.outlet_fact(node.inputs[0])?) else {
        return Ok(None);
    };
    if ps.input_channels != shape[1] || ps.output_channels != shape[1] {
        return Ok(None);
    }
    // tract's own output shape: its padding rules (same, ceil mode) included.
    let padding = ps.computed_padding(&shape[2..]);
    let strides = ps.strides();
    Ok(Some(MaxPool2d {
        n: shape[0],
        c: shape[1],
        h: shape[2],
        w: shape[3],
        kh: ps.kernel_shape[0],
        kw: ps.kernel_shape[1],
        sh: strides[0],
        sw: strides[1],
        pad_top: padding[0].pad_before,
        pad_left: padding[1].pad_before,
        oh: padding[0].convoluted,
        ow: padding[1].convoluted,
    }))
}
