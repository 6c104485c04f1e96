//! `MaxPool2d` against tract's own max pool: bit for bit, since a max is exact.

mod common;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::runtime::RunOptions;

use histoscreen_edge::maxpool::{replace_max_pools, MaxPool2d};

/// Deterministic values in [offset - 1, offset + 1].
fn values(n: usize, seed: u64, offset: f32) -> Vec<f32> {
    common::uniform(n, seed).map(|v| v + offset).collect()
}

/// One pool: input `[n, c, h, w]`, kernel, strides, padding.
#[derive(Clone, Debug)]
struct Case {
    shape: [usize; 4],
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: PaddingSpec,
    /// Added to every input value; below -1 makes every input negative.
    offset: f32,
}

fn pool_spec(case: &Case) -> PoolSpec {
    PoolSpec::new(
        DataFormat::NCHW,
        tvec![case.kernel[0], case.kernel[1]],
        case.padding.clone(),
        None,
        Some(tvec![case.strides[0], case.strides[1]]),
        case.shape[1],
        case.shape[1],
    )
}

fn explicit(before: [usize; 2], after: [usize; 2]) -> PaddingSpec {
    PaddingSpec::Explicit(tvec![before[0], before[1]], tvec![after[0], after[1]])
}

fn cases() -> Vec<Case> {
    let case = |shape, kernel, strides, padding, offset| Case {
        shape,
        kernel,
        strides,
        padding,
        offset,
    };
    vec![
        // AlexNet's first pool.
        case([1, 64, 55, 55], [3, 3], [2, 2], PaddingSpec::Valid, 0.0),
        // An odd map, padded on every side.
        case(
            [1, 5, 13, 11],
            [3, 3],
            [2, 2],
            explicit([1, 1], [1, 1]),
            0.0,
        ),
        // Lopsided padding and a non-square kernel, all inputs negative: a padded zero would win.
        case(
            [1, 3, 9, 10],
            [3, 2],
            [2, 3],
            explicit([0, 1], [2, 0]),
            -5.0,
        ),
        case([1, 4, 7, 7], [3, 3], [2, 2], explicit([2, 0], [0, 2]), -5.0),
        // The same-padding rules tract computes itself.
        case([1, 3, 10, 9], [3, 3], [2, 2], PaddingSpec::SameUpper, -5.0),
        case([1, 3, 10, 9], [3, 3], [2, 2], PaddingSpec::SameLower, -5.0),
        // Ceil mode: the last window runs past the padding.
        case(
            [1, 2, 12, 12],
            [3, 3],
            [2, 2],
            PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![0, 0], true),
            -5.0,
        ),
        // 2x2 stride 2, on an even and an odd map.
        case([1, 8, 16, 16], [2, 2], [2, 2], PaddingSpec::Valid, 0.0),
        case([1, 8, 15, 17], [2, 2], [2, 2], PaddingSpec::Valid, 0.0),
        // Stride 1, padded.
        case(
            [1, 6, 12, 14],
            [3, 3],
            [1, 1],
            explicit([1, 1], [1, 1]),
            -5.0,
        ),
        case([1, 6, 12, 14], [2, 3], [1, 1], PaddingSpec::Valid, 0.0),
        // Batch 2, negative.
        case(
            [2, 16, 27, 27],
            [3, 3],
            [2, 2],
            explicit([1, 1], [1, 1]),
            -5.0,
        ),
        // 3x3 stride 3, padded on two sides only.
        case(
            [1, 3, 14, 13],
            [3, 3],
            [3, 3],
            explicit([1, 0], [0, 2]),
            -5.0,
        ),
        // One row tall; five rows tall, more than the one-pass rows.
        case([1, 2, 9, 9], [1, 3], [1, 2], PaddingSpec::Valid, 0.0),
        case(
            [1, 2, 11, 9],
            [5, 3],
            [2, 2],
            explicit([2, 1], [2, 1]),
            -5.0,
        ),
        // A kernel as wide as the map.
        case([1, 4, 6, 6], [6, 6], [1, 1], PaddingSpec::Valid, 0.0),
    ]
}

fn options(threads: usize) -> RunOptions {
    if threads > 1 {
        RunOptions {
            executor: Some(Executor::multithread(threads)),
            ..Default::default()
        }
    } else {
        RunOptions::default()
    }
}

fn tract_pool_model(case: &Case) -> TypedModel {
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact(case.shape)).unwrap();
    let op = MaxPool::new(pool_spec(case), None);
    let y = m.wire_node("pool", op, &[x]).unwrap();
    m.select_output_outlets(&y).unwrap();
    m
}

fn run(model: TypedModel, input: &Tensor, threads: usize) -> Tensor {
    let plan = model.into_runnable_with_options(&options(threads)).unwrap();
    let mut out = plan.run(tvec![input.clone().into_tvalue()]).unwrap();
    out.remove(0).into_tensor()
}

fn input(case: &Case, seed: u64) -> Tensor {
    let len = case.shape.iter().product();
    Tensor::from_shape(&case.shape, &values(len, seed, case.offset)).unwrap()
}

