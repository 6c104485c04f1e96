//! The model card: `model.json` beside `model.onnx`, written by the trainer.
//!
//! It carries everything the device needs besides the weights: the checksum
//! that ties it to one ONNX file, the preprocessing, and the decision rule
//! (threshold + uncertain band) chosen on validation data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{one_line, EdgeError};
use crate::field::Aggregate;

/// Card schema version this crate writes and understands.
pub const CARD_FORMAT_VERSION: u32 = 1;

/// Network input description.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: String,
    pub resize_shorter_side: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Network output description.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Metadata accompanying one exported ONNX file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ModelCard {
    pub format_version: u32,
    pub name: String,
    pub architecture: String,
    pub head: String,
    /// "f32", "f16", "int8" or "int8-weights".
    pub precision: String,
    pub onnx_file: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// `["benign", "malignant"]`: index 1 is the malignant probability.
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// `p_malignant >= threshold` means malignant.
    pub threshold: f32,
    /// `|p_malignant - threshold| < uncertain_band` means uncertain.
    pub uncertain_band: f32,
    pub split_seed: Option<u64>,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Whole-field screening; absent on cards written before it (centre crop only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldSpec>,
    /// The H&E stain reference fitted on the training images (Macenko), and whether the
    /// network expects its input normalised to it; absent on cards written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain: Option<StainSpec>,
    /// Thresholds of the not-H&E gate; absent means [`GateSpec::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
}

/// A Macenko stain reference: the two stain directions in optical-density space and the
/// 99th-percentile concentration of each, fitted on the training images (`colour::macenko`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StainSpec {
    /// Unit stain vectors, rows R, G, B and columns haematoxylin, eosin (torchstain's `HERef`
    /// layout).
    pub he: [[f64; 2]; 3],
    /// 99th-percentile concentrations `[H, E]` (torchstain's `maxCRef`).
    pub max_c: [f64; 2],
    /// Normalise every image to this reference before the network (the model was trained on
    /// normalised images); false: the reference only anchors the gate's stain angle.
    pub normalise: bool,
    /// Background intensity of the optical-density conversion.
    #[serde(default = "default_io")]
    pub io: f64,
    /// Percentile (percent) of the stain-plane angles taken as the stain directions.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Optical density below which a channel counts as unstained.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// What the reference was fitted on.
    #[serde(default)]
    pub fitted_on: StainProvenance,
}

fn default_io() -> f64 {
    crate::colour::od::DEFAULT_IO
}
fn default_alpha() -> f64 {
    crate::colour::od::DEFAULT_ALPHA
}
fn default_beta() -> f64 {
    crate::colour::od::DEFAULT_BETA
}

