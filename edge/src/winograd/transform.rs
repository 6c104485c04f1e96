//! Winograd F(m x m, r x r) transforms: F(2x2,3x3) and F(4x4,3x3) written out term by term, the others built from their interpolation points.

use std::sync::OnceLock;

/// Which Winograd algorithm: F(m x m, r x r), output tile side `m`, kernel side `r`.
///
/// Each transform is applied as two 1D passes (rows, then columns). A pass works on `len` lanes
/// at once, one lane per tile, so the inner loops run along contiguous lanes and vectorise.
/// F(2x2,3x3) and F(4x4,3x3) are spelled out, because a multiplication by zero cannot be
/// optimised away in IEEE arithmetic; the rest run over their matrices' non-zero terms, built
/// in f64 by Cook-Toom from their interpolation points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tile {
    /// F(2x2,3x3): 16 products, 2.25x fewer multiplications than direct, nearly exact.
    F2,
    /// F(3x3,3x3): 25 products, 3.2x fewer multiplications; fits 13x13 maps with less overhang.
    F3,
    /// F(4x4,3x3): 36 products, 4x fewer multiplications, a few more rounding errors.
    F4,
    /// F(2x2,5x5): 36 products, 2.8x fewer multiplications.
    F2R5,
    /// F(3x3,5x5): 49 products, 4.6x fewer multiplications.
    F3R5,
    /// F(4x4,5x5): 64 products, 6.25x fewer multiplications, the most rounding.
    F4R5,
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

/// The finite interpolation points of the algorithms with `n` = m + r - 1 points (the last
/// point is always infinity). Small integers and halves keep every transform coefficient a
/// dyadic number, exact in f32.
fn finite_points(n: usize) -> &'static [f64] {
    match n {
        4 => &[0.0, 1.0, -1.0],
        5 => &[0.0, 1.0, -1.0, 2.0],
        6 => &[0.0, 1.0, -1.0, 2.0, -2.0],
        7 => &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5],
        8 => &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5],
        _ => unreachable!("no Winograd tile has {n} points"),
    }
}

/// Largest input tile side of any algorithm (F(4x4,5x5)).
const MAX_A: usize = 8;

/// A transform matrix in the top-left corner of a fixed 8 x 8 array, so the passes can take
/// its size as a constant.
type Dense = [[f32; MAX_A]; MAX_A];

/// The three matrices of one algorithm: y = Aᵀ [(G g) ⊙ (Bᵀ d)] along one axis.
struct Matrices {
    /// Bᵀ, n x n.
    bt: Dense,
    /// Aᵀ, m x n.
    at: Dense,
    /// G, n x r, in f64: the weights are transformed once, at load.
    g: Vec<Vec<f64>>,
}

impl Matrices {
    /// Cook-Toom: evaluate at the points, multiply, interpolate, then transpose the polynomial
    /// product into the correlation a layer computes. Bᵀ is the transposed interpolation
    /// matrix; each finite point's row is scaled by prod(p_i - p_j) (and its row of G divided by
    /// it), which turns Bᵀ's rows into the integer or dyadic coefficients of prod(x - p_j).
    fn build(m: usize, r: usize) -> Matrices {
        let n = m + r - 1;
        let pts = finite_points(n);
        // Coefficients (constant first) of prod over `roots` of (x - root).
        let poly = |roots: &mut dyn Iterator<Item = f64>| {
            let mut c = vec![1.0f64];
            for root in roots {
                let mut next = vec![0.0; c.len() + 1];
                for (i, v) in c.iter().enumerate() {
                    next[i + 1] += v;
                    next[i] -= root * v;
                }
                c = next;
            }
            c
        };
        let mut bt = Vec::with_capacity(n);
        let mut g = Vec::with_capacity(n);
        for (i, &p) in pts.iter().enumerate() {
            let others = poly(
                &mut pts
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, q)| *q),
            );
            bt.push(others);
            let f: f64 = pts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| p - q)
                .product();
            g.push((0..r).map(|k| p.powi(k as i32) / f).collect::<Vec<_>>());
        }
        bt.push(poly(&mut pts.iter().copied()));
        g.push((0..r).map(|k| if k == r - 1 { 1.0 } else { 0.0 }).collect());
        let mut at = vec![vec![0.0f64; n]; m];
        for (i, row) in at.iter_mut().enumerate() {
            for (j, &p) in pts.iter().enumerate() {
                row[j] = p.powi(i as i32);
            }
            row[n - 1] = if i == m - 1 { 1.0 } else { 0.0 };
        }
        let dense = |rows: &[Vec<f64>]| -> Dense {
            let mut d = [[0f32; MAX_A]; MAX_A];
            for (k, row) in rows.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    d[k][j] = *v as f32;
                }
            }
            d
        };
        Matrices {
            bt: dense(&bt),
            at: dense(&at),
            g,
        }
    }
}

