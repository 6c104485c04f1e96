//! Winograd convolutions for 3x3 stride-1 layers, where tract's im2col products are slowest.

mod choice;
mod op;
mod pass;
mod threads;
mod transform;

pub use choice::{ConvChoice, CONV_ENV};
pub use op::{Geometry, WinogradConv};
pub use pass::{max_abs_diff, optimise, Candidate, LayerReport, LAYER_TOLERANCE};
pub use transform::Tile;
