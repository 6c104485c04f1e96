//! Scoring exported models through the edge's runner, and the metrics of the BreakHis
//! protocol.

pub mod colour_shift;
pub mod metrics;
pub mod score;
pub mod seen;
