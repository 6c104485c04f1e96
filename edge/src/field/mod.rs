//! Whole-field screening: a tile probability map over the whole frame at the model's scale.

pub mod dense;
pub mod geometry;
pub mod map;
pub mod overlay;
pub mod plans;
pub mod scale;
pub mod view;

pub use map::{Aggregate, ProbMap};