/// Lanes one step of a pass takes: whole vector registers (one AVX-512, two AVX2, four SSE),
/// with no remainder loop in between.
pub const W: usize = 16;

/// `dst[k] = f(src[0..I])[k]` for each lane: `I` source rows of `len` lanes (row j at
/// `src[j * ss..]`) to `O` destination rows (row k at `dst[k * ds..]`). The lanes go in chunks
/// of [`W`] through fixed-size arrays, so each chunk compiles to whole vector operations, and
/// the tail lane by lane.
#[inline(always)]
fn lanewise<const I: usize, const O: usize>(
    src: &[f32],
    ss: usize,
    dst: &mut [f32],
    ds: usize,
    len: usize,
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let s = rows::<I>(src, ss, len);
    let d = rows_mut::<O>(dst, ds, len);
    let full = len / W * W;
    for base in (0..full).step_by(W) {
        let x: [&[f32; W]; I] =
            std::array::from_fn(|r| s[r][base..base + W].try_into().expect("W lanes"));
        let mut y = [[0f32; W]; O];
        for j in 0..W {
            let out = f(std::array::from_fn(|r| x[r][j]));
            for k in 0..O {
                y[k][j] = out[k];
            }
        }
        for k in 0..O {
            d[k][base..base + W].copy_from_slice(&y[k]);
        }
    }
    for j in full..len {
        let out = f(std::array::from_fn(|r| s[r][j]));
        for k in 0..O {
            d[k][j] = out[k];
        }
    }
}

/// `dst[k] = sum_j mat[k][j] * src[j]` over the lanes, for the top-left `O` x `I` of `mat`.
/// Zero coefficients add exact zeros, so the sums round as the non-zero terms alone would.
#[inline(always)]
fn dense<const I: usize, const O: usize>(
    mat: &Dense,
    src: &[f32],
    ss: usize,
    dst: &mut [f32],
    ds: usize,
    len: usize,
) {
    let mat: [[f32; I]; O] = std::array::from_fn(|k| std::array::from_fn(|j| mat[k][j]));
    lanewise::<I, O>(src, ss, dst, ds, len, |x| {
        std::array::from_fn(|k| {
            let mut acc = mat[k][0] * x[0];
            for j in 1..I {
                acc += mat[k][j] * x[j];
            }
            acc
        })
    })
}

/// [`dense`] for the sizes the built algorithms have: `rows` x `cols` of `mat`.
#[inline(always)]
fn apply(
    mat: &Dense,
    (rows, cols): (usize, usize),
    src: &[f32],
    ss: usize,
    dst: &mut [f32],
    ds: usize,
    len: usize,
) {
    match (rows, cols) {
        (5, 5) => dense::<5, 5>(mat, src, ss, dst, ds, len),
        (6, 6) => dense::<6, 6>(mat, src, ss, dst, ds, len),
        (7, 7) => dense::<7, 7>(mat, src, ss, dst, ds, len),
        (8, 8) => dense::<8, 8>(mat, src, ss, dst, ds, len),
        (3, 5) => dense::<5, 3>(mat, src, ss, dst, ds, len),
        (2, 6) => dense::<6, 2>(mat, src, ss, dst, ds, len),
        (3, 7) => dense::<7, 3>(mat, src, ss, dst, ds, len),
        (4, 8) => dense::<8, 4>(mat, src, ss, dst, ds, len),
        (4, 6) => dense::<6, 4>(mat, src, ss, dst, ds, len),
        _ => unreachable!("no Winograd algorithm has a {rows}x{cols} transform"),
    }
}

