//! Model loading checks and inference on real images with a tiny ONNX model.

mod common;

use common::TinySpec;
use histoscreen_edge::card::{Label, ModelCard};
use histoscreen_edge::model::{LoadOptions, Model};
use histoscreen_edge::preprocess::{load_image, preprocess};

fn tiny(dir: &std::path::Path) -> std::path::PathBuf {
    common::write_tiny_model(dir, "model", &TinySpec::default())
}

#[test]
fn predicts_probabilities_on_real_images() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&tiny(dir.path())).unwrap();
    assert_eq!(model.card().classes, ["benign", "malignant"]);
    let mut seen = Vec::new();
    for path in [common::benign_png(), common::malignant_png()] {
        let img = load_image(&path).unwrap();
        let probs = model.predict(&preprocess(&img)).unwrap();
        assert!((probs[0] + probs[1] - 1.0).abs() < 1e-5, "{probs:?}");
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
        let pred = model.classify(&img).unwrap();
        assert_eq!(pred.probs, probs);
        assert_eq!(pred.p_malignant, probs[1]);
        assert_eq!(pred.label, model.card().label_for(probs[1]));
        seen.push(probs[1]);
    }
    // The graph looks at colour, so two different slides differ.
    assert_ne!(seen[0], seen[1]);
}

#[test]
fn batch_and_threads_agree_with_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = tiny(dir.path());
    let single = Model::load(&onnx).unwrap();
    let paths = [
        common::benign_png(),
        common::malignant_png(),
        common::benign_png(),
    ];
    let tensors: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| preprocess(&load_image(p).unwrap()))
        .collect();
    let want: Vec<[f32; 2]> = tensors.iter().map(|t| single.predict(t).unwrap()).collect();
    let batched = Model::load_with(
        &onnx,
        &LoadOptions {
            threads: 2,
            batch: 2,
            verify_checksum: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    // 3 images through a batch-2 plan: one full batch, one zero-padded.
    let got = batched.predict_batch(&tensors.concat(), 3).unwrap();
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(&want) {
        assert!((g[1] - w[1]).abs() < 1e-5, "{g:?} vs {w:?}");
    }
    // Repeated runs reuse the input buffer; results must not drift.
    assert_eq!(single.predict(&tensors[1]).unwrap(), want[1]);
    assert_eq!(batched.predict(&tensors[0]).unwrap()[1], got[0][1]);
}

#[test]
fn wrong_input_length_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&tiny(dir.path())).unwrap();
    let err = model.predict(&[0.0; 10]).unwrap_err().to_string();
    assert!(err.contains("expected 1 image(s) of [3,224,224]"), "{err}");
    assert!(err.contains("got 10"), "{err}");
}

#[test]
fn random_bytes_are_not_a_valid_onnx_model() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("model.onnx");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&onnx, &junk).unwrap();
    common::card_for(&onnx, &junk, &TinySpec::default())
        .save(&ModelCard::card_path_for(&onnx))
        .unwrap();
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: not a valid ONNX model (", onnx.display())),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn missing_card_names_the_expected_card_path() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = tiny(dir.path());
    let card = dir.path().join("model.json");
    std::fs::remove_file(&card).unwrap();
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(err.starts_with(&card.display().to_string()), "{err}");
    assert!(err.contains("model card not found"), "{err}");
}

#[test]
fn missing_model_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("absent.onnx");
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("cannot read {}: no such file or directory", onnx.display())
    );
}

#[test]
fn checksum_mismatch_names_file_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = tiny(dir.path());
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&card_path).unwrap();
    let actual = card.sha256.clone();
    card.sha256 = "0123456789abcdef".repeat(4);
    card.save(&card_path).unwrap();
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(err.starts_with(&onnx.display().to_string()), "{err}");
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains("0123456789abcdef"), "{err}");
    assert!(err.contains(&actual[..16]), "{err}");
    // Opting out of the check loads the same file.
    let opts = LoadOptions {
        verify_checksum: false,
        ..LoadOptions::default()
    };
    assert!(Model::load_with(&onnx, &opts).is_ok());
}

#[test]
fn card_input_shape_that_disagrees_with_crop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        card_input: vec![1, 3, 227, 227],
        ..TinySpec::default()
    };
    let onnx = common::write_tiny_model(dir.path(), "model", &spec);
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(err.contains("model.json"), "{err}");
    assert!(err.contains("[1,3,227,227]"), "{err}");
}

#[test]
fn card_input_shape_that_disagrees_with_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        card_input: vec![1, 3, 227, 227],
        ..TinySpec::default()
    };
    let onnx = common::write_tiny_model(dir.path(), "model", &spec);
    // Make the card self-consistent (crop 227) so only the model disagrees.
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&card_path).unwrap();
    card.input.crop = 227;
    card.input.resize_shorter_side = 256;
    card.save(&card_path).unwrap();
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(err.starts_with(&onnx.display().to_string()), "{err}");
    assert!(
        err.contains("model input [N,3,224,224] does not match card input shape [1,3,227,227]"),
        "{err}"
    );
}

#[test]
fn card_output_shape_that_disagrees_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = tiny(dir.path());
    let card_path = ModelCard::card_path_for(&onnx);
    let mut card = ModelCard::load(&card_path).unwrap();
    card.output.shape = vec![1, 3];
    card.save(&card_path).unwrap();
    let err = Model::load(&onnx).unwrap_err().to_string();
    assert!(err.contains("[1,3]"), "{err}");
}

#[test]
fn card_round_trips_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = tiny(dir.path());
    let card = ModelCard::load(&ModelCard::card_path_for(&onnx)).unwrap();
    assert_eq!(card.split_seed, Some(7));
    assert_eq!(card.label_for(0.9), Label::Malignant);
    assert_eq!(card.label_for(0.52), Label::Uncertain);
    assert_eq!(card.label_for(0.1), Label::Benign);
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{ not json").unwrap();
    let err = ModelCard::load(&junk).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: not a valid model card", junk.display())),
        "{err}"
    );
}

#[test]
fn profile_times_every_node_and_leaves_the_model_usable() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load(&tiny(dir.path())).unwrap();
    let img = load_image(&common::benign_png()).unwrap();
    let before = model.predict(&preprocess(&img)).unwrap();
    let ops = model.profile(3).unwrap();
    assert!(!ops.is_empty());
    // Slowest first, every entry named, times non-negative and finite.
    assert!(ops.windows(2).all(|w| w[0].ms >= w[1].ms), "{ops:?}");
    assert!(ops
        .iter()
        .all(|o| !o.node.is_empty() && !o.op.is_empty() && o.ms.is_finite() && o.ms >= 0.0));
    assert!(ops.iter().map(|o| o.ms).sum::<f64>() > 0.0);
    // Profiling runs the same session: a later prediction is unchanged.
    assert_eq!(model.predict(&preprocess(&img)).unwrap(), before);
}
