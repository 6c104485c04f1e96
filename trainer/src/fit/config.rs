//! What a training run is asked to do: the recipe and its learning-rate schedule.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::data::augment::ColourAugment;
use crate::model::alexnet::{Freeze, Head};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Constant learning rate.
    Constant,
    /// Learning rate times 0.1 at 2/3 of the epochs.
    Step,
    /// Cosine decay to zero.
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub seed: u64,
    pub head: Head,
    /// Hidden width of the compact head (0: linear).
    #[serde(default)]
    pub hidden: usize,
    pub freeze: Freeze,
    pub class_weighting: bool,
    pub augment: bool,
    /// Augmented views per image whose pooled features are computed once (frozen trunk,
    /// compact head); 0 augments every step through the trunk instead.
    #[serde(default)]
    pub feature_views: usize,
    /// Colour augmentation of the training views.
    #[serde(default)]
    pub colour_augment: ColourAugment,
    /// Macenko-normalise every image to a stain reference fitted on the run's training
    /// patients (each fold its own), as the edge then does on the device.
    #[serde(default)]
    pub stain_norm: bool,
    pub pretrained: Option<PathBuf>,
}

impl TrainConfig {
    /// Whether the head trains on stored trunk features ([`FeatureBank`](crate::model::feature_bank::FeatureBank)): only a frozen trunk
    /// from a weights file gives every run the same features (a random one is drawn per run).
    pub fn stores_features(&self) -> bool {
        self.freeze == Freeze::Features
            && self.head == Head::Compact
            && self.feature_views > 0
            && self.pretrained.is_some()
    }

    /// The training views' augmentation.
    pub fn augmentation(&self) -> crate::data::augment::Augment {
        crate::data::augment::Augment::with_colour(self.colour_augment)
    }

    /// The learning rate of 0-based `epoch` under the schedule.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step => {
                if epoch >= self.epochs * 2 / 3 {
                    self.lr * 0.1
                } else {
                    self.lr
                }
            }
            Schedule::Cosine => {
                0.5 * self.lr
                    * (1.0 + (std::f64::consts::PI * epoch as f64 / self.epochs as f64).cos())
            }
        }
    }
}
