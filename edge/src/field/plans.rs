//! Optimised plans of the dense model, one per frame size, built on first use and kept.

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::runtime::RunOptions;

use super::dense::{self, Window};
use crate::error::{one_line, EdgeError};
use crate::profile::{profile_state, OpTime};
use crate::winograd::{self, ConvChoice, LayerReport};

/// On a frame, tract turns AlexNet's conv1 (11x11, stride 4, 3 channels) into its direct
/// spatial convolution, which took 224 of a 700x460 pass's 306 ms on an AVX-512 Xeon; im2col and
/// a packed product take 60. `HISTOSCREEN_DENSE_DIRECT_SPATIAL=1` keeps tract's choice, to
/// measure it on another CPU.
const DIRECT_SPATIAL_ENV: &str = "HISTOSCREEN_DENSE_DIRECT_SPATIAL";

/// Frame sizes whose plans are kept: a camera has one, a folder of BreakHis images two or three.
const KEPT_PLANS: usize = 4;

struct SizedPlan {
    size: (u32, u32),
    state: TypedSimpleState,
    input: Option<Arc<Tensor>>,
    convs: Vec<LayerReport>,
}

/// The dense form of a model, parsed once; plans are optimised per frame size.
pub struct DensePlans {
    window: Window,
    proto: tract_onnx::pb::ModelProto,
    model: InferenceModel,
    options: RunOptions,
    conv: ConvChoice,
    plans: Vec<SizedPlan>,
}

impl DensePlans {
    /// Rewrites `proto` (a compact-head model) into its dense form and parses it.
    pub fn new(
        proto: &tract_onnx::pb::ModelProto,
        window: Window,
        options: RunOptions,
        conv: ConvChoice,
    ) -> Result<Self, String> {
        let dense_proto = dense::densify(proto, window)?;
        let model = tract_onnx::onnx()
            .model_for_proto_model(&dense_proto)
            .map_err(one_line)?;
        Ok(DensePlans {
            window,
            proto: dense_proto,
            model,
            options,
            conv,
            plans: Vec::new(),
        })
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// The dense ONNX graph (for `export-dense` and ONNX Runtime).
    pub fn proto(&self) -> &tract_onnx::pb::ModelProto {
        &self.proto
    }

    /// Softmax rows `[cells, 2]` flattened, for one normalised CHW frame of `w`x`h`.
    pub fn run(&mut self, chw: &[f32], w: u32, h: u32) -> Result<Vec<f32>, EdgeError> {
        let fail = |e: TractError| EdgeError::Inference(format!("dense pass: {}", one_line(e)));
        let at = self.plan_for(w, h).map_err(fail)?;
        // Most recently used last, so eviction drops the oldest size.
        let mut plan = self.plans.remove(at);
        let result =
            Self::run_plan(&mut plan, self.options.executor.as_ref(), chw, w, h).map_err(fail);
        self.plans.push(plan);
        result
    }

    /// Per-op times of the plan for a zero `w`x`h` frame (see [`crate::profile::profile_state`]).
    pub fn profile(&mut self, w: u32, h: u32, runs: usize) -> Result<Vec<OpTime>, EdgeError> {
        let fail = |e: TractError| EdgeError::Inference(format!("dense pass: {}", one_line(e)));
        let at = self.plan_for(w, h).map_err(fail)?;
        let input = Tensor::zero::<f32>(&[1, 3, h as usize, w as usize]).map_err(fail)?;
        profile_state(&mut self.plans[at].state, &input, runs).map_err(fail)
    }

    /// What the convolution pass did in the plan for `w`x`h` frames.
    pub fn conv_layers(&mut self, w: u32, h: u32) -> Result<Vec<LayerReport>, EdgeError> {
        let fail = |e: TractError| EdgeError::Inference(format!("dense pass: {}", one_line(e)));
        let at = self.plan_for(w, h).map_err(fail)?;
        Ok(self.plans[at].convs.clone())
    }

    fn plan_for(&mut self, w: u32, h: u32) -> TractResult<usize> {
        if let Some(at) = self.plans.iter().position(|p| p.size == (w, h)) {
            return Ok(at);
        }
        let shape = [1, 3, h as usize, w as usize];
        let mut model = self.model.clone();
        model.set_input_fact(0, f32::fact(shape).into())?;
        let (conv, options) = (self.conv, &self.options);
        let optimise = || winograd::optimise(model.into_typed()?, conv, options);
        let (optimized, convs) = if std::env::var_os(DIRECT_SPATIAL_ENV).is_some_and(|v| v == "1") {
            optimise()?
        } else {
            KnobScope::new([("TRACT_DISABLE_DIRECT_SPATIAL", "true")])?.enter(optimise)?
        };
        let plan = optimized.into_runnable_with_options(&self.options)?;
        let state = TypedSimpleState::new(&plan)?;
        if self.plans.len() >= KEPT_PLANS {
            self.plans.remove(0);
        }
        self.plans.push(SizedPlan {
            size: (w, h),
            state,
            input: None,
            convs,
        });
        Ok(self.plans.len() - 1)
    }

    fn run_plan(
        plan: &mut SizedPlan,
        executor: Option<&Executor>,
        chw: &[f32],
        w: u32,
        h: u32,
    ) -> TractResult<Vec<f32>> {
        let shape = [1, 3, h as usize, w as usize];
        let mut input = match plan.input.take() {
            Some(t) => t,
            None => Arc::new(Tensor::zero::<f32>(&shape)?),
        };
        if Arc::get_mut(&mut input).is_none() {
            input = Arc::new(Tensor::zero::<f32>(&shape)?);
        }
        {
            let tensor = Arc::get_mut(&mut input).expect("uniquely owned just above");
            let mut view = tensor.try_as_plain_ram_mut()?;
            view.as_slice_mut::<f32>()?.copy_from_slice(chw);
        }
        let state = &mut plan.state;
        let outputs = crate::threads::run_in_pool(executor, || {
            state.run(tvec![TValue::from_const(input.clone())])
        })?;
        plan.input = Some(input);
        let view = outputs[0].try_as_plain_ram()?;
        Ok(view.as_slice::<f32>()?.to_vec())
    }
}
