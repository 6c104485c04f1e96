//! Training-time augmentation. Everything ends in the edge's own resize and normalisation, so
//! the only difference between a training input and a device input is the augmentation itself.

use image::imageops;
use image::RgbImage;
use rand::Rng;

use histoscreen_edge::colour::od::TORCHSTAIN_HE_REF;
use histoscreen_edge::colour::remix_stains;
use histoscreen_edge::preprocess::{self, INPUT_SIZE};

/// Which colour augmentation a run trains with.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ColourAugment {
    /// Brightness, contrast and saturation within 15 %, per-channel gains within 5 %.
    #[default]
    Standard,
    /// The standard jitter after haematoxylin and eosin strength each scaled within 30 % and a
    /// white-balance gain within 10 % per channel, both in optical-density space.
    Od,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Augment {
    /// Scale jitter: crops (and whole fields) are resized by up to this fraction either way.
    /// Images arrive at the model's scale and the device resamples frames to it, so only the
    /// error of a camera's stated micrometres per pixel is left to cover.
    pub scale_jitter: f32,
    /// Largest small-angle rotation, degrees (on top of multiples of 90).
    pub max_angle: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    /// Per-channel gain: a crude stand-in for stain intensity differences between labs.
    pub stain: f32,
    /// Haematoxylin and eosin concentrations each scaled by up to this fraction either way,
    /// unmixed with torchstain's reference vectors as the evaluation's H/E shifts are.
    pub od_stain: f32,
    /// Per-channel optical-density offset of up to this much either way: a white-balance gain
    /// of up to `exp(od_bias)`.
    pub od_bias: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            scale_jitter: 0.1,
            max_angle: 15.0,
            brightness: 0.15,
            contrast: 0.15,
            saturation: 0.15,
            stain: 0.05,
            od_stain: 0.0,
            od_bias: 0.0,
        }
    }
}

impl Augment {
    /// The default geometry with the colour augmentation `colour`.
    pub fn with_colour(colour: ColourAugment) -> Self {
        let (od_stain, od_bias) = match colour {
            ColourAugment::Standard => (0.0, 0.0),
            ColourAugment::Od => (0.3, 1.1f32.ln()),
        };
        Augment {
            od_stain,
            od_bias,
            ..Augment::default()
        }
    }

    fn zoom(&self, rng: &mut impl Rng) -> f32 {
        if self.scale_jitter > 0.0 {
            rng.random_range(1.0 - self.scale_jitter..=1.0 + self.scale_jitter)
        } else {
            1.0
        }
    }

    /// A whole field (at the model's scale) rescaled within the jitter, turned by a multiple
    /// of 90 degrees, flipped and colour-jittered: a view for the dense trunk pass.
    pub fn field(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let z = self.zoom(rng);
        let (w, h) = img.dimensions();
        let size = |v: u32| ((v as f32 * z).round() as u32).max(INPUT_SIZE);
        let mut out = preprocess::resize_exact(img, size(w), size(h));
        out = turn_and_flip(out, rng);
        self.jitter_colour(&mut out, rng);
        out
    }

