//! Frame scoring behind a small trait, so the loop can be driven by the real
//! tract model, a tiled model, or a scripted fake in tests.

use std::time::Instant;

use anyhow::{bail, Result};
use image::RgbImage;

use super::event_log::TileMap;
use crate::colour::gate::GateVerdict;
use crate::field::map::ProbMap;
use crate::model::Model;

/// Scores for one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameScore {
    /// What the decision uses: the frame's probability, or with tiles the
    /// maximum over tiles (one malignant region anywhere in view counts).
    pub p_malignant: f32,
    /// `[benign, malignant]`; with tiles, the mean over tiles.
    pub probs: [f32; 2],
    pub tiles: Option<TileMap>,
    /// The whole-field probability map, aligned to the frame (whole-field view only).
    pub map: Option<ProbMap>,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
}

/// Anything that turns a frame into scores.
pub trait Classifier {
    fn classify_frame(&mut self, img: &RgbImage) -> Result<FrameScore>;

    /// Whether the frame is H&E tissue at all, by the model card's gate; None where there is no
    /// model to ask (scripted scores).
    fn gate(&self, _img: &RgbImage) -> Option<GateVerdict> {
        None
    }
}

/// The centre view of the frame, exactly as `classify --view centre` does for single images.
pub struct WholeFrame<'m> {
    pub model: &'m Model,
    /// The camera's micrometres per pixel (None: frames are at the model's scale).
    pub um_per_px: Option<f32>,
}

impl Classifier for WholeFrame<'_> {
    fn gate(&self, img: &RgbImage) -> Option<GateVerdict> {
        Some(self.model.gate(img))
    }

    fn classify_frame(&mut self, img: &RgbImage) -> Result<FrameScore> {
        let p = self.model.classify_at(img, self.um_per_px)?;
        Ok(FrameScore {
            p_malignant: p.p_malignant,
            probs: p.probs,
            tiles: None,
            map: None,
            preprocess_ms: p.preprocess_ms,
            infer_ms: p.infer_ms,
        })
    }
}

/// The whole frame at the model's scale in one dense pass, decided on the card's aggregate of
/// the tile map: what `classify` does by default.
pub struct WholeField<'m> {
    pub model: &'m Model,
    pub um_per_px: Option<f32>,
}

impl<'m> WholeField<'m> {
    pub fn new(model: &'m Model, um_per_px: Option<f32>) -> Self {
        WholeField { model, um_per_px }
    }
}

impl Classifier for WholeField<'_> {
    fn gate(&self, img: &RgbImage) -> Option<GateVerdict> {
        Some(self.model.gate(img))
    }

    fn classify_frame(&mut self, img: &RgbImage) -> Result<FrameScore> {
        let f = self.model.screen(img, self.um_per_px)?;
        let values = &f.map.values;
        let n = values.len().max(1) as f32;
        Ok(FrameScore {
            p_malignant: f.p_malignant,
            probs: [1.0 - f.p_malignant, f.p_malignant],
            tiles: Some(TileMap {
                cols: f.map.cols as u32,
                rows: f.map.rows as u32,
                p_malignant: values.clone(),
                max: values.iter().copied().fold(0.0f32, f32::max),
                mean: values.iter().sum::<f32>() / n,
            }),
            // The loop keeps the map with its frame; an overlay is drawn only when someone asks
            // (a saved malignant frame, the status page), since drawing costs more than keeping.
            map: Some(f.map),
            preprocess_ms: f.preprocess_ms,
            infer_ms: f.infer_ms,
        })
    }
}

/// Where tiles of `tile` px go on a `width` x `height` frame: evenly spread,
/// overlapping where needed, so every pixel is covered and no tile hangs
/// over the edge (a zero-padded border would look like blank glass).
pub fn tile_origins(width: u32, height: u32, tile: u32) -> (u32, u32, Vec<(u32, u32)>) {
    let axis = |len: u32| -> Vec<u32> {
        if len <= tile {
            return vec![0];
        }
        let n = len.div_ceil(tile);
        let span = len - tile;
        (0..n)
            .map(|i| {
                ((u64::from(span) * u64::from(i) + u64::from(n - 1) / 2) / u64::from(n - 1)) as u32
            })
            .collect()
    };
    let xs = axis(width);
    let ys = axis(height);
    let origins = ys
        .iter()
        .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
        .collect();
    (xs.len() as u32, ys.len() as u32, origins)
}

/// The frame cut into tiles, all of them in one `predict_batch` call.
pub struct Tiled<'m> {
    pub model: &'m Model,
    /// Tile side in frame pixels; each tile is then scaled to the model input.
    pub tile: u32,
    nchw: Vec<f32>,
}

impl<'m> Tiled<'m> {
    pub fn new(model: &'m Model, tile: u32) -> Result<Self> {
        if tile < 16 {
            bail!("--tile-size {tile} is too small (16 px at least)");
        }
        Ok(Tiled {
            model,
            tile,
            nchw: Vec::new(),
        })
    }
}

