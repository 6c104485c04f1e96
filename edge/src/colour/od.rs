//! Optical density: Beer–Lambert conversion between 8-bit RGB and stain absorbance.
//!
//! `OD = -ln((I + 1) / Io)` per channel, exactly as torchstain's numpy Macenko code computes it
//! (Io = 240 is the brightness of unstained glass; the `+ 1` keeps black finite). Values brighter
//! than Io give a slightly negative density; they are background and are kept as they are.

/// Transmitted-light intensity of the background (torchstain's default).
pub const DEFAULT_IO: f64 = 240.0;
/// Optical density below which a channel counts as unstained (torchstain's `beta`).
pub const DEFAULT_BETA: f64 = 0.15;
/// Percentile (in percent) of the stain-plane angles taken as the two stain directions
/// (torchstain's `alpha`).
pub const DEFAULT_ALPHA: f64 = 1.0;
/// torchstain's reference stain vectors (`HERef`): rows R, G, B; columns H, E.
pub const TORCHSTAIN_HE_REF: [[f64; 2]; 3] = [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]];
/// torchstain's reference 99th-percentile concentrations (`maxCRef`).
pub const TORCHSTAIN_MAX_C_REF: [f64; 2] = [1.9705, 1.0308];

/// The optical density of every 8-bit value for a background intensity `io`.
pub fn od_table(io: f64) -> [f64; 256] {
    let mut t = [0f64; 256];
    for (v, slot) in t.iter_mut().enumerate() {
        *slot = -((v as f64 + 1.0) / io).ln();
    }
    t
}

/// Optical density of one pixel through `table` (from [`od_table`]).
#[inline]
pub fn od_of(px: [u8; 3], table: &[f64; 256]) -> [f64; 3] {
    [
        table[px[0] as usize],
        table[px[1] as usize],
        table[px[2] as usize],
    ]
}

/// Stained in every channel: torchstain's tissue mask (`~any(OD < beta)`), the pixels the
/// stain directions are estimated from.
#[inline]
pub fn stained_everywhere(od: [f64; 3], beta: f64) -> bool {
    od[0] >= beta && od[1] >= beta && od[2] >= beta
}

/// Back to an 8-bit value the way torchstain does (`Io * exp(-OD)`, clipped at 255, then
/// truncated by `astype(uint8)`).
#[inline]
pub fn to_u8(od: f64, io: f64) -> u8 {
    (io * (-od).exp()).clamp(0.0, 255.0) as u8
}

/// The 8-bit value whose optical density is `od` (inverse of [`od_table`], rounded).
#[inline]
pub fn value_of(od: f64, io: f64) -> u8 {
    (io * (-od).exp() - 1.0).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_formula_and_round_trips() {
        let t = od_table(DEFAULT_IO);
        assert!((t[239] - 0.0).abs() < 1e-12, "Io - 1 is zero density");
        assert!(t[255] < 0.0 && t[0] > 5.0);
        for v in 0..=255u8 {
            assert_eq!(value_of(t[v as usize], DEFAULT_IO), v);
        }
        assert!(stained_everywhere([0.2, 0.3, 0.15], DEFAULT_BETA));
        assert!(!stained_everywhere([0.2, 0.1, 0.3], DEFAULT_BETA));
        assert_eq!(to_u8(-1.0, DEFAULT_IO), 255);
    }
}
