//! Command-line interface of `histoscreen-train`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::{Freeze, Head};
use crate::train::Schedule;

#[derive(Debug, Parser)]
#[command(
    name = "histoscreen-train",
    version,
    about = "Fine-tune ImageNet AlexNet on BreakHis, evaluate on unseen patients, export ONNX"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only warnings and errors; no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train, report on held-out patients, export ONNX; checkpoints every epoch (--resume after Ctrl-C).
    Train(TrainArgs),
    /// Evaluate an exported model on a BreakHis folder through the edge runtime; prints JSON.
    Eval(EvalArgs),
    /// Download the BreakHis archive or torchvision's AlexNet weights (resumable, verified).
    Download(crate::download::DownloadArgs),
    /// Classify images with a training checkpoint, without exporting (a quick look).
    Predict(PredictArgs),
    /// Write a checkpoint's network as ONNX with f32, int8 or f16 weights, checked against f32.
    Export(crate::checkpoint_export::ExportArgs),
}

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
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Learning rate [default: 0.001 for the classic head (the seed), 0.01 for the compact
    /// head, whose few fresh weights learn too slowly at the seed's rate]
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay [default: 5e-4 for the classic head (the seed), 0.05 for the compact head,
    /// whose 33 k weights overfit 20 patients within a few epochs at the seed's value]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// Seeds the patient split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Head::Compact)]
    pub head: Head,
    /// Hidden width of the compact head; 0 makes it linear (global average pool, 256 -> 2).
    #[arg(long, default_value_t = crate::model::COMPACT_HIDDEN)]
    pub hidden: usize,
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
    /// With pretrained weights, the trunk frozen and the compact head: augmented views per image whose pooled
    /// features are computed once and reused every epoch (each step draws one of them).
    /// 0 augments afresh at every step, running the trunk each time (much slower).
    #[arg(long, default_value_t = 8)]
    pub feature_views: usize,
    /// Malignant probability at or above which an image is called malignant.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Half-width of the band around the threshold reported as uncertain on the device.
    #[arg(long, default_value_t = 0.1)]
    pub uncertain_band: f32,
    /// Continue the interrupted run whose checkpoint is in `--out` (same arguments required).
    #[arg(long)]
    pub resume: bool,
    /// Also write these precisions beside model.onnx (model-int8.onnx, model-f16.onnx, ...),
    /// each checked against f32 on patients its calibration never saw; comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub export: Vec<crate::checkpoint_export::Precision>,
    #[command(flatten)]
    pub calibration: crate::checkpoint_export::CalibrationArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A `train --out` folder or its `checkpoint` subfolder; the model is the best epoch so far.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Malignant probability at or above which an image is called malignant.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Exported model (its model card must sit beside it).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Also write one CSV row per image here.
    #[arg(long)]
    pub per_image: Option<PathBuf>,
}
