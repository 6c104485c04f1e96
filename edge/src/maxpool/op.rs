//! `MaxPool2d`: a 2D f32 max pool over NCHW planes, vertical then horizontal.

use tract_onnx::tract_core::internal::*;

use crate::threads::{for_each_part, threads};

/// Input values each thread gets at least when a pool is split: about 6 µs of work on one
/// x86-64 core, so a part is not smaller than what handing it to another thread costs.
const MIN_VALUES_PER_THREAD: usize = 32 * 1024;

/// A 2D max pool over `[n, c, h, w]` f32 input: any kernel and strides, explicit padding that
/// never wins (it counts as -inf), no dilation, no indices.
///
/// Each output row takes the max over its `kh` input rows first, along whole contiguous rows,
/// so it vectorises; then, along that one row, the max over each `kw`-wide window at stride
/// `sw`. That is `kh` comparisons per input column and `kw` per output instead of `kh · kw`
/// per output, in vector lanes for the common kernels, where tract's `OptMaxPool` walks each
/// window tap by tap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaxPool2d {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Padding before the first row and column; the padding after follows from `oh` and `ow`,
    /// which are tract's (`PoolSpec::computed_padding`), ceil mode included.
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl MaxPool2d {
    fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }

    /// Length of the padded row the horizontal pass reads: the left padding, the row, and as
    /// much right padding as the last window reaches past it.
    fn padded_width(&self) -> usize {
        let reach = (self.ow.max(1) - 1) * self.sw + self.kw;
        reach.max(self.pad_left + self.w)
    }

    fn check(&self) -> TractResult<()> {
        ensure!(
            self.kh >= 1 && self.kw >= 1 && self.sh >= 1 && self.sw >= 1,
            "MaxPool2d needs a kernel and strides of at least 1, got {}x{} s{}x{}",
            self.kh,
            self.kw,
            self.sh,
            self.sw
        );
        Ok(())
    }

    fn run(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1, "MaxPool2d takes one input");
        self.check()?;
        let x = &inputs[0];
        ensure!(
            x.datum_type() == f32::datum_type() && x.shape() == self.input_shape(),
            "MaxPool2d built for f32 {:?}, got {:?} {:?}",
            self.input_shape(),
            x.datum_type(),
            x.shape()
        );
        let plain = x.try_as_plain_ram()?;
        let xs = plain.as_slice::<f32>()?;
        // SAFETY: f32 has no invalid bit patterns, and every plane, row and column of the
        // output is written below before anyone reads it.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&self.output_shape())? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let ys = view.as_slice_mut::<f32>()?;
            let (in_plane, out_plane) = (self.h * self.w, self.oh * self.ow);
            // An empty output has nothing to pool.
            if let Some(planes) = ys.len().checked_div(out_plane) {
                // Runs of whole output planes, one per thread, as disjoint slices.
                let parts = threads()
                    .min(planes)
                    .min(xs.len() / MIN_VALUES_PER_THREAD)
                    .max(1);
                let mut runs = Vec::with_capacity(parts);
                let mut rest = ys;
                for part in 0..parts {
                    let (lo, hi) = (planes * part / parts, planes * (part + 1) / parts);
                    let (mine, tail) =
                        std::mem::take(&mut rest).split_at_mut((hi - lo) * out_plane);
                    rest = tail;
                    runs.push((lo, mine));
                }
                for_each_part(runs, |(first, out)| {
                    let mut row = vec![f32::NEG_INFINITY; self.padded_width()];
                    for (i, plane) in out.chunks_exact_mut(out_plane).enumerate() {
                        let src = &xs[(first + i) * in_plane..][..in_plane];
                        pool_plane(self, src, plane, &mut row);
                    }
                    Ok(())
                })?;
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

/// One plane (`src`, `[h, w]`) into `dst` (`[oh, ow]`), a row at a time. `row` is
/// [`MaxPool2d::padded_width`] long, -inf outside `pad_left..pad_left + w`: only that middle is
/// ever written, so the padding is set once per thread and not per row.
fn pool_plane(op: &MaxPool2d, src: &[f32], dst: &mut [f32], row: &mut [f32]) {
    let (h, w) = (op.h, op.w);
    for (oy, out) in dst.chunks_exact_mut(op.ow).enumerate() {
        let top = (oy * op.sh) as isize - op.pad_top as isize;
        let first = top.max(0) as usize;
        let end = ((top + op.kh as isize).max(0) as usize).min(h);
        vertical_max(&mut row[op.pad_left..][..w], src, w, first..end);
        match (op.kw, op.sw) {
            (2, 1) => strided_max::<2, 1>(out, row),
            (3, 1) => strided_max::<3, 1>(out, row),
            (2, 2) => strided_max::<2, 2>(out, row),
            (3, 2) => strided_max::<3, 2>(out, row),
            (3, 3) => strided_max::<3, 3>(out, row),
            // Any other window at stride 1: one contiguous pass per column of the window.
            (kw, 1) => {
                out.copy_from_slice(&row[..op.ow]);
                for kx in 1..kw {
                    fold_max(out, &row[kx..][..op.ow]);
                }
            }
            (kw, sw) => {
                for (ox, o) in out.iter_mut().enumerate() {
                    let window = &row[ox * sw..][..kw];
                    *o = window[1..].iter().fold(window[0], |m, &v| max(m, v));
                }
            }
        }
    }
}

/// `dst[x]` = the max of input rows `rows` at column x, -inf when the window holds only
/// padding. Up to three rows are read in one pass, so `dst` is written once for the usual
/// 2- and 3-row kernels rather than once per row.
///
/// Out of line: inlined into the row loop it ran about 10% slower (x86-64, AlexNet's pools).
#[inline(never)]
fn vertical_max(dst: &mut [f32], src: &[f32], w: usize, rows: std::ops::Range<usize>) {
    let row = |y: usize| &src[y * w..][..w];
    let y = rows.start;
    match rows.len() {
        0 => dst.fill(f32::NEG_INFINITY),
        1 => dst.copy_from_slice(row(y)),
        2 => {
            for ((d, &a), &b) in dst.iter_mut().zip(row(y)).zip(row(y + 1)) {
                *d = max(a, b);
            }
        }
        _ => {
            let three = dst.iter_mut().zip(row(y)).zip(row(y + 1)).zip(row(y + 2));
            for (((d, &a), &b), &c) in three {
                *d = max(max(a, b), c);
            }
            for y in rows.start + 3..rows.end {
                fold_max(dst, row(y));
            }
        }
    }
}

/// `out[i]` = the max of `row[SW·i .. SW·i + KW]`. With the window and stride known at compile
/// time the compiler vectorises the strided reads (de-interleaving loads); with them read at
/// run time it does not, and the pool is twice as slow.
fn strided_max<const KW: usize, const SW: usize>(out: &mut [f32], row: &[f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    // One slice whose length the indices below provably stay under: no bounds checks left
    // in the loop to stop it vectorising.
    let row = &row[..SW * (n - 1) + KW];
    // Indexed, not `out.iter_mut().enumerate()`: with the iterator the compiler keeps the
    // bounds checks on `row` and the loop stays scalar.
    #[allow(clippy::needless_range_loop)]
    for i in 0..n {
        let mut m = row[SW * i];
        for k in 1..KW {
            m = max(m, row[SW * i + k]);
        }
        out[i] = m;
    }
}

/// The max of two values, written as the comparison x86's `maxps` and Arm's `fmax` lowerings
/// recognise (`f32::max` has NaN rules that cost a blend), and the one tract's pool uses, so a
/// NaN input never replaces a number either way.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `acc[i] = max(acc[i], v[i])`.
#[inline(always)]
fn fold_max(acc: &mut [f32], v: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a = max(*a, b);
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "MaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "k{}x{} s{}x{} pad {},{} {}x{}x{}x{} -> {}x{}",
            self.kh,
            self.kw,
            self.sh,
            self.sw,
            self.pad_top,
            self.pad_left,
            self.n,
            self.c,
            self.h,
            self.w,
            self.oh,
            self.ow
        )])
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for MaxPool2d {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(inputs)?))
    }
}

impl TypedOp for MaxPool2d {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "MaxPool2d takes one input");
        self.check()?;
        ensure!(
            inputs[0].datum_type == f32::datum_type(),
            "MaxPool2d is f32 only"
        );
        ensure!(
            inputs[0].shape.as_concrete() == Some(&self.input_shape()[..]),
            "MaxPool2d built for input {:?}, got {:?}",
            self.input_shape(),
            inputs[0].shape
        );
        Ok(tvec!(f32::fact(self.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        // Comparisons, not FMAs: counting them as FMAs would inflate a profile's FLOP figures.
        let row = self.kh * self.w + self.kw * self.ow;
        let comparisons = self.n * self.c * self.oh * row;
        Ok(tvec!((
            Cost::Custom(true, "MaxF32".into()),
            comparisons.to_dim()
        )))
    }
}
