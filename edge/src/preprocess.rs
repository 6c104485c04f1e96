//! Image decoding and the exact tensor preprocessing shared by training and device.
//!
//! The trainer calls these functions too, so a model never sees a differently
//! prepared image in the field than it saw during training. The recipe is the
//! torchvision ImageNet one: bilinear (antialiased) resize of the shorter side to
//! 224, centre crop 224x224, `(x/255 - mean) / std`, CHW planar f32.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;

use fast_image_resize as fir;
use image::RgbImage;

use crate::colour::Normaliser;
use crate::error::{one_line, EdgeError};

/// Side of the square network input.
pub const INPUT_SIZE: u32 = 224;
/// ImageNet channel means (RGB), as used by the pretrained AlexNet features.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Load a PNG/JPEG/TIFF file as 8-bit RGB.
pub fn load_image(path: &Path) -> Result<RgbImage, EdgeError> {
    let bytes = crate::fsutil::read(path)?;
    decode_image(&bytes, &path.display().to_string())
}

/// Decode in-memory bytes (a camera MJPEG frame, an upload) as 8-bit RGB.
///
/// The format is sniffed from the magic bytes, not from a file extension,
/// because camera frames have none. `what` names the source in the error.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<RgbImage, EdgeError> {
    check_dimensions(bytes, what)?;
    let img = image::load_from_memory(bytes).map_err(|e| EdgeError::Image {
        what: what.to_string(),
        reason: one_line(e),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(EdgeError::Image {
            what: what.to_string(),
            reason: "image has no pixels".into(),
        });
    }
    // Grey, RGBA and 16-bit slides all become plain 8-bit RGB; alpha is dropped
    // because stained tissue has no meaningful transparency.
    Ok(img.into_rgb8())
}

/// Largest image decoded, in pixels: a 12-megapixel camera frame fits eight times over; a
/// 20000x20000 slide scan (1.2 GB as RGB) is refused from its header, before any decoding.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// Refuses an image whose header declares more than [`MAX_IMAGE_PIXELS`]; formats whose
/// header cannot be read this way are left to the decoder's own checks.
fn check_dimensions(bytes: &[u8], what: &str) -> Result<(), EdgeError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
    let Ok((w, h)) = reader
        .map_err(|_| ())
        .and_then(|r| r.into_dimensions().map_err(|_| ()))
    else {
        return Ok(());
    };
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(EdgeError::Image {
            what: what.to_string(),
            reason: format!(
                "{w}x{h} pixels is more than the {MAX_IMAGE_PIXELS}-pixel limit; crop or \
                 downscale it first"
            ),
        });
    }
    Ok(())
}

