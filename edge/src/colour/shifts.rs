//! Camera-like colour shifts, fixed and named, for robustness evaluation (`eval --colour-shift`).
//!
//! Each shift is deterministic (same input, same output, on every machine) and models something
//! a different microscope camera or lab does to a frame: white balance, tone curve, saturation
//! setting, exposure, JPEG compression, slight defocus, and stronger or weaker staining (scaled
//! haematoxylin or eosin concentration in optical-density space, unmixed with torchstain's
//! reference vectors). docs/colour.md lists them with their parameters.

use std::fmt;
use std::str::FromStr;

use image::RgbImage;

use super::macenko::TORCHSTAIN_HE_REF;
use super::remix::remix_stains;

/// One named camera-like shift; [`Shift::describe`] says what each does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shift {
    WbWarm,
    WbCool,
    Gamma0_8,
    Gamma1_25,
    Desaturate0_5,
    Saturate1_5,
    BrightPlus20,
    DarkMinus20,
    Jpeg70,
    Blur1_0,
    HUp,
    HDown,
    EUp,
    EDown,
}

/// Concentration factor of the stronger / weaker stain shifts.
pub const STAIN_UP: f64 = 1.3;
/// See [`STAIN_UP`].
pub const STAIN_DOWN: f64 = 0.7;
/// Red and blue gains of the white-balance shifts (warm: red up, blue down).
pub const WB_GAIN: f32 = 0.12;

/// Every shift with its name and what it does, in a fixed order.
const TABLE: [(Shift, &str, &str); 14] = [
    (
        Shift::WbWarm,
        "wb-warm",
        "white balance, warm: red x1.12, blue x0.88",
    ),
    (
        Shift::WbCool,
        "wb-cool",
        "white balance, cool: red x0.88, blue x1.12",
    ),
    (
        Shift::Gamma0_8,
        "gamma-0.8",
        "tone curve 255*(v/255)^0.8 (brighter mid-tones)",
    ),
    (
        Shift::Gamma1_25,
        "gamma-1.25",
        "tone curve 255*(v/255)^1.25 (darker mid-tones)",
    ),
    (
        Shift::Desaturate0_5,
        "desaturate-0.5",
        "saturation x0.5 about Rec.601 luma",
    ),
    (
        Shift::Saturate1_5,
        "saturate-1.5",
        "saturation x1.5 about Rec.601 luma, clipped",
    ),
    (
        Shift::BrightPlus20,
        "bright+20",
        "+20 on every channel, clipped",
    ),
    (
        Shift::DarkMinus20,
        "dark-20",
        "-20 on every channel, clipped",
    ),
    (
        Shift::Jpeg70,
        "jpeg-70",
        "JPEG re-compression at quality 70",
    ),
    (Shift::Blur1_0, "blur-1.0", "Gaussian blur, sigma 1.0 px"),
    (
        Shift::HUp,
        "h-up",
        "haematoxylin concentration x1.3 (optical density)",
    ),
    (
        Shift::HDown,
        "h-down",
        "haematoxylin concentration x0.7 (optical density)",
    ),
    (
        Shift::EUp,
        "e-up",
        "eosin concentration x1.3 (optical density)",
    ),
    (
        Shift::EDown,
        "e-down",
        "eosin concentration x0.7 (optical density)",
    ),
];

const ALL: [Shift; 14] = {
    let mut all = [Shift::WbWarm; 14];
    let mut i = 0;
    while i < all.len() {
        all[i] = TABLE[i].0;
        i += 1;
    }
    all
};

impl Shift {
    /// Every shift, in a fixed order.
    pub fn all() -> &'static [Shift] {
        &ALL
    }

    fn entry(self) -> &'static (Shift, &'static str, &'static str) {
        TABLE
            .iter()
            .find(|t| t.0 == self)
            .expect("every shift is in the table")
    }

    /// The stable name (`wb-warm`, `gamma-0.8`, `jpeg-70`, ...).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// What it does, in one line.
    pub fn describe(self) -> &'static str {
        self.entry().2
    }

    /// The shift called `name`.
    pub fn from_name(name: &str) -> Option<Shift> {
        TABLE.iter().find(|t| t.1 == name).map(|t| t.0)
    }
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shift {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Shift::from_name(s.trim()).ok_or_else(|| {
            let names: Vec<&str> = Shift::all().iter().map(|s| s.name()).collect();
            format!("unknown colour shift {s:?}; known: {}", names.join(", "))
        })
    }
}

