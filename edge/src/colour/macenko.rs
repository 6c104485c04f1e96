//! Macenko stain estimation and normalisation (the torchstain numpy algorithm), and the pooled reference fit.
//!
//! For one image: optical density of every pixel; the pixels stained in every channel; the plane
//! of the two main directions of their density (eigenvectors of its covariance); the 1st and
//! 99th percentile angles in that plane as the haematoxylin and eosin vectors (H the one with
//! the larger red density); each pixel's concentrations by least squares; the 99th percentile
//! concentration of each stain. Normalising re-mixes the concentrations, scaled to the
//! reference's 99th percentiles, with the reference's vectors.
//!
//! Deviations from torchstain, both deliberate: the main eigenvector is oriented into the
//! positive octant (LAPACK leaves its sign to chance, and the wrong sign makes torchstain's
//! angles wrap around ±π), and a frame larger than [`MacenkoParams::max_pixels`] is estimated
//! from a fixed grid sample of its pixels (the re-mixing still covers every pixel).

// Index loops read as the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

use std::borrow::Cow;

use image::RgbImage;
use serde::Serialize;

use super::linalg::{angle_deg, column, percentile, pinv_3x2, symmetric_eigen};
use super::od::{self, od_of, od_table};
pub use super::od::{TORCHSTAIN_HE_REF, TORCHSTAIN_MAX_C_REF};
use crate::card::{StainProvenance, StainSpec};

/// Pixels a frame's stain estimate is computed from at most (a grid sample beyond it): a
/// 224x224 tile uses all of its 50,176.
pub const DEFAULT_MAX_PIXELS: usize = 1 << 16;
/// Fewest all-channel-stained pixels an estimate is made from.
pub const MIN_STAINED_PIXELS: usize = 64;
/// Pixels [`fit_reference`] takes from each training image by default: 359 BreakHis images
/// pool 1.5 million pixels (4.4 MB).
pub const REFERENCE_PIXELS_PER_IMAGE: usize = 4096;

/// How stains are estimated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MacenkoParams {
    /// Background intensity of the optical-density conversion.
    pub io: f64,
    /// Percentile (percent) of the plane angles taken as the stain directions.
    pub alpha: f64,
    /// Optical density every channel of a pixel must reach to take part in the directions.
    pub beta: f64,
    /// Estimate from a grid sample of at most this many pixels; 0: from every pixel.
    pub max_pixels: usize,
}

impl Default for MacenkoParams {
    /// torchstain's defaults (Io 240, alpha 1, beta 0.15), [`DEFAULT_MAX_PIXELS`].
    fn default() -> Self {
        MacenkoParams {
            io: od::DEFAULT_IO,
            alpha: od::DEFAULT_ALPHA,
            beta: od::DEFAULT_BETA,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl MacenkoParams {
    /// The parameters a card's stain reference was fitted with.
    pub fn from_spec(spec: &StainSpec) -> Self {
        MacenkoParams {
            io: spec.io,
            alpha: spec.alpha,
            beta: spec.beta,
            ..MacenkoParams::default()
        }
    }
}

/// One image's (or a pool's) stain estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StainFit {
    /// Unit stain vectors: rows R, G, B; columns H, E.
    pub he: [[f64; 2]; 3],
    /// 99th-percentile concentrations `[H, E]` over all the pixels used.
    pub max_c: [f64; 2],
    /// Covariance eigenvalues of the stained pixels' density, largest first.
    pub eigenvalues: [f64; 3],
    /// Pixels stained in every channel (the ones the directions come from).
    pub stained_pixels: usize,
    /// Pixels used.
    pub pixels: usize,
}

impl StainFit {
    /// The haematoxylin vector.
    pub fn h(&self) -> [f64; 3] {
        column(&self.he, 0)
    }

    /// The eosin vector.
    pub fn e(&self) -> [f64; 3] {
        column(&self.he, 1)
    }

    /// Angle between the two stain vectors, degrees.
    pub fn separation_deg(&self) -> f64 {
        angle_deg(self.h(), self.e())
    }

    /// Share of the density variance in the plane of the two main directions (two stains
    /// leave the third direction nearly empty).
    pub fn plane_fraction(&self) -> f64 {
        let total: f64 = self.eigenvalues.iter().sum();
        if total > 0.0 {
            (self.eigenvalues[0] + self.eigenvalues[1]) / total
        } else {
            0.0
        }
    }

    /// Angles of this estimate's H and E vectors to a reference's, degrees.
    pub fn angles_to(&self, reference: &[[f64; 2]; 3]) -> [f64; 2] {
        [
            angle_deg(self.h(), column(reference, 0)),
            angle_deg(self.e(), column(reference, 1)),
        ]
    }
}

/// Why no stain estimate could be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error(
        "too few stained pixels to estimate stains from ({stained} of {pixels}, need {MIN_STAINED_PIXELS})"
    )]
    TooFewStained { stained: usize, pixels: usize },
    #[error("no colour variation among the stained pixels (a flat frame)")]
    Flat,
    #[error("the two stain directions coincide or a stain is absent")]
    Degenerate,
}

