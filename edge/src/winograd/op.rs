//! `WinogradConv`: a 3x3 or 5x5 f32 convolution (a strided one through space-to-depth) as one tract op, so tract cannot split it.

use std::sync::Arc;

use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputFormat, MMMInputValue, MatMatMul,
    OutputStore, Query, Suitable,
};
use tract_linalg::pack::PackedFormat;
use tract_linalg::{MmmDispatch, WeightType};
use tract_onnx::tract_core::internal::*;

use super::geometry::Geometry;
use super::transform::Tile;
use crate::threads::{for_each_range, SharedMut};

/// Transformed inputs and products of one block of tiles should stay within this many bytes,
/// about a core's L2 and its share of L3, so the products read their panels from cache.
const BLOCK_BYTES: usize = 4 << 20;

/// Lanes (tiles) the output transform works on at once.
const OUT_LANES: usize = 64;

/// Panels of tiles the input transform works on at once.
const IN_PANELS: usize = 4;

/// The weights, transformed and packed once, and the kernel that multiplies them.
struct Packed {
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    b_format: PackedFormat,
    /// G g Gᵀ at each point, `[o, c]`, packed as the kernel's A operand.
    u: Vec<Box<dyn MMMInputValue>>,
    bias: Vec<f32>,
    /// Tiles per block: all of them, or a multiple of the kernel's panel width.
    block: usize,
    /// Products laid out `[o, point, block]` (else `[point, o, block]`), and the input
    /// transform over groups of [`IN_PANELS`] panels (else one). Taken when the layer needs
    /// more than one block. Measured on AlexNet (Xeon, 1 thread): on a 1280x720 field it took
    /// conv2 from 58 to 47 ms and conv1 from 40 to 37; on one 224 tile, where every layer is one
    /// block, it cost 0.1-0.5 ms per layer.
    by_channel: bool,
}

/// An f32 convolution computed with Winograd's minimal filtering: 3x3 or 5x5 at stride 1, or
/// strided through its space-to-depth form.
///
/// Per block of tiles: the input transform writes each of the `points()` transformed inputs as
/// the B operand of one product, already in the kernel's panel layout (no packing pass, no k=1
/// products); the products multiply them by the transformed weights, packed once at load; the
/// output transform reads the products back, adds the bias and writes NCHW.
#[derive(Clone)]
pub struct WinogradConv {
    pub tile: Tile,
    /// The layer as the model has it.
    pub geo: Geometry,
    /// What the transforms and products compute: `geo` itself at stride 1.
    inner: Geometry,
    /// The ReLU that followed the convolution, applied as the output transform writes: one
    /// pass over the output less.
    pub relu: bool,
    packed: Arc<Packed>,
}

impl std::fmt::Debug for WinogradConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinogradConv")
            .field("tile", &self.tile)
            .field("geo", &self.geo)
            .field("kernel", &self.packed.mmm.name())
            .finish()
    }
}

impl PartialEq for WinogradConv {
    fn eq(&self, other: &Self) -> bool {
        self.tile == other.tile
            && self.geo == other.geo
            && self.relu == other.relu
            && Arc::ptr_eq(&self.packed, &other.packed)
    }
}
impl Eq for WinogradConv {}

