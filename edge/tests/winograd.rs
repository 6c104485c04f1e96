//! The Winograd convolution against tract's own, from random layers to the bundled model.

mod common;

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::EvalOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::runtime::RunOptions;

use histoscreen_edge::model::{LoadOptions, Model};
use histoscreen_edge::preprocess::load_image;
use histoscreen_edge::winograd::{self, ConvChoice, Geometry, Tile, WinogradConv};

/// Max |Δ| against tract's convolution, relative to the layer's largest |output|, each tile
/// must stay within on these layers (random weights of a He-like scale, inputs in [-1, 1]).
/// Measured: F(2x2,3x3) up to 1.6e-6, F(3x3,3x3) 7.4e-6 and F(4x4,3x3) 1.0e-5 (all on the
/// 256-channel layer); F(2x2,5x5) 2.0e-6, F(3x3,5x5) 3.1e-6 and F(4x4,5x5) 4.6e-6.
const F2_TOLERANCE: f32 = 5e-6;
const F4_TOLERANCE: f32 = 5e-5;

fn tolerance(tile: Tile) -> f32 {
    match tile {
        Tile::F2 => F2_TOLERANCE,
        Tile::F3 => 3e-5,
        Tile::F4 => F4_TOLERANCE,
        Tile::F2R5 => 1e-5,
        Tile::F3R5 => 2e-5,
        Tile::F4R5 => 5e-5,
    }
}

/// Largest difference in any probability the bundled model may show between the two paths.
const PROBABILITY_TOLERANCE: f32 = 1e-4;

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    common::uniform(n, seed).map(|v| v * scale).collect()
}

/// One layer: kernel side, stride, batch, in and out channels, height, width, pads top, left,
/// bottom, right.
#[derive(Clone, Copy, Debug)]
struct Shape {
    k: usize,
    stride: usize,
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    pads: [usize; 4],
}

impl Shape {
    fn geometry(&self) -> Geometry {
        let [pt, pl, pb, pr] = self.pads;
        Geometry {
            kernel: self.k,
            stride: self.stride,
            n: self.n,
            c: self.c,
            o: self.o,
            h: self.h,
            w: self.w,
            pad_top: pt,
            pad_left: pl,
            oh: (self.h + pt + pb - self.k) / self.stride + 1,
            ow: (self.w + pl + pr - self.k) / self.stride + 1,
        }
    }

    fn kernel(&self, seed: u64) -> Vec<f32> {
        let kk = self.k * self.k;
        values(
            self.o * self.c * kk,
            seed,
            (2.0 / (kk * self.c) as f32).sqrt(),
        )
    }

    fn input(&self, seed: u64) -> Tensor {
        let v = values(self.n * self.c * self.h * self.w, seed, 1.0);
        Tensor::from_shape(&[self.n, self.c, self.h, self.w], &v).unwrap()
    }

    /// The layer as tract's `Conv` in a one-node model.
    fn tract_model(&self, kernel: &[f32], bias: &[f32]) -> TypedModel {
        let [pt, pl, pb, pr] = self.pads;
        let mut m = TypedModel::default();
        let x = m
            .add_source("x", f32::fact([self.n, self.c, self.h, self.w]))
            .unwrap();
        let k = m
            .add_const(
                "k",
                Tensor::from_shape(&[self.o, self.c, self.k, self.k], kernel).unwrap(),
            )
            .unwrap();
        let b = m
            .add_const("b", Tensor::from_shape(&[self.o], bias).unwrap())
            .unwrap();
        let spec = PoolSpec::new(
            DataFormat::NCHW,
            tvec![self.k, self.k],
            PaddingSpec::Explicit(tvec![pt, pl], tvec![pb, pr]),
            None,
            Some(tvec![self.stride, self.stride]),
            self.c,
            self.o,
        );
        let conv = Conv::new(spec, KernelFormat::OIHW, 1, None);
        let y = m.wire_node("conv", conv, &[x, k, b]).unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }
}

fn run_plan(model: TypedModel, input: &Tensor, options: &RunOptions) -> Tensor {
    let plan = model.into_runnable_with_options(options).unwrap();
    let mut state = TypedSimpleState::new(&plan).unwrap();
    // Twice: the second run reuses the op's buffers, which must not change the answer.
    let first = state.run(tvec![input.clone().into_tvalue()]).unwrap();
    let mut second = state.run(tvec![input.clone().into_tvalue()]).unwrap();
    assert_eq!(
        winograd::max_abs_diff(
            &first[0].clone().into_tensor(),
            &second[0].clone().into_tensor()
        )
        .unwrap(),
        0.0,
        "a second run of the same plan differs"
    );
    second.remove(0).into_tensor()
}

