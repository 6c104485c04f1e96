//! The model pass that gives each eligible `Conv` tract's path or Winograd's, measured per layer.

use std::time::Instant;

use serde::Serialize;
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::runtime::RunOptions;

use super::choice::ConvChoice;
use super::geometry::Geometry;
use super::op::WinogradConv;
use super::transform::Tile;

/// Largest max |Δ| against tract's convolution on a random input, relative to the layer's
/// largest output, that a Winograd layer may have.
pub const LAYER_TOLERANCE: f32 = 1e-4;

/// `auto` takes Winograd for a layer only when it is at least this much faster than tract's
/// convolution, so timing noise cannot pick a path that is not faster.
const AUTO_MARGIN: f64 = 0.95;

/// Timed runs per candidate at load (after one untimed run), in rounds; the median decides. A
/// layer whose untimed run took longer than [`LONG_RUN_MS`] gets [`LONG_RUNS`]: a whole-field
/// plan's layers take tens of milliseconds each, and their timing is part of building the plan.
const TIMED_RUNS: usize = 5;
const LONG_RUN_MS: f64 = 10.0;
const LONG_RUNS: usize = 3;

/// One Winograd variant of a layer as measured at load.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub tile: &'static str,
    /// Max |Δ| against tract's convolution on a random input in [-1, 1].
    pub max_abs_diff: f32,
    /// `max_abs_diff` over the largest |output|.
    pub relative_diff: f32,
    /// Median time at load, milliseconds.
    pub ms: f64,
    pub kernel: String,
}

/// What the pass did with one convolution of the model.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// Node name (tract keeps the ONNX node's name).
    pub node: String,
    /// `C->O HxW kKxK sS`.
    pub shape: String,
    /// Floating-point operations of the direct convolution.
    pub direct_flops: f64,
    /// `tract` or the Winograd variant taken, e.g. `F(2x2,3x3)`.
    pub path: String,
    /// Why this path.
    pub why: String,
    /// tract's convolution of this layer timed at load, milliseconds (`auto` and `winograd`).
    pub tract_ms: Option<f64>,
    /// The ReLU after it runs inside the Winograd op.
    pub relu_fused: bool,
    pub candidates: Vec<Candidate>,
}

/// What an eligible convolution needs to become a [`WinogradConv`].
struct Layer {
    geo: Geometry,
    kernel: Arc<Tensor>,
    bias: Arc<Tensor>,
    /// One value per output channel.
    bias_per_channel: Vec<f32>,
}

/// Declutters `typed`, applies `choice` to every convolution, puts the edge's max pool in place
/// of tract's (exact, so whatever `choice`) and optimises; with what it did to each
/// convolution, in graph order.
pub fn optimise(
    typed: TypedModel,
    choice: ConvChoice,
    options: &RunOptions,
) -> TractResult<(TypedModel, Vec<LayerReport>)> {
    let mut model = typed.into_decluttered()?;
    let convs: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|&id| model.nodes()[id].op_is::<Conv>())
        .collect();
    let mut reports = Vec::with_capacity(convs.len());
    // Filled on the first timing and reused by every later one.
    let mut evict_buffer = Vec::new();
    for id in convs {
        let node = &model.nodes()[id];
        let conv = node.op_as::<Conv>().expect("filtered above");
        let facts = model.node_input_facts(id)?;
        let direct_flops = 2.0
            * conv
                .cost(&facts)?
                .iter()
                .filter_map(|(_, n)| n.to_i64().ok())
                .sum::<i64>() as f64;
        let mut report = LayerReport {
            node: node.name.clone(),
            shape: describe(conv, &facts),
            direct_flops,
            path: "tract".into(),
            why: String::new(),
            tract_ms: None,
            relu_fused: false,
            candidates: vec![],
        };
        let layer = match eligible(&model, node) {
            Ok(layer) => layer,
            Err(why) => {
                report.why = why;
                reports.push(report);
                continue;
            }
        };
        if choice == ConvChoice::Tract {
            report.why = "--conv tract".into();
            reports.push(report);
            continue;
        }
        let op = decide(
            &mut report,
            node,
            &layer,
            choice,
            options,
            &mut evict_buffer,
        )?;
        drop(facts);
        if let Some(op) = op {
            match relu_after(&model, id) {
                Some(relu) => {
                    report.relu_fused = true;
                    crate::graph_patch::replace_chain(
                        &mut model,
                        id,
                        relu,
                        "winograd",
                        op.with_relu(),
                    )?
                }
                None => crate::graph_patch::replace_node(&mut model, id, "winograd", op)?,
            }
        }
        reports.push(report);
    }
    crate::maxpool::replace_max_pools(&mut model)?;
    let mut model = model.into_compact()?;
    model.optimize()?;
    Ok((model, reports))
}

