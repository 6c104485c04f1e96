//! Colour on real images: the not-H&E gate on every shared BreakHis image and the fixtures,
//! Macenko normalisation against camera-like shifts, the bundled cards' stain reference, and
//! agreement with torchstain (the reference implementation, run from target/colour-venv).

mod common;

use std::path::{Path, PathBuf};

use histoscreen_edge::card::{GateSpec, ModelCard, StainSpec};
use histoscreen_edge::colour::macenko::{
    fit_pixels, sample_pixels, MacenkoParams, REFERENCE_PIXELS_PER_IMAGE,
};
use histoscreen_edge::colour::{apply_shift, GateVerdict, HeGate, Normaliser, Shift};
use histoscreen_edge::preprocess::load_image;
use image::{Rgb, RgbImage};

fn fixture(name: &str) -> PathBuf {
    common::shared().join("fixtures").join(name)
}

fn all_breakhis() -> Vec<PathBuf> {
    let all = histoscreen_edge::paths::images_under(&common::breakhis()).unwrap();
    assert!(all.len() >= 359, "shared BreakHis has {} images", all.len());
    all
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The bundled model cards (the `.report.json` is a training report, not a card).
fn bundled_cards() -> Vec<PathBuf> {
    let mut cards: Vec<PathBuf> = std::fs::read_dir(models())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".report.json")
        })
        .collect();
    cards.sort();
    assert!(!cards.is_empty());
    cards
}