/// The pixels of `img` on a regular grid: all of them when there are at most `max_pixels` (or
/// `max_pixels` is 0), else every `step`-th column of every `step`-th row, `step` the least
/// that brings the count under `max_pixels`. Deterministic.
pub fn sample_pixels(img: &RgbImage, max_pixels: usize) -> Vec<[u8; 3]> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let n = w * h;
    if max_pixels == 0 || n <= max_pixels {
        return raw.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    }
    let mut step = ((n as f64 / max_pixels as f64).sqrt().ceil() as usize).max(1);
    while w.div_ceil(step) * h.div_ceil(step) > max_pixels {
        step += 1;
    }
    let mut out = Vec::with_capacity(w.div_ceil(step) * h.div_ceil(step));
    for y in (0..h).step_by(step) {
        let row = &raw[y * w * 3..(y + 1) * w * 3];
        for x in (0..w).step_by(step) {
            out.push([row[x * 3], row[x * 3 + 1], row[x * 3 + 2]]);
        }
    }
    out
}

/// The Macenko estimate of `pixels` (every one of them; sample first for a bound).
pub fn fit_pixels(pixels: &[[u8; 3]], p: &MacenkoParams) -> Result<StainFit, FitError> {
    let table = od_table(p.io);
    // Stained pixels' density, and its mean and covariance (numpy.cov: ddof 1).
    let stained: Vec<[f64; 3]> = pixels
        .iter()
        .map(|&px| od_of(px, &table))
        .filter(|&o| od::stained_everywhere(o, p.beta))
        .collect();
    let n = stained.len();
    if n < MIN_STAINED_PIXELS {
        return Err(FitError::TooFewStained {
            stained: n,
            pixels: pixels.len(),
        });
    }
    let mut mean = [0f64; 3];
    for o in &stained {
        for c in 0..3 {
            mean[c] += o[c];
        }
    }
    mean = mean.map(|m| m / n as f64);
    let mut cov = [[0f64; 3]; 3];
    for o in &stained {
        let d = [o[0] - mean[0], o[1] - mean[1], o[2] - mean[2]];
        for i in 0..3 {
            for j in i..3 {
                cov[i][j] += d[i] * d[j];
            }
        }
    }
    for i in 0..3 {
        for j in i..3 {
            cov[i][j] /= (n - 1) as f64;
            cov[j][i] = cov[i][j];
        }
    }
    let trace = cov[0][0] + cov[1][1] + cov[2][2];
    if trace.is_nan() || trace <= 1e-10 {
        return Err(FitError::Flat);
    }
    let (values, vectors) = symmetric_eigen(cov);
    let mut e1 = vectors[0];
    let e2 = vectors[1];
    // Densities are positive, so their main direction points into the positive octant.
    if e1.iter().sum::<f64>() < 0.0 {
        e1 = e1.map(|v| -v);
    }
    let mut phi: Vec<f64> = stained
        .iter()
        .map(|o| {
            let t1 = o[0] * e1[0] + o[1] * e1[1] + o[2] * e1[2];
            let t2 = o[0] * e2[0] + o[1] * e2[1] + o[2] * e2[2];
            t2.atan2(t1)
        })
        .collect();
    let min_phi = percentile(&mut phi, p.alpha);
    let max_phi = percentile(&mut phi, 100.0 - p.alpha);
    let along = |a: f64| -> [f64; 3] {
        let (s, c) = a.sin_cos();
        [
            e1[0] * c + e2[0] * s,
            e1[1] * c + e2[1] * s,
            e1[2] * c + e2[2] * s,
        ]
    };
    let (v_min, v_max) = (along(min_phi), along(max_phi));
    // Haematoxylin absorbs more red than eosin does.
    let (h, e) = if v_min[0] > v_max[0] {
        (v_min, v_max)
    } else {
        (v_max, v_min)
    };
    let he = [[h[0], e[0]], [h[1], e[1]], [h[2], e[2]]];
    let pinv = pinv_3x2(&he).ok_or(FitError::Degenerate)?;
    let (mut ch, mut ce): (Vec<f64>, Vec<f64>) = pixels
        .iter()
        .map(|&px| {
            let o = od_of(px, &table);
            (
                pinv[0][0] * o[0] + pinv[0][1] * o[1] + pinv[0][2] * o[2],
                pinv[1][0] * o[0] + pinv[1][1] * o[1] + pinv[1][2] * o[2],
            )
        })
        .unzip();
    let max_c = [percentile(&mut ch, 99.0), percentile(&mut ce, 99.0)];
    if !max_c.iter().all(|c| *c > 1e-6 && c.is_finite()) {
        return Err(FitError::Degenerate);
    }
    Ok(StainFit {
        he,
        max_c,
        eigenvalues: values,
        stained_pixels: n,
        pixels: pixels.len(),
    })
}