fn assert_bitwise(expected: &Tensor, got: &Tensor, what: &str) {
    assert_eq!(expected.shape(), got.shape(), "{what}: shape");
    let (e, g) = (
        expected.try_as_plain_ram().unwrap(),
        got.try_as_plain_ram().unwrap(),
    );
    let (e, g) = (e.as_slice::<f32>().unwrap(), g.as_slice::<f32>().unwrap());
    let first = e
        .iter()
        .zip(g)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = first {
        panic!("{what}: value {i} is {} against tract's {}", g[i], e[i]);
    }
}

#[test]
fn matches_tract_on_every_shape() {
    for (i, case) in cases().iter().enumerate() {
        let x = input(case, i as u64 + 1);
        let expected = run(tract_pool_model(case).into_optimized().unwrap(), &x, 1);
        for threads in [1, 2] {
            let mut model = tract_pool_model(case).into_decluttered().unwrap();
            assert_eq!(replace_max_pools(&mut model).unwrap(), 1, "{case:?}");
            let model = model.into_optimized().unwrap();
            assert!(
                model.nodes().iter().any(|n| n.op_is::<MaxPool2d>()),
                "{case:?}: optimize kept MaxPool2d"
            );
            let got = run(model, &x, threads);
            assert_bitwise(&expected, &got, &format!("{case:?} at {threads} threads"));
        }
    }
}

#[test]
fn op_evaluates_out_of_plan() {
    let case = &cases()[1];
    let x = input(case, 7);
    let expected = run(tract_pool_model(case).into_optimized().unwrap(), &x, 1);
    let mut model = tract_pool_model(case).into_decluttered().unwrap();
    replace_max_pools(&mut model).unwrap();
    let node = model
        .nodes()
        .iter()
        .find(|n| n.op_is::<MaxPool2d>())
        .unwrap();
    let got = node
        .op
        .eval_out_of_plan(tvec![x.into_tvalue()])
        .unwrap()
        .unwrap()
        .remove(0)
        .into_tensor();
    assert_bitwise(&expected, &got, "out of plan");
}

/// Two pools back to back, the second padded on one side: each must be fed the other's output
/// once both are replaced.
fn chain() -> (TypedModel, Case) {
    let first = Case {
        shape: [2, 32, 55, 55],
        kernel: [3, 3],
        strides: [2, 2],
        padding: PaddingSpec::Valid,
        offset: -5.0,
    };
    let second = Case {
        shape: [2, 32, 27, 27],
        kernel: [2, 2],
        strides: [1, 1],
        padding: explicit([1, 0], [0, 1]),
        offset: -5.0,
    };
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact(first.shape)).unwrap();
    let y = m
        .wire_node("pool1", MaxPool::new(pool_spec(&first), None), &[x])
        .unwrap();
    let z = m
        .wire_node("pool2", MaxPool::new(pool_spec(&second), None), &y)
        .unwrap();
    m.select_output_outlets(&z).unwrap();
    (m, first)
}

#[test]
fn replaces_a_chain_of_pools() {
    let (model, case) = chain();
    let x = input(&case, 42);
    let expected = run(model.clone().into_optimized().unwrap(), &x, 1);
    for threads in [1, 2] {
        let mut replaced = model.clone().into_decluttered().unwrap();
        assert_eq!(replace_max_pools(&mut replaced).unwrap(), 2);
        let replaced = replaced.into_optimized().unwrap();
        assert_eq!(
            replaced
                .nodes()
                .iter()
                .filter(|n| n.op_is::<MaxPool2d>())
                .count(),
            2
        );
        assert!(!replaced
            .nodes()
            .iter()
            .any(|n| n.op.name().contains("MaxPool") && !n.op_is::<MaxPool2d>()));
        let got = run(replaced, &x, threads);
        assert_bitwise(&expected, &got, &format!("chain at {threads} threads"));
    }
}

#[test]
fn leaves_ineligible_pools_alone() {
    let case = Case {
        shape: [1, 4, 9, 9],
        kernel: [3, 3],
        strides: [2, 2],
        padding: PaddingSpec::Valid,
        offset: 0.0,
    };
    // Dilated.
    let mut spec = pool_spec(&case);
    spec.dilations = Some(tvec![2, 2]);
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact(case.shape)).unwrap();
    let y = m
        .wire_node("dilated", MaxPool::new(spec, None), &[x])
        .unwrap();
    // With the indices output, which is used.
    let z = m
        .wire_node(
            "indexed",
            MaxPool::new(pool_spec(&case), Some(i64::datum_type())),
            &[x],
        )
        .unwrap();
    m.select_output_outlets(&[y[0], z[0], z[1]]).unwrap();
    let mut m = m.into_decluttered().unwrap();
    assert_eq!(replace_max_pools(&mut m).unwrap(), 0);
    assert_eq!(m.nodes().iter().filter(|n| n.op_is::<MaxPool>()).count(), 2);
}
