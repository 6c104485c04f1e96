//! The F(2x2,3x3) and F(4x4,3x3) Winograd transforms, written out term by term over lanes of tiles.

/// Which Winograd algorithm: the output tile side `m` of F(m x m, 3x3).
///
/// Each transform is applied as two 1D passes (rows, then columns). A pass works on `len` lanes
/// at once, one lane per tile, so the inner loops run along contiguous lanes and vectorise; the
/// matrices are spelled out rather than multiplied because a multiplication by zero cannot be
/// optimised away in IEEE arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tile {
    /// F(2x2,3x3): 16 products, 2.25x fewer multiplications than direct, nearly exact.
    F2,
    /// F(4x4,3x3): 36 products, 4x fewer multiplications, a few more rounding errors.
    F4,
}

/// G of F(2,3): the 3-tap kernel to the 4 transformed points.
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// G of F(4,3) on the points 0, 1, -1, 2, -2 and infinity.
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

impl Tile {
    /// Both, smallest first.
    pub const ALL: [Tile; 2] = [Tile::F2, Tile::F4];

    /// Side of the output tile.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Side of the input tile (the output tile plus the kernel's reach).
    pub fn a(self) -> usize {
        self.m() + 2
    }

    /// Transformed points per tile: the number of batched products.
    pub fn points(self) -> usize {
        self.a() * self.a()
    }

    pub fn name(self) -> &'static str {
        match self {
            Tile::F2 => "F(2x2,3x3)",
            Tile::F4 => "F(4x4,3x3)",
        }
    }

    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &G2,
            Tile::F4 => &G4,
        }
    }

    /// G g Gᵀ of one 3x3 kernel (row-major), as `points()` values row-major; in f64 so the
    /// fractions of F(4x4) cost no precision beyond the final rounding.
    pub fn kernel(self, g: &[f32]) -> Vec<f32> {
        assert_eq!(g.len(), 9, "a 3x3 kernel");
        let gm = self.g();
        let a = self.a();
        // t = G g (a x 3), then u = t Gᵀ (a x a)
        let mut t = vec![0f64; a * 3];
        for i in 0..a {
            for j in 0..3 {
                t[i * 3 + j] = (0..3).map(|k| gm[i][k] * g[k * 3 + j] as f64).sum();
            }
        }
        let mut u = Vec::with_capacity(a * a);
        for i in 0..a {
            for gj in gm {
                u.push((0..3).map(|k| t[i * 3 + k] * gj[k]).sum::<f64>() as f32);
            }
        }
        u
    }

    /// Bᵀ along one axis: `a` source rows of `len` lanes (row r at `src[r * ss..]`) to `a`
    /// destination rows (row k at `dst[k * ds..]`).
    pub fn input_1d(self, src: &[f32], ss: usize, dst: &mut [f32], ds: usize, len: usize) {
        match self {
            Tile::F2 => {
                let [s0, s1, s2, s3] = rows::<4>(src, ss, len);
                let [d0, d1, d2, d3] = rows_mut::<4>(dst, ds, len);
                for j in 0..len {
                    let (x0, x1, x2, x3) = (s0[j], s1[j], s2[j], s3[j]);
                    d0[j] = x0 - x2;
                    d1[j] = x1 + x2;
                    d2[j] = x2 - x1;
                    d3[j] = x1 - x3;
                }
            }
            Tile::F4 => {
                let [s0, s1, s2, s3, s4, s5] = rows::<6>(src, ss, len);
                let [d0, d1, d2, d3, d4, d5] = rows_mut::<6>(dst, ds, len);
                for j in 0..len {
                    let (x0, x1, x2, x3, x4, x5) = (s0[j], s1[j], s2[j], s3[j], s4[j], s5[j]);
                    let p = x4 - 4.0 * x2;
                    let q = 4.0 * x1 - x3;
                    let r = x4 - x2;
                    let s = 2.0 * (x1 - x3);
                    d0[j] = 4.0 * x0 - 5.0 * x2 + x4;
                    d1[j] = p - q;
                    d2[j] = p + q;
                    d3[j] = r - s;
                    d4[j] = r + s;
                    d5[j] = 4.0 * x1 - 5.0 * x3 + x5;
                }
            }
        }
    }

    /// Aᵀ along one axis: `a` source rows of `len` lanes to `m` destination rows.
    pub fn output_1d(self, src: &[f32], ss: usize, dst: &mut [f32], ds: usize, len: usize) {
        match self {
            Tile::F2 => {
                let [s0, s1, s2, s3] = rows::<4>(src, ss, len);
                let [d0, d1] = rows_mut::<2>(dst, ds, len);
                for j in 0..len {
                    let (x0, x1, x2, x3) = (s0[j], s1[j], s2[j], s3[j]);
                    d0[j] = x0 + x1 + x2;
                    d1[j] = x1 - x2 - x3;
                }
            }
            Tile::F4 => {
                let [s0, s1, s2, s3, s4, s5] = rows::<6>(src, ss, len);
                let [d0, d1, d2, d3] = rows_mut::<4>(dst, ds, len);
                for j in 0..len {
                    let (x0, x1, x2, x3, x4, x5) = (s0[j], s1[j], s2[j], s3[j], s4[j], s5[j]);
                    let (sum12, dif12) = (x1 + x2, x1 - x2);
                    let (sum34, dif34) = (x3 + x4, x3 - x4);
                    d0[j] = x0 + sum12 + sum34;
                    d1[j] = dif12 + 2.0 * dif34;
                    d2[j] = sum12 + 4.0 * sum34;
                    d3[j] = dif12 + 8.0 * dif34 + x5;
                }
            }
        }
    }
}

