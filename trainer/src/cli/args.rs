//! Every subcommand's arguments as clap parses them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use histoscreen_edge::card::Precision;

use crate::data::augment::ColourAugment;
use crate::export::model_file::{DEFAULT_THRESHOLD, DEFAULT_UNCERTAIN_BAND};
use crate::fit::config::Schedule;
use crate::model::alexnet::{Freeze, Head, COMPACT_HIDDEN};

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// BreakHis folder (the official BreaKHis_v1 tree or any folder of BreakHis-named images).
    /// Default: $HISTOSCREEN_SHARED/data/breakhis (HISTOSCREEN_SHARED defaults to ../shared).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only these magnifications (40, 100, 200, 400); repeat or comma-separate. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub magnification: Vec<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// ImageNet weights: torchvision alexnet-owt-7be5be79.pth or safetensors with torchvision keys.
    /// Default: $HISTOSCREEN_SHARED/weights/alexnet-features-imagenet.safetensors.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Train from random initialisation instead.
    #[arg(long, conflicts_with = "pretrained")]
    pub no_pretrained: bool,
    /// Output folder for model.onnx, model.json, report.json and the checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Training epochs (with --select-fraction, the most; the best is kept).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Learning rate [default: 0.001 for the classic head (the seed), 0.01 for the compact
    /// head, whose few fresh weights learn too slowly at the seed's rate]
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay [default: 5e-4 for the classic head (the seed), 0.05 for the compact head,
    /// whose 33 k weights overfit 20 patients within a few epochs at the seed's value]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule over the epochs.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// Seeds the patient split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Classifier on top of AlexNet's conv trunk: `compact` (global pool and a small head,
    /// which the edge can run over a whole field) or `classic` (AlexNet's fc6-fc8).
    #[arg(long, value_enum, default_value_t = Head::Compact)]
    pub head: Head,
    /// Hidden width of the compact head; 0 makes it linear (global average pool, 256 -> 2).
    #[arg(long, default_value_t = COMPACT_HIDDEN)]
    pub hidden: usize,
    /// Layers kept at their pretrained values while training.
    #[arg(long, value_enum, default_value_t = Freeze::Features)]
    pub freeze: Freeze,
    /// Fraction of patients held out for the final figures (never used for selection).
    /// 0 trains the exported model on every patient (pair it with --folds for honest figures).
    #[arg(long, default_value_t = 0.3)]
    pub val_fraction: f64,
    /// Fraction of the training patients used to choose the best epoch. 0 (default) trains
    /// the fixed --epochs: on the shared data, choosing among epochs on the 4 patients that
    /// 0.2 leaves cost 0.04 balanced accuracy in 5-fold cross-validation.
    #[arg(long, default_value_t = 0.0)]
    pub select_fraction: f64,
    /// K-fold cross-validation by patient; the exported model is then trained on all patients.
    #[arg(long)]
    pub folds: Option<usize>,
    /// Do not weight the loss against the benign/malignant imbalance.
    #[arg(long)]
    pub no_class_weighting: bool,
    /// Do not augment training images.
    #[arg(long)]
    pub no_augment: bool,
    /// With pretrained weights, the trunk frozen and the compact head: augmented copies of each
    /// whole field whose tile features are computed once and reused every epoch (each step draws
    /// tiles of one of them). 0 augments single tiles afresh at every step, running the trunk
    /// each time (much slower).
    #[arg(long, default_value_t = 4)]
    pub feature_views: usize,
    /// Macenko stain normalisation: `on` fits a stain reference on each run's training
    /// patients, trains on images normalised to it and writes it to the card with
    /// `normalise: true`, so the edge normalises every frame the same way.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub stain_norm: OnOff,
    /// Colour augmentation: `standard` (brightness, contrast, saturation, small channel gains)
    /// or `od` (that after H and E strength within 30 % and white balance within 10 %, in
    /// optical-density space).
    #[arg(long, value_enum, default_value_t = ColourAugment::Standard)]
    pub colour_aug: ColourAugment,
    /// Also score each fold's test patients under camera-like colour shifts (all, or a comma
    /// list such as wb-warm,jpeg-70): a table per fold and across folds in report.md. One
    /// whole-field pass per test image and shift: use a release build.
    #[arg(long, value_name = "SHIFTS", num_args = 0..=1, default_missing_value = "all")]
    pub colour_shift: Option<String>,
    /// Malignant probability at or above which an image is called malignant.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f32,
    /// Half-width of the band around the threshold reported as uncertain on the device.
    #[arg(long, default_value_t = DEFAULT_UNCERTAIN_BAND)]
    pub uncertain_band: f32,
    /// Continue the interrupted run whose checkpoint is in `--out` (same arguments required).
    #[arg(long)]
    pub resume: bool,
    /// Also write these precisions beside model.onnx (model-int8.onnx, model-f16.onnx, ...),
    /// each checked against f32 on patients its calibration never saw; comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub export: Vec<Precision>,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A `train --out` folder or its `checkpoint` subfolder; the model is the best epoch so far.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Malignant probability at or above which an image is called malignant [default: the
    /// finished run's model card, as `classify` uses it, else train's default 0.5].
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Half-width of the band around the threshold labelled uncertain [default: the finished
    /// run's model card, else train's default 0.1].
    #[arg(long)]
    pub uncertain_band: Option<f32>,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Exported model (its model card must sit beside it).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Also write one CSV row per image here (with whether its patient was trained on).
    #[arg(long)]
    pub per_image: Option<PathBuf>,
    /// Score the data even when every patient in it was trained on; their figures are still
    /// kept apart, under `seen_in_training`.
    #[arg(long)]
    pub allow_seen: bool,
    /// Also score the images under camera-like colour shifts (white balance, gamma,
    /// saturation, brightness, JPEG 70, blur, H/E strength): all of them, or a comma list such
    /// as wb-warm,jpeg-70. One whole-field pass per image and shift: use a release build.
    #[arg(long, value_name = "SHIFTS", num_args = 0..=1, default_missing_value = "all")]
    pub colour_shift: Option<String>,
}

/// How int8 activation ranges are calibrated.
#[derive(Debug, Clone, Args)]
pub struct CalibrationArgs {
    /// Training images the int8 activation ranges are measured on (taken in turn from each
    /// training patient).
    #[arg(long, default_value_t = 64)]
    pub calibration_images: usize,
    /// Range of each int8 activation: `minmax` (extremes seen) or `percentile` (--percentile
    /// of the values, ignoring rare outliers).
    #[arg(long, value_enum, default_value_t = CalibrationKind::Percentile)]
    pub calibration: CalibrationKind,
    /// With `--calibration percentile`: the percentile of each activation's values taken as
    /// its int8 range (values above it saturate).
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalibrationKind {
    Minmax,
    Percentile,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A `train --out` folder or its `checkpoint` subfolder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Numerics of the written file: int8 or f16 arithmetic, or f32 arithmetic with int8 or
    /// f16 stored weights (`-weights`).
    #[arg(long, value_enum, default_value_t = Precision::Int8Weights)]
    pub precision: Precision,
    /// The ONNX file to write; its model card goes beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// BreakHis folder: int8 calibrates on its training patients, and every variant is
    /// compared with f32 on its other patients (required for int8).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}
