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
use super::transform::{Tile, W};
use crate::threads::{for_each_range, in_pool, SharedMut};

/// Transformed inputs and products of one block of tiles should stay within this many bytes,
/// about a core's L2 and its share of L3, so the products read their panels from cache.
const BLOCK_BYTES: usize = 4 << 20;

/// Lanes (tiles) the output transform works on at once.
const OUT_LANES: usize = 64;

/// Lanes (tiles) the input transform works on at once, rounded down to whole panels: enough to
/// fill the vector registers several times, few enough that its three a x a x lanes buffers
/// stay in L2.
const IN_LANES: usize = 128;

/// The weights, transformed and packed once, and the kernel that multiplies them.
struct Packed {
    mmm: Box<dyn MatMatMul>,
    packing: usize,
    b_format: PackedFormat,
    /// Output channels of each part: one part per thread of the plan, cut at the kernel's
    /// row panels. Each thread runs its part's products and then its output transform, so the
    /// transform reads products its own core has just written, with no join in between.
    parts: Vec<std::ops::Range<usize>>,
    /// G g Gᵀ at each point, rows `parts[j]` of `[o, c]`, packed as the kernel's A operand:
    /// `u[j][point]`.
    u: Vec<Vec<Box<dyn MMMInputValue>>>,
    bias: Vec<f32>,
    /// Tiles per block: all of them, or a multiple of the kernel's panel width.
    block: usize,
    /// Each part's products laid out `[o, point, block]` (else `[point, o, block]`), parts one
    /// after the other. Taken when the layer needs more than one block. Measured on AlexNet
    /// (Xeon, 1 thread): on a 1280x720 field it took conv2 from 58 to 47 ms and conv1 from 40
    /// to 37; on one 224 tile, where every layer is one block, it cost 0.1-0.5 ms per layer.
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
    /// Transforms and packs `kernel` (`[o, c, k, k]`, row-major) for `geo`, split for the
    /// current executor's threads.
    pub fn new(tile: Tile, geo: Geometry, kernel: &[f32], bias: &[f32]) -> TractResult<Self> {
        Self::for_threads(tile, geo, kernel, bias, crate::threads::threads())
    }