fn max_abs(t: &Tensor) -> f32 {
    let v = t.try_as_plain_ram().unwrap();
    v.as_slice::<f32>()
        .unwrap()
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()))
}

const SHAPES: [Shape; 11] = [
    // a 3-channel first layer, "same" padding
    Shape {
        k: 3,
        stride: 1,
        n: 1,
        c: 3,
        o: 4,
        h: 8,
        w: 8,
        pads: [1, 1, 1, 1],
    },
    // AlexNet conv3-5's 13x13 (odd: the last tile hangs over)
    Shape {
        k: 3,
        stride: 1,
        n: 1,
        c: 16,
        o: 24,
        h: 13,
        w: 13,
        pads: [1, 1, 1, 1],
    },
    // no padding, batch 2, channels that fill no panel
    Shape {
        k: 3,
        stride: 1,
        n: 2,
        c: 5,
        o: 7,
        h: 9,
        w: 11,
        pads: [0, 0, 0, 0],
    },
    // lopsided padding, a wide-short map
    Shape {
        k: 3,
        stride: 1,
        n: 1,
        c: 9,
        o: 20,
        h: 6,
        w: 17,
        pads: [2, 0, 1, 3],
    },
    // a single output row
    Shape {
        k: 3,
        stride: 1,
        n: 1,
        c: 4,
        o: 3,
        h: 3,
        w: 10,
        pads: [0, 1, 0, 1],
    },
    // wide enough for several blocks of tiles per product
    Shape {
        k: 3,
        stride: 1,
        n: 1,
        c: 256,
        o: 256,
        h: 30,
        w: 30,
        pads: [1, 1, 1, 1],
    },
    // AlexNet conv2's 5x5 "same" layer on a 27x27 map
    Shape {
        k: 5,
        stride: 1,
        n: 1,
        c: 16,
        o: 24,
        h: 27,
        w: 27,
        pads: [2, 2, 2, 2],
    },
    // 5x5, no padding, batch 2, a map no tile divides
    Shape {
        k: 5,
        stride: 1,
        n: 2,
        c: 6,
        o: 5,
        h: 12,
        w: 15,
        pads: [0, 0, 0, 0],
    },
    // AlexNet conv1's 11x11 stride 4 (3x3 over 48 channels after space-to-depth)
    Shape {
        k: 11,
        stride: 4,
        n: 1,
        c: 3,
        o: 16,
        h: 67,
        w: 71,
        pads: [2, 2, 2, 2],
    },
    // 5x5 stride 2, lopsided padding (3x3 over 4x the channels)
    Shape {
        k: 5,
        stride: 2,
        n: 1,
        c: 5,
        o: 9,
        h: 19,
        w: 14,
        pads: [1, 2, 2, 0],
    },
    // 7x7 stride 3 over one channel, two images: 9 phase planes per image, which two threads
    // split inside a row's phases (planes gathered one by one as well as a row's at once)
    Shape {
        k: 7,
        stride: 3,
        n: 2,
        c: 1,
        o: 5,
        h: 20,
        w: 23,
        pads: [3, 3, 3, 3],
    },
];