    /// A random 224x224 tile of `img` (at the model's scale), within the scale jitter.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let (w, h) = img.dimensions();
        let short = w.min(h) as f32;
        let side = (INPUT_SIZE as f32 * self.zoom(rng)).min(short);
        let aspect: f32 = rng
            .random_range((3.0f32 / 4.0).ln()..=(4.0f32 / 3.0).ln())
            .exp();
        let cw = ((side * aspect.sqrt()).round() as u32).clamp(1, w);
        let ch = ((side / aspect.sqrt()).round() as u32).clamp(1, h);
        let x = rng.random_range(0..=w - cw);
        let y = rng.random_range(0..=h - ch);
        let crop = imageops::crop_imm(img, x, y, cw, ch).to_image();
        let mut out = preprocess::resize_exact(&crop, INPUT_SIZE, INPUT_SIZE);
        if self.max_angle > 0.0 {
            out = rotate_reflect(&out, rng.random_range(-self.max_angle..=self.max_angle));
        }
        out = turn_and_flip(out, rng);
        if rng.random_bool(0.5) {
            imageops::flip_vertical_in_place(&mut out);
        }
        self.jitter_colour(&mut out, rng);
        out
    }

    fn jitter_colour(&self, img: &mut RgbImage, rng: &mut impl Rng) {
        // Staining first (the slide), then the camera.
        if self.od_stain > 0.0 || self.od_bias > 0.0 {
            let mut draw = |a: f32| {
                if a > 0.0 {
                    rng.random_range(-a..=a) as f64
                } else {
                    0.0
                }
            };
            let factors = [1.0 + draw(self.od_stain), 1.0 + draw(self.od_stain)];
            let bias = [draw(self.od_bias), draw(self.od_bias), draw(self.od_bias)];
            *img = remix_stains(img, &TORCHSTAIN_HE_REF, factors, bias);
        }
        let mut factor = |a: f32| {
            if a > 0.0 {
                rng.random_range(1.0 - a..=1.0 + a)
            } else {
                1.0
            }
        };
        let b = factor(self.brightness);
        let c = factor(self.contrast);
        let s = factor(self.saturation);
        let gain = [factor(self.stain), factor(self.stain), factor(self.stain)];
        let n = (img.width() * img.height()) as f32;
        let mean_grey = img.pixels().map(|p| grey(p.0)).sum::<f32>() / n;
        for p in img.pixels_mut() {
            let g = grey(p.0);
            for (k, v) in p.0.iter_mut().enumerate() {
                let mut x = *v as f32 * b;
                x = (x - mean_grey * b) * c + mean_grey * b;
                x = g * b + (x - g * b) * s;
                *v = (x * gain[k]).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// A random multiple of 90 degrees, then a coin-flip horizontal mirror: with the turns, every
/// one of the square's eight symmetries.
fn turn_and_flip(img: RgbImage, rng: &mut impl Rng) -> RgbImage {
    let mut out = match rng.random_range(0..4) {
        1 => imageops::rotate90(&img),
        2 => imageops::rotate180(&img),
        3 => imageops::rotate270(&img),
        _ => img,
    };
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

fn grey(p: [u8; 3]) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// Rotates about the centre with bilinear sampling; corners are filled by mirroring so no
/// black wedges teach the network a shortcut.
fn rotate_reflect(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let reflect = |v: f32, n: u32| {
        let max = (n - 1) as f32;
        let period = 2.0 * max;
        let m = v.abs() % period.max(1.0);
        if m > max {
            period - m
        } else {
            m
        }
    };
    RgbImage::from_fn(w, h, |x, y| {
        let dx = x as f32 - cx;
        let dy = y as f32 - cy;
        let sx = reflect(c * dx + s * dy + cx, w);
        let sy = reflect(-s * dx + c * dy + cy, h);
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let mut px = [0u8; 3];
        for (k, out) in px.iter_mut().enumerate() {
            let v = img.get_pixel(x0, y0).0[k] as f32 * (1.0 - fx) * (1.0 - fy)
                + img.get_pixel(x1, y0).0[k] as f32 * fx * (1.0 - fy)
                + img.get_pixel(x0, y1).0[k] as f32 * (1.0 - fx) * fy
                + img.get_pixel(x1, y1).0[k] as f32 * fx * fy;
            *out = v.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn output_is_network_sized_and_seeded() {
        let img = RgbImage::from_fn(700, 460, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let a = Augment::default().apply(&img, &mut StdRng::seed_from_u64(3));
        let b = Augment::default().apply(&img, &mut StdRng::seed_from_u64(3));
        assert_eq!(a.dimensions(), (INPUT_SIZE, INPUT_SIZE));
        assert_eq!(a, b);
    }

    #[test]
    fn od_augmentation_changes_the_stains_within_its_range() {
        let img = histoscreen_edge::colour::synthetic::synthetic_he(96, 64, 9, &TORCHSTAIN_HE_REF);
        let plain = Augment {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            stain: 0.0,
            ..Augment::with_colour(ColourAugment::Standard)
        };
        let od = Augment {
            od_stain: 0.3,
            od_bias: 1.1f32.ln(),
            ..plain
        };
        let (mut a, mut b) = (img.clone(), img.clone());
        plain.jitter_colour(&mut a, &mut StdRng::seed_from_u64(4));
        assert_eq!(a, img, "no jitter asked, none done");
        od.jitter_colour(&mut b, &mut StdRng::seed_from_u64(4));
        assert_ne!(b, img);
        // At most 30 % more stain and a 10 % gain: no channel moves by more than about half.
        let worst = img
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as i32 - *y as i32).abs())
            .max()
            .unwrap();
        assert!(worst < 128, "largest change {worst}");
    }

    #[test]
    fn zero_rotation_is_identity() {
        let img = RgbImage::from_fn(31, 17, |x, y| image::Rgb([x as u8 * 7, y as u8 * 13, 5]));
        assert_eq!(rotate_reflect(&img, 0.0), img);
    }
}