    /// [`WinogradConv::new`] for a plan that runs with `threads` threads.
    pub fn for_threads(
        tile: Tile,
        geo: Geometry,
        kernel: &[f32],
        bias: &[f32],
        threads: usize,
    ) -> TractResult<Self> {
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
        let panels = geo.o.div_ceil(mmm.mr());
        let count = threads.clamp(1, panels.max(1));
        let parts: Vec<_> = (0..count)
            .map(|j| {
                let at = |j: usize| (panels * j / count * mmm.mr()).min(geo.o);
                at(j)..at(j + 1)
            })
            .collect();
        let u = parts
            .iter()
            .map(|rows| {
                u.iter()
                    .map(|values| {
                        let rows = &values[rows.start * geo.c..rows.end * geo.c];
                        let t = Tensor::from_shape(&[rows.len() / geo.c, geo.c], rows)?;
                        a_format.prepare_one(&t, 1, 0)
                    })
                    .collect::<TractResult<Vec<_>>>()
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
                parts,
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
        let xs = plain.as_slice::<f32>()?;
        let mut y = unsafe { Tensor::uninitialized::<f32>(&[g.n, g.o, g.oh, g.ow])? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let ys = view.as_slice_mut::<f32>()?;
            in_pool(|| self.compute(buffers, xs, ys))?;
        }
        Ok(tvec!(y.into_tvalue()))
    }

    fn compute(&self, buffers: &mut Buffers, xs: &[f32], ys: &mut [f32]) -> TractResult<()> {
        let (g, p) = (&self.inner, &*self.packed);
        let points = self.tile.points();
        let total = g.total_tiles(self.tile);
        let padded = self.geo.padded(self.tile);
        buffers.ensure(p, g, points, padded)?;
        let v_ptrs: Vec<SharedMut> = buffers
            .v
            .iter_mut()
            .map(|v| {
                let blob = Arc::get_mut(&mut v.packed).expect("buffers are never shared");
                SharedMut(blob.as_bytes_mut().as_mut_ptr() as *mut f32)
            })
            .collect();
        let x_ptr = SharedMut(buffers.x.as_mut_ptr());
        let y_ptr = SharedMut(ys.as_mut_ptr());
        let mut start = 0;
        while start < total {
            let nb = p.block.min(total - start);
            for v in &mut buffers.v {
                v.mn = nb;
                v.fact.mn = nb.to_dim();
            }
            let job = InputJob {
                planes: x_ptr,
                padded,
                v: &v_ptrs,
                start,
                nb,
            };
            // Split by input channel: each range gathers its own padded planes (in the first
            // block; `for_each_range` cuts 0..c the same way every time) and writes its own
            // channels' rows of every panel.
            for_each_range(g.c, |channels| {
                if start == 0 {
                    for img in 0..g.n {
                        let planes = img * g.c + channels.start..img * g.c + channels.end;
                        self.geo.gather_padded(xs, x_ptr, planes, padded);
                    }
                }
                self.input_transform(&job, channels);
                Ok(())
            })?;
            let m = buffers.m.as_mut().expect("ensured above");
            // Part j's products start at row `parts[j].start` of the `[o, points x block]`
            // they fill; inside, `[rows, point, block]` by channel, else `[point, rows, block]`.
            let rows_of = |o: usize| o * points * p.block;
            let (o_all, block) = (g.o, p.block);
            let stores = p
                .parts
                .iter()
                .map(|rows| {
                    (0..points)
                        .map(|i| unsafe {
                            let (row_stride, first) = if p.by_channel {
                                (points * block, rows_of(rows.start) + i * block)
                            } else {
                                (block, rows_of(rows.start) + i * rows.len() * block)
                            };
                            // The same offset as an index into the tensor's first two axes.
                            let second = if p.by_channel { points } else { o_all };
                            let at = [first / (second * block), first / block % second];
                            let spec = p.mmm.c_from_data_and_strides(4, row_stride as isize, 1);
                            Ok(spec.wrap(&m.view_at_prefix_mut(&at)?))
                        })
                        .collect::<TractResult<Vec<OutputStore>>>()
                })
                .collect::<TractResult<Vec<_>>>()?;
            let products = SharedMut(unsafe { m.as_ptr_mut_unchecked::<f32>() });
            let v = &buffers.v;
            for_each_range(p.parts.len(), |parts| {
                let mut scratch = unsafe { p.mmm.allocate_scratch_space() };
                for j in parts {
                    let rows = p.parts[j].clone();
                    for i in 0..points {
                        let ops = [
                            FusedSpec::AddMatMul {
                                a: AsInputValue::Borrowed(&*p.u[j][i]),
                                b: AsInputValue::Borrowed(&v[i]),
                                packing: p.packing,
                            },
                            FusedSpec::Store(stores[j][i]),
                        ];
                        unsafe {
                            p.mmm
                                .run_with_scratch_space(rows.len(), nb, &mut *scratch, &ops)?
                        };
                    }
                    // SAFETY: this part's products, just written by this thread and by no one
                    // else.
                    let ms = unsafe {
                        std::slice::from_raw_parts(
                            products.add(rows_of(rows.start)),
                            rows_of(rows.len()),
                        )
                    };
                    self.output_transform(ms, y_ptr, start, nb, rows);
                }
                Ok(())
            })?;
            start += nb;
        }
        Ok(())
    }

    /// Transformed inputs of channels `channels` of every tile of the job's block, written into
    /// each point's B operand in the kernel's panel layout: with AVX2 where the CPU has it.
    fn input_transform(&self, job: &InputJob, channels: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { self.input_transform_avx2(job, channels) };
        }
        self.input_transform_lanes(job, channels)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn input_transform_avx2(&self, job: &InputJob, channels: std::ops::Range<usize>) {
        self.input_transform_lanes(job, channels)
    }

    /// The input transform over groups of about [`IN_LANES`] tiles, for tiles of side `A`.
    #[inline(always)]
    fn input_transform_lanes(&self, job: &InputJob, channels: std::ops::Range<usize>) {
        match self.tile.a() {
            4 => self.input_transform_tiles::<4>(job, channels),
            5 => self.input_transform_tiles::<5>(job, channels),
            6 => self.input_transform_tiles::<6>(job, channels),
            7 => self.input_transform_tiles::<7>(job, channels),
            8 => self.input_transform_tiles::<8>(job, channels),
            a => unreachable!("no Winograd algorithm has {a}x{a} input tiles"),
        }
    }

    /// Per channel: each tile's `A` x `A` patch (inside the padded plane) copied into its lane,
    /// then Bᵀ d B along the lanes, then each panel's lanes into the points' B operands.
    #[inline(always)]
    fn input_transform_tiles<const A: usize>(
        &self,
        job: &InputJob,
        channels: std::ops::Range<usize>,
    ) {
        let (g, tile, p) = (&self.inner, self.tile, &*self.packed);
        let m = tile.m();
        let nr = p.b_format.r;
        let panel_len = p.b_format.single_panel_len(g.c);
        let (nb, (_, wp)) = (job.nb, job.padded);
        let plane_len = job.padded.0 * wp;
        let panels = nb.div_ceil(nr);
        let group_panels = (IN_LANES / nr).max(1);
        let (th, tw) = g.tiles(tile);
        // One row of IN_LANES lanes per point: with the row length a constant, each copy of a
        // patch value into its lane is a load and a store at a fixed offset.
        let mut d = vec![[[0f32; IN_LANES]; A]; A];
        let mut t = vec![[0f32; IN_LANES]; A * A];
        let mut v = vec![[0f32; IN_LANES]; A * A];
        let d: &mut [[[f32; IN_LANES]; A]; A] = d.as_mut_slice().try_into().expect("A rows");
        // Lanes with their patch's offset: (lane, image, offset in the plane).
        let mut lanes: Vec<(usize, usize, usize)> = Vec::with_capacity(IN_LANES);
        for first in (0..panels).step_by(group_panels) {
            let count = group_panels.min(panels - first);
            let valid = (count * nr).min(nb - first * nr);
            // Lanes the passes run over: whole vector chunks where the rows have room.
            let len = (count * nr).next_multiple_of(W).min(IN_LANES);
            lanes.clear();
            lanes.extend((0..valid).map(|j| {
                let tt = job.start + first * nr + j;
                let (img, rem) = (tt / (th * tw), tt % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                (j, img, ty * m * wp + tx * m)
            }));
            // Lanes past the block's end are never gathered: zero, so their products are too.
            for row in d.iter_mut().flatten() {
                row[valid..len].fill(0.0);
            }
            for c in channels.clone() {
                for &(j, img, at) in &lanes {
                    // SAFETY: this range gathered plane (img, c) and only reads it.
                    let plane = unsafe {
                        std::slice::from_raw_parts(
                            job.planes.0.add((img * g.c + c) * plane_len),
                            plane_len,
                        )
                    };
                    for r in 0..A {
                        let row: &[f32; A] =
                            plane[at + r * wp..][..A].try_into().expect("A columns");
                        for (s, x) in row.iter().enumerate() {
                            d[r][s][j] = *x;
                        }
                    }
                }
                let df = d.as_flattened().as_flattened();
                let (tf, vf) = (t.as_flattened_mut(), v.as_flattened_mut());
                // Bᵀ d: along the patch's rows, for each of its columns.
                for s in 0..A {
                    tile.input_1d(
                        &df[s * IN_LANES..],
                        A * IN_LANES,
                        &mut tf[s * IN_LANES..],
                        A * IN_LANES,
                        len,
                    );
                }
                // (Bᵀ d) B: along the columns of each row.
                for k in 0..A {
                    let at = k * A * IN_LANES;
                    tile.input_1d(&tf[at..], IN_LANES, &mut vf[at..], IN_LANES, len);
                }
                for q in 0..count {
                    let at = (first + q) * panel_len + c * nr;
                    // SAFETY: each (panel, channel) row of each point's buffer is written by
                    // exactly one range, and the buffer holds every panel of the block.
                    unsafe { scatter_lanes(&vf[q * nr..], IN_LANES, job.v, at, nr) };
                }
            }
        }
    }

    /// Output tiles of `channels` for the block starting at tile `start`, from the products,
    /// plus the bias (and the ReLU), into the NCHW output: with AVX2 where the CPU has it.
    fn output_transform(
        &self,
        ms: &[f32],
        y: SharedMut,
        start: usize,
        nb: usize,
        channels: std::ops::Range<usize>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { self.output_transform_avx2(ms, y, start, nb, channels) };
        }
        self.output_transform_lanes(ms, y, start, nb, channels)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn output_transform_avx2(
        &self,
        ms: &[f32],
        y: SharedMut,
        start: usize,
        nb: usize,
        channels: std::ops::Range<usize>,
    ) {
        self.output_transform_lanes(ms, y, start, nb, channels)
    }

    /// The output transform over [`OUT_LANES`] tiles at a time, reading the products of the
    /// part `channels` (`ms`), laid out `[o, point, block]` or `[point, o, block]`.
    #[inline(always)]
    fn output_transform_lanes(
        &self,
        ms: &[f32],
        y: SharedMut,
        start: usize,
        nb: usize,
        channels: std::ops::Range<usize>,
    ) {
        let (g, tile, p) = (&self.inner, self.tile, &*self.packed);
        let (m, a) = (tile.m(), tile.a());
        let block = p.block;
        let plane = g.oh * g.ow;
        let relu = self.relu;
        let (o0, rows_in_part) = (channels.start, channels.len());
        let mut runs = Vec::new();
        tile_runs(g, tile, start, nb, &mut runs);
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
                        ((o - o0) * a * a * block + l * block, a * block)
                    } else {
                        (
                            (l * rows_in_part + o - o0) * block,
                            a * rows_in_part * block,
                        )
                    };
                    tile.output_1d(&ms[src + t0..], stride, &mut t[l * L..], a * L, len);
                }
                // (Aᵀ M) A along the second axis.
                for i in 0..m {
                    tile.output_1d(&t[i * a * L..], L, &mut r[i * m * L..], L, len);
                }
                for run in &runs {
                    // The part of the run inside lanes t0..t0 + len.
                    let lo = run.lane.max(t0);
                    let hi = (run.lane + run.tiles).min(t0 + len);
                    if lo >= hi {
                        continue;
                    }
                    let tx = run.tx + lo - run.lane;
                    let rows = m.min(g.oh - run.ty * m);
                    let cols = ((hi - lo) * m).min(g.ow - tx * m);
                    let at = (run.img * g.o + o) * plane + run.ty * m * g.ow + tx * m;
                    for i in 0..rows {
                        // SAFETY: output channel o belongs to this range alone, and the row
                        // is inside the [n, o, oh, ow] output.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(y.0.add(at + i * g.ow), cols) };
                        let src = &r[i * m * L + lo - t0..];
                        write_row(m, relu, src, L, dst, bias);
                    }
                }
            }
        }
    }
}

