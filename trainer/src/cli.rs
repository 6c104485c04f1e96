//! Command-line interface of `histoscreen-train`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::{Freeze, Head};
use crate::train::Schedule;

/// `train`'s decision rule unless told otherwise; `predict` labels with it when no card says.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
pub const DEFAULT_UNCERTAIN_BAND: f32 = 0.1;

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
    #[arg(long, default_value_t = crate::model::COMPACT_HIDDEN)]
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
}

/// A mistake in how the command was called (exit status 2, as clap's own usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every subcommand, nested ones included, explains itself in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        let mut stack = vec![(String::new(), super::Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            stack.extend(cmd.get_subcommands().map(|c| (path.clone(), c.clone())));
        }
        assert!(missing.is_empty(), "no help text: {}", missing.join(", "));
    }
}
