//! The int8 form of AlexNet's convolutions: `QuantizeLinear`, five `QLinearConv` with
//! per-output-channel int8 weights and per-tensor uint8 activations, `MaxPool` on the uint8
//! maps, one `DequantizeLinear` before the head.
//!
//! These are the standard ONNX operators tract lowers to its own int8 matrix products (int32
//! accumulation, one requantisation per output); nothing Microsoft-specific such as `QGemm`.
//! A ReLU needs no node: with output zero point 0 the saturating requantisation to uint8 clamps
//! negative sums to 0, which is the ReLU, so the calibrated range of each convolution is that
//! of its ReLU output.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use tract_onnx::pb::tensor_proto::DataType;

use super::builder::GraphBuilder;
use super::layers::CONVS;
use super::proto::raw_tensor;
use super::weights::ConvWeights;

/// How an activation range is read from the calibration values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "method", content = "percentile")]
pub enum RangeMethod {
    /// The extreme values seen.
    MinMax,
    /// The given percentile of the values (and its mirror for the lower end of the input):
    /// a few outliers then no longer stretch the step for every other value.
    Percentile(f64),
}

/// Calibrated ranges of the tensors the int8 graph quantizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationRanges {
    /// Range of the normalised input image.
    pub input: (f32, f32),
    /// Upper end of each convolution's output after its ReLU (the lower end is 0).
    pub conv_max: Vec<f32>,
    pub method: RangeMethod,
    /// How many images the ranges were measured on.
    pub images: usize,
}

/// Collects the values of the quantized tensors over calibration images. Every `STRIDE`-th
/// value is kept: ranges of a few hundred thousand values per image need no more, and 64
/// images then hold about 40 MB instead of 160.
pub struct Calibrator {
    input: Vec<f32>,
    convs: Vec<Vec<f32>>,
    images: usize,
}

const STRIDE: usize = 4;

impl Default for Calibrator {
    fn default() -> Self {
        Calibrator {
            input: Vec::new(),
            convs: vec![Vec::new(); CONVS.len()],
            images: 0,
        }
    }
}

impl Calibrator {
    /// Adds a batch: the network input and each convolution's ReLU output, flattened.
    pub fn observe(&mut self, images: usize, input: &[f32], convs: &[Vec<f32>]) {
        assert_eq!(convs.len(), CONVS.len(), "one tensor per convolution");
        self.images += images;
        self.input.extend(input.iter().step_by(STRIDE));
        for (kept, values) in self.convs.iter_mut().zip(convs) {
            kept.extend(values.iter().step_by(STRIDE));
        }
    }

    pub fn ranges(mut self, method: RangeMethod) -> Result<ActivationRanges> {
        ensure!(self.images > 0, "no calibration images");
        let (lo, hi) = match method {
            RangeMethod::MinMax => (0.0, 1.0),
            RangeMethod::Percentile(p) => {
                ensure!(
                    p > 50.0 && p <= 100.0,
                    "calibration percentile must be in (50, 100], got {p}"
                );
                (1.0 - p / 100.0, p / 100.0)
            }
        };
        let input = (quantile(&mut self.input, lo), quantile(&mut self.input, hi));
        let conv_max = self.convs.iter_mut().map(|v| quantile(v, hi)).collect();
        Ok(ActivationRanges {
            input,
            conv_max,
            method,
            images: self.images,
        })
    }
}

/// Nearest-rank quantile, `q` in [0, 1]; 0 for no values.
fn quantile(values: &mut [f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1);
    *values.select_nth_unstable_by(rank, |a, b| a.total_cmp(b)).1
}

/// Scale and zero point of an asymmetric uint8 quantization of `[min, max]`, widened to hold 0
/// exactly (zero padding must stay zero).
pub fn uint8_params(min: f32, max: f32) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = (max - min) / 255.0;
    // ONNX forbids a zero scale; an all-zero tensor quantizes to zeros with any scale.
    if scale.is_nan() || scale <= f32::MIN_POSITIVE {
        return (1.0, 0);
    }
    let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero_point)
}

fn scalar_f32(name: &str, v: f32) -> tract_onnx::pb::TensorProto {
    raw_tensor(name, &[], DataType::Float, v.to_le_bytes().to_vec())
}