#[test]
fn random_layers_match_tract_conv() {
    let two_threads = RunOptions {
        executor: Some(Executor::multithread(2)),
        ..RunOptions::default()
    };
    for (i, shape) in SHAPES.iter().enumerate() {
        let kernel = shape.kernel(i as u64 + 1);
        let bias = values(shape.o, i as u64 + 100, 0.1);
        let input = shape.input(i as u64 + 200);
        let tract = run_plan(
            shape.tract_model(&kernel, &bias).into_optimized().unwrap(),
            &input,
            &RunOptions::default(),
        );
        let scale = max_abs(&tract);
        assert!(scale > 0.0, "{shape:?}: tract's output is all zero");
        let inner = shape.geometry().inner().kernel;
        // Weights split into 1 or 3 parts by output channel (3: more parts than threads, and
        // a short last part where the channels do not fill the kernel's row panels).
        for (&tile, parts) in Tile::for_kernel(inner)
            .iter()
            .flat_map(|t| [(t, 1), (t, 3)])
        {
            let op =
                WinogradConv::for_threads(tile, shape.geometry(), &kernel, &bias, parts).unwrap();
            let mut m = TypedModel::default();
            let x = m
                .add_source("x", f32::fact([shape.n, shape.c, shape.h, shape.w]))
                .unwrap();
            let y = m.wire_node("winograd", op, &[x]).unwrap();
            m.select_output_outlets(&y).unwrap();
            let one = run_plan(m.clone(), &input, &RunOptions::default());
            let two = run_plan(m, &input, &two_threads);
            let tolerance = tolerance(tile);
            for (threads, got) in [(1, &one), (2, &two)] {
                let diff = winograd::max_abs_diff(&tract, got).unwrap();
                eprintln!(
                    "{shape:?} {} in {parts} part(s), {threads} thread(s): max |d| {diff:.3e}, \
                     relative {:.3e}",
                    tile.name(),
                    diff / scale
                );
                assert!(
                    diff <= tolerance * scale,
                    "{shape:?} {} in {parts} part(s) at {threads} thread(s): max |d| {diff:e} \
                     over {:e} x {scale}",
                    tile.name(),
                    tolerance
                );
            }
        }
    }
}

#[test]
fn out_of_plan_eval_matches_the_plan() {
    let shape = SHAPES[1];
    let kernel = shape.kernel(7);
    let bias = values(shape.o, 8, 0.1);
    let input = shape.input(9);
    let op = WinogradConv::new(Tile::F4, shape.geometry(), &kernel, &bias).unwrap();
    let out = multithread_tract_scope(Executor::multithread(2), || {
        op.eval_out_of_plan(tvec![input.clone().into_tvalue()])
    })
    .unwrap()
    .unwrap();
    let tract = run_plan(
        shape.tract_model(&kernel, &bias).into_optimized().unwrap(),
        &input,
        &RunOptions::default(),
    );
    let diff = winograd::max_abs_diff(&tract, &out[0].clone().into_tensor()).unwrap();
    assert!(diff <= F4_TOLERANCE * max_abs(&tract), "max |d| {diff:e}");
}

#[test]
fn wrong_weights_are_refused() {
    let shape = SHAPES[0];
    let err = WinogradConv::new(Tile::F2, shape.geometry(), &[0.0; 5], &[0.0; 4]).unwrap_err();
    assert!(err.to_string().contains("kernel has 5 values"), "{err}");
}

/// A model with two eligible convolutions (5x5, and 3x3) before one that is not (3x3 stride 2,
/// which space-to-depth would turn into a 2x2).
fn mixed_model() -> (TypedModel, Tensor) {
    let mut m = TypedModel::default();
    let mut x = m.add_source("x", f32::fact([1, 3, 20, 20])).unwrap();
    let layers: [(usize, usize, usize, usize, usize); 3] =
        [(3, 8, 5, 1, 2), (8, 12, 3, 1, 1), (12, 6, 3, 2, 1)];
    for (i, (c, o, k, stride, pad)) in layers.into_iter().enumerate() {
        let w = values(
            o * c * k * k,
            i as u64 + 30,
            (2.0 / (k * k * c) as f32).sqrt(),
        );
        let kernel = m
            .add_const(
                format!("k{i}"),
                Tensor::from_shape(&[o, c, k, k], &w).unwrap(),
            )
            .unwrap();
        let bias = m
            .add_const(
                format!("b{i}"),
                Tensor::from_shape(&[o], &values(o, 40, 0.1)).unwrap(),
            )
            .unwrap();
        let spec = PoolSpec::new(
            DataFormat::NCHW,
            tvec![k, k],
            PaddingSpec::Explicit(tvec![pad, pad], tvec![pad, pad]),
            None,
            Some(tvec![stride, stride]),
            c,
            o,
        );
        x = m
            .wire_node(
                format!("conv{i}"),
                Conv::new(spec, KernelFormat::OIHW, 1, None),
                &[x, kernel, bias],
            )
            .unwrap()[0];
    }
    m.select_output_outlets(&[x]).unwrap();
    let v = values(3 * 20 * 20, 50, 1.0);
    (m, Tensor::from_shape(&[1, 3, 20, 20], &v).unwrap())
}

