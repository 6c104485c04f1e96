//! The exported ONNX, run by the edge runtime (tract), equals burn's own forward pass.

mod common;

use common::*;
use histoscreen_edge::model::Model;
use histoscreen_train::data::dataset::Sample;
use histoscreen_train::data::images;
use histoscreen_train::export::model_file::{self, CardInfo};
use histoscreen_train::model::alexnet::{AlexNet, Head};
use histoscreen_train::model::{device::device, infer, pretrained};

fn check(head: Head) {
    let device = device();
    let mut model = AlexNet::new(head, &device);
    pretrained::load_pretrained(&mut model, &pretrained()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("model.onnx");
    let bytes = model_file::onnx_f32(&model, "parity test").unwrap();
    model_file::write_model(
        &bytes,
        &onnx,
        head,
        CardInfo {
            name: "parity".into(),
            precision: "f32".into(),
            threshold: 0.5,
            uncertain_band: 0.1,
            split_seed: None,
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
            stain: None,
            gate: None,
        },
    )
    .unwrap();
    let edge = Model::load(&onnx).unwrap();

    let samples: Vec<Sample> = some_images(3)
        .iter()
        .map(|p| {
            let mut s = histoscreen_train::data::dataset::parse_name(
                p.file_name().unwrap().to_str().unwrap(),
            )
            .unwrap();
            s.path = p.clone();
            s
        })
        .collect();
    let (loaded, rejected) = images::load(&samples);
    assert!(rejected.is_empty());
    let views: Vec<&image::RgbImage> = loaded.iter().map(|x| &x.eval_view).collect();
    let burn_p = infer::predict(&model, &views, 4, &device);
    let mut spread = (f32::MAX, f32::MIN);
    for (x, p_burn) in loaded.iter().zip(&burn_p) {
        let img = histoscreen_edge::preprocess::load_image(&x.sample.path).unwrap();
        let p_edge = edge.classify(&img).unwrap().p_malignant;
        assert!(
            (p_edge - p_burn).abs() < 1e-4,
            "{}: edge {p_edge} vs burn {p_burn}",
            x.sample.path.display()
        );
        spread = (spread.0.min(*p_burn), spread.1.max(*p_burn));
    }
    // Equal outputs mean something only if the images produce different outputs.
    assert!(
        spread.1 - spread.0 > 1e-3,
        "outputs barely vary: {spread:?}"
    );
}

#[test]
fn compact_head_export_matches_burn_forward() {
    check(Head::Compact);
}

#[test]
fn classic_head_export_matches_burn_forward() {
    check(Head::Classic);
}
