//! The tile probability map of one frame and the image score aggregated from it.

use serde::{Deserialize, Serialize};

/// How a frame's tile probabilities become one image score.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "k")]
pub enum Aggregate {
    /// Mean of every tile's malignant probability: calibrated like a single tile's.
    #[default]
    Mean,
    /// Mean of the `k` highest tile probabilities: more sensitive to a small focus, but
    /// shifted upwards against the threshold a single tile was calibrated on.
    TopK(usize),
}

impl Aggregate {
    /// One image score from tile scores; `None` for an empty map.
    pub fn apply(self, values: &[f32]) -> Option<f32> {
        if values.is_empty() {
            return None;
        }
        match self {
            Aggregate::Mean => Some(values.iter().sum::<f32>() / values.len() as f32),
            Aggregate::TopK(k) => {
                let mut v = values.to_vec();
                v.sort_by(|a, b| b.total_cmp(a));
                let k = k.clamp(1, v.len());
                Some(v[..k].iter().sum::<f32>() / k as f32)
            }
        }
    }

    pub fn describe(self) -> String {
        match self {
            Aggregate::Mean => "mean of tiles".into(),
            Aggregate::TopK(k) => format!("mean of top {k} tiles"),
        }
    }
}

/// Malignant probability per tile position, row-major.
///
/// Cell `(r, c)` is the tile whose top-left corner sits at `(c * stride, r * stride)` in the
/// frame *after* resampling to the model's scale, `tile` pixels square; in the original frame
/// multiply by `1 / scale` (`scale` = resampled size / original size).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProbMap {
    pub rows: usize,
    pub cols: usize,
    /// Tile step in model-scale pixels.
    pub stride: u32,
    /// Tile side in model-scale pixels.
    pub tile: u32,
    /// Resampled frame size over original frame size (same on both axes).
    pub scale: f32,
    /// `rows * cols` malignant probabilities.
    pub values: Vec<f32>,
}

impl ProbMap {
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.values[r * self.cols + c]
    }

    /// Centre of cell `(r, c)` in original-frame pixels `(x, y)`.
    pub fn cell_centre(&self, r: usize, c: usize) -> (f32, f32) {
        let half = self.tile as f32 / 2.0;
        (
            (c as f32 * self.stride as f32 + half) / self.scale,
            (r as f32 * self.stride as f32 + half) / self.scale,
        )
    }

    /// Side of one stride step in original-frame pixels.
    pub fn stride_px(&self) -> f32 {
        self.stride as f32 / self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_top_k() {
        let v = [0.1, 0.9, 0.5, 0.3];
        assert!((Aggregate::Mean.apply(&v).unwrap() - 0.45).abs() < 1e-6);
        assert!((Aggregate::TopK(2).apply(&v).unwrap() - 0.7).abs() < 1e-6);
        assert!((Aggregate::TopK(10).apply(&v).unwrap() - 0.45).abs() < 1e-6);
        assert_eq!(Aggregate::Mean.apply(&[]), None);
    }

    #[test]
    fn cells_map_back_to_frame_pixels() {
        let m = ProbMap {
            rows: 2,
            cols: 3,
            stride: 32,
            tile: 224,
            scale: 0.5,
            values: vec![0.0; 6],
        };
        // Resampled cell (1, 2) spans x 64..288, y 32..256; centre (176, 144); halved scale.
        assert_eq!(m.cell_centre(1, 2), (352.0, 288.0));
        assert_eq!(m.stride_px(), 64.0);
    }
}
