//! The not-H&E gate: is a frame stained H&E tissue at all, before the classifier scores it?
//!
//! A classifier trained on H&E outputs *some* probability for anything: an IHC slide, blank
//! glass, a lens cap, sensor noise. The gate measures, on a fixed grid sample of the frame:
//! how much of it is tissue (optical density), how saturated and which hues its tissue has
//! (DAB brown is not H&E), whether its density spans two stains (the Macenko plane), how far its
//! estimated stain vectors are from the card's H&E reference, and its sharpness. Every failing
//! test is named in the reason. Thresholds come from the card's `gate` (defaults otherwise);
//! docs/colour.md gives their rationale and the statistics they were calibrated on.

use image::RgbImage;
use serde::Serialize;

use super::macenko::{fit_pixels, sample_pixels, MacenkoParams, StainFit};
use super::od::{self, od_of, od_table};
use crate::card::{GateSpec, ModelCard, StainSpec};
use crate::sharpness::laplacian_variance;

/// HSV saturation from which a tissue pixel counts as coloured for the hue test (paler pixels'
/// hue is mostly sensor noise).
pub const COLOURED_SATURATION: f32 = 0.1;
/// Hues (degrees) H&E does not make: from orange-brown through yellow and green to cyan. H&E
/// is purple, magenta, pink and red (200° round to 20°); DAB brown sits near 30°.
pub const OFF_HUES_DEG: std::ops::Range<f32> = 20.0..200.0;

/// What the gate measured on one frame and what it decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateVerdict {
    /// True when every test passed.
    pub pass: bool,
    /// Every failing test, in words, joined by "; "; None when it passed.
    pub reason: Option<String>,
    /// Fraction of pixels stained in every channel (optical density at least `beta`:
    /// torchstain's tissue mask; tinted glass is stained in one or two channels only).
    pub tissue_fraction: f32,
    /// Mean HSV saturation of the tissue pixels (those of `tissue_fraction`).
    pub mean_saturation: f32,
    /// Fraction of coloured tissue pixels with a hue in [`OFF_HUES_DEG`].
    pub off_hue_fraction: f32,
    /// The larger of the H and E vectors' angles to the reference, degrees; None without an
    /// estimate.
    pub stain_angle_deg: Option<f32>,
    /// Angle of the frame's haematoxylin vector to the reference's.
    pub h_angle_deg: Option<f32>,
    /// Angle of the frame's eosin vector to the reference's.
    pub e_angle_deg: Option<f32>,
    /// Angle between the frame's two stain vectors.
    pub stain_separation_deg: Option<f32>,
    /// Share of the stained pixels' density variance in the two-stain plane.
    pub plane_fraction: Option<f32>,
    /// Laplacian variance (`sharpness::laplacian_variance`).
    pub sharpness: f64,
}

/// The gate for one card: its thresholds and its stain reference.
#[derive(Clone, Debug)]
pub struct HeGate {
    spec: GateSpec,
    reference: [[f64; 2]; 3],
    params: MacenkoParams,
}

impl HeGate {
    /// A gate with `spec`'s thresholds measuring stain angles to `reference`.
    pub fn new(spec: GateSpec, reference: &StainSpec) -> Self {
        HeGate {
            spec,
            reference: reference.he,
            params: MacenkoParams::from_spec(reference),
        }
    }

    /// The card's gate: its thresholds or [`GateSpec::default`], its stain reference or
    /// torchstain's ([`StainSpec::torchstain_default`]).
    pub fn for_card(card: &ModelCard) -> Self {
        let reference = card
            .stain
            .clone()
            .unwrap_or_else(StainSpec::torchstain_default);
        HeGate::new(card.gate.clone().unwrap_or_default(), &reference)
    }

    /// The thresholds in force.
    pub fn spec(&self) -> &GateSpec {
        &self.spec
    }

    /// The reference stain vectors angles are measured to (rows R, G, B; columns H, E).
    pub fn reference(&self) -> &[[f64; 2]; 3] {
        &self.reference
    }

