//! `Geometry`: a convolution layer's shape, and its space-to-depth form when it is strided.

use super::transform::Tile;
use crate::threads::SharedMut;

/// Shape of one convolution: NCHW in and out, a square kernel, a square stride, no dilation,
/// no groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Side of the kernel.
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub o: usize,
    pub h: usize,
    pub w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// Floating-point operations of the direct convolution (2 per multiply-add): the yardstick
    /// every path's GFLOP/s is stated against.
    pub fn direct_flops(&self) -> f64 {
        2.0 * (self.n * self.o * self.c * self.kernel * self.kernel * self.oh * self.ow) as f64
    }

    /// The stride-1 convolution the op computes: the layer itself, or for a strided layer its
    /// space-to-depth form. Input pixel (y·s + py, x·s + px) of channel c becomes pixel (y, x)
    /// of channel (c·s + py)·s + px, and the k x k kernel a ceil(k/s) one over s² times the
    /// channels, so an 11x11 stride-4 layer is a 3x3 stride-1 one over 48 channels. The
    /// padding is taken while gathering, so the inner convolution has none.
    pub fn inner(&self) -> Geometry {
        if self.stride == 1 {
            return self.clone();
        }
        let (s, r) = (self.stride, self.kernel.div_ceil(self.stride));
        Geometry {
            kernel: r,
            stride: 1,
            n: self.n,
            c: self.c * s * s,
            o: self.o,
            h: self.oh + r - 1,
            w: self.ow + r - 1,
            pad_top: 0,
            pad_left: 0,
            oh: self.oh,
            ow: self.ow,
        }
    }

    /// The kernel of [`Geometry::inner`] (`[o, c·s², r, r]`) from the layer's (`[o, c, k, k]`).
    pub(super) fn inner_kernel(&self, kernel: &[f32]) -> Vec<f32> {
        if self.stride == 1 {
            return kernel.to_vec();
        }
        let (s, k) = (self.stride, self.kernel);
        let inner = self.inner();
        let r = inner.kernel;
        let mut out = vec![0f32; self.o * inner.c * r * r];
        for o in 0..self.o {
            for c in 0..self.c {
                for ky in 0..k {
                    for kx in 0..k {
                        let ci = (c * s + ky % s) * s + kx % s;
                        let at = ((o * inner.c + ci) * r + ky / s) * r + kx / s;
                        out[at] = kernel[((o * self.c + c) * k + ky) * k + kx];
                    }
                }
            }
        }
        out
    }

    /// Gathers the input (`[n, c, h, w]`) into [`Geometry::inner`]'s, each plane `hp` x `wp`
    /// with the padding in place as zeros (and zeros past the input's far edges), for the inner
    /// planes `planes` (over all images). With every tile's patch inside these planes, the input
    /// transform reads each patch row by row without a bounds check.
    pub(super) fn gather_padded(
        &self,
        xs: &[f32],
        out: SharedMut,
        planes: std::ops::Range<usize>,
        padded: (usize, usize),
    ) {
        let s = self.stride;
        let mut plane = planes.start;
        let mut row = Vec::new();
        while plane < planes.end {
            // The s phases of one input row are consecutive planes: with all of them in the
            // range, each input row is read once, whole, instead of once per phase.
            if s > 1 && plane.is_multiple_of(s) && plane + s <= planes.end {
                self.gather_phases(xs, out, plane, padded, &mut row);
                plane += s;
            } else {
                self.gather_plane(xs, out, plane, padded);
                plane += 1;
            }
        }
    }

    /// One padded plane of [`Geometry::gather_padded`].
    fn gather_plane(&self, xs: &[f32], out: SharedMut, plane: usize, (hp, wp): (usize, usize)) {
        let (s, inner_c) = (self.stride, self.inner().c);
        let (img, ci) = (plane / inner_c, plane % inner_c);
        let (c, py, px) = (ci / (s * s), (ci / s) % s, ci % s);
        let src = &xs[(img * self.c + c) * self.h * self.w..][..self.h * self.w];
        // Columns xx of the padded row that come from the input: x = xx·s + px - pad_left in
        // 0..w.
        let first = self.pad_left.saturating_sub(px).div_ceil(s).min(wp);
        let end = ((self.w + self.pad_left).saturating_sub(px).div_ceil(s)).clamp(first, wp);
        for yy in 0..hp {
            // SAFETY: each plane is written by exactly one range, inside the buffer.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.0.add((plane * hp + yy) * wp), wp) };
            let y = (yy * s + py) as isize - self.pad_top as isize;
            if y < 0 || y as usize >= self.h {
                dst.fill(0.0);
                continue;
            }
            let row = &src[y as usize * self.w..][..self.w];
            dst[..first].fill(0.0);
            dst[end..].fill(0.0);
            let x0 = first * s + px - self.pad_left;
            if s == 1 {
                dst[first..end].copy_from_slice(&row[x0..x0 + (end - first)]);
            } else {
                for (d, x) in dst[first..end].iter_mut().zip(row[x0..].iter().step_by(s)) {
                    *d = *x;
                }
            }
        }
    }

    /// The `s` padded planes of phases px = 0..s of one (image, channel, row phase), `first`
    /// being phase 0's: each input row is padded once into `row`, then split into its phases.
    fn gather_phases(
        &self,
        xs: &[f32],
        out: SharedMut,
        first: usize,
        (hp, wp): (usize, usize),
        row: &mut Vec<f32>,
    ) {
        let (s, inner_c) = (self.stride, self.inner().c);
        let (img, ci) = (first / inner_c, first % inner_c);
        let (c, py) = (ci / (s * s), (ci / s) % s);
        let src = &xs[(img * self.c + c) * self.h * self.w..][..self.h * self.w];
        // Padded row: value j is input column j - pad_left, or zero; phase px's column xx is
        // value xx·s + px.
        row.resize(wp * s, 0.0);
        let left = self.pad_left.min(row.len());
        let right = (self.pad_left + self.w).min(row.len());
        row[..left].fill(0.0);
        row[right..].fill(0.0);
        let mut dst: Vec<&mut [f32]> = Vec::with_capacity(s);
        for yy in 0..hp {
            dst.clear();
            // SAFETY: each plane is written by exactly one range, inside the buffer.
            dst.extend((0..s).map(|px| unsafe {
                std::slice::from_raw_parts_mut(out.0.add(((first + px) * hp + yy) * wp), wp)
            }));
            let y = (yy * s + py) as isize - self.pad_top as isize;
            if y < 0 || y as usize >= self.h {
                dst.iter_mut().for_each(|d| d.fill(0.0));
                continue;
            }
            let input = &src[y as usize * self.w..][..self.w];
            row[left..right].copy_from_slice(&input[..right - left]);
            match s {
                2 => split_phases::<2>(row, &mut dst),
                3 => split_phases::<3>(row, &mut dst),
                4 => split_phases::<4>(row, &mut dst),
                _ => {
                    for (xx, chunk) in row.chunks_exact(s).enumerate() {
                        for (d, v) in dst.iter_mut().zip(chunk) {
                            d[xx] = *v;
                        }
                    }
                }
            }
        }
    }

    /// Rows and columns of the padded planes [`Geometry::gather_padded`] writes for `tile`:
    /// enough for every tile's whole patch.
    pub(super) fn padded(&self, tile: Tile) -> (usize, usize) {
        let (th, tw) = self.inner().tiles(tile);
        let reach = tile.a() - tile.m();
        (th * tile.m() + reach, tw * tile.m() + reach)
    }

    /// Tile rows and columns that cover the output.
    pub fn tiles(&self, tile: Tile) -> (usize, usize) {
        (self.oh.div_ceil(tile.m()), self.ow.div_ceil(tile.m()))
    }

    pub(super) fn total_tiles(&self, tile: Tile) -> usize {
        let (th, tw) = self.tiles(tile);
        self.n * th * tw
    }
}

/// `dst[p][q] = row[q·S + p]`: a row split into its `S` phases, with `S` known at compile time
/// so the split vectorises.
#[inline(always)]
fn split_phases<const S: usize>(row: &[f32], dst: &mut [&mut [f32]]) {
    let dst: &mut [&mut [f32]; S] = dst.try_into().expect("S phases");
    let n = dst[0].len();
    let dst: [&mut [f32]; S] = std::array::from_fn(|p| &mut std::mem::take(&mut dst[p])[..n]);
    for (q, chunk) in row.chunks_exact(S).take(n).enumerate() {
        for p in 0..S {
            dst[p][q] = chunk[p];
        }
    }
}
