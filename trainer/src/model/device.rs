//! The backend every command trains, calibrates and predicts on.

use burn::tensor::Device;

/// burn's CPU backend.
pub fn device() -> Device {
    Device::flex()
}