    /// Measure `img` and decide. Cost: a grid sample of at most 65,536 pixels (about 2 ms)
    /// plus the sharpness measure on a 160-pixel-wide copy.
    pub fn check(&self, img: &RgbImage) -> GateVerdict {
        let pixels = sample_pixels(img, self.params.max_pixels);
        let colour = colour_stats(&pixels, self.params.io, self.params.beta);
        let fit = fit_pixels(&pixels, &self.params);
        let sharpness = laplacian_variance(img);
        self.decide(colour, fit, sharpness)
    }

    fn decide(
        &self,
        colour: ColourStats,
        fit: Result<StainFit, super::macenko::FitError>,
        sharpness: f64,
    ) -> GateVerdict {
        let s = &self.spec;
        let mut reasons: Vec<String> = Vec::new();
        let tissue_ok = colour.tissue_fraction >= s.min_tissue_fraction;
        if !tissue_ok {
            reasons.push(format!(
                "too little tissue: {:.1}% of pixels stained, need {:.1}%",
                100.0 * colour.tissue_fraction,
                100.0 * s.min_tissue_fraction
            ));
        }
        if tissue_ok && colour.mean_saturation < s.min_saturation {
            reasons.push(format!(
                "colourless: tissue saturation {:.3} < {:.3} (grey, unstained, or a monochrome camera)",
                colour.mean_saturation, s.min_saturation
            ));
        }
        if colour.mean_saturation > s.max_saturation {
            reasons.push(format!(
                "oversaturated: tissue saturation {:.2} > {:.2} (no stain is this vivid)",
                colour.mean_saturation, s.max_saturation
            ));
        }
        if colour.off_hue_fraction > s.max_off_hue_fraction {
            reasons.push(format!(
                "not H&E colours: {:.0}% of coloured tissue is brown, yellow or green (> {:.0}%), \
                 e.g. DAB immunohistochemistry",
                100.0 * colour.off_hue_fraction,
                100.0 * s.max_off_hue_fraction
            ));
        }
        let mut v = GateVerdict {
            pass: false,
            reason: None,
            tissue_fraction: colour.tissue_fraction,
            mean_saturation: colour.mean_saturation,
            off_hue_fraction: colour.off_hue_fraction,
            stain_angle_deg: None,
            h_angle_deg: None,
            e_angle_deg: None,
            stain_separation_deg: None,
            plane_fraction: None,
            sharpness,
        };
        match fit {
            Ok(fit) => {
                let [h, e] = fit.angles_to(&self.reference).map(|a| a as f32);
                let sep = fit.separation_deg() as f32;
                let plane = fit.plane_fraction() as f32;
                v.h_angle_deg = Some(h);
                v.e_angle_deg = Some(e);
                v.stain_angle_deg = Some(h.max(e));
                v.stain_separation_deg = Some(sep);
                v.plane_fraction = Some(plane);
                if plane < s.min_plane_fraction {
                    reasons.push(format!(
                        "not two stains: the stain plane holds {:.0}% of the optical density \
                         variance (< {:.0}%)",
                        100.0 * plane,
                        100.0 * s.min_plane_fraction
                    ));
                }
                if sep < s.min_stain_separation_deg {
                    reasons.push(format!(
                        "one stain only: the two stain vectors are {sep:.1}° apart (< {:.1}°)",
                        s.min_stain_separation_deg
                    ));
                }
                if h.max(e) > s.max_stain_angle_deg {
                    reasons.push(format!(
                        "stains unlike H&E: H {h:.0}° and E {e:.0}° from the reference (> {:.0}°)",
                        s.max_stain_angle_deg
                    ));
                }
            }
            // No tissue already says why there are no stains.
            Err(e) if tissue_ok => reasons.push(format!("stains not measurable: {e}")),
            Err(_) => {}
        }
        if sharpness < s.min_sharpness {
            reasons.push(format!(
                "blank, moving or out of focus: sharpness {sharpness:.0} < {:.0}",
                s.min_sharpness
            ));
        }
        v.pass = reasons.is_empty();
        v.reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        v
    }
}