impl Tile {
    /// Every algorithm for an `r` x `r` kernel, fewest products first.
    pub fn for_kernel(r: usize) -> &'static [Tile] {
        match r {
            3 => &[Tile::F2, Tile::F3, Tile::F4],
            5 => &[Tile::F2R5, Tile::F3R5, Tile::F4R5],
            _ => &[],
        }
    }

    /// Side of the output tile.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 | Tile::F2R5 => 2,
            Tile::F3 | Tile::F3R5 => 3,
            Tile::F4 | Tile::F4R5 => 4,
        }
    }

    /// Side of the kernel.
    pub fn r(self) -> usize {
        match self {
            Tile::F2 | Tile::F3 | Tile::F4 => 3,
            Tile::F2R5 | Tile::F3R5 | Tile::F4R5 => 5,
        }
    }

    /// Side of the input tile (the output tile plus the kernel's reach).
    pub fn a(self) -> usize {
        self.m() + self.r() - 1
    }

    /// Transformed points per tile: the number of batched products.
    pub fn points(self) -> usize {
        self.a() * self.a()
    }

    pub fn name(self) -> &'static str {
        match self {
            Tile::F2 => "F(2x2,3x3)",
            Tile::F3 => "F(3x3,3x3)",
            Tile::F4 => "F(4x4,3x3)",
            Tile::F2R5 => "F(2x2,5x5)",
            Tile::F3R5 => "F(3x3,5x5)",
            Tile::F4R5 => "F(4x4,5x5)",
        }
    }

    /// G as the written-out transforms need it (theirs for F(2x2,3x3) and F(4x4,3x3), whose
    /// signs Lavin and Gray chose), else the built one.
    fn g(self) -> &'static [Vec<f64>] {
        static WRITTEN: OnceLock<[Vec<Vec<f64>>; 2]> = OnceLock::new();
        let written = WRITTEN.get_or_init(|| {
            let rows = |m: &[[f64; 3]]| m.iter().map(|r| r.to_vec()).collect::<Vec<_>>();
            [rows(&G2), rows(&G4)]
        });
        match self {
            Tile::F2 => &written[0],
            Tile::F4 => &written[1],
            _ => &self.matrices().g,
        }
    }

    fn matrices(self) -> &'static Matrices {
        static BUILT: [OnceLock<Matrices>; 6] = [const { OnceLock::new() }; 6];
        BUILT[self as usize].get_or_init(|| Matrices::build(self.m(), self.r()))
    }

    /// G g Gᵀ of one r x r kernel (row-major), as `points()` values row-major; in f64 so the
    /// fractions of the larger tiles cost no precision beyond the final rounding.
    pub fn kernel(self, g: &[f32]) -> Vec<f32> {
        let (a, r) = (self.a(), self.r());
        assert_eq!(g.len(), r * r, "a {r}x{r} kernel");
        let gm = self.g();
        // t = G g (a x r), then u = t Gᵀ (a x a)
        let mut t = vec![0f64; a * r];
        for i in 0..a {
            for j in 0..r {
                t[i * r + j] = (0..r).map(|k| gm[i][k] * g[k * r + j] as f64).sum();
            }
        }
        let mut u = Vec::with_capacity(a * a);
        for i in 0..a {
            for gj in gm {
                u.push((0..r).map(|k| t[i * r + k] * gj[k]).sum::<f64>() as f32);
            }
        }
        u
    }

    /// Bᵀ along one axis: `a` source rows of `len` lanes (row r at `src[r * ss..]`) to `a`
    /// destination rows (row k at `dst[k * ds..]`).
    #[inline(always)]
    pub fn input_1d(self, src: &[f32], ss: usize, dst: &mut [f32], ds: usize, len: usize) {
        match self {
            Tile::F2 => lanewise::<4, 4>(src, ss, dst, ds, len, |[x0, x1, x2, x3]| {
                [x0 - x2, x1 + x2, x2 - x1, x1 - x3]
            }),
            Tile::F4 => lanewise::<6, 6>(src, ss, dst, ds, len, |[x0, x1, x2, x3, x4, x5]| {
                let p = x4 - 4.0 * x2;
                let q = 4.0 * x1 - x3;
                let r = x4 - x2;
                let s = 2.0 * (x1 - x3);
                [
                    4.0 * x0 - 5.0 * x2 + x4,
                    p - q,
                    p + q,
                    r - s,
                    r + s,
                    4.0 * x1 - 5.0 * x3 + x5,
                ]
            }),
            _ => apply(
                &self.matrices().bt,
                (self.a(), self.a()),
                src,
                ss,
                dst,
                ds,
                len,
            ),
        }
    }

    /// Aᵀ along one axis: `a` source rows of `len` lanes to `m` destination rows.
    #[inline(always)]
    pub fn output_1d(self, src: &[f32], ss: usize, dst: &mut [f32], ds: usize, len: usize) {
        match self {
            Tile::F2 => lanewise::<4, 2>(src, ss, dst, ds, len, |[x0, x1, x2, x3]| {
                [x0 + x1 + x2, x1 - x2 - x3]
            }),
            Tile::F4 => lanewise::<6, 4>(src, ss, dst, ds, len, |[x0, x1, x2, x3, x4, x5]| {
                let (sum12, dif12) = (x1 + x2, x1 - x2);
                let (sum34, dif34) = (x3 + x4, x3 - x4);
                [
                    x0 + sum12 + sum34,
                    dif12 + 2.0 * dif34,
                    sum12 + 4.0 * sum34,
                    dif12 + 8.0 * dif34 + x5,
                ]
            }),
            _ => apply(
                &self.matrices().at,
                (self.m(), self.a()),
                src,
                ss,
                dst,
                ds,
                len,
            ),
        }
    }
}

