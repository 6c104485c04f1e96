//! Whole-field screening on the bundled AlexNet: the dense map against tile-by-tile runs, the
//! scale arithmetic end to end, and the frames the dense pass refuses.

mod common;

use std::path::{Path, PathBuf};

use histoscreen_edge::card::ModelCard;
use histoscreen_edge::error::EdgeError;
use histoscreen_edge::field::scale;
use histoscreen_edge::model::Model;
use histoscreen_edge::preprocess::{load_image, normalize_into};

/// The bundled model (and its card) copied into `dir`.
fn bundled(dir: &Path) -> PathBuf {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let onnx = dir.join("m.onnx");
    std::fs::copy(models.join("histoscreen-alexnet-compact.onnx"), &onnx).unwrap();
    std::fs::copy(
        models.join("histoscreen-alexnet-compact.json"),
        dir.join("m.json"),
    )
    .unwrap();
    let card = ModelCard::load(&dir.join("m.json")).unwrap();
    assert!(
        card.field.is_some(),
        "the bundled card has a whole-field spec"
    );
    onnx
}

/// The tile alone, as the tile model classifies it (zero padding around it).
fn tile_alone(model: &Model, img: &image::RgbImage, x: u32, y: u32) -> f32 {
    let spec = model.card().input.clone();
    let side = spec.crop;
    let tile = image::imageops::crop_imm(img, x, y, side, side).to_image();
    let mut chw = vec![0f32; model.image_len()];
    normalize_into(&tile, spec.mean, spec.std, &mut chw);
    model.predict(&chw).unwrap()[1]
}

#[test]
fn a_one_tile_frame_is_the_tile_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&bundled(dir.path())).unwrap();
    let img = load_image(&common::malignant_png()).unwrap();
    let tile = image::imageops::crop_imm(&img, 100, 80, 224, 224).to_image();
    let field = model.screen(&tile, None).unwrap();
    assert_eq!((field.map.rows, field.map.cols), (1, 1));
    let alone = tile_alone(&model, &tile, 0, 0);
    assert!(
        (field.p_malignant - alone).abs() < 1e-5,
        "{} vs {alone}",
        field.p_malignant
    );
}

#[test]
fn cells_are_tiles_seen_with_their_surroundings() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&bundled(dir.path())).unwrap();
    let img = load_image(&common::malignant_png()).unwrap();
    let field = model.screen(&img, None).unwrap();
    let map = &field.map;
    assert_eq!((map.rows, map.cols), (8, 15), "700x460 at its own scale");
    let (stride, tile) = (map.stride, map.tile);
    // A cell is the tile seen in context: the same tile cut out with MARGIN cells of tissue
    // around it and screened on its own gives the same probability as the centre cell of that
    // small frame. This pins the window size, the stride, the alignment and the row-major order.
    const MARGIN: u32 = 3;
    let pad = MARGIN * stride;
    for (r, c) in [(3usize, 3usize), (4, 7), (3, 11)] {
        let (x, y) = (c as u32 * stride, r as u32 * stride);
        let crop =
            image::imageops::crop_imm(&img, x - pad, y - pad, tile + 2 * pad, tile + 2 * pad)
                .to_image();
        let small = model.screen(&crop, None).unwrap();
        let m = MARGIN as usize;
        assert_eq!((small.map.rows, small.map.cols), (2 * m + 1, 2 * m + 1));
        let d = (small.map.get(m, m) - map.get(r, c)).abs();
        assert!(
            d < 1e-4,
            "cell ({r},{c}) off by {d} from the same tile in a smaller frame"
        );
    }
    // Classified alone, a tile's own zero padding replaces the tissue around it: AlexNet's conv5
    // cells see 195 pixels, so the padding reaches 4 of the 6 rows and columns a tile averages.
    // Whole-field models are trained on the in-context cells, which the dense pass reproduces.
    let mut diffs = Vec::new();
    for r in 1..map.rows - 1 {
        for c in (1..map.cols - 1).step_by(3) {
            let alone = tile_alone(&model, &img, c as u32 * stride, r as u32 * stride);
            diffs.push((alone - map.get(r, c)).abs());
        }
    }
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    eprintln!(
        "tile alone vs in context: mean |dp| {mean:.4} over {} cells",
        diffs.len()
    );
    let agg = map.values.iter().sum::<f32>() / map.values.len() as f32;
    assert!(
        (field.p_malignant - agg).abs() < 1e-6,
        "the card's aggregate is the mean"
    );
    assert_eq!(field.label, model.card().label_for(field.p_malignant));
}

#[test]
fn frames_are_resampled_to_the_model_scale() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&bundled(dir.path())).unwrap();
    let model_um = model.field().unwrap().um_per_px;
    let img = load_image(&common::benign_png()).unwrap();
    // Half the model's micrometres per pixel: the frame is shrunk by 2, 350x230: 1x4 tiles.
    let half = model.screen(&img, Some(model_um / 2.0)).unwrap();
    assert_eq!((half.map.rows, half.map.cols), (1, 4));
    assert!((half.map.scale - 0.5).abs() < 1e-3);
    // A 40X BreakHis frame seen by a 100X model is magnified 2.5x.
    let f = model
        .resample_factor(Some(scale::breakhis_um_per_px(40)))
        .unwrap();
    let expect = scale::breakhis_um_per_px(40) / model_um;
    assert!((f - expect).abs() < 1e-5);
}