/// Where a stain reference came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StainProvenance {
    /// Images pooled.
    pub images: usize,
    /// Distinct patients among them, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patients: Option<usize>,
    /// Pixels pooled (a deterministic grid sample of each image).
    pub pixels: usize,
    /// In words: which data set, which split.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl StainSpec {
    /// torchstain's built-in reference (`HERef`, `maxCRef`), used where a card has none.
    pub fn torchstain_default() -> Self {
        StainSpec {
            he: crate::colour::od::TORCHSTAIN_HE_REF,
            max_c: crate::colour::od::TORCHSTAIN_MAX_C_REF,
            normalise: false,
            io: default_io(),
            alpha: default_alpha(),
            beta: default_beta(),
            fitted_on: StainProvenance {
                source: "torchstain's default reference (Macenko et al.)".into(),
                ..StainProvenance::default()
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        let finite = self
            .he
            .iter()
            .flatten()
            .chain(&self.max_c)
            .all(|v| v.is_finite());
        let columns_nonzero = (0..2).all(|j| self.he.iter().any(|r| r[j] != 0.0));
        if !finite || !columns_nonzero || self.max_c.iter().any(|c| *c <= 0.0) {
            return Err(format!(
                "card stain reference (he {:?}, max_c {:?}) needs finite, non-zero stain vectors \
                 and positive concentrations",
                self.he, self.max_c
            ));
        }
        let io_ok = self.io > 1.0 && self.io <= 255.0;
        if !io_ok || !(0.0..50.0).contains(&self.alpha) {
            return Err(format!(
                "card stain io {} or alpha {} is out of range (io in (1, 255], alpha in [0, 50))",
                self.io, self.alpha
            ));
        }
        Ok(())
    }
}

/// Thresholds of the not-H&E gate (`colour::gate`); a card may give some and leave the rest
/// to the defaults. Why each default is where it is: docs/colour.md.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct GateSpec {
    /// Least fraction of pixels stained in every channel (optical density at least `beta`).
    pub min_tissue_fraction: f32,
    /// Least mean HSV saturation of the tissue pixels: below it the frame is grey.
    pub min_saturation: f32,
    /// Most mean HSV saturation of the tissue pixels: above it the colours are not a stain's.
    pub max_saturation: f32,
    /// Most fraction of coloured tissue pixels with a hue H&E does not make (brown, yellow,
    /// green, cyan: 20° to 200°), e.g. the DAB of immunohistochemistry.
    pub max_off_hue_fraction: f32,
    /// Least share of the optical-density variance in the plane of the two main directions:
    /// two stains leave the third direction nearly empty.
    pub min_plane_fraction: f32,
    /// Least angle between the frame's two stain vectors.
    pub min_stain_separation_deg: f32,
    /// Most angle between each of the frame's stain vectors and the reference's.
    pub max_stain_angle_deg: f32,
    /// Least Laplacian variance (`sharpness`): blank, moving or out-of-focus frames.
    pub min_sharpness: f64,
}

impl Default for GateSpec {
    fn default() -> Self {
        GateSpec {
            min_tissue_fraction: 0.01,
            min_saturation: 0.02,
            max_saturation: 0.75,
            max_off_hue_fraction: 0.4,
            min_plane_fraction: 0.85,
            min_stain_separation_deg: 4.0,
            max_stain_angle_deg: 45.0,
            min_sharpness: crate::sharpness::DEFAULT_MIN_SHARPNESS,
        }
    }
}

impl GateSpec {
    fn validate(&self) -> Result<(), String> {
        let fractions = [
            self.min_tissue_fraction,
            self.min_saturation,
            self.max_saturation,
            self.max_off_hue_fraction,
            self.min_plane_fraction,
        ];
        let angles = [self.min_stain_separation_deg, self.max_stain_angle_deg];
        if fractions.iter().any(|f| !(0.0..=1.0).contains(f))
            || angles.iter().any(|a| !(0.0..=180.0).contains(a))
            || self.min_sharpness.is_nan()
            || self.min_sharpness < 0.0
            || self.min_saturation > self.max_saturation
        {
            return Err(format!(
                "card gate thresholds {self:?} are out of range (fractions in [0, 1], angles in \
                 [0, 180], min_saturation <= max_saturation, sharpness >= 0)"
            ));
        }
        Ok(())
    }
}

/// How the model screens a whole frame: the scale it was trained at and how its tiles lie.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FieldSpec {
    /// Micrometres of tissue per pixel at the network input: frames are resampled to this.
    pub um_per_px: f32,
    /// Tile side in model-scale pixels (the network's input side).
    pub tile: u32,
    /// Step between neighbouring tiles in model-scale pixels (the trunk's total stride).
    pub stride: u32,
    /// How tile probabilities become the image's score.
    pub aggregate: Aggregate,
    /// How map cells align to frame pixels, in words, for whoever reads the card.
    pub alignment: String,
}

impl FieldSpec {
    /// AlexNet's 224-pixel tiles every 32 pixels (its conv1 stride 4 times three 2x max-pools).
    pub fn alexnet(um_per_px: f32, aggregate: Aggregate) -> Self {
        FieldSpec {
            um_per_px,
            tile: crate::preprocess::INPUT_SIZE,
            stride: 32,
            aggregate,
            alignment: "cell (r, c) of the map is the tile x in [c*stride, c*stride+tile), \
                        y in [r*stride, r*stride+tile) of the frame resampled to um_per_px; \
                        rows*cols = the whole tiles that fit"
                .into(),
        }
    }
}