/// Wires the int8 feature extractor from the `f32` tensor `x`; returns the name of its
/// dequantized `f32` output `[1, 256, 6, 6]`.
pub(crate) fn quantized_features(
    g: &mut GraphBuilder,
    x: &str,
    convs: &[ConvWeights],
    ranges: &ActivationRanges,
) -> Result<String> {
    ensure!(
        ranges.conv_max.len() == convs.len(),
        "calibration has {} convolution ranges for {} convolutions",
        ranges.conv_max.len(),
        convs.len()
    );
    let (in_scale, in_zero) = uint8_params(ranges.input.0, ranges.input.1);
    let mut scale = in_scale;
    let mut scale_name = g.constant(scalar_f32("image.scale", in_scale));
    let mut zero_name = g.constant(raw_tensor(
        "image.zero_point",
        &[],
        DataType::Uint8,
        vec![in_zero],
    ));
    let mut x = g.node(
        "QuantizeLinear",
        "image.quantized",
        &[x, &scale_name, &zero_name],
        vec![],
    );
    // One int8 zero point 0 shared by every weight tensor: symmetric weights.
    let w_zero = g.constant(raw_tensor(
        "weight.zero_point",
        &[],
        DataType::Int8,
        vec![0],
    ));
    for (i, (c, spec)) in convs.iter().zip(&CONVS).enumerate() {
        let n = i + 1;
        let prefix = format!("features.{}", spec.torch_index);
        let (w, w_scale, w_scales) = g.int8_weight(&format!("{prefix}.weight"), &c.weight);
        // The bias joins the int32 sums, so it takes their scale: input scale x weight scale.
        let bias: Vec<u8> = c
            .bias
            .data
            .iter()
            .zip(&w_scales)
            .flat_map(|(&b, &ws)| {
                let q = (b as f64 / (scale as f64 * ws as f64)).round();
                (q.clamp(i32::MIN as f64, i32::MAX as f64) as i32).to_le_bytes()
            })
            .collect();
        let bias = g.constant(raw_tensor(
            &format!("{prefix}.bias.int32"),
            &[spec.out_ch],
            DataType::Int32,
            bias,
        ));
        let (y_scale, y_zero) = uint8_params(0.0, ranges.conv_max[i]);
        let y_scale_name = g.constant(scalar_f32(&format!("conv{n}.scale"), y_scale));
        let y_zero_name = g.constant(raw_tensor(
            &format!("conv{n}.zero_point"),
            &[],
            DataType::Uint8,
            vec![y_zero],
        ));
        x = g.node(
            "QLinearConv",
            &format!("conv{n}"),
            &[
                &x,
                &scale_name,
                &zero_name,
                &w,
                &w_scale,
                &w_zero,
                &y_scale_name,
                &y_zero_name,
                &bias,
            ],
            spec.attributes(),
        );
        // The max of quantized values is the quantized max: pooling stays in uint8.
        if spec.pool {
            x = g.max_pool(&format!("pool{n}"), &x);
        }
        scale = y_scale;
        scale_name = y_scale_name;
        zero_name = y_zero_name;
    }
    Ok(g.node(
        "DequantizeLinear",
        "features.dequantized",
        &[&x, &scale_name, &zero_name],
        vec![],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_params_hold_zero_exactly() {
        let (s, z) = uint8_params(-2.0, 3.1);
        assert!((s - 5.1 / 255.0).abs() < 1e-7);
        assert_eq!(z, 100);
        // -min / scale = 100 exactly, so 0.0 quantizes to the zero point and back to 0.0.
        assert_eq!((0.0f32 / s).round() as i32 + z as i32, 100);
        // A range that excludes 0 is widened to include it.
        assert_eq!(uint8_params(0.5, 2.0), (2.0 / 255.0, 0));
        assert_eq!(uint8_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn percentile_ranges_ignore_outliers_and_minmax_keeps_them() {
        let mut c = Calibrator::default();
        let mut conv: Vec<f32> = (0..40_000).map(|i| (i % 100) as f32 / 100.0).collect();
        conv[0] = 1000.0; // kept: index 0 is on the stride
        let input: Vec<f32> = (0..40_000).map(|i| (i % 200) as f32 / 50.0 - 2.0).collect();
        c.observe(2, &input, &vec![conv; CONVS.len()]);
        let p = c.ranges(RangeMethod::Percentile(99.9)).unwrap();
        assert_eq!(p.images, 2);
        assert!(p.conv_max[0] < 1.0, "{}", p.conv_max[0]);
        assert!(p.input.0 <= -1.9 && p.input.1 >= 1.9, "{:?}", p.input);

        let mut c = Calibrator::default();
        let mut conv = vec![0.5f32; 400];
        conv[0] = 1000.0;
        c.observe(1, &[-1.0, 0.0, 0.0, 0.0, 2.0], &vec![conv; CONVS.len()]);
        let m = c.ranges(RangeMethod::MinMax).unwrap();
        assert_eq!(m.conv_max[0], 1000.0);
        assert_eq!(m.input, (-1.0, 2.0));
    }

    #[test]
    fn no_images_or_a_bad_percentile_is_an_error() {
        assert!(Calibrator::default().ranges(RangeMethod::MinMax).is_err());
        let mut c = Calibrator::default();
        c.observe(1, &[0.0], &vec![vec![0.0]; CONVS.len()]);
        let e = c.ranges(RangeMethod::Percentile(30.0)).unwrap_err();
        assert!(e.to_string().contains("percentile"), "{e}");
    }
}
