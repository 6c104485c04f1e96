//! Decoded images held in memory for training, and batching them into tensors.

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use histoscreen_edge::colour::Normaliser;
use histoscreen_edge::field::scale;
use histoscreen_edge::preprocess::{self, IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE};

use crate::data::dataset::{Rejected, Sample};

/// The scale models are trained at: BreakHis 100X, the magnification of nearly every shared
/// image, so their 224-pixel tiles are 44 um of tissue. Other magnifications are resampled to it.
pub const MODEL_UM_PER_PX: f32 =
    scale::BREAKHIS_PIXEL_UM / (100.0 / scale::EYEPIECE * scale::BREAKHIS_RELAY);

pub struct LoadedImage {
    pub sample: Sample,
    /// The whole image at the model's scale: what the dense pass screens, and the source of
    /// augmented training views.
    pub field_view: RgbImage,
    /// The centre tile of the field view: the single-tile view of the same frame.
    pub eval_view: RgbImage,
}

/// A BreakHis image at `magnification` resampled to the model's scale; `None` when it is then
/// smaller than one tile (400X fields are 175x115 pixels at 100X's scale).
pub fn field_view(img: &RgbImage, magnification: u32) -> Result<RgbImage, String> {
    let factor = scale::resample_factor(scale::breakhis_um_per_px(magnification), MODEL_UM_PER_PX)?;
    let (w, h) = scale::resampled_size(img.width(), img.height(), factor);
    if w < INPUT_SIZE || h < INPUT_SIZE {
        return Err(format!(
            "{w}x{h} at the model's scale ({magnification}X resampled to 100X), smaller than one \
             {INPUT_SIZE}x{INPUT_SIZE} tile"
        ));
    }
    Ok(if (w, h) == img.dimensions() {
        img.clone()
    } else {
        preprocess::resize_exact(img, w, h)
    })
}

/// The centre tile of an image already at the model's scale.
pub fn eval_view(field: &RgbImage) -> RgbImage {
    preprocess::center_crop(field, INPUT_SIZE)
}

/// Decodes every sample in parallel; files that fail to decode, or are smaller than one tile
/// at the model's scale, are returned with the reason.
/// `image` with both views Macenko-normalised to `stain` the way the edge does it: the whole
/// field at the model's scale, and the centre tile after cropping.
pub fn stain_normalised(image: &LoadedImage, stain: &Normaliser) -> LoadedImage {
    LoadedImage {
        sample: image.sample.clone(),
        field_view: preprocess::stain_normalised(&image.field_view, Some(stain)).into_owned(),
        eval_view: preprocess::stain_normalised(&image.eval_view, Some(stain)).into_owned(),
    }
}

/// [`stain_normalised`] of every image, in parallel.
pub fn all_stain_normalised(images: &[&LoadedImage], stain: &Normaliser) -> Vec<LoadedImage> {
    images
        .par_iter()
        .map(|x| stain_normalised(x, stain))
        .collect()
}

pub fn load(samples: &[Sample]) -> (Vec<LoadedImage>, Vec<Rejected>) {
    let results: Vec<Result<LoadedImage, Rejected>> = samples
        .par_iter()
        .map(|s| {
            let reject = |reason: String| Rejected {
                path: s.path.clone(),
                reason,
            };
            let img = preprocess::load_image(&s.path).map_err(|e| reject(e.to_string()))?;
            let field_view = field_view(&img, s.magnification).map_err(reject)?;
            Ok(LoadedImage {
                sample: s.clone(),
                eval_view: eval_view(&field_view),
                field_view,
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

/// `[N, 3, H, W]` normalised exactly as on the device; every view must share one size.
pub fn batch_tensor(views: &[&RgbImage], device: &Device) -> Tensor<4> {
    let (w, h) = views
        .first()
        .map_or((INPUT_SIZE, INPUT_SIZE), |v| v.dimensions());
    assert!(
        views.iter().all(|v| v.dimensions() == (w, h)),
        "views in one batch share a size"
    );
    let per = 3 * (w * h) as usize;
    let mut data = vec![0f32; per * views.len()];
    data.par_chunks_mut(per)
        .zip(views.par_iter())
        .for_each(|(out, img)| preprocess::normalize_into(img, IMAGENET_MEAN, IMAGENET_STD, out));
    Tensor::from_data(
        TensorData::new(data, [views.len(), 3, h as usize, w as usize]),
        device,
    )
}
