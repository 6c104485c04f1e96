//! Decoded images held in memory for training, and batching them into tensors.

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use histoscreen_edge::preprocess::{self, IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE};

use crate::dataset::{Rejected, Sample};

/// Shorter side of the cached training view: big enough for random crops, small enough that
/// the full BreakHis (7,909 images) fits in a workstation's memory.
pub const TRAIN_VIEW_SIDE: u32 = 256;

pub struct LoadedImage {
    pub sample: Sample,
    /// Source of augmented training crops.
    pub train_view: RgbImage,
    /// Exactly what the device feeds the network: the edge's resize and centre crop.
    pub eval_view: RgbImage,
}

/// Exactly what the device feeds the network: the edge's resize and centre crop.
pub fn eval_view(img: &RgbImage) -> RgbImage {
    preprocess::center_crop(
        &preprocess::resize_shorter_side(img, INPUT_SIZE),
        INPUT_SIZE,
    )
}

/// Decodes every sample in parallel; files that fail to decode are returned with the reason.
pub fn load(samples: &[Sample]) -> (Vec<LoadedImage>, Vec<Rejected>) {
    let results: Vec<Result<LoadedImage, Rejected>> = samples
        .par_iter()
        .map(|s| {
            let img = preprocess::load_image(&s.path).map_err(|e| Rejected {
                path: s.path.clone(),
                reason: e.to_string(),
            })?;
            let eval_view = eval_view(&img);
            let train_view = preprocess::resize_shorter_side(&img, TRAIN_VIEW_SIDE);
            Ok(LoadedImage {
                sample: s.clone(),
                train_view,
                eval_view,
            })
        })
        .collect();
    let mut ok = Vec::with_capacity(results.len());
    let mut rejected = Vec::new();
    for r in results {
        match r {
            Ok(x) => ok.push(x),
            Err(e) => rejected.push(e),
        }
    }
    (ok, rejected)
}

/// `[N, 3, 224, 224]` normalised exactly as on the device.
pub fn batch_tensor(views: &[&RgbImage], device: &Device) -> Tensor<4> {
    let side = INPUT_SIZE as usize;
    let per = 3 * side * side;
    let mut data = vec![0f32; per * views.len()];
    data.par_chunks_mut(per)
        .zip(views.par_iter())
        .for_each(|(out, img)| preprocess::normalize_into(img, IMAGENET_MEAN, IMAGENET_STD, out));
    Tensor::from_data(TensorData::new(data, [views.len(), 3, side, side]), device)
}