/// The node after convolution `id` when it is a ReLU (a `Max` with a constant all-zero input
/// that does not broadcast the convolution's output) and the convolution's only consumer.
fn relu_after(model: &TypedModel, id: usize) -> Option<usize> {
    let out = OutletId::new(id, 0);
    if model.output_outlets().ok()?.contains(&out) {
        return None;
    }
    let successors = &model.nodes()[id].outputs[0].successors;
    if successors.len() != 1 {
        return None;
    }
    let next = &model.nodes()[successors[0].node];
    let max = next.op_as::<TypedBinOp>()?;
    if max.0.name() != "Max" || next.inputs.len() != 2 {
        return None;
    }
    let other = next.inputs.iter().find(|i| i.node != id)?;
    let zero = model.outlet_fact(*other).ok()?.konst.clone()?;
    let zero = zero.try_as_plain_ram().ok()?;
    let all_zero = zero.as_slice::<f32>().ok()?.iter().all(|v| *v == 0.0);
    let same_shape = model.outlet_fact(OutletId::new(next.id, 0)).ok()?.shape
        == model.outlet_fact(out).ok()?.shape;
    (all_zero && same_shape).then_some(next.id)
}

fn describe(conv: &Conv, facts: &[&TypedFact]) -> String {
    let ps = &conv.pool_spec;
    let hw = facts
        .first()
        .and_then(|f| f.shape.as_concrete())
        .map(|s| s[s.len().saturating_sub(2)..].to_vec())
        .unwrap_or_default();
    format!(
        "{}->{} {} k{} s{}",
        ps.input_channels,
        ps.output_channels,
        hw.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
        ps.kernel_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
        ps.strides()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
    )
}

/// The layer when the Winograd op can compute it, else why not.
fn eligible(model: &TypedModel, node: &TypedNode) -> Result<Layer, String> {
    let conv = node.op_as::<Conv>().ok_or("not a convolution")?;
    let ps = &conv.pool_spec;
    if conv.q_params.is_some() {
        return Err("quantised".into());
    }
    if conv.group != 1 {
        return Err(format!("{} groups", conv.group));
    }
    let k = match ps.kernel_shape[..] {
        [kh, kw] if kh == kw => kh,
        _ => return Err("not a square kernel".into()),
    };
    let stride = match ps.strides()[..] {
        [sh, sw] if sh == sw => sh,
        _ => return Err("unequal strides".into()),
    };
    if ps.dilations().iter().any(|d| *d != 1) {
        return Err("dilated".into());
    }
    let r = k.div_ceil(stride);
    if Tile::for_kernel(r).is_empty() {
        return Err(if stride == 1 {
            format!("{k}x{k}: no Winograd algorithm (3x3 and 5x5 only)")
        } else {
            format!("{k}x{k} stride {stride} is {r}x{r} after space-to-depth (3x3 and 5x5 only)")
        });
    }
    if ps.data_format != DataFormat::NCHW || conv.kernel_fmt != KernelFormat::OIHW {
        return Err("not NCHW with OIHW weights".into());
    }
    let fact = |i: usize| model.outlet_fact(node.inputs[i]).map_err(|e| e.to_string());
    let shape =
        crate::graph_patch::f32_nchw(fact(0)?).ok_or("input not f32 of a fixed NCHW shape")?;
    let (c, o) = (ps.input_channels, ps.output_channels);
    let kernel = fact(1)?
        .konst
        .clone()
        .filter(|w| w.datum_type() == f32::datum_type() && w.shape() == [o, c, k, k])
        .ok_or("weights not constant f32 [O,C,K,K]")?;
    let bias = fact(2)?
        .konst
        .clone()
        .filter(|b| b.datum_type() == f32::datum_type() && (b.len() == 1 || b.len() == o))
        .ok_or("bias not constant f32")?;
    let values = bias
        .try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>().map(|s| s.to_vec()))
        .map_err(|e| e.to_string())?;
    let bias_per_channel = if values.len() == o {
        values
    } else {
        vec![values[0]; o]
    };
    let padding = ps.computed_padding(&shape[2..]);
    Ok(Layer {
        geo: Geometry {
            kernel: k,
            stride,
            n: shape[0],
            c,
            o,
            h: shape[2],
            w: shape[3],
            pad_top: padding[0].pad_before,
            pad_left: padding[1].pad_before,
            oh: padding[0].convoluted,
            ow: padding[1].convoluted,
        },
        kernel,
        bias,
        bias_per_channel,
    })
}