/// Consecutive tiles of one tile row of one image, as lanes of a block.
struct Run {
    /// Lane of the first tile.
    lane: usize,
    tiles: usize,
    img: usize,
    ty: usize,
    /// Tile column of the first tile.
    tx: usize,
}

/// The tiles `start..start + count` (numbered over images, tile rows and tile columns) as runs
/// within tile rows, into `runs`.
fn tile_runs(g: &Geometry, tile: Tile, start: usize, count: usize, runs: &mut Vec<Run>) {
    let (th, tw) = g.tiles(tile);
    runs.clear();
    let mut lane = 0;
    while lane < count {
        let tt = start + lane;
        let (img, rem) = (tt / (th * tw), tt % (th * tw));
        let (ty, tx) = (rem / tw, rem % tw);
        let tiles = (tw - tx).min(count - lane);
        runs.push(Run {
            lane,
            tiles,
            img,
            ty,
            tx,
        });
        lane += tiles;
    }
}

/// One output row of a run of tiles: `dst[k·m + j] = src[j·stride + k] + bias` (ReLU'd when
/// `relu`), the `m` rows of lanes interleaved, with `m` and `relu` known at compile time so the
/// interleave vectorises.
#[inline(always)]
fn write_row(m: usize, relu: bool, src: &[f32], stride: usize, dst: &mut [f32], bias: f32) {
    #[inline(always)]
    fn fixed<const M: usize, const RELU: bool>(
        src: &[f32],
        stride: usize,
        dst: &mut [f32],
        bias: f32,
    ) {
        let full = dst.len() / M;
        let f = |x: f32| {
            let v = x + bias;
            if RELU {
                v.max(0.0)
            } else {
                v
            }
        };
        let rows: [&[f32]; M] =
            std::array::from_fn(|j| &src[j * stride..][..dst.len().div_ceil(M)]);
        let (head, tail) = dst.split_at_mut(full * M);
        for (k, out) in head.chunks_exact_mut(M).enumerate() {
            for j in 0..M {
                out[j] = f(rows[j][k]);
            }
        }
        for (j, out) in tail.iter_mut().enumerate() {
            *out = f(rows[j][full]);
        }
    }
    match (m, relu) {
        (2, false) => fixed::<2, false>(src, stride, dst, bias),
        (2, true) => fixed::<2, true>(src, stride, dst, bias),
        (3, false) => fixed::<3, false>(src, stride, dst, bias),
        (3, true) => fixed::<3, true>(src, stride, dst, bias),
        (4, false) => fixed::<4, false>(src, stride, dst, bias),
        (4, true) => fixed::<4, true>(src, stride, dst, bias),
        _ => unreachable!("no Winograd algorithm has {m}x{m} output tiles"),
    }
}

