//! BreakHis on disk and in memory: file names, patient splits, decoded images, augmentation,
//! default locations and the `download` of the data and the ImageNet weights.

pub mod augment;
pub mod dataset;
pub mod download;
pub mod images;
pub mod settings;
pub mod split;