/// Measures the layer's candidates and returns the op to put in its place, if any.
fn decide(
    report: &mut LayerReport,
    node: &TypedNode,
    layer: &Layer,
    choice: ConvChoice,
    options: &RunOptions,
    evict_buffer: &mut Vec<u8>,
) -> TractResult<Option<WinogradConv>> {
    let g = &layer.geo;
    let input = random_input(&[g.n, g.c, g.h, g.w])?;
    let reference = {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([g.n, g.c, g.h, g.w]))?;
        let k = m.add_const("kernel", layer.kernel.clone())?;
        let b = m.add_const("bias", layer.bias.clone())?;
        let y = m.wire_node(&node.name, node.op.clone(), &[x, k, b])?;
        m.select_output_outlets(&y)?;
        m.into_optimized()?.into_runnable_with_options(options)?
    };
    let threads = options
        .executor
        .as_ref()
        .map_or_else(crate::threads::threads, crate::threads::threads_of);
    let kernel = layer.kernel.try_as_plain_ram()?;
    let kernel = kernel.as_slice::<f32>()?;
    let mut ops = Vec::new();
    let mut plans = vec![reference];
    for &tile in Tile::for_kernel(g.inner().kernel) {
        let op =
            WinogradConv::for_threads(tile, g.clone(), kernel, &layer.bias_per_channel, threads)?;
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([g.n, g.c, g.h, g.w]))?;
        let y = m.wire_node(&node.name, op.clone(), &[x])?;
        m.select_output_outlets(&y)?;
        plans.push(m.into_runnable_with_options(options)?);
        ops.push(op);
    }
    let (outputs, times) = run_timed(&plans, &input, evict_buffer, options.executor.as_ref())?;
    let (expected, tract_ms) = (&outputs[0], times[0]);
    report.tract_ms = Some(tract_ms);
    let scale = max_abs(expected)?.max(f32::MIN_POSITIVE);
    let mut best: Option<(f64, WinogradConv)> = None;
    for ((op, got), &ms) in ops.into_iter().zip(&outputs[1..]).zip(&times[1..]) {
        let diff = max_abs_diff(expected, got)?;
        report.candidates.push(Candidate {
            tile: op.tile.name(),
            max_abs_diff: diff,
            relative_diff: diff / scale,
            ms,
            kernel: op.kernel_name().to_string(),
        });
        if diff / scale <= LAYER_TOLERANCE && best.as_ref().is_none_or(|(b, _)| ms < *b) {
            best = Some((ms, op));
        }
    }
    let (path, why, op) = match (choice, best) {
        (_, None) => (
            "tract".to_string(),
            format!("no Winograd variant within {LAYER_TOLERANCE:e} of tract"),
            None,
        ),
        (ConvChoice::Auto, Some((ms, _))) if ms > AUTO_MARGIN * tract_ms => (
            "tract".to_string(),
            format!("faster than Winograd here ({tract_ms:.3} ms against {ms:.3})"),
            None,
        ),
        (_, Some((ms, op))) => (
            op.tile.name().to_string(),
            format!("{ms:.3} ms against tract's {tract_ms:.3}"),
            Some(op),
        ),
    };
    report.path = path;
    report.why = why;
    Ok(op)
}

