//! histoscreen-edge: on-device breast histopathology screening.
//!
//! The library is shared with the trainer (`preprocess`, `card`, `model`) so that
//! training-time evaluation and field inference run the very same code.

pub mod card;
pub mod cli;
pub mod colour;
pub mod error;
pub mod field;
pub mod fsutil;
mod graph_patch;
pub mod latency;
pub mod live;
pub mod maxpool;
pub mod model;
pub mod paths;
pub mod preprocess;
pub mod profile;
pub mod run;
pub mod sharpness;
pub mod stdio;
mod threads;
pub mod timestamp;
pub mod variants;
pub mod web;
pub mod winograd;

pub use card::{InputSpec, Label, ModelCard, OutputSpec};
pub use cli::{run_cli, run_cli_to};
pub use error::EdgeError;
pub use model::{LoadOptions, Model, Prediction};
