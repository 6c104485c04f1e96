//! Where the tiles of a frame fall: how many fit, and which pixels each one covers.

/// Tile positions along one axis of `side` pixels: every `stride`-th offset at which a whole
/// `tile` fits (0 when the side is shorter than a tile).
pub fn tiles_along(side: u32, tile: u32, stride: u32) -> usize {
    if side < tile || stride == 0 {
        0
    } else {
        ((side - tile) / stride) as usize + 1
    }
}

/// `(rows, cols)` of the tile grid of a `w`x`h` frame.
pub fn grid(w: u32, h: u32, tile: u32, stride: u32) -> (usize, usize) {
    (tiles_along(h, tile, stride), tiles_along(w, tile, stride))
}

/// Pixel rectangle `(x, y, side)` of cell `(r, c)` in the model-scale frame.
pub fn cell_rect(r: usize, c: usize, tile: u32, stride: u32) -> (u32, u32, u32) {
    (c as u32 * stride, r as u32 * stride, tile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakhis_and_camera_frames() {
        assert_eq!(grid(700, 460, 224, 32), (8, 15));
        assert_eq!(grid(1280, 720, 224, 32), (16, 34));
        assert_eq!(grid(224, 224, 224, 32), (1, 1));
        assert_eq!(grid(223, 500, 224, 32), (9, 0));
        // The last tile ends inside the frame, one more would not.
        let (r, c) = grid(700, 460, 224, 32);
        let (x, y, s) = cell_rect(r - 1, c - 1, 224, 32);
        assert!(x + s <= 700 && x + s + 32 > 700);
        assert!(y + s <= 460 && y + s + 32 > 460);
    }
}
