//! ONNX model runner on tract, bound to its model card.
//!
//! Loading is strict (card present, checksum, shapes) because a silently wrong
//! model on a screening device is worse than one that refuses to start. Running
//! is lean: one optimised plan, one reusable session state and one reusable
//! input tensor, so the per-frame cost is the network and nothing else.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::GenericFactoid;

use crate::card::{FieldSpec, Label, ModelCard};
use crate::colour::{GateVerdict, HeGate, Normaliser};
use crate::error::{one_line, EdgeError};
use crate::field::dense::{pool_node, Window};
use crate::field::plans::DensePlans;
use crate::field::{geometry, scale, ProbMap};
use crate::preprocess;
use crate::profile::profile_state;
pub use crate::profile::OpTime;
use crate::winograd::{self, ConvChoice, LayerReport};

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Matrix-multiply threads; 0 means all available cores.
    pub threads: usize,
    /// Fixed batch size the plan is optimised for.
    pub batch: usize,
    /// Refuse a file whose sha256 differs from the card.
    pub verify_checksum: bool,
    /// Path of the convolutions (tract's or Winograd's); `None`: `HISTOSCREEN_CONV`, else the default.
    pub conv: Option<ConvChoice>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: 1,
            batch: 1,
            verify_checksum: true,
            conv: None,
        }
    }
}

/// Where load time went, for `bench`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadTimings {
    /// Reading the file, checksum and ONNX parsing.
    pub load_ms: f64,
    /// Type analysis, decluttering and kernel selection.
    pub optimize_ms: f64,
    /// Building the execution plan and session state.
    pub plan_ms: f64,
}

/// Result of classifying one image.
#[derive(Clone, Debug)]
pub struct Prediction {
    pub p_malignant: f32,
    pub probs: [f32; 2],
    pub label: Label,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
}

/// Result of screening one whole frame.
#[derive(Clone, Debug)]
pub struct FieldPrediction {
    /// The card's aggregate of the tile probabilities.
    pub p_malignant: f32,
    pub label: Label,
    pub map: ProbMap,
    /// Resampling to the model's scale and normalisation.
    pub preprocess_ms: f64,
    /// The dense pass (including building its plan the first time a frame size is seen).
    pub infer_ms: f64,
}

/// Largest frame the dense pass accepts, in model-scale pixels: a 4K camera frame at the
/// model's scale fits; beyond it the trunk's activations alone pass a Pi's spare memory.
pub const MAX_FIELD_PIXELS: u64 = 4096 * 4096;

/// A session plus the input tensor it is fed from, reused across runs.
struct Runner {
    state: TypedSimpleState,
    input: Option<Arc<Tensor>>,
}