/// Bytes written between timed runs so each starts with its weights out of cache, as in the
/// plan, where the other layers' weights have been through it. 8 MiB (out of L2) was not
/// enough: a layer timed alone keeps its weights in L3, and on the Xeon this was measured on
/// (2 cores of a shared L3) products over 14 MB of weights ran at 100 GFLOP/s alone and at
/// 50-80 with the whole network's 30-80 MB in turn, so F(4x4) won at load and lost in the plan.
/// With 64 MiB the load-time times of conv3-5 match their times in the plan within 10%.
const EVICT_BYTES: usize = 64 << 20;

/// Writes a line of every 64 bytes of `buffer`, split across the current executor's threads:
/// each core's caches are cleared, and its thread is awake when the timed run starts, as after
/// the layer before it in the plan.
fn evict(buffer: &mut [u8]) -> TractResult<()> {
    let parts = crate::threads::threads();
    let chunk = buffer.len().div_ceil(parts).max(1);
    crate::threads::for_each_part(buffer.chunks_mut(chunk).collect(), |part| {
        for line in part.iter_mut().step_by(64) {
            *line = line.wrapping_add(1);
        }
        std::hint::black_box(part);
        Ok(())
    })
}

/// Each plan's output for `input` and its median time over a few runs after one untimed, each
/// run after the cache has been cleared of it by writing `evict_buffer` ([`EVICT_BYTES`]). The
/// plans take turns, one run each per round, so a burst of load from elsewhere on the machine
/// slows all of them alike rather than the one that happened to be timed then.
fn run_timed(
    plans: &[Arc<TypedRunnableModel>],
    input: &Tensor,
    evict_buffer: &mut Vec<u8>,
    executor: Option<&Executor>,
) -> TractResult<(Vec<Tensor>, Vec<f64>)> {
    let mut states = plans
        .iter()
        .map(TypedSimpleState::new)
        .collect::<TractResult<Vec<_>>>()?;
    evict_buffer.resize(EVICT_BYTES, 0);
    let mut outputs = Vec::with_capacity(plans.len());
    let mut longest = 0f64;
    for state in &mut states {
        let t = Instant::now();
        let mut out = state.run(tvec![input.clone().into_tvalue()])?;
        longest = longest.max(t.elapsed().as_secs_f64() * 1e3);
        outputs.push(out.remove(0).into_tensor());
    }
    let runs = if longest > LONG_RUN_MS {
        LONG_RUNS
    } else {
        TIMED_RUNS
    };
    let mut times = vec![Vec::with_capacity(runs); plans.len()];
    for _ in 0..runs {
        for (state, times) in states.iter_mut().zip(&mut times) {
            // As the plan runs: on the pool, with its threads awake from the work before.
            times.push(crate::threads::run_in_pool(
                executor,
                || -> TractResult<f64> {
                    evict(evict_buffer)?;
                    let t = Instant::now();
                    state.run(tvec![input.clone().into_tvalue()])?;
                    Ok(t.elapsed().as_secs_f64() * 1e3)
                },
            )?);
        }
    }
    let medians = times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    Ok((outputs, medians))
}

/// Deterministic values in [-1, 1].
fn random_input(shape: &[usize]) -> TractResult<Tensor> {
    let len: usize = shape.iter().product();
    let mut s: u32 = 0x9E37_79B9;
    let values: Vec<f32> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &values)
}

fn max_abs(t: &Tensor) -> TractResult<f32> {
    let view = t.try_as_plain_ram()?;
    Ok(view
        .as_slice::<f32>()?
        .iter()
        .fold(0f32, |m, v| m.max(v.abs())))
}

/// Max |a - b| over two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> TractResult<f32> {
    tract_onnx::tract_core::internal::ensure!(
        a.shape() == b.shape(),
        "shapes {:?} and {:?} differ",
        a.shape(),
        b.shape()
    );
    let (a, b) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
    Ok(a.as_slice::<f32>()?
        .iter()
        .zip(b.as_slice::<f32>()?)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs())))
}