/// `N` rows of exactly `len` values, `stride` apart.
fn rows<const N: usize>(src: &[f32], stride: usize, len: usize) -> [&[f32]; N] {
    std::array::from_fn(|r| &src[r * stride..r * stride + len])
}

/// `N` disjoint mutable rows of exactly `len` values, `stride >= len` apart.
fn rows_mut<const N: usize>(dst: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; N] {
    debug_assert!(stride >= len);
    let mut rest = dst;
    std::array::from_fn(|_| {
        let taken = std::mem::take(&mut rest);
        let (row, tail) = taken.split_at_mut(stride.min(taken.len()));
        rest = tail;
        &mut row[..len]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y[i] = sum_k d[i + k] g[k], the correlation a convolution layer computes.
    fn direct_1d(d: &[f32], g: &[f32; 3], m: usize) -> Vec<f64> {
        (0..m)
            .map(|i| (0..3).map(|k| d[i + k] as f64 * g[k] as f64).sum())
            .collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// One tile in 2D through both passes of each transform, against the direct correlation.
    #[test]
    fn one_tile_matches_direct_correlation() {
        for tile in Tile::ALL {
            let (m, a) = (tile.m(), tile.a());
            let d = values(a * a, 3);
            let g = values(9, 7);
            // U = G g Gᵀ, V = Bᵀ d B, y = Aᵀ (U ⊙ V) A
            let u = tile.kernel(&g);
            let mut t = vec![0f32; a * a];
            tile.input_1d(&d, a, &mut t, a, a); // along rows of the patch (lanes = columns)
            let mut v = vec![0f32; a * a];
            for k in 0..a {
                // along columns: the lanes of row k of t are its columns, one lane at a time
                let col: Vec<f32> = (0..a).map(|s| t[k * a + s]).collect();
                let mut out = vec![0f32; a];
                tile.input_1d(&col, 1, &mut out, 1, 1);
                for l in 0..a {
                    v[k * a + l] = out[l];
                }
            }
            let prod: Vec<f32> = u.iter().zip(&v).map(|(u, v)| u * v).collect();
            let mut r = vec![0f32; m * a];
            tile.output_1d(&prod, a, &mut r, a, a);
            for i in 0..m {
                let row: Vec<f32> = (0..a).map(|l| r[i * a + l]).collect();
                let mut out = vec![0f32; m];
                tile.output_1d(&row, 1, &mut out, 1, 1);
                for (j, got) in out.iter().enumerate() {
                    let want: f64 = (0..3)
                        .map(|ky| {
                            let g3 = [g[ky * 3], g[ky * 3 + 1], g[ky * 3 + 2]];
                            direct_1d(&d[(i + ky) * a..(i + ky + 1) * a], &g3, m)[j]
                        })
                        .sum();
                    let got = *got as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{}: y[{i}][{j}] = {got}, direct {want}",
                        tile.name()
                    );
                }
            }
        }
    }

    #[test]
    fn lanes_are_independent() {
        // The same transform on 5 lanes at once equals it lane by lane.
        for tile in Tile::ALL {
            let a = tile.a();
            let len = 5;
            let src = values(a * len, 11);
            let mut all = vec![0f32; a * len];
            tile.input_1d(&src, len, &mut all, len, len);
            for j in 0..len {
                let col: Vec<f32> = (0..a).map(|r| src[r * len + j]).collect();
                let mut one = vec![0f32; a];
                tile.input_1d(&col, 1, &mut one, 1, 1);
                for k in 0..a {
                    assert_eq!(one[k], all[k * len + j]);
                }
            }
        }
    }
}