#[test]
fn bad_frames_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&bundled(dir.path())).unwrap();
    let model_um = model.field().unwrap().um_per_px;
    let small = image::RgbImage::new(200, 300);
    let err = model.screen(&small, None).unwrap_err();
    assert!(matches!(err, EdgeError::Frame(_)), "{err}");
    assert!(
        err.to_string().contains("smaller than one 224x224 tile"),
        "{err}"
    );
    let img = load_image(&common::benign_png()).unwrap();
    let err = model.screen(&img, Some(model_um * 5.0)).unwrap_err();
    assert!(err.to_string().contains("5.0x the model's"), "{err}");
    let err = model.screen(&img, Some(model_um / 4.5)).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    // A frame that would be larger than the dense pass accepts, refused before any work.
    let big = image::RgbImage::new(2100, 2100);
    let err = model.screen(&big, Some(model_um * 2.0)).unwrap_err();
    assert!(
        err.to_string().contains("pixels a dense pass accepts"),
        "{err}"
    );
}

#[test]
fn classify_writes_the_map_and_a_heatmap_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let model = bundled(dir.path());
    let heat = dir.path().join("heat");
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::copy(
        common::malignant_png(),
        imgs.join("SOB_M_DC-14-10926-100-001.png"),
    )
    .unwrap();
    // Not a BreakHis name, so no scale from the name: taken at the model's scale.
    std::fs::copy(common::benign_png(), imgs.join("camera.png")).unwrap();
    image::RgbImage::new(100, 100)
        .save(imgs.join("tiny.png"))
        .unwrap();
    let (code, stdout) = common::cli(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        imgs.to_str().unwrap(),
        "--format",
        "jsonl",
        "--heatmap",
        heat.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "the tiny frame is an error row");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for row in &rows[..2] {
        let map = &row["map"];
        assert_eq!(
            (map["rows"].as_u64(), map["cols"].as_u64()),
            (Some(8), Some(15))
        );
        assert_eq!(map["stride"], 32);
        let values = map["values"].as_array().unwrap();
        assert_eq!(values.len(), 120);
        let mean = values.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 120.0;
        assert!((mean - row["p_malignant"].as_f64().unwrap()).abs() < 1e-5);
    }
    let msg = rows[2]["error"].as_str().unwrap();
    assert!(msg.contains("smaller than one 224x224 tile"), "{msg}");
    for stem in ["SOB_M_DC-14-10926-100-001", "camera"] {
        let png = image::open(heat.join(format!("{stem}.heatmap.png"))).unwrap();
        assert_eq!(png.width(), 700);
        assert!(png.height() > 460, "legend band below the frame");
    }
    assert!(!heat.join("tiny.heatmap.png").exists());
}

#[test]
fn classify_refuses_a_scale_far_from_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = bundled(dir.path());
    let (code, stdout) = common::cli(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        common::benign_png().to_str().unwrap(),
        "--um-per-px",
        "2.0",
        "--format",
        "csv",
    ]);
    assert_eq!(code, 2);
    assert!(stdout.contains("is 10.2x the model's"), "{stdout}");
}

#[test]
fn run_decides_on_the_whole_field_and_saves_its_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let model = bundled(dir.path());
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    std::fs::copy(
        samples.join("SOB_M_PC-14-15704-100-001.png"),
        frames.join("1.png"),
    )
    .unwrap();
    // Sharp enough to be screened, too small for one tile: idle, and the run goes on.
    let small =
        image::imageops::crop_imm(&load_image(&common::benign_png()).unwrap(), 0, 0, 200, 150)
            .to_image();
    small.save(frames.join("2.png")).unwrap();
    std::fs::copy(
        samples.join("SOB_B_A-14-22549AB-100-001.png"),
        frames.join("3.png"),
    )
    .unwrap();
    let log = dir.path().join("events.jsonl");
    let flagged = dir.path().join("flagged");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_histoscreen-edge"))
        .args(["run", "--model", model.to_str().unwrap(), "--ema", "1"])
        .args(["--fps", "0", "--max-frames", "3", "--status-secs", "0"])
        .arg(format!("--source=dir:{}", frames.display()))
        .arg("--log")
        .arg(&log)
        .arg("--save-flagged")
        .arg(&flagged)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{stderr}");
    let tiles = &events[0]["tiles"];
    assert_eq!(
        (tiles["rows"].as_u64(), tiles["cols"].as_u64()),
        (Some(8), Some(15))
    );
    let mean = tiles["mean"].as_f64().unwrap();
    assert!((events[0]["p_malignant"].as_f64().unwrap() - mean).abs() < 1e-6);
    assert_eq!(events[0]["state"], "malignant");
    assert_eq!(
        events[1]["state"], "idle",
        "a frame smaller than a tile is idle"
    );
    assert!(events[1]["p_malignant"].is_null());
    assert!(stderr.contains("smaller than one 224x224 tile"), "{stderr}");
    assert_eq!(events[2]["state"], "benign");
    let saved = events[0]["saved"]
        .as_str()
        .expect("the malignant frame was saved");
    let overlay = Path::new(saved).with_extension("heatmap.png");
    assert!(
        image::open(&overlay).is_ok(),
        "{} is an image",
        overlay.display()
    );
}

#[test]
fn a_huge_image_is_refused_from_its_header() {
    // A valid PNG header declaring 20000x20000 RGB pixels, with 100 bytes of data behind it.
    const HUGE_PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x4e, 0x20, 0x00, 0x00, 0x4e, 0x20, 0x08, 0x02, 0x00, 0x00, 0x00, 0x6c,
        0x12, 0xd1, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0xa0, 0x3d, 0x00, 0x00, 0x00, 0x64, 0x00, 0x01, 0x86, 0x64, 0x3c, 0x35, 0x00, 0x00, 0x00,
        0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    std::fs::write(&path, HUGE_PNG).unwrap();
    let err = load_image(&path).unwrap_err().to_string();
    assert!(
        err.contains("20000x20000 pixels is more than the 100000000-pixel limit"),
        "{err}"
    );
}
