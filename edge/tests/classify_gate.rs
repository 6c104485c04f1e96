//! `classify` with the not-H&E gate: refused images become `not-he` rows with the gate's reason
//! in every format, `--no-gate` classifies them anyway, and a card asking for stain
//! normalisation gets it on every path.

mod common;

use std::path::{Path, PathBuf};

use common::{cli, TinySpec};
use histoscreen_edge::card::{ModelCard, StainSpec};
use histoscreen_edge::colour::{fit_image, MacenkoParams, Normaliser};
use histoscreen_edge::model::Model;
use histoscreen_edge::preprocess::{self, load_image};

/// A folder with one BreakHis image, the IHC fixture and a blank grey frame.
fn mixed_folder(dir: &Path) -> PathBuf {
    let imgs = dir.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::copy(common::benign_png(), imgs.join("a_breakhis.png")).unwrap();
    std::fs::copy(
        common::shared().join("fixtures/ihc-colon-512.png"),
        imgs.join("b_ihc.png"),
    )
    .unwrap();
    image::RgbImage::from_pixel(400, 300, image::Rgb([128, 128, 128]))
        .save(imgs.join("c_grey.png"))
        .unwrap();
    imgs
}

/// `classify --model MODEL IMGS --format FORMAT [extra...]`.
fn classify(model: &Path, imgs: &Path, format: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "classify",
        "--model",
        model.to_str().unwrap(),
        imgs.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn classify_labels_non_he_images_not_he_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::write_tiny_model(dir.path(), "model", &TinySpec::default());
    let imgs = mixed_folder(dir.path());

    let (code, stdout) = classify(&model, &imgs, "jsonl", &[]);
    assert_eq!(code, 0, "not-he rows are answers, not errors: {stdout}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["p_malignant"].as_f64().is_some());
    assert_eq!(rows[0]["gate"]["pass"], true);
    assert!(rows[0]["gate"]["tissue_fraction"].as_f64().unwrap() > 0.01);
    assert!(rows[0]["gate"]["stain_angle_deg"].as_f64().is_some());
    for (row, want) in [(&rows[1], "not H&E colours"), (&rows[2], "colourless")] {
        assert_eq!(row["label"], "not-he");
        assert!(row["p_malignant"].is_null());
        assert_eq!(row["gate"]["pass"], false);
        let reason = row["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{reason}");
    }

    let (code, stdout) = classify(&model, &imgs, "csv", &[]);
    assert_eq!(code, 0);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines.map(csv_row).collect();
    assert_eq!(rows[1][col("label")], "not-he");
    assert!(
        rows[1][col("not_he_reason")].contains("not H&E colours"),
        "{:?}",
        rows[1]
    );
    assert!(rows[1][col("p_malignant")].is_empty());
    assert!(rows[0][col("not_he_reason")].is_empty());
    for row in &rows {
        let tissue: f64 = row[col("tissue_fraction")].parse().unwrap();
        assert!((0.0..=1.0).contains(&tissue), "{row:?}");
    }
    assert!(rows[0][col("stain_angle_deg")].parse::<f64>().is_ok());

    let (code, stdout) = classify(&model, &imgs, "table", &[]);
    assert_eq!(code, 0);
    let ihc = stdout.lines().find(|l| l.contains("b_ihc.png")).unwrap();
    assert!(
        ihc.contains(" not-he ") && ihc.contains("not H&E colours"),
        "{ihc}"
    );

    // --no-gate: every image gets a probability, and no gate fields.
    let (code, stdout) = classify(&model, &imgs, "jsonl", &["--no-gate"]);
    assert_eq!(code, 0);
    for line in stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["p_malignant"].as_f64().is_some(), "{row}");
        assert!(row.get("gate").is_none(), "{row}");
    }
}

/// Minimal RFC 4180 split (quoted fields may hold commas).
fn csv_row(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// A card with `stain.normalise` makes the model normalise before the network: its prediction
/// is the network's on the Macenko-normalised crop, and differs from the same model without.
#[test]
fn a_normalising_card_normalises_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = common::write_tiny_model(dir.path(), "model", &TinySpec::default());
    let plain = Model::load(&onnx).unwrap();
    assert!(plain.stain_normaliser().is_none());

    // The reference: a different lab's H&E tile, so normalising visibly changes BreakHis.
    let tile = load_image(&common::shared().join("fixtures/he-tumour-tile-1000.png")).unwrap();
    let fit = fit_image(&tile, &MacenkoParams::default()).unwrap();
    let stain = StainSpec {
        he: fit.he,
        max_c: fit.max_c,
        normalise: true,
        ..StainSpec::torchstain_default()
    };
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&card_path).unwrap();
    card.stain = Some(stain.clone());
    card.save(&card_path).unwrap();
    let normalising = Model::load(&onnx).unwrap();
    assert!(normalising.stain_normaliser().is_some());

    let img = load_image(&common::benign_png()).unwrap();
    let spec = &normalising.card().input;
    let mut chw = vec![0f32; normalising.image_len()];
    preprocess::preprocess_stained(
        &img,
        spec.resize_shorter_side,
        spec.crop,
        spec.mean,
        spec.std,
        Some(&Normaliser::new(&stain)),
        &mut chw,
    );
    let want = normalising.predict(&chw).unwrap()[1];
    let got = normalising.classify(&img).unwrap().p_malignant;
    assert_eq!(
        got, want,
        "classify normalises exactly as preprocess_stained does"
    );
    let unnormalised = plain.classify(&img).unwrap().p_malignant;
    assert_ne!(got, unnormalised, "normalising changed nothing");
}

/// The whole-field path of a normalising card normalises the frame at the model's scale: its
/// tile map is the plain model's on the normalised frame.
#[test]
fn a_normalising_card_normalises_the_whole_field() {
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let onnx = dir.path().join("m.onnx");
    std::fs::copy(models.join("histoscreen-alexnet-compact.onnx"), &onnx).unwrap();
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&models.join("histoscreen-alexnet-compact.json")).unwrap();
    card.save(&card_path).unwrap();
    let plain = Model::load(&onnx).unwrap();
    assert!(plain.has_field() && plain.stain_normaliser().is_none());
    let mut stain = card
        .stain
        .clone()
        .expect("the bundled card has a stain reference");
    stain.normalise = true;
    card.stain = Some(stain.clone());
    card.save(&card_path).unwrap();
    let normalising = Model::load(&onnx).unwrap();

    // A camera-sized frame already at the model's scale (no resampling), cast warm.
    let img = histoscreen_edge::colour::apply_shift(
        &load_image(&common::malignant_png()).unwrap(),
        histoscreen_edge::colour::Shift::WbWarm,
    );
    let got = normalising.screen(&img, None).unwrap();
    let normalised = Normaliser::new(&stain).normalise(&img).unwrap();
    let want = plain.screen(&normalised, None).unwrap();
    assert_eq!(got.map.values, want.map.values);
    assert_ne!(got.map.values, plain.screen(&img, None).unwrap().map.values);
}
