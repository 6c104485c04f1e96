//! Colour: optical density, Macenko stain estimation and normalisation, the not-H&E gate, camera-like shifts.
//!
//! One implementation for training and the device: the trainer fits a stain reference on its
//! training images ([`macenko::fit_reference`]) and stores it in the model card; the edge
//! normalises to whatever the card says ([`macenko::Normaliser`], applied by
//! `preprocess::preprocess_stained` and `Model`), and gates every frame ([`gate::HeGate`]).
//! [`shifts`] holds the fixed camera-like colour shifts robustness is evaluated on.
//! docs/colour.md has the rationale and the measured figures.

pub mod gate;
pub mod linalg;
pub mod macenko;
pub mod od;
pub mod remix;
pub mod shifts;
pub mod synthetic;

pub use gate::{GateVerdict, HeGate};
pub use macenko::{fit_image, fit_reference, FitError, MacenkoParams, Normaliser, StainFit};
pub use remix::remix_stains;
pub use shifts::{apply_shift, Shift};
