//! Winograd convolutions (3x3 and 5x5, strided ones through space-to-depth), where tract's im2col products are slowest.

mod choice;
mod geometry;
mod op;
mod pass;
mod transform;

pub use choice::{ConvChoice, CONV_ENV};
pub use geometry::Geometry;
pub use op::WinogradConv;
pub use pass::{max_abs_diff, optimise, Candidate, LayerReport, LAYER_TOLERANCE};
pub use transform::Tile;