/// `img` with `shift` applied.
pub fn apply_shift(img: &RgbImage, shift: Shift) -> RgbImage {
    let gains = |r: f32, b: f32| [r, 1.0, b];
    match shift {
        Shift::WbWarm => per_channel(img, gains(1.0 + WB_GAIN, 1.0 - WB_GAIN), |v, g| v * g),
        Shift::WbCool => per_channel(img, gains(1.0 - WB_GAIN, 1.0 + WB_GAIN), |v, g| v * g),
        Shift::Gamma0_8 => per_channel(img, [0.8; 3], gamma),
        Shift::Gamma1_25 => per_channel(img, [1.25; 3], gamma),
        Shift::BrightPlus20 => per_channel(img, [20.0; 3], |v, d| v + d),
        Shift::DarkMinus20 => per_channel(img, [-20.0; 3], |v, d| v + d),
        Shift::Desaturate0_5 => saturation(img, 0.5),
        Shift::Saturate1_5 => saturation(img, 1.5),
        Shift::Jpeg70 => jpeg(img, 70),
        Shift::Blur1_0 => image::imageops::blur(img, 1.0),
        Shift::HUp => stain(img, 0, STAIN_UP),
        Shift::HDown => stain(img, 0, STAIN_DOWN),
        Shift::EUp => stain(img, 1, STAIN_UP),
        Shift::EDown => stain(img, 1, STAIN_DOWN),
    }
}

