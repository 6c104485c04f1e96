//! Preprocessing on real BreakHis images: shapes, values, aspect handling, decode errors.

mod common;

use histoscreen_edge::preprocess::{
    center_crop, decode_image, load_image, normalize_into, preprocess, resize_exact,
    resize_shorter_side, IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE,
};
use image::{Rgb, RgbImage};

const PLANE: usize = (INPUT_SIZE * INPUT_SIZE) as usize;

#[test]
fn real_breakhis_png_loads_as_700x460_rgb() {
    let img = load_image(&common::benign_png()).unwrap();
    assert_eq!((img.width(), img.height()), (700, 460));
}

#[test]
fn real_image_preprocesses_to_normalised_chw() {
    let img = load_image(&common::malignant_png()).unwrap();
    let t = preprocess(&img);
    assert_eq!(t.len(), 3 * PLANE);
    // Every value must be a normalised 8-bit value of its channel.
    for c in 0..3 {
        let lo = (0.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let hi = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let plane = &t[c * PLANE..(c + 1) * PLANE];
        assert!(plane.iter().all(|v| *v >= lo - 1e-5 && *v <= hi + 1e-5));
        // Stained tissue is not a flat colour.
        let mean = plane.iter().sum::<f32>() / PLANE as f32;
        let var = plane.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / PLANE as f32;
        assert!(var > 0.01, "channel {c} variance {var}");
    }
}

#[test]
fn aspect_700x460_resizes_shorter_side_then_crops_the_centre() {
    let img = load_image(&common::benign_png()).unwrap();
    let resized = resize_shorter_side(&img, INPUT_SIZE);
    assert_eq!((resized.width(), resized.height()), (340, 224));
    let crop = center_crop(&resized, INPUT_SIZE);
    assert_eq!((crop.width(), crop.height()), (224, 224));
    // (340 - 224) / 2 = 58 columns trimmed on the left.
    assert_eq!(crop.get_pixel(0, 0), resized.get_pixel(58, 0));
    assert_eq!(crop.get_pixel(223, 223), resized.get_pixel(58 + 223, 223));
    // preprocess() is exactly resize + crop + normalise.
    let mut manual = vec![0f32; 3 * PLANE];
    normalize_into(&crop, IMAGENET_MEAN, IMAGENET_STD, &mut manual);
    assert_eq!(preprocess(&img), manual);
}

#[test]
fn constant_image_maps_to_normalised_constant() {
    let img = RgbImage::from_pixel(700, 460, Rgb([200, 100, 50]));
    let t = preprocess(&img);
    for (c, v) in [200u8, 100, 50].into_iter().enumerate() {
        let want = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let plane = &t[c * PLANE..(c + 1) * PLANE];
        assert!(
            plane.iter().all(|x| (x - want).abs() < 1e-6),
            "channel {c} expected {want}"
        );
    }
}

#[test]
fn resize_exact_hits_the_requested_size_and_keeps_flat_colour() {
    let img = RgbImage::from_pixel(700, 456, Rgb([17, 34, 51]));
    let r = resize_exact(&img, 123, 77);
    assert_eq!((r.width(), r.height()), (123, 77));
    assert!(r.pixels().all(|p| *p == Rgb([17, 34, 51])));
}

#[test]
fn square_and_out_of_distribution_fixtures_preprocess() {
    for name in ["he-tumour-tile-1000.png", "ihc-colon-512.png"] {
        let img = load_image(&common::shared().join("fixtures").join(name)).unwrap();
        assert_eq!(preprocess(&img).len(), 3 * PLANE, "{name}");
    }
}

#[test]
fn jpeg_frame_bytes_decode_like_a_camera_frame() {
    // The run loop feeds MJPEG frames: encode a real slide as JPEG and decode it.
    let img = load_image(&common::benign_png()).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    let back = decode_image(&jpeg, "camera frame 1").unwrap();
    assert_eq!((back.width(), back.height()), (700, 460));
}

#[test]
fn corrupt_png_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::benign_png()).unwrap();
    let path = dir.path().join("SOB_B_corrupt.png");
    // A real PNG header with the image data cut off and garbage appended.
    let mut broken = bytes[..200].to_vec();
    broken.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    std::fs::write(&path, &broken).unwrap();
    let err = load_image(&path).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("not a readable image"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn missing_file_and_junk_bytes_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.png");
    let err = load_image(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    let err = decode_image(b"definitely not an image", "frame 42")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("frame 42: not a readable image"), "{err}");
    assert!(!err.contains('\n'));
}
