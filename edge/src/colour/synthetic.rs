//! Synthetic H&E-like images mixed from known stain vectors, for tests and benchmarks.

use image::{Rgb, RgbImage};

use super::od::{value_of, DEFAULT_IO};

/// A deterministic xorshift generator (no dependency, same numbers everywhere).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A `w`x`h` image mixed from the stain vectors `he` (rows R, G, B; columns H, E): round
/// haematoxylin-dark nuclei on an eosin stroma of varying strength, with patches of bare glass,
/// by Beer–Lambert at Io 240. Same `seed`, same image.
pub fn synthetic_he(w: u32, h: u32, seed: u64, he: &[[f64; 2]; 3]) -> RgbImage {
    let mut rng = XorShift::new(seed);
    let nuclei: Vec<(f64, f64, f64, f64)> = (0..(w * h / 300).max(4))
        .map(|_| {
            (
                rng.unit() * w as f64,
                rng.unit() * h as f64,
                3.0 + rng.unit() * 5.0,
                0.6 + rng.unit() * 1.2,
            )
        })
        .collect();
    let (fx, fy, phase) = (
        rng.unit() * 0.05 + 0.02,
        rng.unit() * 0.05 + 0.02,
        rng.unit() * 6.0,
    );
    let mut noise = XorShift::new(seed ^ 0xA5A5);
    // Nuclei are sparse: bucket them by cell so each pixel looks at a few.
    let cell = 16.0;
    let (gw, gh) = (
        (w as f64 / cell).ceil() as usize + 1,
        (h as f64 / cell).ceil() as usize + 1,
    );
    let mut grid: Vec<Vec<usize>> = vec![Vec::new(); gw * gh];
    for (i, &(cx, cy, r, _)) in nuclei.iter().enumerate() {
        let (x0, x1) = (
            ((cx - r) / cell).floor().max(0.0) as usize,
            ((cx + r) / cell) as usize,
        );
        let (y0, y1) = (
            ((cy - r) / cell).floor().max(0.0) as usize,
            ((cy + r) / cell) as usize,
        );
        for gy in y0..=y1.min(gh - 1) {
            for gx in x0..=x1.min(gw - 1) {
                grid[gy * gw + gx].push(i);
            }
        }
    }
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f64, y as f64);
        let wave = (xf * fx + phase).sin() * (yf * fy).cos();
        let glass = wave > 0.75;
        let mut ce = if glass {
            0.0
        } else {
            0.25 + 0.35 * (wave + 1.0)
        };
        let mut ch: f64 = if glass { 0.0 } else { 0.05 };
        let g = &grid[(y as f64 / cell) as usize * gw + (x as f64 / cell) as usize];
        for &i in g {
            let (cx, cy, r, strength) = nuclei[i];
            let d2 = (xf - cx).powi(2) + (yf - cy).powi(2);
            if d2 < r * r {
                ch = ch.max(strength * (1.0 - 0.3 * d2 / (r * r)));
                ce *= 0.6;
            }
        }
        let jitter = 1.0 + 0.08 * (noise.unit() - 0.5);
        let px = [0, 1, 2].map(|c| {
            let od = (he[c][0] * ch + he[c][1] * ce) * jitter;
            value_of(od, DEFAULT_IO)
        });
        Rgb(px)
    })
}