/// The Macenko estimate of one image (a grid sample when it has more than `p.max_pixels`).
pub fn fit_image(img: &RgbImage, p: &MacenkoParams) -> Result<StainFit, FitError> {
    fit_pixels(&sample_pixels(img, p.max_pixels), p)
}

/// A stain reference for a model card, fitted on training images: a grid sample of at most
/// `pixels_per_image` pixels from each image, pooled, then one Macenko estimate of the pool (so
/// every image weighs about the same and memory stays at 3 bytes per pooled pixel).
///
/// The result has `normalise: false` and no patient count or source: the caller says whether
/// the model is trained on normalised images and what the images were.
pub fn fit_reference<I>(images: I, pixels_per_image: usize) -> Result<StainSpec, FitError>
where
    I: IntoIterator<Item = RgbImage>,
{
    let p = MacenkoParams::default();
    let mut pool = Vec::new();
    let mut count = 0usize;
    for img in images {
        pool.extend(sample_pixels(&img, pixels_per_image));
        count += 1;
    }
    let fit = fit_pixels(&pool, &MacenkoParams { max_pixels: 0, ..p })?;
    Ok(StainSpec {
        he: fit.he,
        max_c: fit.max_c,
        normalise: false,
        io: p.io,
        alpha: p.alpha,
        beta: p.beta,
        fitted_on: StainProvenance {
            images: count,
            patients: None,
            pixels: pool.len(),
            source: String::new(),
        },
    })
}

/// Macenko normalisation to one reference; cheap to build (one table), reusable across frames.
#[derive(Clone, Debug)]
pub struct Normaliser {
    he: [[f64; 2]; 3],
    max_c: [f64; 2],
    params: MacenkoParams,
    table: [f64; 256],
}

impl Normaliser {
    /// Normalise to `spec`'s reference, with the parameters it was fitted with.
    pub fn new(spec: &StainSpec) -> Self {
        Self::with_params(spec, MacenkoParams::from_spec(spec))
    }

    /// Normalise to `spec`'s reference with explicit estimation parameters.
    pub fn with_params(spec: &StainSpec, params: MacenkoParams) -> Self {
        Normaliser {
            he: spec.he,
            max_c: spec.max_c,
            params,
            table: od_table(params.io),
        }
    }

    /// The estimation parameters.
    pub fn params(&self) -> &MacenkoParams {
        &self.params
    }

    /// `img`'s stains estimated, then re-mixed with the reference's: torchstain's
    /// `normalize(I)` (its `Inorm`).
    pub fn normalise(&self, img: &RgbImage) -> Result<RgbImage, FitError> {
        let fit = fit_image(img, &self.params)?;
        self.apply_fit(img, &fit)
    }

