//! Training: the configuration, the loop, what each epoch and run leaves behind, and the
//! checkpoint a stopped run resumes from.

pub mod checkpoint;
pub mod config;
pub mod history;
pub mod train;