/// A kernel for f32 products whose two operands are plain packed panels, which is what the
/// transforms write and read.
fn pick_kernel(m: usize, k: usize, n: usize) -> TractResult<(Suitable, PackedFormat)> {
    let f32_dt = f32::datum_type();
    let query = Query {
        weight: WeightType::Plain(f32_dt),
        activation: f32_dt,
        accumulators: tvec!(f32_dt),
        store: Some(f32_dt),
        allow_extractor: false,
        m: Some(m),
        k: Some(k),
        n: Some(n),
    };
    let plain_b = |s: &Suitable| -> Option<PackedFormat> {
        let (a, b) = &s.0.packings()[s.1];
        let a = a.downcast_ref::<PackedFormat>()?;
        let b = b.downcast_ref::<PackedFormat>()?;
        (s.2.is_none() && a.dt == f32_dt && b.dt == f32_dt).then(|| b.clone())
    };
    let dispatch = MmmDispatch::native();
    if let Some(s) = dispatch.pick(&query) {
        if let Some(b) = plain_b(&s) {
            return Ok((s, b));
        }
    }
    let mut suitable: Vec<Suitable> = dispatch
        .suitable(&query)
        .into_iter()
        .filter(|s| plain_b(s).is_some())
        .collect();
    tract_linalg::mmm::retain_best(&mut suitable);
    let best = suitable
        .into_iter()
        .max_by_key(|s| s.0.mr() * s.0.nr())
        .context("no f32 matrix kernel with plain packed operands on this CPU")?;
    let b = plain_b(&best).expect("filtered above");
    Ok((best, b))
}

impl WinogradConv {
    /// Transforms and packs `kernel` (`[o, c, k, k]`, row-major) for `geo`.
    pub fn new(tile: Tile, geo: Geometry, kernel: &[f32], bias: &[f32]) -> TractResult<Self> {
        let k = geo.kernel;
        ensure!(
            kernel.len() == geo.o * geo.c * k * k,
            "kernel has {} values, [{}, {}, {k}, {k}] needs {}",
            kernel.len(),
            geo.o,
            geo.c,
            geo.o * geo.c * k * k
        );
        ensure!(geo.stride >= 1, "stride 0");
        let outer = geo;
        let geo = outer.inner();
        ensure!(
            tile.r() == geo.kernel,
            "{} is for {}x{} kernels, this layer needs {}x{}",
            tile.name(),
            tile.r(),
            tile.r(),
            geo.kernel,
            geo.kernel
        );
        let kernel = outer.inner_kernel(kernel);
        let rr = geo.kernel * geo.kernel;
        ensure!(
            bias.len() == geo.o,
            "bias has {} values for {} channels",
            bias.len(),
            geo.o
        );
        let points = tile.points();
        let total = geo.total_tiles(tile);
        let per_tile = points * (geo.c + geo.o) * std::mem::size_of::<f32>();
        let wanted = (BLOCK_BYTES / per_tile).clamp(1, total.max(1));
        let ((mmm, packing, _), b_format) = pick_kernel(geo.o, geo.c, wanted)?;
        let nr = b_format.r;
        let block = if wanted >= total {
            total.max(1)
        } else {
            (wanted / nr).max(1) * nr
        };
        let mut u = vec![vec![0f32; geo.o * geo.c]; points];
        for (oc, g) in kernel.chunks_exact(rr).enumerate() {
            for (point, value) in tile.kernel(g).into_iter().enumerate() {
                u[point][oc] = value;
            }
        }
        let a_format: &dyn MMMInputFormat = &*mmm.packings()[packing].0;
        let u = u
            .into_iter()
            .map(|values| {
                let t = Tensor::from_shape(&[geo.o, geo.c], &values)?;
                a_format.prepare_one(&t, 1, 0)
            })
            .collect::<TractResult<Vec<_>>>()?;
        Ok(WinogradConv {
            tile,
            geo: outer,
            inner: geo,
            relu: false,
            packed: Arc::new(Packed {
                mmm,
                packing,
                b_format,
                u,
                bias: bias.to_vec(),
                block,
                by_channel: block < total,
            }),
        })
    }

    /// The same convolution followed by a ReLU.
    pub fn with_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    /// Panels of tiles the input transform takes at once.
    fn in_panels(&self) -> usize {
        if self.packed.by_channel {
            IN_PANELS
        } else {
            1
        }
    }

    /// tract-linalg's name of the matrix kernel the products run in.
    pub fn kernel_name(&self) -> &str {
        self.packed.mmm.name()
    }