#[test]
fn the_pass_replaces_eligible_convolutions_only() {
    let (model, input) = mixed_model();
    let options = RunOptions::default();
    let expected = run_plan(model.clone().into_optimized().unwrap(), &input, &options);
    let (optimised, reports) =
        winograd::optimise(model.clone(), ConvChoice::Winograd, &options).unwrap();
    let replaced: Vec<&str> = optimised
        .nodes()
        .iter()
        .filter(|n| n.op_is::<WinogradConv>())
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(replaced, ["conv0", "conv1"]);
    let paths: Vec<(&str, &str)> = reports
        .iter()
        .map(|r| (r.node.as_str(), r.path.as_str()))
        .collect();
    assert!(paths[0].1.ends_with(",5x5)"), "{paths:?}");
    assert!(paths[1].1.ends_with(",3x3)"), "{paths:?}");
    assert_eq!(paths[2], ("conv2", "tract"));
    assert_eq!(
        reports[2].why,
        "3x3 stride 2 is 2x2 after space-to-depth (3x3 and 5x5 only)"
    );
    assert_eq!(reports[0].candidates.len(), 3);
    assert_eq!(reports[1].candidates.len(), 3);
    let got = run_plan(optimised, &input, &options);
    let diff = winograd::max_abs_diff(&expected, &got).unwrap();
    assert!(
        diff <= F4_TOLERANCE * max_abs(&expected),
        "max |d| {diff:e}"
    );

    // tract keeps every convolution and measures nothing.
    let (kept, reports) = winograd::optimise(model, ConvChoice::Tract, &options).unwrap();
    assert!(!kept.nodes().iter().any(|n| n.op_is::<WinogradConv>()));
    assert!(reports
        .iter()
        .all(|r| r.path == "tract" && r.tract_ms.is_none()));
    assert_eq!(reports[1].why, "--conv tract");
}

/// Two convolutions, each followed by `max(x, c)`: a ReLU (c = 0), which the op takes in, and
/// a max with 0.25, which it must leave alone.
#[test]
fn a_relu_after_a_convolution_runs_inside_the_op() {
    let shape = SHAPES[1];
    let mut m = shape.tract_model(&shape.kernel(3), &values(shape.o, 4, 0.1));
    let conv = m.output_outlets().unwrap()[0];
    let zero = m
        .add_const("zero", Tensor::from_shape(&[1, 1, 1, 1], &[0f32]).unwrap())
        .unwrap();
    let relu = m
        .wire_node(
            "relu",
            tract_onnx::tract_core::ops::math::max(),
            &[conv, zero],
        )
        .unwrap();
    let o = shape.o;
    let kernel2 = values(o * o * 9, 5, (2.0 / (9 * o) as f32).sqrt());
    let k2 = m
        .add_const("k2", Tensor::from_shape(&[o, o, 3, 3], &kernel2).unwrap())
        .unwrap();
    let b2 = m
        .add_const("b2", Tensor::from_shape(&[o], &values(o, 6, 0.1)).unwrap())
        .unwrap();
    let spec = PoolSpec::new(
        DataFormat::NCHW,
        tvec![3, 3],
        PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
        None,
        None,
        o,
        o,
    );
    let conv2 = m
        .wire_node(
            "conv2",
            Conv::new(spec, KernelFormat::OIHW, 1, None),
            &[relu[0], k2, b2],
        )
        .unwrap();
    let quarter = m
        .add_const(
            "quarter",
            Tensor::from_shape(&[1, 1, 1, 1], &[0.25f32]).unwrap(),
        )
        .unwrap();
    let y = m
        .wire_node(
            "max",
            tract_onnx::tract_core::ops::math::max(),
            &[conv2[0], quarter],
        )
        .unwrap();
    m.select_output_outlets(&y).unwrap();
    let input = shape.input(7);
    let options = RunOptions::default();
    let expected = run_plan(m.clone().into_optimized().unwrap(), &input, &options);
    let (optimised, reports) = winograd::optimise(m, ConvChoice::Winograd, &options).unwrap();
    let fused: Vec<bool> = reports.iter().map(|r| r.relu_fused).collect();
    assert_eq!(fused, [true, false]);
    let relus: Vec<bool> = optimised
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<WinogradConv>())
        .map(|op| op.relu)
        .collect();
    assert_eq!(relus, [true, false]);
    let got = run_plan(optimised, &input, &options);
    let diff = winograd::max_abs_diff(&expected, &got).unwrap();
    assert!(
        diff <= F4_TOLERANCE * max_abs(&expected),
        "max |d| {diff:e}"
    );
}