/// One block's input transform: where the padded input planes are, and the B operands it
/// writes.
struct InputJob<'a> {
    /// `[n, c, hp, wp]`, the inner geometry's input with its padding.
    planes: SharedMut,
    /// `(hp, wp)`.
    padded: (usize, usize),
    /// One packed B operand per point.
    v: &'a [SharedMut],
    /// First tile of the block, and its tile count.
    start: usize,
    nb: usize,
}

/// Copies point i's `nr` lanes (`v[i * stride..][..nr]`) to `dst[i] + at` for every point: with
/// the lane count known at compile time for the usual panel widths, so each copy is a register
/// move and not a call.
///
/// # Safety
/// Every `dst[i] + at .. + nr` must be valid for writes and written by no one else meanwhile.
#[inline(always)]
unsafe fn scatter_lanes(v: &[f32], stride: usize, dst: &[SharedMut], at: usize, nr: usize) {
    #[inline(always)]
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

/// Scratch reused from one run to the next: the padded input planes (after space-to-depth for
/// a strided layer), the transformed inputs (one packed B operand per point) and the products.
#[derive(Clone, Debug, Default)]
struct Buffers {
    x: Vec<f32>,
    v: Vec<EagerPackedInput>,
    m: Option<Tensor>,
}

impl Buffers {
    fn ensure(
        &mut self,
        p: &Packed,
        g: &Geometry,
        points: usize,
        (hp, wp): (usize, usize),
    ) -> TractResult<()> {
        self.x.resize(g.n * g.c * hp * wp, 0.0);
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