/// The gate's colour statistics of a pixel sample.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ColourStats {
    tissue_fraction: f32,
    mean_saturation: f32,
    off_hue_fraction: f32,
}

fn colour_stats(pixels: &[[u8; 3]], io: f64, beta: f64) -> ColourStats {
    let table = od_table(io);
    let (mut tissue, mut sat_sum, mut coloured, mut off) = (0usize, 0f64, 0usize, 0usize);
    for &px in pixels {
        if !od::stained_everywhere(od_of(px, &table), beta) {
            continue;
        }
        tissue += 1;
        let (s, hue) = saturation_hue(px);
        sat_sum += s as f64;
        if s >= COLOURED_SATURATION {
            coloured += 1;
            off += usize::from(OFF_HUES_DEG.contains(&hue));
        }
    }
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    ColourStats {
        tissue_fraction: frac(tissue, pixels.len()),
        mean_saturation: if tissue == 0 {
            0.0
        } else {
            (sat_sum / tissue as f64) as f32
        },
        off_hue_fraction: frac(off, coloured),
    }
}

/// HSV saturation (0..1) and hue (degrees, 0..360) of an 8-bit pixel.
pub fn saturation_hue(px: [u8; 3]) -> (f32, f32) {
    let [r, g, b] = px.map(f32::from);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if max <= 0.0 || d <= 0.0 {
        return (0.0, 0.0);
    }
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    (d / max, h * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colour::macenko::TORCHSTAIN_HE_REF;
    use crate::colour::synthetic::synthetic_he;
    use image::Rgb;

    fn gate() -> HeGate {
        HeGate::new(GateSpec::default(), &StainSpec::torchstain_default())
    }

    #[test]
    fn hue_and_saturation_of_known_colours() {
        assert_eq!(saturation_hue([255, 0, 0]), (1.0, 0.0));
        let (s, h) = saturation_hue([0, 0, 255]);
        assert_eq!((s, h), (1.0, 240.0));
        let (s, h) = saturation_hue([160, 110, 60]); // DAB brown
        assert!((s - 0.625).abs() < 1e-6 && (h - 30.0).abs() < 1e-4);
        assert_eq!(saturation_hue([90, 90, 90]), (0.0, 0.0));
    }

    #[test]
    fn synthetic_he_passes_and_synthetic_dab_does_not() {
        let he = synthetic_he(320, 240, 5, &TORCHSTAIN_HE_REF);
        let v = gate().check(&he);
        assert!(v.pass, "{v:?}");
        // Haematoxylin and DAB as Macenko estimates them on the shared IHC fixture.
        let hdab = [[0.673, 0.242], [0.650, 0.477], [0.354, 0.845]];
        let dab = synthetic_he(320, 240, 5, &hdab);
        let v = gate().check(&dab);
        assert!(!v.pass, "{v:?}");
        assert!(v.reason.unwrap().contains("not H&E colours"));
    }

    #[test]
    fn a_partial_card_spec_keeps_the_other_defaults() {
        let spec: GateSpec = serde_json::from_str(r#"{"min_tissue_fraction": 0.5}"#).unwrap();
        assert_eq!(spec.min_tissue_fraction, 0.5);
        assert_eq!(
            spec.max_stain_angle_deg,
            GateSpec::default().max_stain_angle_deg
        );
        let glass = RgbImage::from_pixel(200, 200, Rgb([250, 250, 250]));
        let v = HeGate::new(spec, &StainSpec::torchstain_default()).check(&glass);
        let reason = v.reason.unwrap();
        assert!(
            reason.contains("too little tissue: 0.0% of pixels stained, need 50.0%"),
            "{reason}"
        );
        assert!(!reason.contains("stains not measurable"), "{reason}");
    }
}
