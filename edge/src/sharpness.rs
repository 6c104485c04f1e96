//! Focus / blank-field measure: variance of the Laplacian of a small grey copy.
//!
//! A moving stage, a defocused objective or an empty slide all give frames
//! without fine structure; the classifier would still output *some*
//! probability for them, and that must not raise an alarm. The Laplacian
//! responds to edges only, so its variance is near zero for blur and blank
//! glass and large for in-focus tissue. Downscaling first keeps it cheap
//! (~0.1 ms at 160 px wide) and makes it insensitive to sensor noise.

use image::RgbImage;

/// Width of the grey copy the measure is computed on.
pub const SHARPNESS_WIDTH: u32 = 160;

/// Default `--min-sharpness`. Calibrated on BreakHis 700x460 frames (see
/// tests/run_sharpness.rs): in-focus slides measured 345 at the lowest
/// (median ~2100); the same slides with a Gaussian defocus of sigma 6 px at
/// most 51, blank glass ~0. Other cameras and magnifications differ: the
/// event log's `sharpness` field is there to recalibrate.
pub const DEFAULT_MIN_SHARPNESS: f64 = 60.0;

/// Variance of the 4-neighbour Laplacian of `img` downscaled to
/// [`SHARPNESS_WIDTH`] pixels wide, on a 0..255 grey scale.
pub fn laplacian_variance(img: &RgbImage) -> f64 {
    let (grey, w, h) = downscaled_grey(img, SHARPNESS_WIDTH);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let mut sum = 0f64;
    let mut sum_sq = 0f64;
    let mut n = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = grey[y * w + x];
            let lap = grey[(y - 1) * w + x]
                + grey[(y + 1) * w + x]
                + grey[y * w + x - 1]
                + grey[y * w + x + 1]
                - 4.0 * c;
            let lap = f64::from(lap);
            sum += lap;
            sum_sq += lap * lap;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean).max(0.0)
}

/// Box-filter downscale to `target_w` wide (never upscales), Rec.601 luma.
/// Box averaging rather than point sampling so that the measure reflects the
/// image, not aliasing of pixel noise.
fn downscaled_grey(img: &RgbImage, target_w: u32) -> (Vec<f32>, usize, usize) {
    let (iw, ih) = img.dimensions();
    if iw == 0 || ih == 0 {
        return (Vec::new(), 0, 0);
    }
    let factor = (iw / target_w).max(1);
    let w = (iw / factor) as usize;
    let h = (ih / factor) as usize;
    let f = factor as usize;
    let raw = img.as_raw();
    let stride = iw as usize * 3;
    let mut out = vec![0f32; w * h];
    let norm = 1.0 / (f * f) as f32;
    for oy in 0..h {
        for ox in 0..w {
            let mut acc = 0f32;
            for dy in 0..f {
                let row = (oy * f + dy) * stride;
                for dx in 0..f {
                    let i = row + (ox * f + dx) * 3;
                    acc += 0.299 * f32::from(raw[i])
                        + 0.587 * f32::from(raw[i + 1])
                        + 0.114 * f32::from(raw[i + 2]);
                }
            }
            out[oy * w + ox] = acc * norm;
        }
    }
    (out, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn checker(w: u32, h: u32, cell: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            if ((x / cell) + (y / cell)) & 1 == 0 {
                Rgb([230, 120, 200])
            } else {
                Rgb([60, 20, 90])
            }
        })
    }

    #[test]
    fn blank_frame_has_zero_variance() {
        let blank = RgbImage::from_pixel(640, 480, Rgb([240, 235, 238]));
        assert_eq!(laplacian_variance(&blank), 0.0);
    }

    #[test]
    fn blur_lowers_the_measure_by_orders_of_magnitude() {
        let sharp = checker(640, 480, 16);
        let blurred = image::imageops::blur(&sharp, 8.0);
        let s = laplacian_variance(&sharp);
        let b = laplacian_variance(&blurred);
        assert!(s > 100.0, "sharp {s}");
        assert!(b * 50.0 < s, "sharp {s} blurred {b}");
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        assert_eq!(laplacian_variance(&RgbImage::new(0, 0)), 0.0);
        assert_eq!(laplacian_variance(&RgbImage::new(2, 2)), 0.0);
        let small = checker(40, 30, 3);
        assert!(laplacian_variance(&small) > 0.0);
    }
}
