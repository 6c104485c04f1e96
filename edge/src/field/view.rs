//! What of a frame is screened (the whole field or one centre tile), and the camera's scale.

use clap::{Args, ValueEnum};

use crate::error::EdgeError;
use crate::model::Model;

/// What of a frame the model looks at.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum View {
    /// Every tile of the whole frame at the model's scale, one dense pass; the score is the
    /// card's aggregate of the tile map (the default where the model has a dense form).
    Field,
    /// One tile from the middle of the frame (at the model's scale for whole-field models).
    Centre,
}

/// How frames are looked at: shared by `classify`, `demo` and `run`.
#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// field: screen the whole frame (default where the card has a whole-field spec);
    /// centre: one centre tile.
    #[arg(long, value_enum)]
    pub view: Option<View>,
    /// Micrometres of tissue per pixel of the input images (the camera at its objective).
    /// Default: the magnification in a BreakHis file name, else the model's own scale.
    #[arg(long, value_name = "UM")]
    pub um_per_px: Option<f32>,
}

impl ViewArgs {
    /// The view to use with `model`, refusing a field view it cannot do.
    pub fn resolve(&self, model: &Model) -> Result<View, EdgeError> {
        match self.view {
            Some(View::Field) => model.field().map(|_| View::Field),
            Some(View::Centre) => Ok(View::Centre),
            None if model.has_field() => Ok(View::Field),
            None => Ok(View::Centre),
        }
    }
}
