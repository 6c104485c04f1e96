//! Parsed arguments turned into the plain jobs the commands take, so that no command depends
//! on how clap spells a flag.

use crate::commands::eval::EvalJob;
use crate::commands::export::ExportJob;
use crate::commands::predict::PredictJob;
use crate::commands::train::TrainJob;
use crate::commands::DataSource;
use crate::data::settings;
use crate::export::calibrate::Calibration;
use crate::export::onnx::int8::RangeMethod;

use super::args::{
    CalibrationArgs, CalibrationKind, DataArgs, EvalArgs, ExportArgs, OnOff, PredictArgs, TrainArgs,
};

impl DataArgs {
    fn source(&self) -> DataSource {
        DataSource {
            dir: self.data.clone(),
            magnifications: self.magnification.clone(),
        }
    }
}

impl CalibrationArgs {
    fn calibration(&self) -> Calibration {
        Calibration {
            images: self.calibration_images,
            method: match self.calibration {
                CalibrationKind::Minmax => RangeMethod::MinMax,
                CalibrationKind::Percentile => RangeMethod::Percentile(self.percentile),
            },
        }
    }
}

impl TrainArgs {
    pub fn job(&self, progress: bool) -> TrainJob {
        TrainJob {
            data: self.data.source(),
            pretrained: (!self.no_pretrained).then(|| {
                self.pretrained
                    .clone()
                    .unwrap_or_else(settings::default_pretrained)
            }),
            out: self.out.clone(),
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            seed: self.seed,
            head: self.head,
            hidden: self.hidden,
            freeze: self.freeze,
            val_fraction: self.val_fraction,
            select_fraction: self.select_fraction,
            folds: self.folds,
            class_weighting: !self.no_class_weighting,
            augment: !self.no_augment,
            feature_views: self.feature_views,
            stain_norm: self.stain_norm == OnOff::On,
            colour_augment: self.colour_aug,
            colour_shifts: self.colour_shift.clone(),
            threshold: self.threshold,
            uncertain_band: self.uncertain_band,
            resume: self.resume,
            export: self.export.clone(),
            calibration: self.calibration.calibration(),
            progress,
        }
    }
}

impl EvalArgs {
    pub fn job(&self) -> EvalJob {
        EvalJob {
            model: self.model.clone(),
            data: self.data.source(),
            per_image: self.per_image.clone(),
            allow_seen: self.allow_seen,
            colour_shifts: self.colour_shift.clone(),
        }
    }
}

impl PredictArgs {
    pub fn job(&self) -> PredictJob {
        PredictJob {
            checkpoint: self.checkpoint.clone(),
            images: self.images.clone(),
            threshold: self.threshold,
            uncertain_band: self.uncertain_band,
        }
    }
}

impl ExportArgs {
    pub fn job(&self) -> ExportJob {
        ExportJob {
            checkpoint: self.checkpoint.clone(),
            precision: self.precision,
            out: self.out.clone(),
            data: self.data.clone(),
            calibration: self.calibration.calibration(),
        }
    }
}