/// `f` over `items` on two threads, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let half = items.len().div_ceil(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(half.max(1))
            .map(|chunk| s.spawn(|| chunk.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// min / max of one statistic over verdicts, for the calibration table in docs/colour.md.
fn range(vs: &[GateVerdict], f: impl Fn(&GateVerdict) -> Option<f64>) -> (f64, f64) {
    vs.iter()
        .filter_map(f)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

fn print_ranges(what: &str, vs: &[GateVerdict]) {
    let rows: [(&str, (f64, f64)); 8] = [
        (
            "tissue_fraction",
            range(vs, |v| Some(v.tissue_fraction as f64)),
        ),
        (
            "mean_saturation",
            range(vs, |v| Some(v.mean_saturation as f64)),
        ),
        (
            "off_hue_fraction",
            range(vs, |v| Some(v.off_hue_fraction as f64)),
        ),
        (
            "plane_fraction",
            range(vs, |v| v.plane_fraction.map(f64::from)),
        ),
        (
            "stain_separation_deg",
            range(vs, |v| v.stain_separation_deg.map(f64::from)),
        ),
        ("h_angle_deg", range(vs, |v| v.h_angle_deg.map(f64::from))),
        ("e_angle_deg", range(vs, |v| v.e_angle_deg.map(f64::from))),
        ("sharpness", range(vs, |v| Some(v.sharpness))),
    ];
    println!("{what}: {} images", vs.len());
    for (name, (lo, hi)) in rows {
        println!("  {name:<22} min {lo:>9.3}  max {hi:>9.3}");
    }
}

/// Every shared BreakHis image passes the gate, with the default reference (a card without a
/// `stain`) and with each bundled card's; the bundled cards' stain reference is the pooled fit
/// of exactly these images.
#[test]
fn gate_accepts_every_shared_breakhis_image_and_bundled_cards_hold_their_fit() {
    let paths = all_breakhis();
    let default_gate = HeGate::new(GateSpec::default(), &StainSpec::torchstain_default());
    let card = ModelCard::load(&models().join("histoscreen-alexnet-compact.json")).unwrap();
    let card_gate = HeGate::for_card(&card);
    let results = par_map(&paths, |p| {
        let img = load_image(p).unwrap();
        (
            default_gate.check(&img),
            card_gate.check(&img),
            sample_pixels(&img, REFERENCE_PIXELS_PER_IMAGE),
        )
    });
    let mut failures = Vec::new();
    for (p, (d, c, _)) in paths.iter().zip(&results) {
        for v in [d, c] {
            if !v.pass {
                failures.push(format!("{}: {:?}", p.display(), v.reason));
            }
        }
    }
    let default_verdicts: Vec<GateVerdict> = results.iter().map(|r| r.0.clone()).collect();
    let card_verdicts: Vec<GateVerdict> = results.iter().map(|r| r.1.clone()).collect();
    print_ranges("BreakHis, torchstain reference", &default_verdicts);
    print_ranges("BreakHis, bundled card's reference", &card_verdicts);
    assert!(failures.is_empty(), "refused:\n{}", failures.join("\n"));

    // The bundled cards: a stain reference that is this pool's fit, not used for normalising.
    let pool: Vec<[u8; 3]> = results.into_iter().flat_map(|r| r.2).collect();
    let params = MacenkoParams {
        max_pixels: 0,
        ..MacenkoParams::default()
    };
    let fit = fit_pixels(&pool, &params).unwrap();
    for path in bundled_cards() {
        let card = ModelCard::load(&path).unwrap();
        let stain = card
            .stain
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no stain reference", path.display()));
        assert!(
            !stain.normalise,
            "the bundled model was not trained normalised"
        );
        assert_eq!(stain.fitted_on.images, paths.len());
        assert_eq!(stain.fitted_on.pixels, pool.len());
        assert_eq!(stain.fitted_on.patients, Some(25));
        for (a, b) in stain.he.iter().flatten().zip(fit.he.iter().flatten()) {
            assert!(
                (a - b).abs() < 1e-6,
                "{}: he {:?} vs refit {:?}",
                path.display(),
                stain.he,
                fit.he
            );
        }
        for (a, b) in stain.max_c.iter().zip(&fit.max_c) {
            assert!(
                (a - b).abs() < 1e-6,
                "{}: max_c {:?} vs {:?}",
                path.display(),
                stain.max_c,
                fit.max_c
            );
        }
        assert!(card.gate.is_some(), "{}: no gate section", path.display());
    }
}

#[test]
fn gate_accepts_the_other_labs_he_tile_and_refuses_ihc() {
    let card = ModelCard::load(&models().join("histoscreen-alexnet-compact.json")).unwrap();
    for gate in [
        HeGate::new(GateSpec::default(), &StainSpec::torchstain_default()),
        HeGate::for_card(&card),
    ] {
        let he = gate.check(&load_image(&fixture("he-tumour-tile-1000.png")).unwrap());
        println!("he-tumour-tile-1000: {he:?}");
        assert!(he.pass, "{he:?}");
        let ihc = gate.check(&load_image(&fixture("ihc-colon-512.png")).unwrap());
        println!("ihc-colon-512: {ihc:?}");
        assert!(!ihc.pass);
        let reason = ihc.reason.unwrap();
        assert!(reason.contains("not H&E colours"), "{reason}");
    }
}

#[test]
fn gate_refuses_synthetic_non_tissue_frames_with_their_reason() {
    let gate = HeGate::new(GateSpec::default(), &StainSpec::torchstain_default());
    let mut rng = histoscreen_edge::colour::synthetic::XorShift::new(42);
    let noise = RgbImage::from_fn(640, 480, |_, _| {
        let v = rng.next_u64();
        Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let cases = [
        (
            "blank grey",
            RgbImage::from_pixel(640, 480, Rgb([128, 128, 128])),
            "colourless",
        ),
        (
            "blank glass",
            RgbImage::from_pixel(640, 480, Rgb([236, 234, 238])),
            "too little tissue",
        ),
        (
            "overexposed",
            RgbImage::from_pixel(640, 480, Rgb([255, 255, 255])),
            "too little tissue",
        ),
        (
            "uniformly saturated",
            RgbImage::from_pixel(640, 480, Rgb([200, 30, 160])),
            "oversaturated",
        ),
        ("random noise", noise, "not two stains"),
    ];
    for (what, img, want) in cases {
        let v = gate.check(&img);
        println!("{what}: {v:?}");
        assert!(!v.pass, "{what} passed: {v:?}");
        let reason = v.reason.unwrap();
        assert!(reason.contains(want), "{what}: {reason}");
    }
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.as_raw().len() as f64
}

/// Normalising a colour-shifted image to the original's stain estimate lands closer to the
/// normalised original than the shifted image was to the original. Claimed, on average over
/// eight images of eight patients, for the shifts Macenko models (stain strength, white
/// balance, tone curve, desaturation), and by at least 40% over them all. Printed but not
/// claimed: e-up/e-down (on BreakHis's pale eosin they move pixels by about 2.4 grey levels,
/// less than Macenko's own re-estimation error of about 3) and saturate-1.5 (more saturated
/// than the two-stain model can express).
#[test]
fn normalisation_undoes_colour_shifts() {
    let paths = all_breakhis();
    let picks: Vec<&PathBuf> = paths.iter().step_by(paths.len() / 8).take(8).collect();
    let shifts = [
        Shift::HUp,
        Shift::HDown,
        Shift::EUp,
        Shift::EDown,
        Shift::WbWarm,
        Shift::WbCool,
        Shift::Desaturate0_5,
        Shift::Saturate1_5,
        Shift::Gamma0_8,
        Shift::Gamma1_25,
    ];
    let p = MacenkoParams::default();
    let rows = par_map(&picks, |path| {
        let img = load_image(path).unwrap();
        let fit = histoscreen_edge::colour::fit_image(&img, &p).unwrap();
        let spec = StainSpec {
            he: fit.he,
            max_c: fit.max_c,
            ..StainSpec::torchstain_default()
        };
        let norm = Normaliser::new(&spec);
        let reference = norm.normalise(&img).unwrap();
        shifts.map(|s| {
            let shifted = apply_shift(&img, s);
            let before = mean_abs_diff(&shifted, &img);
            let after = mean_abs_diff(&norm.normalise(&shifted).unwrap(), &reference);
            (before, after)
        })
    });
    let not_claimed = [Shift::EUp, Shift::EDown, Shift::Saturate1_5];
    let mut improved = 0;
    let mut pairs = 0;
    let (mut total_before, mut total_after) = (0.0, 0.0);
    let mut failures = Vec::new();
    for (k, s) in shifts.iter().enumerate() {
        let before: f64 = rows.iter().map(|r| r[k].0).sum::<f64>() / rows.len() as f64;
        let after: f64 = rows.iter().map(|r| r[k].1).sum::<f64>() / rows.len() as f64;
        let claimed = !not_claimed.contains(s);
        println!(
            "{:<15} mean abs difference: shifted {before:6.2}  normalised {after:6.2}{}",
            s.name(),
            if claimed { "" } else { "  (not claimed)" }
        );
        if !claimed {
            continue;
        }
        if after >= before {
            failures.push(format!("{s}: {after:.2} >= {before:.2}"));
        }
        improved += rows.iter().filter(|r| r[k].1 < r[k].0).count();
        pairs += rows.len();
        total_before += before;
        total_after += after;
    }
    println!(
        "improved in {improved} of {pairs} pairs; overall {total_before:.2} -> {total_after:.2}"
    );
    assert!(
        failures.is_empty(),
        "normalisation did not help on average:\n{}",
        failures.join("\n")
    );
    assert!(
        total_after <= 0.6 * total_before,
        "{total_before:.2} -> {total_after:.2}"
    );
}

fn in_ci() -> bool {
    std::env::var_os("HISTOSCREEN_CI").is_some() || std::env::var_os("CI").is_some()
}

/// The reference venv's python (.ci/install creates it), or why there is none.
fn colour_venv_python() -> Result<PathBuf, String> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/colour-venv/bin/python");
    if !python.is_file() {
        return Err(format!("{} is missing", python.display()));
    }
    let probe = std::process::Command::new(&python)
        .args(["-c", "import numpy, PIL, torchstain"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import numpy, PIL and torchstain: {}",
            python.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(python)
}

/// Tolerances of the agreement with torchstain, and why they are not zero: torchstain computes
/// in float64 from LAPACK's eigenvectors, this crate in float64 from its own Jacobi rotations,
/// so the fitted vectors agree to rounding; the normalised image goes through a product of
/// tabled exponentials here and `exp` there before truncation to 8 bits, so a value on an
/// integer boundary can land one grey level apart.
const MAX_VECTOR_ANGLE_DEG: f64 = 0.01;
const MAX_CONCENTRATION_REL: f64 = 1e-4;
const MAX_MEAN_ABS_PIXEL: f64 = 0.05;
const MAX_PIXEL: u8 = 1;

/// The fitted stain matrix, the 99th-percentile concentrations and the image normalised to the
/// default reference agree with torchstain's numpy backend on six BreakHis images (one every
/// 60 in sorted order) and the other lab's H&E tile. Without target/colour-venv the test says
/// SKIPPED, except in CI (`CI` or `HISTOSCREEN_CI` set), where it fails.
#[test]
fn macenko_agrees_with_torchstain() {
    let python = match colour_venv_python() {
        Ok(p) => p,
        Err(why) if in_ci() => panic!("{why}: run .ci/install"),
        Err(why) => {
            println!(
                "SKIPPED macenko_agrees_with_torchstain: {why} (run .ci/install to create it)"
            );
            eprintln!(
                "SKIPPED macenko_agrees_with_torchstain: {why} (run .ci/install to create it)"
            );
            return;
        }
    };
    let mut images: Vec<PathBuf> = all_breakhis().into_iter().step_by(60).collect();
    images.push(fixture("he-tumour-tile-1000.png"));
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stain-reference.py");
    let run = std::process::Command::new(&python)
        .arg(&script)
        .arg(out.path())
        .args(&images)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.path().join("reference.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), images.len());
    let all_pixels = MacenkoParams {
        max_pixels: 0,
        ..MacenkoParams::default()
    };
    let to_default = Normaliser::with_params(&StainSpec::torchstain_default(), all_pixels);
    let mut worst = (0f64, 0f64, 0f64, 0u8);
    for (path, row) in images.iter().zip(&rows) {
        let img = load_image(path).unwrap();
        let fit = histoscreen_edge::colour::fit_image(&img, &all_pixels).unwrap();
        let he: Vec<Vec<f64>> = serde_json::from_value(row["he"].clone()).unwrap();
        let he = [
            [he[0][0], he[0][1]],
            [he[1][0], he[1][1]],
            [he[2][0], he[2][1]],
        ];
        let [h_deg, e_deg] = fit.angles_to(&he);
        let max_c: [f64; 2] = serde_json::from_value(row["max_c"].clone()).unwrap();
        let rel = (0..2)
            .map(|i| ((fit.max_c[i] - max_c[i]) / max_c[i]).abs())
            .fold(0.0, f64::max);
        let theirs = load_image(Path::new(row["normalised"].as_str().unwrap())).unwrap();
        let ours = to_default.normalise(&img).unwrap();
        let mad = mean_abs_diff(&ours, &theirs);
        let max = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        println!(
            "{:<36} H {h_deg:.5}°  E {e_deg:.5}°  maxC rel {rel:.2e}  normalised: mean |d| {mad:.4}, max {max}",
            path.file_name().unwrap().to_string_lossy()
        );
        worst = (
            worst.0.max(h_deg.max(e_deg)),
            worst.1.max(rel),
            worst.2.max(mad),
            worst.3.max(max),
        );
    }
    println!(
        "worst: vector angle {:.5}°, max concentration {:.2e} relative, mean |pixel difference| {:.4}, max {} (torchstain {})",
        worst.0, worst.1, worst.2, worst.3, rows[0]["torchstain"]
    );
    assert!(
        worst.0 <= MAX_VECTOR_ANGLE_DEG,
        "stain vectors {:.5}° apart",
        worst.0
    );
    assert!(
        worst.1 <= MAX_CONCENTRATION_REL,
        "max concentrations {:.2e} apart",
        worst.1
    );
    assert!(
        worst.2 <= MAX_MEAN_ABS_PIXEL,
        "normalised images {:.4} apart on average",
        worst.2
    );
    assert!(
        worst.3 <= MAX_PIXEL,
        "normalised images {} grey levels apart somewhere",
        worst.3
    );
}
