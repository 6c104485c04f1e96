//! Malignant probabilities from a burn network: per tile in batches, or over a whole field
//! as the edge's dense pass scores it.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::data::images::batch_tensor;
use crate::model::alexnet::{AlexNet, FEATURE_CHANNELS};
use crate::model::feature_bank::{field_tile_rows, FeatureBank};

/// Malignant probabilities (softmax column 1) of a batch of logits.
pub fn malignant_probs(logits: Tensor<2>) -> Vec<f32> {
    let probs: Vec<f32> = softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 probabilities");
    probs.chunks(2).map(|p| p[1]).collect()
}

/// Whole-field malignant probability of an image already at the model's scale: the mean over
/// every tile of the trunk's map, as the edge's dense pass scores it (compact head only; `k`
/// from [`tile_window`](crate::model::feature_bank::tile_window)).
pub fn predict_field(model: &AlexNet, field: &image::RgbImage, k: usize, device: &Device) -> f32 {
    let rows = field_tile_rows(model, field, k, device);
    let p = malignant_probs(
        model.forward_compact(FeatureBank::tensor(rows.chunks(FEATURE_CHANNELS), device)),
    );
    p.iter().sum::<f32>() / p.len().max(1) as f32
}

/// Malignant probabilities of `views` with an inference network, in batches.
pub fn predict(
    model: &AlexNet,
    views: &[&image::RgbImage],
    batch: usize,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(views.len());
    for chunk in views.chunks(batch.max(1)) {
        out.extend(malignant_probs(model.forward(batch_tensor(chunk, device))));
    }
    out
}
