//! Swapping one node of a typed model for an op of the edge's own, as the model passes do.

use tract_onnx::prelude::*;

/// Puts `op` in place of node `id`, fed by the node's first input and keeping its name; `label`
/// names the patch in tract's traces.
pub(crate) fn replace_node<O: TypedOp>(
    model: &mut TypedModel,
    id: usize,
    label: &str,
    op: O,
) -> TractResult<()> {
    let node = &model.nodes()[id];
    let mut patch = TypedModelPatch::new(format!("{label} {}", node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let y = patch.wire_node(&node.name, op, &[x])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), y)?;
    patch.obliterate(id)?;
    patch.apply(model)
}