#[test]
fn conv_choice_parses_names_and_refuses_others() {
    assert_eq!("auto".parse::<ConvChoice>().unwrap(), ConvChoice::Auto);
    assert_eq!(
        " Winograd ".parse::<ConvChoice>().unwrap(),
        ConvChoice::Winograd
    );
    let err = "fast".parse::<ConvChoice>().unwrap_err();
    assert_eq!(err, "'fast' is not auto, tract or winograd");
    assert_eq!(
        ConvChoice::resolve(Some(ConvChoice::Tract)).unwrap(),
        ConvChoice::Tract
    );
}

fn bundled() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/histoscreen-alexnet-compact.onnx"
    ))
}

fn samples() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/samples");
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    found.sort();
    found
}

#[test]
fn bundled_model_gives_tracts_probabilities_through_winograd() {
    let load = |conv, threads| {
        Model::load_with(
            &bundled(),
            &LoadOptions {
                conv: Some(conv),
                threads,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    };
    let tract = load(ConvChoice::Tract, 1);
    let wino = load(ConvChoice::Winograd, 2);
    assert_eq!(wino.conv_choice(), ConvChoice::Winograd);
    // Every AlexNet convolution has a Winograd form: conv1 (11x11 stride 4) as a 3x3 over 48
    // channels after space-to-depth, conv2 as a 5x5, conv3-5 as 3x3.
    let paths: Vec<(&str, &str)> = wino
        .conv_layers()
        .iter()
        .map(|l| (l.node.as_str(), l.path.as_str()))
        .collect();
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths[0].1.ends_with(",3x3)"), "{paths:?}");
    assert!(paths[1].1.ends_with(",5x5)"), "{paths:?}");
    assert!(
        paths[2..].iter().all(|(_, p)| p.ends_with(",3x3)")),
        "{paths:?}"
    );
    // Each is followed by a ReLU, which runs inside the op.
    assert!(wino.conv_layers().iter().all(|l| l.relu_fused));
    for l in wino.conv_layers() {
        for c in &l.candidates {
            eprintln!(
                "{} {} {}: max |d| {:.2e} (relative {:.2e})",
                l.node, l.shape, c.tile, c.max_abs_diff, c.relative_diff
            );
            assert!(c.relative_diff <= F4_TOLERANCE, "{} {}", l.node, c.tile);
        }
    }
    let mut worst = 0f32;
    let images = samples();
    assert_eq!(images.len(), 8);
    for path in &images {
        let img = load_image(path).unwrap();
        let a = tract.classify_at(&img, None).unwrap();
        let b = wino.classify_at(&img, None).unwrap();
        let d = (a.probs[0] - b.probs[0])
            .abs()
            .max((a.probs[1] - b.probs[1]).abs());
        worst = worst.max(d);
        assert!(
            d <= PROBABILITY_TOLERANCE,
            "{}: tract {:?}, winograd {:?}",
            path.display(),
            a.probs,
            b.probs
        );
        assert_eq!(a.label, b.label, "{}", path.display());
    }
    eprintln!(
        "centre tiles: max |d p| {worst:.2e} over {} images",
        images.len()
    );
    // The whole-field form gets the pass too: every tile of the map agrees.
    let img = load_image(&images[0]).unwrap();
    let a = tract.screen(&img, None).unwrap();
    let b = wino.screen(&img, None).unwrap();
    let (w, h) = img.dimensions();
    let dense = wino.field_conv_layers(w, h).unwrap();
    assert!(
        dense.iter().filter(|l| l.path.starts_with("F(")).count() == 5,
        "{:?}",
        dense.iter().map(|l| &l.path).collect::<Vec<_>>()
    );
    assert_eq!(a.map.values.len(), b.map.values.len());
    let d = a
        .map
        .values
        .iter()
        .zip(&b.map.values)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    eprintln!(
        "whole field {w}x{h}: {} tiles, max |d p| {d:.2e}",
        a.map.values.len()
    );
    assert!(d <= PROBABILITY_TOLERANCE, "whole field: max |d p| {d:e}");
    assert!((a.p_malignant - b.p_malignant).abs() <= PROBABILITY_TOLERANCE);
}
