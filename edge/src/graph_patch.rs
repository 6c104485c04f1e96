//! What the edge's model passes share: which inputs their ops take, and swapping nodes for them.

use tract_onnx::prelude::*;

/// The shape of `fact` when it is f32 with a fixed 4-axis (NCHW) shape: the only input the
/// edge's own ops take.
pub(crate) fn f32_nchw(fact: &TypedFact) -> Option<Vec<usize>> {
    match fact.shape.as_concrete() {
        Some(s) if s.len() == 4 && fact.datum_type == f32::datum_type() => Some(s.to_vec()),
        _ => None,
    }
}

/// Puts `op` in place of node `id`, fed by the node's first input and keeping its name; `label`
/// names the patch in tract's traces.
pub(crate) fn replace_node<O: TypedOp>(
    model: &mut TypedModel,
    id: usize,
    label: &str,
    op: O,
) -> TractResult<()> {
    replace_chain(model, id, id, label, op)
}

/// Puts `op` in place of the nodes `first` to `last`, a chain in which each feeds only the
/// next: fed by `first`'s first input, named after `first`, its output taking `last`'s place.
pub(crate) fn replace_chain<O: TypedOp>(
    model: &mut TypedModel,
    first: usize,
    last: usize,
    label: &str,
    op: O,
) -> TractResult<()> {
    let node = &model.nodes()[first];
    let mut patch = TypedModelPatch::new(format!("{label} {}", node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let y = patch.wire_node(&node.name, op, &[x])?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), y)?;
    patch.obliterate(first)?;
    if last != first {
        patch.obliterate(last)?;
    }
    patch.apply(model)
}