/// `N` rows of exactly `len` values, `stride` apart.
#[inline(always)]
fn rows<const N: usize>(src: &[f32], stride: usize, len: usize) -> [&[f32]; N] {
    std::array::from_fn(|r| &src[r * stride..r * stride + len])
}

/// `N` disjoint mutable rows of exactly `len` values, `stride >= len` apart.
#[inline(always)]
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

    const ALL: [Tile; 6] = [
        Tile::F2,
        Tile::F3,
        Tile::F4,
        Tile::F2R5,
        Tile::F3R5,
        Tile::F4R5,
    ];

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

    /// One tile in 2D through both passes of each transform, against the direct correlation
    /// y[i][j] = sum g[ky][kx] d[i + ky][j + kx] that a convolution layer computes.
    #[test]
    fn one_tile_matches_direct_correlation() {
        for tile in ALL {
            let (m, a, r) = (tile.m(), tile.a(), tile.r());
            let d = values(a * a, 3);
            let g = values(r * r, 7);
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
                v[k * a..(k + 1) * a].copy_from_slice(&out);
            }
            let prod: Vec<f32> = u.iter().zip(&v).map(|(u, v)| u * v).collect();
            let mut rr = vec![0f32; m * a];
            tile.output_1d(&prod, a, &mut rr, a, a);
            for i in 0..m {
                let row: Vec<f32> = (0..a).map(|l| rr[i * a + l]).collect();
                let mut out = vec![0f32; m];
                tile.output_1d(&row, 1, &mut out, 1, 1);
                for (j, got) in out.iter().enumerate() {
                    let want: f64 = (0..r)
                        .flat_map(|ky| (0..r).map(move |kx| (ky, kx)))
                        .map(|(ky, kx)| g[ky * r + kx] as f64 * d[(i + ky) * a + j + kx] as f64)
                        .sum();
                    let got = *got as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * want.abs().max(1.0),
                        "{}: y[{i}][{j}] = {got}, direct {want}",
                        tile.name()
                    );
                }
            }
        }
    }

    /// The matrices built from the points give the written-out transforms of F(4x4,3x3)
    /// (Lavin and Gray's), the construction checked on an algorithm whose matrices are known.
    #[test]
    fn built_matrices_equal_the_written_out_ones() {
        {
            let tile = Tile::F4;
            let (m, a) = (tile.m(), tile.a());
            let built = Matrices::build(m, 3);
            let len = W + 7;
            let src = values(a * len, 5);
            let mut written = vec![0f32; a * len];
            let mut generic = vec![0f32; a * len];
            tile.input_1d(&src, len, &mut written, len, len);
            apply(&built.bt, (a, a), &src, len, &mut generic, len, len);
            for (w, g) in written.iter().zip(&generic) {
                assert!(
                    (w - g).abs() <= 1e-5 * w.abs().max(1.0),
                    "{}: Bᵀ",
                    tile.name()
                );
            }
            tile.output_1d(&src, len, &mut written, len, len);
            apply(&built.at, (m, a), &src, len, &mut generic, len, len);
            for (w, g) in written[..m * len].iter().zip(&generic[..m * len]) {
                assert!(
                    (w - g).abs() <= 1e-5 * w.abs().max(1.0),
                    "{}: Aᵀ",
                    tile.name()
                );
            }
            for (b, w) in built.g.iter().zip(&G4) {
                assert!(b.iter().zip(w).all(|(b, w)| (b - w).abs() < 1e-15), "G");
            }
        }
    }

    #[test]
    fn lanes_are_independent() {
        // The same transform on whole chunks of lanes and a tail at once equals it lane by lane.
        for tile in ALL {
            let a = tile.a();
            let len = 2 * W + 5;
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

    #[test]
    fn kernels_pick_their_algorithms() {
        assert!(Tile::for_kernel(3).iter().all(|t| t.r() == 3));
        assert!(Tile::for_kernel(5).iter().all(|t| t.r() == 5));
        assert!(Tile::for_kernel(7).is_empty());
        assert_eq!(Tile::F3R5.points(), 49);
    }
}