/// A loaded, optimised, checksum-verified model.
pub struct Model {
    path: PathBuf,
    card: ModelCard,
    batch: usize,
    threads: usize,
    input_shape: [usize; 4],
    timings: LoadTimings,
    conv: ConvChoice,
    /// The plan's executor: each run goes onto its pool (`threads::run_in_pool`).
    executor: tract_linalg::multithread::Executor,
    /// What the convolution pass did with each convolution of the tile plan.
    convs: Vec<LayerReport>,
    // A Mutex (not a fresh state per call) so the op states and scratch
    // buffers are reused; the plan itself is immutable and shared.
    runner: Mutex<Runner>,
    /// The whole-field form, for cards with a field spec.
    dense: Option<Mutex<DensePlans>>,
    /// Macenko normalisation to the card's stain reference, when the card says the network
    /// was trained on normalised images.
    stain: Option<Normaliser>,
    /// The not-H&E gate with the card's thresholds and stain reference.
    gate: HeGate,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("name", &self.card.name)
            .field("batch", &self.batch)
            .field("threads", &self.threads)
            .finish()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn shape_text<T: std::fmt::Display>(dims: impl IntoIterator<Item = T>) -> String {
    let parts: Vec<String> = dims.into_iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

impl Model {
    /// Load with default options (1 thread, batch 1, checksum verified).
    pub fn load(onnx: &Path) -> Result<Model, EdgeError> {
        Self::load_with(onnx, &LoadOptions::default())
    }

    /// Load, verify against the card and optimise.
    pub fn load_with(onnx: &Path, opts: &LoadOptions) -> Result<Model, EdgeError> {
        let t0 = Instant::now();
        let bytes = crate::fsutil::read(onnx)?;
        let card_path = ModelCard::card_path_for(onnx);
        let card = ModelCard::load(&card_path)?;
        let mismatch = |reason: String| EdgeError::ModelMismatch {
            path: onnx.to_path_buf(),
            reason,
        };
        if opts.verify_checksum {
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(card.sha256.trim()) {
                let expected: String = card.sha256.chars().take(16).collect();
                return Err(mismatch(format!(
                    "sha256 mismatch with {}: card expects {expected}…, file has {}…",
                    card_path.display(),
                    &actual[..16]
                )));
            }
        }
        let conv = ConvChoice::resolve(opts.conv).map_err(EdgeError::Usage)?;
        let batch = opts.batch.max(1);
        let input_shape =
            Self::input_shape_from_card(&card, batch).map_err(|r| EdgeError::Card {
                path: card_path.clone(),
                reason: r,
            })?;

        let invalid = |e: TractError| EdgeError::InvalidModel {
            path: onnx.to_path_buf(),
            reason: one_line(e),
        };
        let framework = tract_onnx::onnx();
        let proto = framework
            .proto_model_for_read(&mut Cursor::new(&bytes))
            .map_err(invalid)?;
        let mut model = framework.model_for_proto_model(&proto).map_err(invalid)?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(mismatch(format!(
                "expected 1 input and 1 output, model has {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        Self::check_declared_input(&model, &card).map_err(mismatch)?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        model
            .set_input_fact(0, f32::fact(input_shape).into())
            .map_err(invalid)?;
        let typed = model.into_typed().map_err(|e| {
            mismatch(format!(
                "model does not accept input {} from the card ({})",
                shape_text(input_shape),
                one_line(e)
            ))
        })?;
        Self::check_output(&typed, &card, batch).map_err(mismatch)?;
        // Only a compact head (a global pool) has a dense form; a classic head's card still
        // carries the scale its centre tile is taken at.
        let window = match &card.field {
            Some(_) if pool_node(&proto).is_ok() => {
                Some(Self::tile_window(&typed, &proto).map_err(mismatch)?)
            }
            _ => None,
        };
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // The executor is attached to the plan rather than set globally so two
        // models with different thread counts can coexist in one process (the
        // trainer evaluates while the run loop serves).
        let executor = if threads > 1 {
            tract_linalg::multithread::Executor::multithread_with_name(threads, "histoscreen-mm")
        } else {
            tract_linalg::multithread::Executor::SingleThread
        };
        let options = RunOptions {
            executor: Some(executor.clone()),
            ..RunOptions::default()
        };
        // The convolution pass times its candidates with the plan's own threads.
        let (optimized, convs) = winograd::optimise(typed, conv, &options).map_err(invalid)?;
        let optimize_ms = t1.elapsed().as_secs_f64() * 1e3;

        let t2 = Instant::now();
        let plan = optimized
            .into_runnable_with_options(&options)
            .map_err(invalid)?;
        let state = TypedSimpleState::new(&plan).map_err(invalid)?;
        let dense = window
            .map(|w| DensePlans::new(&proto, w, options.clone(), conv))
            .transpose()
            .map_err(mismatch)?
            .map(Mutex::new);
        let plan_ms = t2.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            model = %onnx.display(),
            threads,
            batch,
            conv = conv.name(),
            load_ms,
            optimize_ms,
            plan_ms,
            "model loaded"
        );
        Ok(Model {
            path: onnx.to_path_buf(),
            batch,
            threads,
            input_shape,
            timings: LoadTimings {
                load_ms,
                optimize_ms,
                plan_ms,
            },
            conv,
            convs,
            executor,
            runner: Mutex::new(Runner { state, input: None }),
            dense,
            stain: card
                .stain
                .as_ref()
                .filter(|s| s.normalise)
                .map(Normaliser::new),
            gate: HeGate::for_card(&card),
            card,
        })
    }

    /// The card the model was verified against.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Path of the ONNX file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Batch size of the optimised plan.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Matrix-multiply threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Load-phase timings.
    pub fn timings(&self) -> LoadTimings {
        self.timings
    }

    /// The convolution path asked for (`--conv`).
    pub fn conv_choice(&self) -> ConvChoice {
        self.conv
    }

    /// What the convolution pass did with each convolution of the tile plan, in graph order.
    pub fn conv_layers(&self) -> &[LayerReport] {
        &self.convs
    }

    /// [`Model::conv_layers`] of the whole-field plan for a `w`x`h` frame (model scale).
    pub fn field_conv_layers(&self, w: u32, h: u32) -> Result<Vec<LayerReport>, EdgeError> {
        let (_, dense) = self.dense_form()?;
        let mut plans = dense.lock().unwrap_or_else(|p| p.into_inner());
        plans.conv_layers(w, h)
    }

    /// Values in one preprocessed image (3*crop*crop).
    pub fn image_len(&self) -> usize {
        self.input_shape[1..].iter().product()
    }

    /// Probabilities `[benign, malignant]` for one preprocessed CHW image.
    pub fn predict(&self, chw: &[f32]) -> Result<[f32; 2], EdgeError> {
        self.check_len(chw.len(), 1)?;
        let mut out = self.run_chunk(chw, 1)?;
        Ok(out.remove(0))
    }

    /// Probabilities for `n` images laid out NCHW; any `n` works, the plan's
    /// fixed batch is filled chunk by chunk (the last one zero-padded).
    pub fn predict_batch(&self, nchw: &[f32], n: usize) -> Result<Vec<[f32; 2]>, EdgeError> {
        self.check_len(nchw.len(), n)?;
        let per = self.image_len();
        let mut out = Vec::with_capacity(n);
        for chunk in nchw.chunks(per * self.batch) {
            out.extend(self.run_chunk(chunk, chunk.len() / per)?);
        }
        Ok(out)
    }

    /// `img`'s centre view, normalised as the card says, into `out` (CHW, [`Model::image_len`]
    /// values): for a whole-field card the centre tile of a frame already at the model's scale,
    /// for an older card the shorter side resized to its `resize_shorter_side` and centre-cropped;
    /// stain-normalised (on the cropped view) when the card's `stain.normalise` says so.
    pub fn preprocess_into(&self, img: &RgbImage, out: &mut [f32]) {
        let spec = &self.card.input;
        let side = match &self.card.field {
            Some(_) => img.width().min(img.height()),
            None => spec.resize_shorter_side,
        };
        preprocess::preprocess_stained(
            img,
            side,
            spec.crop,
            spec.mean,
            spec.std,
            self.stain.as_ref(),
            out,
        );
    }

    /// Is `img` H&E tissue at all? The card's gate thresholds (or the defaults) and stain
    /// reference (or torchstain's). Run it before [`Model::classify_at`] / [`Model::screen`] and
    /// treat a failing frame as idle: the classifier would score anything.
    pub fn gate(&self, img: &RgbImage) -> GateVerdict {
        self.gate.check(img)
    }

    /// The not-H&E gate this model applies (thresholds, reference).
    pub fn he_gate(&self) -> &HeGate {
        &self.gate
    }

    /// The stain normaliser, when the card asks for normalised input.
    pub fn stain_normaliser(&self) -> Option<&Normaliser> {
        self.stain.as_ref()
    }

    /// Refuses a frame the model cannot take at `frame_um` micrometres per pixel (too small or
    /// too large at the model's scale, or a scale too far from it) without resampling it:
    /// the same errors [`Model::classify_at`] and [`Model::screen`] would give.
    pub fn check_frame(&self, img: &RgbImage, frame_um: Option<f32>) -> Result<(), EdgeError> {
        if self.card.field.is_none() {
            return Ok(());
        }
        self.model_scale_size(img, self.resample_factor(frame_um)?)
            .map(|_| ())
    }

    /// Factor that brings a frame at `frame_um` micrometres per pixel to the model's scale
    /// (1 when the scale is unknown or the card predates whole-field screening).
    pub fn resample_factor(&self, frame_um: Option<f32>) -> Result<f32, EdgeError> {
        match (&self.card.field, frame_um) {
            (Some(f), Some(um)) => {
                scale::resample_factor(um, f.um_per_px).map_err(EdgeError::Frame)
            }
            _ => Ok(1.0),
        }
    }

    /// The frame resampled to the model's scale; a frame smaller than one tile or larger than
    /// [`MAX_FIELD_PIXELS`] there is refused.
    pub fn to_model_scale<'a>(
        &self,
        img: &'a RgbImage,
        factor: f32,
    ) -> Result<Cow<'a, RgbImage>, EdgeError> {
        let (w, h) = self.model_scale_size(img, factor)?;
        // A frame already at the model's scale is used as it is: no copy per camera frame.
        Ok(if factor == 1.0 {
            Cow::Borrowed(img)
        } else {
            Cow::Owned(preprocess::resize_exact(img, w, h))
        })
    }

    /// `img`'s size at the model's scale, refused when smaller than one tile or larger than
    /// [`MAX_FIELD_PIXELS`].
    fn model_scale_size(&self, img: &RgbImage, factor: f32) -> Result<(u32, u32), EdgeError> {
        let (w, h) = scale::resampled_size(img.width(), img.height(), factor);
        let tile = self.card.input.crop;
        if w < tile || h < tile {
            return Err(EdgeError::Frame(format!(
                "frame {}x{} is {w}x{h} at the model's scale, smaller than one {tile}x{tile} tile",
                img.width(),
                img.height()
            )));
        }
        if w as u64 * h as u64 > MAX_FIELD_PIXELS {
            return Err(EdgeError::Frame(format!(
                "frame {}x{} is {w}x{h} at the model's scale, more than the {} pixels a dense pass accepts",
                img.width(),
                img.height(),
                MAX_FIELD_PIXELS
            )));
        }
        Ok((w, h))
    }

    /// The card's whole-field spec, or why this model has none.
    pub fn field(&self) -> Result<&FieldSpec, EdgeError> {
        self.dense_form().map(|(spec, _)| spec)
    }

    /// The whole-field spec with the dense plans that carry it out.
    fn dense_form(&self) -> Result<(&FieldSpec, &Mutex<DensePlans>), EdgeError> {
        match (&self.card.field, &self.dense) {
            (Some(f), Some(d)) => Ok((f, d)),
            _ => Err(EdgeError::Usage(format!(
                "{}: no whole-field form (a classic-head model, or a card written before \
                 whole-field screening): use --view centre, or re-export a compact-head model",
                self.path.display()
            ))),
        }
    }

    /// Whether [`Model::screen`] works for this model.
    pub fn has_field(&self) -> bool {
        self.card.field.is_some() && self.dense.is_some()
    }

    /// The dense ONNX graph (input `[1,3,H,W]`, output `[cells,2]`), encoded.
    pub fn dense_onnx(&self) -> Result<Vec<u8>, EdgeError> {
        use prost::Message;
        let (_, dense) = self.dense_form()?;
        let plans = dense.lock().unwrap_or_else(|p| p.into_inner());
        Ok(plans.proto().encode_to_vec())
    }

    /// Screen the whole frame: resample it from `frame_um` micrometres per pixel (None: it is
    /// already at the model's scale) to the model's scale, score every tile position in one
    /// dense pass, and label the card's aggregate of the tile probabilities.
    pub fn screen(
        &self,
        img: &RgbImage,
        frame_um: Option<f32>,
    ) -> Result<FieldPrediction, EdgeError> {
        let (spec, dense) = self.dense_form()?;
        let t0 = Instant::now();
        let factor = self.resample_factor(frame_um)?;
        let scaled = self.to_model_scale(img, factor)?;
        // Stains are normalised at the model's scale: a quarter of the pixels of a 2x frame.
        let frame = preprocess::stain_normalised(&scaled, self.stain.as_ref());
        let (w, h) = frame.dimensions();
        let input = &self.card.input;
        let mut chw = vec![0f32; 3 * (w * h) as usize];
        preprocess::normalize_into(&frame, input.mean, input.std, &mut chw);
        let preprocess_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let probs = {
            let mut plans = dense.lock().unwrap_or_else(|p| p.into_inner());
            plans.run(&chw, w, h)?
        };
        let infer_ms = t1.elapsed().as_secs_f64() * 1e3;
        let (rows, cols) = geometry::grid(w, h, spec.tile, spec.stride);
        if probs.len() != 2 * rows * cols {
            return Err(EdgeError::Inference(format!(
                "{}: dense pass gave {} tiles for a {w}x{h} frame, the card's tile {} and stride {} make {rows}x{cols}",
                self.path.display(),
                probs.len() / 2,
                spec.tile,
                spec.stride
            )));
        }
        let values: Vec<f32> = probs.chunks_exact(2).map(|p| p[1]).collect();
        let p_malignant = spec.aggregate.apply(&values).expect("at least one tile");
        Ok(FieldPrediction {
            p_malignant,
            label: self.card.label_for(p_malignant),
            map: ProbMap {
                rows,
                cols,
                stride: spec.stride,
                tile: spec.tile,
                scale: w as f32 / img.width() as f32,
                values,
            },
            preprocess_ms,
            infer_ms,
        })
    }

    /// `frame` with `field`'s tile map drawn over it (threshold contour, legend, the card's
    /// aggregate and label), as PNG.
    pub fn overlay_png(
        &self,
        frame: &RgbImage,
        field: &FieldPrediction,
    ) -> Result<Vec<u8>, EdgeError> {
        let aggregate = self
            .card
            .field
            .as_ref()
            .map(|s| s.aggregate.describe())
            .unwrap_or_default();
        let text = crate::field::overlay::OverlayText {
            score: field.p_malignant,
            label: field.label.as_str(),
            threshold: self.card.threshold,
            aggregate: &aggregate,
        };
        crate::field::overlay::render_png(frame, &field.map, &text)
    }

    /// The centre view of a frame at `frame_um` micrometres per pixel (None: the model's scale):
    /// one tile from the middle of the field, as the device looked before whole-field screening.
    pub fn classify_at(
        &self,
        img: &RgbImage,
        frame_um: Option<f32>,
    ) -> Result<Prediction, EdgeError> {
        if self.card.field.is_none() {
            return self.classify(img);
        }
        let t0 = Instant::now();
        let frame = self.to_model_scale(img, self.resample_factor(frame_um)?)?;
        self.classify_prepared(&frame, t0)
    }

    /// Preprocess with the card's input spec, predict and label one image (its centre view).
    pub fn classify(&self, img: &RgbImage) -> Result<Prediction, EdgeError> {
        self.classify_prepared(img, Instant::now())
    }

    fn classify_prepared(&self, img: &RgbImage, t0: Instant) -> Result<Prediction, EdgeError> {
        let mut chw = vec![0f32; self.image_len()];
        self.preprocess_into(img, &mut chw);
        let preprocess_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let probs = self.predict(&chw)?;
        let infer_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(Prediction {
            p_malignant: probs[1],
            probs,
            label: self.card.label_for(probs[1]),
            preprocess_ms,
            infer_ms,
        })
    }

    /// The matrix-multiply kernels tract chose for this CPU, in plan order without repeats
    /// (tract-linalg's names, e.g. `fma_mmm_f32_16x6` or `arm64simd_mmm_i32_8x8`).
    pub fn kernels(&self) -> Vec<String> {
        use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
        let runner = self
            .runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<String> = Vec::new();
        for node in runner.state.plan().model().nodes() {
            let found: Vec<String> = if let Some(op) = node.op_as::<OptMatMul>() {
                op.mmm.iter().map(|mmm| mmm.name().to_string()).collect()
            } else if let Some(op) = node.op_as::<winograd::WinogradConv>() {
                vec![op.kernel_name().to_string()]
            } else {
                vec![]
            };
            for name in found {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Time spent in each node of the optimised plan, averaged over `runs` runs of one zero
    /// batch, slowest first: where the milliseconds of an inference go, in tract's own op names
    /// (which also name the matmul kernel it packed for).
    pub fn profile(&self, runs: usize) -> Result<Vec<OpTime>, EdgeError> {
        let fail = |e: TractError| {
            EdgeError::Inference(format!("{}: {}", self.path.display(), one_line(e)))
        };
        let input = Tensor::zero::<f32>(&self.input_shape).map_err(fail)?;
        let mut runner = self
            .runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        profile_state(&mut runner.state, &input, runs).map_err(fail)
    }

    /// [`Model::profile`] of the whole-field pass on a zero `w`x`h` frame (model scale).
    pub fn profile_field(&self, w: u32, h: u32, runs: usize) -> Result<Vec<OpTime>, EdgeError> {
        let (_, dense) = self.dense_form()?;
        let mut plans = dense.lock().unwrap_or_else(|p| p.into_inner());
        plans.profile(w, h, runs)
    }

    fn check_len(&self, len: usize, n: usize) -> Result<(), EdgeError> {
        let want = self.image_len() * n;
        if len != want || n == 0 {
            return Err(EdgeError::Inference(format!(
                "{}: expected {n} image(s) of {} values ({want} in all), got {len}",
                self.path.display(),
                shape_text(&self.input_shape[1..]),
            )));
        }
        Ok(())
    }

    /// Run one plan batch holding `n <= batch` images.
    fn run_chunk(&self, data: &[f32], n: usize) -> Result<Vec<[f32; 2]>, EdgeError> {
        let fail = |e: TractError| {
            EdgeError::Inference(format!("{}: {}", self.path.display(), one_line(e)))
        };
        let mut runner = self
            .runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Reuse the input buffer when the previous run released it (it always
        // does once the plan has flushed the value); otherwise allocate once.
        let mut input = match runner.input.take() {
            Some(t) => t,
            None => Arc::new(Tensor::zero::<f32>(&self.input_shape).map_err(fail)?),
        };
        if Arc::get_mut(&mut input).is_none() {
            input = Arc::new(Tensor::zero::<f32>(&self.input_shape).map_err(fail)?);
        }
        {
            let tensor = Arc::get_mut(&mut input).expect("uniquely owned just above");
            let mut view = tensor.try_as_plain_ram_mut().map_err(fail)?;
            let slice = view.as_slice_mut::<f32>().map_err(fail)?;
            slice[..data.len()].copy_from_slice(data);
            // Padding rows of a partial batch: zero them so stale images from a
            // previous call cannot influence anything (batch norm-free nets
            // would not, but it keeps the run deterministic).
            slice[data.len()..].fill(0.0);
        }
        let state = &mut runner.state;
        let outputs = crate::threads::run_in_pool(Some(&self.executor), || {
            state.run(tvec![TValue::from_const(input.clone())])
        })
        .map_err(fail)?;
        runner.input = Some(input);
        let view = outputs[0].try_as_plain_ram().map_err(fail)?;
        let probs = view.as_slice::<f32>().map_err(fail)?;
        if probs.len() != 2 * self.batch {
            return Err(EdgeError::Inference(format!(
                "{}: output has {} values, expected {}",
                self.path.display(),
                probs.len(),
                2 * self.batch
            )));
        }
        Ok(probs
            .chunks_exact(2)
            .take(n)
            .map(|p| [p[0], p[1]])
            .collect())
    }

    /// The card's input shape must be NCHW RGB with the crop as spatial size,
    /// otherwise preprocessing and the network disagree.
    fn input_shape_from_card(card: &ModelCard, batch: usize) -> Result<[usize; 4], String> {
        let s = &card.input.shape;
        let crop = card.input.crop as usize;
        if s.len() != 4 || s[1] != 3 || s[2] != crop || s[3] != crop {
            return Err(format!(
                "card input shape {} is not [N,3,{crop},{crop}] (NCHW RGB at the crop size)",
                shape_text(s)
            ));
        }
        if !card.input.layout.eq_ignore_ascii_case("NCHW") {
            return Err(format!(
                "card input layout {} is not NCHW",
                card.input.layout
            ));
        }
        if card.input.resize_shorter_side < card.input.crop {
            return Err(format!(
                "card resize_shorter_side {} is smaller than crop {}",
                card.input.resize_shorter_side, card.input.crop
            ));
        }
        Ok([batch, 3, crop, crop])
    }

    /// Compare the shape the ONNX file declares (where it declares one) with the
    /// card, so a card copied next to the wrong model fails with a clear line.
    fn check_declared_input(model: &InferenceModel, card: &ModelCard) -> Result<(), String> {
        let fact = model.input_fact(0).map_err(one_line)?;
        let declared_dims: Vec<GenericFactoid<TDim>> = fact.shape.dims().cloned().collect();
        if declared_dims.is_empty() {
            return Ok(()); // the file declares nothing; type analysis will judge
        }
        let dims: Vec<Option<usize>> = declared_dims
            .iter()
            .map(|d| match d {
                GenericFactoid::Only(t) => t.to_i64().ok().map(|v| v as usize),
                GenericFactoid::Any => None,
            })
            .collect();
        // Symbolic axes keep their name (the batch axis reads "N"), unknown ones read "?".
        let declared = shape_text(declared_dims.iter().map(|d| match d {
            GenericFactoid::Only(t) => t.to_string(),
            GenericFactoid::Any => "?".to_string(),
        }));
        let want = &card.input.shape;
        let agrees = dims.len() == want.len()
            && dims
                .iter()
                .zip(want)
                .skip(1) // the batch axis is ours to choose
                .all(|(d, w)| d.is_none_or(|d| d == *w));
        if !agrees {
            return Err(format!(
                "model input {declared} does not match card input shape {}",
                shape_text(want)
            ));
        }
        if let Ok(node) = model.input_outlets().map(|o| &model.nodes[o[0].node]) {
            if node.name != card.input.name {
                tracing::warn!(
                    model_input = %node.name,
                    card_input = %card.input.name,
                    "input name differs from the card"
                );
            }
        }
        Ok(())
    }

    /// The trunk map's channels and the side of one tile's window on it, read from the typed
    /// tile model at the input of the head's global pool.
    fn tile_window(
        typed: &TypedModel,
        proto: &tract_onnx::pb::ModelProto,
    ) -> Result<Window, String> {
        let gap = pool_node(proto)?;
        let pooled = gap.input.first().ok_or("GlobalAveragePool has no input")?;
        let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
        let producer = graph
            .node
            .iter()
            .find(|n| n.output.first() == Some(pooled))
            .map_or(pooled.as_str(), |n| n.name.as_str());
        // tract keeps the ONNX node's name, or suffixes it when one ONNX op becomes several.
        let prefix = format!("{producer}.");
        let nodes = typed.nodes();
        let node = nodes
            .iter()
            .find(|n| n.name == producer)
            .or_else(|| nodes.iter().rev().find(|n| n.name.starts_with(&prefix)))
            .ok_or_else(|| format!("cannot find {producer} (the pooled map) in the typed model"))?;
        let fact = typed
            .outlet_fact(OutletId::new(node.id, 0))
            .map_err(one_line)?;
        let dims: Vec<usize> = fact
            .shape
            .iter()
            .map(|d| d.to_i64().map_or(0, |v| v as usize))
            .collect();
        match dims[..] {
            [_, c, h, w] if h == w && h > 0 && c > 0 => Ok(Window {
                cells: h,
                channels: c,
            }),
            _ => Err(format!(
                "the pooled map of {pooled} has shape {dims:?}, expected [N,C,k,k]"
            )),
        }
    }

    fn check_output(model: &TypedModel, card: &ModelCard, batch: usize) -> Result<(), String> {
        let fact = model.output_fact(0).map_err(one_line)?;
        let got: Vec<Option<usize>> = fact
            .shape
            .iter()
            .map(|d| d.to_i64().ok().map(|v| v as usize))
            .collect();
        let mut want = card.output.shape.clone();
        if want.len() != 2 || want[1] != 2 {
            return Err(format!(
                "card output shape {} is not [N,2]",
                shape_text(&want)
            ));
        }
        want[0] = batch;
        let agrees = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| *g == Some(*w));
        if !agrees {
            return Err(format!(
                "model output {} does not match card output shape {}",
                shape_text(fact.shape.iter()),
                shape_text(&want)
            ));
        }
        Ok(())
    }
}
