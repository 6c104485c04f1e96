//! Pooled features of every tile of every image, computed once with the frozen ImageNet trunk.
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

use crate::data::augment::Augment;
use crate::data::images::{batch_tensor, LoadedImage};
use crate::model::alexnet::{AlexNet, FEATURE_CHANNELS};
use histoscreen_edge::preprocess::INPUT_SIZE;
use image::RgbImage;

/// Tiles kept from each augmented field: enough variety per epoch, and the full BreakHis's
/// bank stays near 2 GB.
pub const TILES_PER_VIEW: usize = 32;

pub struct FeatureBank {
    index: HashMap<PathBuf, usize>,
    /// Augmented views per image; slot 0 of each image is its unaugmented field.
    views: usize,
    /// `(first row, rows)` of each image's slots, `[image][1 + views]`.
    spans: Vec<(usize, usize)>,
    /// Pooled tile rows of `FEATURE_CHANNELS` values.
    data: Vec<f32>,
}

/// Each tile's pooled features from the trunk's map `[C, H, W]`: the mean over every
/// `k x k` window (stride 1 on the map, the trunk's stride in pixels), row-major, as the
/// edge's dense pass pools it.
pub fn window_rows(map: &[f32], (c, h, w): (usize, usize, usize), k: usize) -> Vec<f32> {
    let (rows, cols) = (h + 1 - k, w + 1 - k);
    let mut out = vec![0f32; rows * cols * c];
    let norm = 1.0 / (k * k) as f32;
    for ch in 0..c {
        let plane = &map[ch * h * w..(ch + 1) * h * w];
        // Column sums over k rows, then a sliding sum along each row.
        for r in 0..rows {
            let col: Vec<f32> = (0..w)
                .map(|x| (r..r + k).map(|y| plane[y * w + x]).sum())
                .collect();
            let mut acc: f32 = col[..k].iter().sum();
            for cc in 0..cols {
                if cc > 0 {
                    acc += col[cc + k - 1] - col[cc - 1];
                }
                out[(r * cols + cc) * c + ch] = acc * norm;
            }
        }
    }
    out
}

/// Every tile's pooled features of a whole field (at the model's scale), row-major: the
/// trunk over the field, then [`window_rows`] with a `k`-cell window.
pub fn field_tile_rows(trunk: &AlexNet, field: &RgbImage, k: usize, device: &Device) -> Vec<f32> {
    let map = trunk.forward_features(batch_tensor(&[field], device));
    let [_, c, h, w] = map.dims();
    let values = map.into_data().try_to_vec::<f32>().expect("f32 features");
    window_rows(&values, (c, h, w), k)
}

/// Side of one tile's window on the trunk's last map (6 for AlexNet's 224 input).
pub fn tile_window(trunk: &AlexNet, device: &Device) -> usize {
    let probe = RgbImage::new(INPUT_SIZE, INPUT_SIZE);
    let [_, _, h, _] = trunk
        .forward_features(batch_tensor(&[&probe], device))
        .dims();
    h
}

