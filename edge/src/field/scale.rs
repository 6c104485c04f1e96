//! Physical scale: micrometres per pixel of BreakHis images and of the model's input.
//!
//! BreakHis was photographed through an Olympus BX-50 with a 3.3x relay lens onto a Samsung
//! SCC-131AN camera whose pixels are 6.5 x 6.25 um (Spanhol et al., "A Dataset for Breast Cancer
//! Histopathological Image Classification", IEEE TBME 63(7), 2016, section II). The file name's
//! magnification (40/100/200/400X) is the objective (4/10/20/40x) times a 10x eyepiece, so a
//! camera pixel spans `6.5 um / (objective * 3.3)` of tissue: 0.197 um at 100X. The 6.25 um
//! axis differs by 4%, less than the scale jitter training already covers, so one figure is used.

use std::path::Path;

/// Camera pixel pitch of the BreakHis camera (horizontal axis), micrometres.
pub const BREAKHIS_PIXEL_UM: f32 = 6.5;
/// Relay lens between microscope and camera.
pub const BREAKHIS_RELAY: f32 = 3.3;
/// Eyepiece factor folded into BreakHis's "magnification" figures.
pub const EYEPIECE: f32 = 10.0;
/// A frame is refused when its scale is further than this factor from the model's, either
/// way: resampling by more would invent or discard most of the detail the model relies on.
pub const MAX_RESAMPLE: f32 = 4.0;

/// Micrometres per pixel of a BreakHis image at `magnification` (40, 100, 200 or 400).
pub fn breakhis_um_per_px(magnification: u32) -> f32 {
    BREAKHIS_PIXEL_UM / (magnification as f32 / EYEPIECE * BREAKHIS_RELAY)
}

/// The magnification in an official BreakHis file name (`SOB_B_A-14-22549AB-100-001.png`).
pub fn breakhis_magnification(path: &Path) -> Option<u32> {
    let stem = path.file_stem()?.to_str()?;
    if !stem.starts_with("SOB_") {
        return None;
    }
    let mut parts = stem.rsplit('-');
    let _seq = parts.next()?;
    let mag: u32 = parts.next()?.parse().ok()?;
    [40, 100, 200, 400].contains(&mag).then_some(mag)
}

/// The frame's scale: the user's `--um-per-px`, else the BreakHis file name's, else none.
pub fn frame_um_per_px(explicit: Option<f32>, path: Option<&Path>) -> Option<f32> {
    explicit.or_else(|| {
        path.and_then(breakhis_magnification)
            .map(breakhis_um_per_px)
    })
}

/// Resampling factor (new size / old size) that brings a frame at `frame_um` to `model_um`
/// micrometres per pixel; refused beyond [`MAX_RESAMPLE`] either way.
pub fn resample_factor(frame_um: f32, model_um: f32) -> Result<f32, String> {
    if !(frame_um.is_finite() && frame_um > 0.0) {
        return Err(format!(
            "frame scale {frame_um} um/px is not a positive number"
        ));
    }
    let factor = frame_um / model_um;
    if !(1.0 / MAX_RESAMPLE..=MAX_RESAMPLE).contains(&factor) {
        return Err(format!(
            "frame scale {frame_um:.3} um/px is {:.1}x the model's {model_um:.3} um/px; \
             more than {MAX_RESAMPLE}x either way is refused (check --um-per-px)",
            factor
        ));
    }
    Ok(factor)
}

/// Size of a `w`x`h` frame after resampling by `factor` (rounded, at least 1 pixel).
pub fn resampled_size(w: u32, h: u32, factor: f32) -> (u32, u32) {
    let s = |v: u32| ((v as f64 * factor as f64).round() as u32).max(1);
    (s(w), s(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakhis_scales_follow_the_optics() {
        // 6.5 / (10 * 3.3) = 0.19697
        assert!((breakhis_um_per_px(100) - 0.19697).abs() < 1e-4);
        assert!((breakhis_um_per_px(40) - 0.49242).abs() < 1e-4);
        assert!((breakhis_um_per_px(400) - 0.04924).abs() < 1e-4);
        assert!((breakhis_um_per_px(40) / breakhis_um_per_px(400) - 10.0).abs() < 1e-4);
    }

    #[test]
    fn magnification_comes_from_the_file_name() {
        let p = Path::new("/x/SOB_B_A-14-22549AB-100-001.png");
        assert_eq!(breakhis_magnification(p), Some(100));
        assert_eq!(
            breakhis_magnification(Path::new("SOB_M_DC-14-2773-40-011.png")),
            Some(40)
        );
        assert_eq!(breakhis_magnification(Path::new("slide-100-001.png")), None);
        assert_eq!(
            breakhis_magnification(Path::new("SOB_M_DC-14-2773-50-011.png")),
            None
        );
        assert_eq!(frame_um_per_px(Some(0.5), Some(p)), Some(0.5));
        assert!((frame_um_per_px(None, Some(p)).unwrap() - 0.19697).abs() < 1e-4);
        assert_eq!(frame_um_per_px(None, Some(Path::new("cam.png"))), None);
    }

    #[test]
    fn resampling_is_bounded_and_rounds() {
        let model = breakhis_um_per_px(100);
        // A 40X BreakHis image is magnified 2.5x to reach 100X's scale.
        let f = resample_factor(breakhis_um_per_px(40), model).unwrap();
        assert!((f - 2.5).abs() < 1e-5);
        assert_eq!(resampled_size(700, 460, f), (1750, 1150));
        // 400X is exactly the limit: allowed.
        assert!(resample_factor(breakhis_um_per_px(400), model).is_ok());
        let err = resample_factor(model * 4.5, model).unwrap_err();
        assert!(err.contains("4.5x") && err.contains("refused"), "{err}");
        assert!(resample_factor(model / 5.0, model).is_err());
        assert!(resample_factor(0.0, model).is_err());
        assert!(resample_factor(f32::NAN, model).is_err());
    }
}
