//! Pooled features of every image, computed once with the frozen ImageNet trunk.
//!
//! With all five convolutions frozen (the default recipe) the trunk's output for a given input
//! never changes, yet running it is nearly all of a training step. So each image's centre view
//! (the device's input) and a fixed pool of augmented views are pushed through the trunk once,
//! for every fold at once, and the head then trains on the stored 256-wide rows: a 5-fold run
//! takes minutes instead of most of an hour, and the head can afford many more epochs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::augment::Augment;
use crate::images::{batch_tensor, LoadedImage};
use crate::model::{AlexNet, FEATURE_CHANNELS};

pub struct FeatureBank {
    index: HashMap<PathBuf, usize>,
    /// Augmented views per image; slot 0 of each image is its centre view.
    views: usize,
    /// `[image][1 + views][FEATURE_CHANNELS]`.
    data: Vec<f32>,
}

impl FeatureBank {
    /// Runs `trunk` over each image's centre view and `views` augmentations of it (seeded by
    /// `seed` and the image's position, so the bank is the same on every run).
    pub fn build(
        trunk: &AlexNet,
        images: &[LoadedImage],
        views: usize,
        seed: u64,
        batch: usize,
        device: &Device,
        progress: bool,
    ) -> Self {
        let started = Instant::now();
        let slots = 1 + views;
        let jobs: Vec<(usize, usize)> = (0..images.len())
            .flat_map(|i| (0..slots).map(move |v| (i, v)))
            .collect();
        let bar = if progress {
            let b = ProgressBar::new(jobs.len() as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "features [{bar:30}] {pos}/{len} views  {per_sec}  eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        let augment = Augment::default();
        let mut data = Vec::with_capacity(jobs.len() * FEATURE_CHANNELS);
        for chunk in jobs.chunks(batch.max(1)) {
            let crops: Vec<image::RgbImage> = chunk
                .par_iter()
                .map(|&(i, v)| {
                    if v == 0 {
                        images[i].eval_view.clone()
                    } else {
                        let s = seed ^ ((i * slots + v) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        augment.apply(&images[i].train_view, &mut StdRng::seed_from_u64(s))
                    }
                })
                .collect();
            let refs: Vec<&image::RgbImage> = crops.iter().collect();
            let pooled =
                AlexNet::pool_features(trunk.forward_features(batch_tensor(&refs, device)));
            data.extend(
                pooled
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32 features"),
            );
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        tracing::info!(
            "pooled features of {} images x {} views in {:.1} s",
            images.len(),
            slots,
            started.elapsed().as_secs_f64()
        );
        FeatureBank {
            index: images
                .iter()
                .enumerate()
                .map(|(i, x)| (x.sample.path.clone(), i))
                .collect(),
            views,
            data,
        }
    }

    pub fn views(&self) -> usize {
        self.views
    }

    fn row(&self, image: &LoadedImage, slot: usize) -> &[f32] {
        let i = *self
            .index
            .get(&image.sample.path)
            .expect("every training image is in the bank");
        let at = (i * (1 + self.views) + slot) * FEATURE_CHANNELS;
        &self.data[at..at + FEATURE_CHANNELS]
    }

    /// The device's view of `image`.
    pub fn centre(&self, image: &LoadedImage) -> &[f32] {
        self.row(image, 0)
    }

    /// Augmented view `v` (0-based, below [`Self::views`]) of `image`.
    pub fn augmented(&self, image: &LoadedImage, v: usize) -> &[f32] {
        self.row(image, 1 + v)
    }

    /// `[rows, 256]` tensor of the given rows.
    pub fn tensor<'a>(rows: impl Iterator<Item = &'a [f32]>, device: &Device) -> Tensor<2> {
        let data: Vec<f32> = rows.flatten().copied().collect();
        let n = data.len() / FEATURE_CHANNELS;
        Tensor::from_data(TensorData::new(data, [n, FEATURE_CHANNELS]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::model::Head;

    fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
        let v = t.into_data().try_to_vec::<f32>().unwrap();
        v.chunks(FEATURE_CHANNELS).map(<[f32]>::to_vec).collect()
    }

    #[test]
    fn rows_belong_to_their_image_and_view() {
        let ds = Dataset::scan(&crate::settings::default_data_dir(), &[]).unwrap();
        let samples: Vec<_> = ds.samples.iter().step_by(100).take(3).cloned().collect();
        let (images, rejected) = crate::images::load(&samples);
        assert!(rejected.is_empty() && images.len() == 3);
        let device = crate::train::device();
        let trunk = AlexNet::new(Head::Compact, &device);
        // A batch of 4 splits the 3 x 3 views across batches unevenly, as real runs do.
        let bank = FeatureBank::build(&trunk, &images, 2, 7, 4, &device, false);
        let views: Vec<&image::RgbImage> = images.iter().map(|x| &x.eval_view).collect();
        let direct = rows(AlexNet::pool_features(
            trunk.forward_features(batch_tensor(&views, &device)),
        ));
        for (img, want) in images.iter().zip(&direct) {
            let got = bank.centre(img);
            let diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-4,
                "{}: centre row off by {diff}",
                img.sample.path.display()
            );
            assert_ne!(
                bank.augmented(img, 0),
                got,
                "an augmented view is not the centre"
            );
            assert_ne!(bank.augmented(img, 0), bank.augmented(img, 1));
        }
        // Same seed, other batching: the same augmentations (up to float rounding).
        let again = FeatureBank::build(&trunk, &images, 2, 7, 3, &device, false);
        let (a, b) = (
            again.augmented(&images[2], 1),
            bank.augmented(&images[2], 1),
        );
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4));
    }
}