impl Classifier for Tiled<'_> {
    fn gate(&self, img: &RgbImage) -> Option<GateVerdict> {
        Some(self.model.gate(img))
    }

    fn classify_frame(&mut self, img: &RgbImage) -> Result<FrameScore> {
        let t0 = Instant::now();
        let (cols, rows, origins) = tile_origins(img.width(), img.height(), self.tile);
        let per = self.model.image_len();
        // Reused across frames: a multi-hour run must not churn the allocator.
        self.nchw.resize(per * origins.len(), 0.0);
        for (&(x, y), out) in origins.iter().zip(self.nchw.chunks_exact_mut(per)) {
            let w = self.tile.min(img.width());
            let h = self.tile.min(img.height());
            let tile = image::imageops::crop_imm(img, x, y, w, h).to_image();
            self.model.preprocess_into(&tile, out);
        }
        let preprocess_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let probs = self.model.predict_batch(&self.nchw, origins.len())?;
        let infer_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(score_from_tiles(
            cols,
            rows,
            &probs,
            preprocess_ms,
            infer_ms,
        ))
    }
}

/// Combine per-tile probabilities into one frame score.
pub fn score_from_tiles(
    cols: u32,
    rows: u32,
    probs: &[[f32; 2]],
    preprocess_ms: f64,
    infer_ms: f64,
) -> FrameScore {
    let n = probs.len().max(1) as f32;
    let p: Vec<f32> = probs.iter().map(|pr| pr[1]).collect();
    let max = p.iter().copied().fold(0.0f32, f32::max);
    let mean = p.iter().sum::<f32>() / n;
    let mean_benign = probs.iter().map(|pr| pr[0]).sum::<f32>() / n;
    FrameScore {
        p_malignant: max,
        probs: [mean_benign, mean],
        tiles: Some(TileMap {
            cols,
            rows,
            p_malignant: p,
            max,
            mean,
        }),
        map: None,
        preprocess_ms,
        infer_ms,
    }
}

/// Scripted scores, cycled frame by frame. For tests and dry runs of the
/// signal wiring (hidden `--fake-scores`); it never looks at the pixels.
pub struct Scripted {
    scores: Vec<f32>,
    next: usize,
}

impl Scripted {
    pub fn new(scores: Vec<f32>) -> Result<Self> {
        if scores.is_empty() || scores.iter().any(|p| !(0.0..=1.0).contains(p)) {
            bail!("--fake-scores needs probabilities in [0, 1]");
        }
        Ok(Scripted { scores, next: 0 })
    }

    pub fn parse(list: &str) -> Result<Self> {
        let scores: Result<Vec<f32>, _> =
            list.split(',').map(|s| s.trim().parse::<f32>()).collect();
        match scores {
            Ok(s) => Self::new(s),
            Err(e) => bail!("--fake-scores {list:?}: {e}"),
        }
    }
}

impl Classifier for Scripted {
    fn classify_frame(&mut self, _img: &RgbImage) -> Result<FrameScore> {
        let p = self.scores[self.next % self.scores.len()];
        self.next += 1;
        Ok(FrameScore {
            p_malignant: p,
            probs: [1.0 - p, p],
            tiles: None,
            map: None,
            preprocess_ms: 0.0,
            infer_ms: 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_frame_without_overhang() {
        let (cols, rows, o) = tile_origins(700, 460, 224);
        assert_eq!((cols, rows), (4, 3));
        assert_eq!(o.len(), 12);
        let xs: Vec<u32> = o.iter().take(4).map(|p| p.0).collect();
        assert_eq!(xs, vec![0, 159, 317, 476]);
        assert!(o.iter().all(|&(x, y)| x + 224 <= 700 && y + 224 <= 460));
        assert_eq!(o.last(), Some(&(476, 236)));
    }

    #[test]
    fn exact_multiples_do_not_overlap_and_small_frames_get_one_tile() {
        let (_, _, o) = tile_origins(448, 224, 224);
        assert_eq!(o, vec![(0, 0), (224, 0)]);
        let (c, r, o) = tile_origins(100, 80, 224);
        assert_eq!((c, r, o), (1, 1, vec![(0, 0)]));
    }

    #[test]
    fn tile_scores_use_max_for_the_decision_and_keep_the_map() {
        let s = score_from_tiles(2, 1, &[[0.9, 0.1], [0.3, 0.7]], 1.0, 2.0);
        assert_eq!(s.p_malignant, 0.7);
        assert!((s.probs[1] - 0.4).abs() < 1e-6 && (s.probs[0] - 0.6).abs() < 1e-6);
        let map = s.tiles.unwrap();
        assert_eq!(map.p_malignant, vec![0.1, 0.7]);
        assert_eq!((map.cols, map.rows, map.max), (2, 1, 0.7));
    }

    #[test]
    fn scripted_scores_cycle() {
        let mut s = Scripted::parse("0.1, 0.9").unwrap();
        let img = RgbImage::new(1, 1);
        let got: Vec<f32> = (0..3)
            .map(|_| s.classify_frame(&img).unwrap().p_malignant)
            .collect();
        assert_eq!(got, vec![0.1, 0.9, 0.1]);
        assert!(Scripted::parse("0.1,x").is_err());
        assert!(Scripted::parse("1.5").is_err());
    }
}
