//! Stain strength and white balance changed in optical-density space: one formula for the
//! evaluation's H/E shifts and the trainer's stain augmentation, so both mean the same thing.

use image::RgbImage;

use super::linalg::pinv_3x2;
use super::od::{od_of, od_table, value_of, DEFAULT_IO};

/// `img` with its haematoxylin and eosin concentrations times `stain_factors` and `bias` added
/// to each channel's density.
///
/// Each pixel's density is unmixed with the stain vectors `he` (columns H, E); only stain that
/// is there is scaled (glass, with no concentration, stays glass) and what the two vectors do not
/// explain is kept. A density bias of `b` on a channel is that channel's intensity times
/// `exp(-b)`: a white-balance gain, which a camera applies to glass and tissue alike.
pub fn remix_stains(
    img: &RgbImage,
    he: &[[f64; 2]; 3],
    stain_factors: [f64; 2],
    bias: [f64; 3],
) -> RgbImage {
    let pinv = pinv_3x2(he).expect("stain vectors are independent");
    let table = od_table(DEFAULT_IO);
    let mut out = img.clone();
    for px in out.as_mut().chunks_exact_mut(3) {
        let od = od_of([px[0], px[1], px[2]], &table);
        let delta = [0, 1].map(|s| {
            let c = pinv[s][0] * od[0] + pinv[s][1] * od[1] + pinv[s][2] * od[2];
            (stain_factors[s] - 1.0) * c.max(0.0)
        });
        for k in 0..3 {
            px[k] = value_of(
                od[k] + (delta[0] * he[k][0] + delta[1] * he[k][1]) + bias[k],
                DEFAULT_IO,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colour::od::TORCHSTAIN_HE_REF;
    use crate::colour::synthetic::synthetic_he;

    #[test]
    fn unit_factors_and_no_bias_keep_the_image() {
        let img = synthetic_he(64, 48, 5, &TORCHSTAIN_HE_REF);
        assert_eq!(
            remix_stains(&img, &TORCHSTAIN_HE_REF, [1.0, 1.0], [0.0; 3]),
            img
        );
    }

    #[test]
    fn a_density_bias_is_a_channel_gain() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([200, 150, 100]));
        // exp(-ln 1.1) = 1/1.1 on red (intensities are v + 1 in the density table).
        let out = remix_stains(
            &img,
            &TORCHSTAIN_HE_REF,
            [1.0, 1.0],
            [1.1f64.ln(), 0.0, 0.0],
        );
        let expected = (201.0 / 1.1 - 1.0f64).round() as u8;
        assert_eq!(out.get_pixel(0, 0).0, [expected, 150, 100]);
    }
}
