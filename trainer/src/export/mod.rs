//! From a trained network to the files the device loads: ONNX in each precision, int8
//! calibration, and the model card.

pub mod calibrate;
pub mod model_file;
pub mod onnx;
pub mod variants;
