//! What training leaves behind: one line per epoch, each fold's (or hold-out run's) record,
//! kept in the checkpoint, and the whole command's, which `report.json` holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::dataset::{Rejected, Summary};
use crate::eval::colour_shift::{ShiftSummary, ShiftTable};
use crate::eval::metrics::Metrics;
use crate::eval::score::Evaluation;
use crate::fit::config::TrainConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// On the selection patients; absent when training on everything.
    pub select_loss: Option<f64>,
    pub select: Option<Metrics>,
    pub seconds: f64,
}

/// One patient-disjoint run: fit on `split.train` minus the selection patients, choose the
/// epoch on the selection patients, score `split.test` through the exported ONNX.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldReport {
    pub fold: usize,
    pub train_patients: Vec<String>,
    pub select_patients: Vec<String>,
    pub test_patients: Vec<String>,
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    pub test: Option<Evaluation>,
    /// The test patients under camera-like colour shifts (`train --colour-shift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour_shift: Option<ShiftTable>,
}

/// Everything a `train` command did and measured, as `report.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub command: String,
    pub config: TrainConfig,
    pub split_seed: u64,
    pub val_fraction: f64,
    pub select_fraction: f64,
    pub folds: Option<usize>,
    pub data: Summary,
    pub rejected: Vec<Rejected>,
    pub pretrained: Option<String>,
    pub runs: Vec<FoldReport>,
    /// Mean and standard deviation over folds (or the single held-out run).
    pub summary: BTreeMap<String, (f64, f64)>,
    /// The runs' colour-shift tables combined (`train --colour-shift`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour_shift: Option<ShiftSummary>,
    pub exported_model_epochs: usize,
    pub exported_model_trained_on_patients: usize,
    pub seconds: f64,
}