    fn run(&self, buffers: &mut Buffers, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1, "WinogradConv takes one input");
        let g = &self.geo;
        let x = &inputs[0];
        ensure!(
            x.shape() == [g.n, g.c, g.h, g.w],
            "WinogradConv built for input [{}, {}, {}, {}], got {:?}",
            g.n,
            g.c,
            g.h,
            g.w,
            x.shape()
        );
        let plain = x.try_as_plain_ram()?;
        let mut xs = plain.as_slice::<f32>()?;
        let mut gathered = std::mem::take(&mut buffers.x);
        if g.stride > 1 {
            let inner = &self.inner;
            gathered.resize(inner.n * inner.c * inner.h * inner.w, 0.0);
            let out = SharedMut(gathered.as_mut_ptr());
            for_each_range(inner.n * inner.c, |planes| {
                g.space_to_depth(xs, out, planes);
                Ok(())
            })?;
            xs = &gathered;
        }
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[g.n, g.o, g.oh, g.ow])? };
        let done = {
            let mut view = y.try_as_plain_ram_mut()?;
            self.compute(buffers, xs, view.as_slice_mut::<f32>()?)
        };
        buffers.x = gathered;
        done?;
        Ok(tvec!(y.into_tvalue()))
    }

    fn compute(&self, buffers: &mut Buffers, xs: &[f32], ys: &mut [f32]) -> TractResult<()> {
        let (g, p) = (&self.inner, &*self.packed);
        let points = self.tile.points();
        let total = g.total_tiles(self.tile);
        let nr = p.b_format.r;
        let panel_len = p.b_format.single_panel_len(g.c);
        buffers.ensure(p, g, points)?;
        let v_ptrs: Vec<SharedMut> = buffers
            .v
            .iter_mut()
            .map(|v| {
                let blob = Arc::get_mut(&mut v.packed).expect("buffers are never shared");
                SharedMut(blob.as_bytes_mut().as_mut_ptr() as *mut f32)
            })
            .collect();
        let y_ptr = SharedMut(ys.as_mut_ptr());
        let mut start = 0;
        while start < total {
            let nb = p.block.min(total - start);
            for v in &mut buffers.v {
                v.mn = nb;
                v.fact.mn = nb.to_dim();
            }
            for_each_range(nb.div_ceil(nr).div_ceil(self.in_panels()), |groups| {
                self.input_transform(xs, &v_ptrs, panel_len, start, nb, groups);
                Ok(())
            })?;
            let m = buffers.m.as_mut().expect("ensured above");
            let stores = (0..points)
                .map(|i| unsafe {
                    let (row_stride, at) = if p.by_channel {
                        // Product i is column block i of [o, points x block]: the output
                        // transform reads each channel's points from one contiguous run.
                        (points * p.block, [0, i])
                    } else {
                        (p.block, [i, 0])
                    };
                    let spec = p.mmm.c_from_data_and_strides(4, row_stride as isize, 1);
                    Ok(spec.wrap(&m.view_at_prefix_mut(&at)?))
                })
                .collect::<TractResult<Vec<OutputStore>>>()?;
            let v = &buffers.v;
            for_each_range(points, |range| {
                let mut scratch = unsafe { p.mmm.allocate_scratch_space() };
                for i in range {
                    let ops = [
                        FusedSpec::AddMatMul {
                            a: AsInputValue::Borrowed(&*p.u[i]),
                            b: AsInputValue::Borrowed(&v[i]),
                            packing: p.packing,
                        },
                        FusedSpec::Store(stores[i]),
                    ];
                    unsafe { p.mmm.run_with_scratch_space(g.o, nb, &mut *scratch, &ops)? };
                }
                Ok(())
            })?;
            let products = buffers.m.as_ref().expect("ensured above");
            let ms = unsafe { products.as_slice_unchecked::<f32>() };
            for_each_range(g.o, |channels| {
                self.output_transform(ms, y_ptr, start, nb, channels);
                Ok(())
            })?;
            start += nb;
        }
        Ok(())
    }

    /// Transformed inputs of the tiles of `groups` (groups of [`WinogradConv::in_panels`] panels of the block
    /// starting at tile `start`), written into each point's B operand in the kernel's panel
    /// layout. A group's panels are transformed together, so each pass runs over enough lanes
    /// to fill the vector registers several times.
    fn input_transform(
        &self,
        xs: &[f32],
        v_ptrs: &[SharedMut],
        panel_len: usize,
        start: usize,
        nb: usize,
        groups: std::ops::Range<usize>,
    ) {
        let (g, tile) = (&self.inner, self.tile);
        let (m, a) = (tile.m(), tile.a());
        let nr = self.packed.b_format.r;
        let panels = nb.div_ceil(nr);
        let group_panels = self.in_panels();
        let lanes_per_group = group_panels * nr;
        let (th, tw) = g.tiles(tile);
        let plane = g.h * g.w;
        let mut d = vec![0f32; a * a * lanes_per_group];
        let mut t = vec![0f32; a * a * lanes_per_group];
        let mut v = vec![0f32; a * a * lanes_per_group];
        // Per lane: offset of the tile's top-left input pixel in channel 0, and whether the
        // whole a x a patch lies inside the image; `None` for lanes past the block's end.
        let mut runs: Vec<(usize, usize, usize)> = Vec::with_capacity(lanes_per_group);
        let mut lanes: Vec<Option<(isize, isize, usize, bool)>> =
            Vec::with_capacity(lanes_per_group);
        for group in groups {
            let first = group * group_panels;
            let count = group_panels.min(panels - first);
            let len = count * nr;
            lanes.clear();
            for j in 0..len {
                let t_in_block = first * nr + j;
                if t_in_block >= nb {
                    lanes.push(None);
                    continue;
                }
                let tt = start + t_in_block;
                let (img, rem) = (tt / (th * tw), tt % (th * tw));
                let y0 = ((rem / tw) * m) as isize - g.pad_top as isize;
                let x0 = ((rem % tw) * m) as isize - g.pad_left as isize;
                let inside = y0 >= 0 && x0 >= 0 && y0 as usize + a <= g.h && x0 as usize + a <= g.w;
                lanes.push(Some((y0, x0, img * g.c * plane, inside)));
            }
            // Runs of lanes whose patches lie inside the image, side by side in one tile row:
            // (first lane, end lane, offset of the first patch in channel 0). A run's patches
            // start m pixels apart, so each patch pixel is one strided read across the run.
            runs.clear();
            let mut j = 0;
            while j < len {
                if let Some((y0, x0, base, true)) = lanes[j] {
                    let mut e = j + 1;
                    while e < len && lanes[e] == Some((y0, x0 + (m * (e - j)) as isize, base, true))
                    {
                        e += 1;
                    }
                    runs.push((j, e, base + y0 as usize * g.w + x0 as usize));
                    j = e;
                } else {
                    j += 1;
                }
            }
            for c in 0..g.c {
                for &(j, e, at) in &runs {
                    let origin = at + c * plane;
                    let span = m * (e - j - 1) + a;
                    for r in 0..a {
                        let row = &xs[origin + r * g.w..][..span];
                        for s in 0..a {
                            let dst = &mut d[(r * a + s) * len + j..(r * a + s) * len + e];
                            for (dv, xv) in dst.iter_mut().zip(row[s..].iter().step_by(m)) {
                                *dv = *xv;
                            }
                        }
                    }
                }
                for (j, lane) in lanes.iter().enumerate() {
                    match *lane {
                        None => {
                            for rs in 0..a * a {
                                d[rs * len + j] = 0.0;
                            }
                        }
                        // Gathered with its run above.
                        Some((_, _, _, true)) => {}
                        Some((y0, x0, base, false)) => {
                            let channel = &xs[base + c * plane..][..plane];
                            for r in 0..a {
                                let y = y0 + r as isize;
                                for s in 0..a {
                                    let x = x0 + s as isize;
                                    let inside = y >= 0
                                        && x >= 0
                                        && (y as usize) < g.h
                                        && (x as usize) < g.w;
                                    d[(r * a + s) * len + j] = if inside {
                                        channel[y as usize * g.w + x as usize]
                                    } else {
                                        0.0
                                    };
                                }
                            }
                        }
                    }
                }
                // Bᵀ d: rows of the patch (each row a*len lanes: its columns times the tiles).
                tile.input_1d(&d, a * len, &mut t, a * len, a * len);
                // (Bᵀ d) B: along the columns of each row.
                for k in 0..a {
                    tile.input_1d(&t[k * a * len..], len, &mut v[k * a * len..], len, len);
                }
                for q in 0..count {
                    let at = (first + q) * panel_len + c * nr;
                    // SAFETY: each (panel, channel) row of each point's buffer is written by
                    // exactly one range, and the buffer holds every panel of the block.
                    unsafe { scatter_lanes(&v[q * nr..], len, v_ptrs, at, nr) };
                }
            }
        }
    }

    /// Output tiles of `channels` for the block starting at tile `start`, from the products
    /// (`[o, point, block]`), plus the bias, into the NCHW output.
    fn output_transform(
        &self,
        ms: &[f32],
        y: SharedMut,
        start: usize,
        nb: usize,
        channels: std::ops::Range<usize>,
    ) {
        let (g, tile, p) = (&self.inner, self.tile, &*self.packed);
        let (m, a) = (tile.m(), tile.a());
        let (th, tw) = g.tiles(tile);
        let block = p.block;
        let plane = g.oh * g.ow;
        let relu = self.relu;
        // Per tile of the block: its top-left output offset in channel 0, and how many of its
        // rows and columns lie inside the output. Found once here rather than by divisions per
        // tile and channel.
        let places: Vec<(usize, usize, usize)> = (start..start + nb)
            .map(|tt| {
                let (img, rem) = (tt / (th * tw), tt % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let at = img * g.o * plane + ty * m * g.ow + tx * m;
                (at, m.min(g.oh - ty * m), m.min(g.ow - tx * m))
            })
            .collect();
        const L: usize = OUT_LANES;
        let mut t = vec![0f32; m * a * L];
        let mut r = vec![0f32; m * m * L];
        for o in channels {
            let bias = p.bias[o];
            for t0 in (0..nb).step_by(L) {
                let len = L.min(nb - t0);
                // Aᵀ M along the first axis of the points, for each second-axis index l.
                for l in 0..a {
                    let (src, stride) = if p.by_channel {
                        (o * a * a * block + l * block, a * block)
                    } else {
                        ((l * g.o + o) * block, a * g.o * block)
                    };
                    tile.output_1d(&ms[src + t0..], stride, &mut t[l * L..], a * L, len);
                }
                // (Aᵀ M) A along the second axis.
                for i in 0..m {
                    tile.output_1d(&t[i * a * L..], L, &mut r[i * m * L..], L, len);
                }
                for (lane, &(at, rows, cols)) in places[t0..t0 + len].iter().enumerate() {
                    let at = at + o * plane;
                    for i in 0..rows {
                        for jj in 0..cols {
                            // SAFETY: output channel o belongs to this range alone, and the
                            // offset is inside the [n, o, oh, ow] output.
                            let v = r[(i * m + jj) * L + lane] + bias;
                            unsafe {
                                *y.0.add(at + i * g.ow + jj) = if relu { v.max(0.0) } else { v }
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Copies point i's `nr` lanes (`v[i * stride..][..nr]`) to `dst[i] + at` for every point: with
/// the lane count known at compile time for the usual panel widths, so each copy is a register
/// move and not a call.
///
/// # Safety
/// Every `dst[i] + at .. + nr` must be valid for writes and written by no one else meanwhile.
unsafe fn scatter_lanes(v: &[f32], stride: usize, dst: &[SharedMut], at: usize, nr: usize) {
    unsafe fn fixed<const N: usize>(v: &[f32], stride: usize, dst: &[SharedMut], at: usize) {
        for (i, d) in dst.iter().enumerate() {
            let lanes: &[f32; N] = v[i * stride..][..N].try_into().expect("N lanes");
            unsafe { (d.0.add(at) as *mut [f32; N]).write_unaligned(*lanes) };
        }
    }
    unsafe {
        match nr {
            8 => fixed::<8>(v, stride, dst, at),
            12 => fixed::<12>(v, stride, dst, at),
            16 => fixed::<16>(v, stride, dst, at),
            _ => {
                for (i, d) in dst.iter().enumerate() {
                    let lanes = &v[i * stride..][..nr];
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), d.0.add(at), nr);
                }
            }
        }
    }
}

/// Scratch reused from one run to the next: the space-to-depth input of a strided layer, the
/// transformed inputs (one packed B operand per point) and the products.
#[derive(Clone, Debug, Default)]
struct Buffers {
    x: Vec<f32>,
    v: Vec<EagerPackedInput>,
    m: Option<Tensor>,
}

impl Buffers {
    fn ensure(&mut self, p: &Packed, g: &Geometry, points: usize) -> TractResult<()> {
        // A cloned state shares its buffers; it gets its own on first use.
        let shared = self
            .v
            .iter_mut()
            .any(|v| Arc::get_mut(&mut v.packed).is_none());
        if self.v.len() != points || shared {
            self.v = (0..points)
                .map(|_| p.b_format.new_packed_buffer(g.c, p.block))
                .collect::<TractResult<_>>()?;
        }
        let m_shape = if p.by_channel {
            [g.o, points, p.block]
        } else {
            [points, g.o, p.block]
        };
        if self.m.as_ref().is_none_or(|m| m.shape() != m_shape) {
            self.m = Some(unsafe { Tensor::uninitialized::<f32>(&m_shape)? });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
struct WinogradState {
    buffers: Buffers,
}

impl OpState for WinogradState {
    fn eval(
        &mut self,
        _ctx: &EvalContext,
        op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let op = op
            .downcast_ref::<WinogradConv>()
            .context("a Winograd state runs a WinogradConv")?;
        op.run(&mut self.buffers, inputs)
    }

    fn reset_lanes(&mut self, _lanes: &[LaneId]) -> TractResult<()> {
        Ok(())
    }
}

impl Op for WinogradConv {
    fn name(&self) -> StaticName {
        "WinogradConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geo;
        let strided = if g.stride > 1 {
            format!(
                " k{0}x{0} s{1} as {1}x{1} space-to-depth",
                g.kernel, g.stride
            )
        } else {
            String::new()
        };
        let relu = if self.relu { " + ReLU" } else { "" };
        Ok(vec![format!(
            "{}{relu} {}->{} ch {}x{} pad {},{}{strided} in {}",
            self.tile.name(),
            g.c,
            g.o,
            g.h,
            g.w,
            g.pad_top,
            g.pad_left,
            self.kernel_name()
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for WinogradConv {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(&mut Buffers::default(), inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(&mut Buffers::default(), inputs)?))
    }

    fn state(&self, _ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(Some(Box::<WinogradState>::default()))
    }
}

impl TypedOp for WinogradConv {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.geo;
        ensure!(inputs.len() == 1, "WinogradConv takes one input");
        ensure!(
            inputs[0].datum_type == f32::datum_type(),
            "WinogradConv is f32 only"
        );
        ensure!(
            inputs[0].shape.as_concrete() == Some(&[g.n, g.c, g.h, g.w][..]),
            "WinogradConv built for input [{}, {}, {}, {}], got {:?}",
            g.n,
            g.c,
            g.h,
            g.w,
            inputs[0].shape
        );
        Ok(tvec!(f32::fact([g.n, g.o, g.oh, g.ow])))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.inner;
        let fma = self.tile.points() * g.o * g.c * g.total_tiles(self.tile);
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma.to_dim())))
    }
}