/// What a model file computes in and how it stores its weights: the card's `precision`, and the
/// file name the trainer gives each variant (`model.onnx`, `model-int8.onnx`, ...).
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// f32 weights and arithmetic (the reference).
    F32,
    /// int8 convolutions (QLinearConv) on calibrated uint8 activations; fast where tract has
    /// int8 kernels (ARM NEON, dot product), slow on x86.
    Int8,
    /// f16 weights and arithmetic; fast on CPUs with FP16 arithmetic (Pi 5, Orin), very slow
    /// elsewhere.
    F16,
    /// int8 weights (one symmetric scale per output channel) expanded to f32 on load: a 4x
    /// smaller file that runs at f32 speed.
    #[value(name = "int8-weights")]
    Int8Weights,
    /// f16 weights expanded to f32 on load: a 2x smaller file at f32 speed.
    #[value(name = "f16-weights")]
    F16Weights,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
            Precision::Int8Weights => "int8-weights",
            Precision::F16Weights => "f16-weights",
        }
    }

    /// `model.onnx`, `model-int8.onnx`, ...: the names a `--model-dir` holds.
    pub fn file_name(self) -> String {
        match self {
            Precision::F32 => "model.onnx".into(),
            p => format!("model-{}.onnx", p.name()),
        }
    }
}