impl FeatureBank {
    /// Runs `trunk` once over each image's whole field and over `views` augmentations of it
    /// (seeded by `seed` and the image's position, so the bank is the same on every run), and
    /// keeps every tile's pooled features (at most [`TILES_PER_VIEW`] of an augmented view).
    pub fn build(
        trunk: &AlexNet,
        images: &[LoadedImage],
        views: usize,
        seed: u64,
        augment: &Augment,
        device: &Device,
        progress: bool,
    ) -> Self {
        let started = Instant::now();
        let slots = 1 + views;
        let k = tile_window(trunk, device);
        let jobs: Vec<(usize, usize)> = (0..images.len())
            .flat_map(|i| (0..slots).map(move |v| (i, v)))
            .collect();
        let bar = if progress {
            let b = ProgressBar::new(jobs.len() as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "features [{bar:30}] {pos}/{len} fields  {per_sec}  eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        let mut data = Vec::new();
        let mut spans = Vec::with_capacity(jobs.len());
        // Fields differ in size, so each goes through the trunk alone; augmenting a few ahead
        // in parallel keeps both cores busy between trunk passes.
        for chunk in jobs.chunks(4) {
            let fields: Vec<(RgbImage, u64)> = chunk
                .par_iter()
                .map(|&(i, v)| {
                    let s = seed ^ ((i * slots + v) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    if v == 0 {
                        (images[i].field_view.clone(), s)
                    } else {
                        let mut rng = StdRng::seed_from_u64(s);
                        (augment.field(&images[i].field_view, &mut rng), s)
                    }
                })
                .collect();
            for (&(_, v), (field, s)) in chunk.iter().zip(fields) {
                let mut rows = field_tile_rows(trunk, &field, k, device);
                let n = rows.len() / FEATURE_CHANNELS;
                if v > 0 && n > TILES_PER_VIEW {
                    let mut rng = StdRng::seed_from_u64(s.rotate_left(17));
                    let keep = rand::seq::index::sample(&mut rng, n, TILES_PER_VIEW);
                    rows = keep
                        .iter()
                        .flat_map(|t| {
                            rows[t * FEATURE_CHANNELS..(t + 1) * FEATURE_CHANNELS].to_vec()
                        })
                        .collect();
                }
                spans.push((data.len() / FEATURE_CHANNELS, rows.len() / FEATURE_CHANNELS));
                data.extend(rows);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        tracing::info!(
            "pooled tile features of {} images x {} fields ({} tiles) in {:.1} s",
            images.len(),
            slots,
            data.len() / FEATURE_CHANNELS,
            started.elapsed().as_secs_f64()
        );
        FeatureBank {
            index: images
                .iter()
                .enumerate()
                .map(|(i, x)| (x.sample.path.clone(), i))
                .collect(),
            views,
            spans,
            data,
        }
    }

    pub fn views(&self) -> usize {
        self.views
    }

    fn rows(&self, image: &LoadedImage, slot: usize) -> &[f32] {
        let i = *self
            .index
            .get(&image.sample.path)
            .expect("every training image is in the bank");
        let (first, n) = self.spans[i * (1 + self.views) + slot];
        &self.data[first * FEATURE_CHANNELS..(first + n) * FEATURE_CHANNELS]
    }

    /// Every tile of the device's view of `image` (its whole field), row-major.
    pub fn centre(&self, image: &LoadedImage) -> &[f32] {
        self.rows(image, 0)
    }

    /// Tiles of augmented view `v` (0-based, below [`Self::views`]) of `image`.
    pub fn augmented(&self, image: &LoadedImage, v: usize) -> &[f32] {
        self.rows(image, 1 + v)
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
    use crate::data::dataset::Dataset;
    use crate::model::alexnet::Head;

    #[test]
    fn window_rows_average_each_window() {
        // 1 channel, 3x4 map, 2x2 windows: 2x3 tiles.
        let map: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let rows = window_rows(&map, (1, 3, 4), 2);
        assert_eq!(rows, vec![2.5, 3.5, 4.5, 6.5, 7.5, 8.5]);
        // 2 channels interleave per tile.
        let two: Vec<f32> = map
            .iter()
            .chain(map.iter().map(|_| &1.0))
            .copied()
            .collect();
        let rows = window_rows(&two, (2, 3, 4), 3);
        assert_eq!(rows, vec![5.0, 1.0, 6.0, 1.0]);
    }

    #[test]
    fn fields_become_tile_rows() {
        let ds = Dataset::scan(&crate::data::settings::default_data_dir(), &[100]).unwrap();
        let samples: Vec<_> = ds.samples.iter().step_by(100).take(2).cloned().collect();
        let (images, rejected) = crate::data::images::load(&samples);
        assert!(rejected.is_empty() && images.len() == 2);
        let device = crate::model::device::device();
        let trunk = AlexNet::new(Head::Compact, &device);
        assert_eq!(tile_window(&trunk, &device), 6);
        let bank = FeatureBank::build(&trunk, &images, 1, 7, &Augment::default(), &device, false);
        for img in &images {
            let (w, h) = img.field_view.dimensions();
            let (rows, cols) = histoscreen_edge::field::geometry::grid(w, h, 224, 32);
            assert_eq!(bank.centre(img).len(), rows * cols * FEATURE_CHANNELS);
            assert!(bank.augmented(img, 0).len() <= TILES_PER_VIEW * FEATURE_CHANNELS);
            assert_ne!(
                bank.augmented(img, 0),
                &bank.centre(img)[..bank.augmented(img, 0).len()]
            );
        }
        // The window of one whole 224 field is the tile model's global pool.
        let tile = &images[0].eval_view;
        let pooled = AlexNet::pool_features(trunk.forward_features(batch_tensor(&[tile], &device)))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let map = trunk.forward_features(batch_tensor(&[tile], &device));
        let [_, c, h, w] = map.dims();
        let rows = window_rows(&map.into_data().try_to_vec::<f32>().unwrap(), (c, h, w), 6);
        let d = rows
            .iter()
            .zip(&pooled)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "window pool vs global pool: {d}");
    }
}
