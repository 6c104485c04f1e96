//! Where an inference's time goes: per-node timings of a tract plan.

use std::time::Instant;

use tract_onnx::prelude::*;

/// One node's share of an inference, from [`profile_state`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpTime {
    /// Node name in the optimised graph (from the ONNX node it came from).
    pub node: String,
    /// tract's description of the op, including the kernel it selected.
    pub op: String,
    /// Milliseconds per run.
    pub ms: f64,
}

/// Time spent in each node of `state`'s plan, averaged over `runs` runs on `input`, slowest
/// first, in tract's own op names (which also name the matmul kernel it packed for).
pub fn profile_state(
    state: &mut TypedSimpleState,
    input: &Tensor,
    runs: usize,
) -> TractResult<Vec<OpTime>> {
    use tract_onnx::tract_core::internal::OpState;
    use tract_onnx::tract_core::plan::{eval, EvalContext};

    let runs = runs.max(1);
    let mut totals: Vec<OpTime> = Vec::new();
    let mut index = std::collections::HashMap::<usize, usize>::new();
    for _ in 0..runs {
        state.run_plan_with_eval(
            tvec![input.clone().into_tvalue()],
            |ctx: &EvalContext,
             state: Option<&mut (dyn OpState + 'static)>,
             node: &TypedNode,
             inputs: TVec<TValue>| {
                let t = Instant::now();
                let out = eval(ctx, state, node, inputs);
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let slot = *index.entry(node.id).or_insert_with(|| {
                    totals.push(OpTime {
                        node: node.name.clone(),
                        op: std::iter::once(node.op.name().to_string())
                            .chain(node.op.info().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(" | "),
                        ms: 0.0,
                    });
                    totals.len() - 1
                });
                totals[slot].ms += ms;
                out
            },
        )?;
    }
    for t in &mut totals {
        t.ms /= runs as f64;
    }
    totals.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(totals)
}