fn gamma(v: f32, g: f32) -> f32 {
    255.0 * (v / 255.0).powf(g)
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A per-channel tone map through three 256-entry tables.
fn per_channel(img: &RgbImage, param: [f32; 3], f: impl Fn(f32, f32) -> f32) -> RgbImage {
    let mut lut = [[0u8; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = to_u8(f(v as f32, param[c]));
        }
    }
    let mut out = img.clone();
    for px in out.as_mut().chunks_exact_mut(3) {
        for c in 0..3 {
            px[c] = lut[c][px[c] as usize];
        }
    }
    out
}

fn saturation(img: &RgbImage, factor: f32) -> RgbImage {
    let mut out = img.clone();
    for px in out.as_mut().chunks_exact_mut(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(f32::from);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        for v in px.iter_mut() {
            *v = to_u8(y + factor * (f32::from(*v) - y));
        }
    }
    out
}

fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    if img.width() == 0 || img.height() == 0 {
        return img.clone();
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .expect("an in-memory RGB image always encodes as JPEG");
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .expect("the JPEG just encoded decodes")
        .into_rgb8()
}

/// Stain `which` (0 haematoxylin, 1 eosin) concentration times `factor`, unmixed with
/// torchstain's reference vectors ([`remix_stains`]).
fn stain(img: &RgbImage, which: usize, factor: f64) -> RgbImage {
    let mut factors = [1.0; 2];
    factors[which] = factor;
    remix_stains(img, &TORCHSTAIN_HE_REF, factors, [0.0; 3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colour::gate::saturation_hue;
    use crate::colour::linalg::pinv_3x2;
    use crate::colour::od::{od_of, od_table, DEFAULT_IO};
    use crate::colour::synthetic::synthetic_he;

    fn image() -> RgbImage {
        synthetic_he(192, 144, 21, &TORCHSTAIN_HE_REF)
    }

    fn mean_channel(img: &RgbImage, c: usize) -> f64 {
        img.pixels().map(|p| p[c] as f64).sum::<f64>() / (img.width() * img.height()) as f64
    }

    fn mean_luma(img: &RgbImage) -> f64 {
        0.299 * mean_channel(img, 0) + 0.587 * mean_channel(img, 1) + 0.114 * mean_channel(img, 2)
    }

    fn mean_saturation(img: &RgbImage) -> f64 {
        img.pixels()
            .map(|p| saturation_hue(p.0).0 as f64)
            .sum::<f64>()
            / (img.width() * img.height()) as f64
    }

    /// Mean haematoxylin and eosin concentrations, unmixed with the reference.
    fn mean_concentrations(img: &RgbImage) -> [f64; 2] {
        let pinv = pinv_3x2(&TORCHSTAIN_HE_REF).unwrap();
        let table = od_table(DEFAULT_IO);
        let mut sum = [0f64; 2];
        for p in img.pixels() {
            let od = od_of(p.0, &table);
            for (s, row) in sum.iter_mut().zip(&pinv) {
                *s += (row[0] * od[0] + row[1] * od[1] + row[2] * od[2]).max(0.0);
            }
        }
        sum.map(|s| s / (img.width() * img.height()) as f64)
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let all = Shift::all();
        assert_eq!(all.len(), 14);
        for s in all {
            assert_eq!(s.name().parse::<Shift>(), Ok(*s));
            assert_eq!(all.iter().filter(|t| t.name() == s.name()).count(), 1);
            assert!(!s.describe().is_empty());
        }
        let err = "sepia".parse::<Shift>().unwrap_err();
        assert!(
            err.contains("unknown colour shift \"sepia\"") && err.contains("wb-warm"),
            "{err}"
        );
    }

    #[test]
    fn every_shift_is_deterministic_and_changes_the_image() {
        let img = image();
        for &s in Shift::all() {
            let a = apply_shift(&img, s);
            assert_eq!(a, apply_shift(&img, s), "{s} is not deterministic");
            assert_eq!(a.dimensions(), img.dimensions());
            assert_ne!(a, img, "{s} changed nothing");
        }
    }

    #[test]
    fn white_balance_moves_red_against_blue() {
        let img = image();
        let warmth = |i: &RgbImage| mean_channel(i, 0) - mean_channel(i, 2);
        assert!(warmth(&apply_shift(&img, Shift::WbWarm)) > warmth(&img) + 5.0);
        assert!(warmth(&apply_shift(&img, Shift::WbCool)) < warmth(&img) - 5.0);
    }

    #[test]
    fn gamma_and_exposure_move_brightness_the_named_way() {
        let img = image();
        let y = mean_luma(&img);
        assert!(mean_luma(&apply_shift(&img, Shift::Gamma0_8)) > y + 5.0);
        assert!(mean_luma(&apply_shift(&img, Shift::Gamma1_25)) < y - 5.0);
        let up = mean_luma(&apply_shift(&img, Shift::BrightPlus20)) - y;
        let down = y - mean_luma(&apply_shift(&img, Shift::DarkMinus20));
        // Clipping at 255 eats part of +20 on glass; nothing clips at 0 here.
        assert!((10.0..=20.0).contains(&up), "bright+20 moved {up}");
        assert!((19.0..=20.5).contains(&down), "dark-20 moved {down}");
    }

    #[test]
    fn saturation_shifts_move_mean_saturation() {
        let img = image();
        let s = mean_saturation(&img);
        assert!(mean_saturation(&apply_shift(&img, Shift::Desaturate0_5)) < 0.6 * s);
        assert!(mean_saturation(&apply_shift(&img, Shift::Saturate1_5)) > 1.2 * s);
    }

    #[test]
    fn jpeg_and_blur_degrade_detail_but_not_colour() {
        let img = image();
        let sharp = crate::sharpness::laplacian_variance(&img);
        let blurred = apply_shift(&img, Shift::Blur1_0);
        assert!(crate::sharpness::laplacian_variance(&blurred) < 0.7 * sharp);
        for shifted in [blurred, apply_shift(&img, Shift::Jpeg70)] {
            assert!((mean_luma(&shifted) - mean_luma(&img)).abs() < 2.0);
        }
    }

    #[test]
    fn stain_shifts_scale_one_concentration() {
        let img = image();
        let [h, e] = mean_concentrations(&img);
        let ratio = |s: Shift| {
            let [h2, e2] = mean_concentrations(&apply_shift(&img, s));
            (h2 / h, e2 / e)
        };
        let (hh, he) = ratio(Shift::HUp);
        assert!(
            (1.2..1.35).contains(&hh) && (he - 1.0).abs() < 0.03,
            "h-up {hh} {he}"
        );
        let (hh, he) = ratio(Shift::HDown);
        assert!(
            (0.65..0.8).contains(&hh) && (he - 1.0).abs() < 0.03,
            "h-down {hh} {he}"
        );
        let (eh, ee) = ratio(Shift::EUp);
        assert!(
            (1.2..1.35).contains(&ee) && (eh - 1.0).abs() < 0.03,
            "e-up {eh} {ee}"
        );
        let (eh, ee) = ratio(Shift::EDown);
        assert!(
            (0.65..0.8).contains(&ee) && (eh - 1.0).abs() < 0.03,
            "e-down {eh} {ee}"
        );
    }
}