/// Screening decision for one image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Benign,
    Malignant,
    Uncertain,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Benign => "benign",
            Label::Malignant => "malignant",
            Label::Uncertain => "uncertain",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl InputSpec {
    /// The standard AlexNet/ImageNet input for a given batch size.
    pub fn imagenet(batch: usize) -> Self {
        use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE};
        InputSpec {
            name: "image".into(),
            shape: vec![batch, 3, INPUT_SIZE as usize, INPUT_SIZE as usize],
            layout: "NCHW".into(),
            resize_shorter_side: INPUT_SIZE,
            crop: INPUT_SIZE,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl ModelCard {
    /// `model.onnx` -> `model.json`, `model-int8.onnx` -> `model-int8.json`.
    pub fn card_path_for(onnx: &Path) -> PathBuf {
        onnx.with_extension("json")
    }

    /// Read and sanity-check a card.
    pub fn load(path: &Path) -> Result<Self, EdgeError> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EdgeError::Card {
                    path: path.to_path_buf(),
                    reason: "model card not found (expected beside the ONNX file)".into(),
                }
            } else {
                EdgeError::io("read", path, &e)
            }
        })?;
        let card: ModelCard = serde_json::from_slice(&bytes).map_err(|e| EdgeError::Card {
            path: path.to_path_buf(),
            reason: format!("not a valid model card ({})", one_line(e)),
        })?;
        card.validate().map_err(|reason| EdgeError::Card {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(card)
    }

    /// Write the card atomically as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), EdgeError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| EdgeError::Card {
            path: path.to_path_buf(),
            reason: format!("cannot serialise card ({})", one_line(e)),
        })?;
        text.push('\n');
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// Apply the card's decision rule to a malignant probability.
    pub fn label_for(&self, p_malignant: f32) -> Label {
        if (p_malignant - self.threshold).abs() < self.uncertain_band {
            Label::Uncertain
        } else if p_malignant >= self.threshold {
            Label::Malignant
        } else {
            Label::Benign
        }
    }

    /// Checks that do not need the ONNX file; a bad value here would silently
    /// turn every prediction into the wrong label, so it is refused up front.
    fn validate(&self) -> Result<(), String> {
        if self.format_version > CARD_FORMAT_VERSION {
            return Err(format!(
                "card format_version {} is newer than this build understands ({CARD_FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.classes.len() != 2 {
            return Err(format!(
                "card lists {} classes, expected 2 (benign, malignant)",
                self.classes.len()
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!(
                "card threshold {} is outside [0, 1]",
                self.threshold
            ));
        }
        if !(self.uncertain_band >= 0.0 && self.uncertain_band < 1.0) {
            return Err(format!(
                "card uncertain_band {} is outside [0, 1)",
                self.uncertain_band
            ));
        }
        if let Some(f) = &self.field {
            if !(f.um_per_px.is_finite() && f.um_per_px > 0.0) || f.stride == 0 || f.tile == 0 {
                return Err(format!(
                    "card field spec (um_per_px {}, tile {}, stride {}) needs positive values",
                    f.um_per_px, f.tile, f.stride
                ));
            }
        }
        if let Some(stain) = &self.stain {
            stain.validate()?;
        }
        if let Some(gate) = &self.gate {
            gate.validate()?;
        }
        if self.input.std.iter().any(|s| *s <= 0.0) {
            return Err(format!(
                "card input std {:?} has a non-positive value",
                self.input.std
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(threshold: f32, band: f32) -> ModelCard {
        ModelCard {
            format_version: 1,
            name: "t".into(),
            architecture: "alexnet".into(),
            head: "classic".into(),
            precision: "f32".into(),
            onnx_file: "model.onnx".into(),
            sha256: String::new(),
            size_bytes: 0,
            classes: vec!["benign".into(), "malignant".into()],
            input: InputSpec::imagenet(1),
            output: OutputSpec {
                name: "probs".into(),
                shape: vec![1, 2],
            },
            threshold,
            uncertain_band: band,
            split_seed: None,
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
            field: None,
            stain: None,
            gate: None,
        }
    }

    #[test]
    fn label_rule_uses_threshold_and_band() {
        let c = card(0.4, 0.1);
        assert_eq!(c.label_for(0.05), Label::Benign);
        assert_eq!(c.label_for(0.35), Label::Uncertain);
        assert_eq!(c.label_for(0.45), Label::Uncertain);
        assert_eq!(c.label_for(0.55), Label::Malignant);
        assert_eq!(c.label_for(0.99), Label::Malignant);
        let no_band = card(0.5, 0.0);
        assert_eq!(no_band.label_for(0.5), Label::Malignant);
        assert_eq!(no_band.label_for(0.4999), Label::Benign);
        assert_eq!(Label::Uncertain.to_string(), "uncertain");
    }

    #[test]
    fn stain_and_gate_are_optional_and_round_trip() {
        // A card written before them: no keys appear, and it still validates.
        let old = card(0.5, 0.1);
        let text = serde_json::to_string(&old).unwrap();
        assert!(
            !text.contains("\"stain\"") && !text.contains("\"gate\""),
            "{text}"
        );
        let back: ModelCard = serde_json::from_str(&text).unwrap();
        assert!(back.stain.is_none() && back.gate.is_none());
        back.validate().unwrap();

        let mut new = card(0.5, 0.1);
        new.stain = Some(StainSpec::torchstain_default());
        new.gate = Some(GateSpec::default());
        let value = serde_json::to_value(&new).unwrap();
        let back: ModelCard = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), value);
        assert_eq!(back.stain, new.stain);
        assert_eq!(back.gate, new.gate);
        back.validate().unwrap();
    }

    #[test]
    fn bad_stain_or_gate_values_are_refused() {
        let mut c = card(0.5, 0.1);
        let mut stain = StainSpec::torchstain_default();
        stain.max_c = [1.0, 0.0];
        c.stain = Some(stain);
        assert!(c
            .validate()
            .unwrap_err()
            .contains("positive concentrations"));
        c.stain = None;
        c.gate = Some(GateSpec {
            min_saturation: 0.9,
            max_saturation: 0.5,
            ..GateSpec::default()
        });
        assert!(c.validate().unwrap_err().contains("card gate thresholds"));
    }

    #[test]
    fn card_path_replaces_extension() {
        assert_eq!(
            ModelCard::card_path_for(Path::new("/m/model-int8.onnx")),
            PathBuf::from("/m/model-int8.json")
        );
    }
}