thread_local! {
    // A Resizer keeps scratch buffers between calls; one per thread avoids
    // reallocating them for every camera frame.
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

/// Resize to exactly `w`x`h` with a SIMD bilinear convolution.
///
/// Convolution (not plain interpolation) so that downscaling is antialiased,
/// like PIL/torchvision with `antialias=True`.
pub fn resize_exact(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    assert!(w > 0 && h > 0, "resize target must be non-empty");
    if img.width() == w && img.height() == h {
        return img.clone();
    }
    let src = fir::images::ImageRef::new(
        img.width(),
        img.height(),
        img.as_raw(),
        fir::PixelType::U8x3,
    )
    .expect("RgbImage buffer always matches its dimensions");
    let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    RESIZER.with_borrow_mut(|r| {
        r.resize(&src, &mut dst, &options)
            .expect("same pixel type on both sides")
    });
    RgbImage::from_raw(w, h, dst.into_vec()).expect("dst buffer has w*h*3 bytes")
}

/// Resize so that the shorter side equals `target`, keeping the aspect ratio.
///
/// The longer side is truncated (`int(target * long / short)`), exactly as
/// torchvision's `Resize(int)` does, so 700x460 becomes 340x224.
pub fn resize_shorter_side(img: &RgbImage, target: u32) -> RgbImage {
    let (w, h) = (img.width() as u64, img.height() as u64);
    let t = target as u64;
    let (nw, nh) = if w <= h {
        (t, (t * h / w).max(1))
    } else {
        ((t * w / h).max(1), t)
    };
    resize_exact(img, nw as u32, nh as u32)
}

/// Take the central `size`x`size` square.
///
/// Offsets round like torchvision's `CenterCrop`; an image smaller than `size`
/// is padded with black so the output is always `size`x`size`.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let s = size as i64;
    let left = ((w - s) as f64 / 2.0).round() as i64;
    let top = ((h - s) as f64 / 2.0).round() as i64;
    if left >= 0 && top >= 0 {
        return image::imageops::crop_imm(img, left as u32, top as u32, size, size).to_image();
    }
    let mut out = RgbImage::new(size, size);
    for y in 0..s {
        for x in 0..s {
            let (sx, sy) = (x + left, y + top);
            if (0..w).contains(&sx) && (0..h).contains(&sy) {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// Write `(x/255 - mean) / std` as CHW planar f32 into `out` (len == 3*w*h).
///
/// A 256-entry table per channel computes the exact formula once per value
/// instead of once per pixel; results are bit-identical to the formula.
pub fn normalize_into(img: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    assert_eq!(
        out.len(),
        3 * plane,
        "normalize_into: output length must be 3*w*h"
    );
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = lut[0][px[0] as usize];
        g[i] = lut[1][px[1] as usize];
        b[i] = lut[2][px[2] as usize];
    }
}

/// Full pipeline with explicit parameters (used with a model card's input spec).
pub fn preprocess_with(
    img: &RgbImage,
    shorter_side: u32,
    crop: u32,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut [f32],
) {
    let resized = resize_shorter_side(img, shorter_side);
    let cropped = center_crop(&resized, crop);
    normalize_into(&cropped, mean, std, out);
}

/// [`preprocess_with`] with Macenko stain normalisation of the cropped view (when `stain` is
/// given) before the mean/std normalisation: the one place the trainer and the device normalise
/// stains, at the network's input size where it costs least.
pub fn preprocess_stained(
    img: &RgbImage,
    shorter_side: u32,
    crop: u32,
    mean: [f32; 3],
    std: [f32; 3],
    stain: Option<&Normaliser>,
    out: &mut [f32],
) {
    let resized = resize_shorter_side(img, shorter_side);
    let cropped = center_crop(&resized, crop);
    normalize_into(&stain_normalised(&cropped, stain), mean, std, out);
}

/// `img` normalised to `stain`'s reference (a whole field at the model's scale, a tile), or
/// `img` itself without a normaliser or when it has no stains to estimate (blank glass, a flat
/// frame: the not-H&E gate refuses those).
pub fn stain_normalised<'a>(img: &'a RgbImage, stain: Option<&Normaliser>) -> Cow<'a, RgbImage> {
    match stain {
        Some(n) => n.normalise_or_keep(img),
        None => Cow::Borrowed(img),
    }
}

/// The standard pipeline: shorter side to 224, centre crop 224, ImageNet
/// normalisation; returns 3*224*224 values in CHW order.
pub fn preprocess(img: &RgbImage) -> Vec<f32> {
    let n = (INPUT_SIZE * INPUT_SIZE * 3) as usize;
    let mut out = vec![0f32; n];
    preprocess_with(
        img,
        INPUT_SIZE,
        INPUT_SIZE,
        IMAGENET_MEAN,
        IMAGENET_STD,
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_normalises_per_channel() {
        let img = RgbImage::from_pixel(300, 250, image::Rgb([10, 128, 250]));
        let t = preprocess(&img);
        assert_eq!(t.len(), 3 * 224 * 224);
        let plane = 224 * 224;
        for (c, v) in [10u8, 128, 250].into_iter().enumerate() {
            let want = (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(t[c * plane..(c + 1) * plane]
                .iter()
                .all(|x| (x - want).abs() < 1e-6));
        }
    }

    #[test]
    fn shorter_side_truncates_like_torchvision() {
        let img = RgbImage::new(700, 460);
        let r = resize_shorter_side(&img, 224);
        assert_eq!((r.width(), r.height()), (340, 224));
        let tall = RgbImage::new(456, 700);
        let r = resize_shorter_side(&tall, 224);
        assert_eq!((r.width(), r.height()), (224, 343));
    }

    #[test]
    fn center_crop_takes_the_middle_and_pads_small_images() {
        let mut img = RgbImage::new(10, 4);
        img.put_pixel(3, 0, image::Rgb([1, 2, 3]));
        let c = center_crop(&img, 4);
        assert_eq!((c.width(), c.height()), (4, 4));
        assert_eq!(*c.get_pixel(0, 0), image::Rgb([1, 2, 3]));
        let small = RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9]));
        let p = center_crop(&small, 4);
        assert_eq!(*p.get_pixel(0, 0), image::Rgb([0, 0, 0]));
        assert_eq!(*p.get_pixel(1, 1), image::Rgb([9, 9, 9]));
    }
}