    /// [`Normaliser::normalise`], or `img` itself when it has no stains to estimate (blank glass,
    /// a flat frame): there is nothing to normalise, and the gate refuses such frames anyway.
    pub fn normalise_or_keep<'a>(&self, img: &'a RgbImage) -> Cow<'a, RgbImage> {
        match self.normalise(img) {
            Ok(out) => Cow::Owned(out),
            Err(_) => Cow::Borrowed(img),
        }
    }

    /// Re-mix `img` from its estimate `fit` to the reference. Every pixel is
    /// `Io·exp(-HEref·C·maxCref/maxC)` with `C = pinv(HE)·OD`: one 3x3 matrix `M` maps density to
    /// density, and `exp(-Σ M_ck·OD_k) = Π exp(-M_ck·OD_k)` turns the exponentials into nine
    /// 256-entry tables, so a pixel costs nine multiplications.
    pub fn apply_fit(&self, img: &RgbImage, fit: &StainFit) -> Result<RgbImage, FitError> {
        let pinv = pinv_3x2(&fit.he).ok_or(FitError::Degenerate)?;
        let scale = [self.max_c[0] / fit.max_c[0], self.max_c[1] / fit.max_c[1]];
        let mut m = [[0f64; 3]; 3];
        for (c, row) in m.iter_mut().enumerate() {
            for (k, slot) in row.iter_mut().enumerate() {
                *slot =
                    self.he[c][0] * scale[0] * pinv[0][k] + self.he[c][1] * scale[1] * pinv[1][k];
            }
        }
        // tables[c][k][v] = exp(-M[c][k]·OD(v)); exponents clamped so products stay finite.
        let mut tables = vec![[[0f64; 256]; 3]; 3];
        for c in 0..3 {
            for k in 0..3 {
                for v in 0..256 {
                    tables[c][k][v] = (-(m[c][k] * self.table[v]).clamp(-200.0, 200.0)).exp();
                }
            }
        }
        let io = self.params.io;
        let mut out = img.clone();
        for px in out.as_mut().chunks_exact_mut(3) {
            let (r, g, b) = (px[0] as usize, px[1] as usize, px[2] as usize);
            for (c, t) in tables.iter().enumerate() {
                let v = io * t[0][r] * t[1][g] * t[2][b];
                px[c] = v.min(255.0) as u8;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colour::synthetic::synthetic_he;

    #[test]
    fn recovers_the_stains_an_image_was_mixed_from() {
        let img = synthetic_he(160, 120, 7, &TORCHSTAIN_HE_REF);
        let fit = fit_image(&img, &MacenkoParams::default()).unwrap();
        let [h, e] = fit.angles_to(&TORCHSTAIN_HE_REF);
        // Quantisation to 8 bits and the 1st/99th percentile spread cost a few degrees.
        assert!(h < 6.0 && e < 6.0, "H {h:.2}°, E {e:.2}°");
        assert!(fit.plane_fraction() > 0.97, "{}", fit.plane_fraction());
    }

    #[test]
    fn grid_sample_is_bounded_and_deterministic() {
        let img = synthetic_he(700, 460, 3, &TORCHSTAIN_HE_REF);
        let a = sample_pixels(&img, 1000);
        assert!(a.len() <= 1000 && a.len() > 500, "{}", a.len());
        assert_eq!(a, sample_pixels(&img, 1000));
        assert_eq!(sample_pixels(&img, 0).len(), 700 * 460);
    }

    #[test]
    fn flat_and_empty_frames_have_no_estimate() {
        let p = MacenkoParams::default();
        let flat = RgbImage::from_pixel(64, 64, image::Rgb([150, 60, 140]));
        assert_eq!(fit_image(&flat, &p), Err(FitError::Flat));
        let glass = RgbImage::from_pixel(64, 64, image::Rgb([245, 245, 245]));
        assert!(matches!(
            fit_image(&glass, &p),
            Err(FitError::TooFewStained { stained: 0, .. })
        ));
        let n = Normaliser::new(&StainSpec::torchstain_default());
        assert!(matches!(n.normalise_or_keep(&glass), Cow::Borrowed(_)));
    }

    #[test]
    fn normalising_to_its_own_estimate_changes_little() {
        let img = synthetic_he(128, 128, 11, &TORCHSTAIN_HE_REF);
        let fit = fit_image(&img, &MacenkoParams::default()).unwrap();
        let spec = StainSpec {
            he: fit.he,
            max_c: fit.max_c,
            ..StainSpec::torchstain_default()
        };
        let out = Normaliser::new(&spec).normalise(&img).unwrap();
        let mad: f64 = img
            .as_raw()
            .iter()
            .zip(out.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / img.as_raw().len() as f64;
        // Truncation to u8 alone costs 0.5 on average; the rest is off-plane density.
        assert!(mad < 2.0, "mean abs difference {mad}");
    }
}
