//! The exporter against a plain reference AlexNet, in tract, and on bad weights.

use super::*;
use std::sync::OnceLock;
use tract_onnx::prelude::*;

/// xorshift64*: deterministic weights without pulling a RNG into the test build.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32
    }

    fn uniform(&mut self, shape: Vec<usize>, bound: f32) -> Array {
        let len = shape.iter().product();
        let data = (0..len)
            .map(|_| (self.next_f32() * 2.0 - 1.0) * bound)
            .collect();
        Array { shape, data }
    }

    /// He-uniform weights keep activations O(1) through the ReLU stack, so the softmax is
    /// not saturated and comparing probabilities actually tests something.
    fn layer(&mut self, shape: Vec<usize>, gain: f32) -> (Array, Array) {
        let fan_in: usize = shape[1..].iter().product();
        let bound = (3.0 * gain / fan_in as f32).sqrt();
        let bias = self.uniform(vec![shape[0]], 0.1);
        (self.uniform(shape, bound), bias)
    }

    fn conv(&mut self, shape: [usize; 4]) -> ConvWeights {
        let (weight, bias) = self.layer(shape.to_vec(), 2.0);
        ConvWeights { weight, bias }
    }

    fn dense(&mut self, out: usize, inp: usize, gain: f32) -> DenseWeights {
        let (weight, bias) = self.layer(vec![out, inp], gain);
        DenseWeights { weight, bias }
    }
}

struct Fixture {
    classic: AlexNetWeights,
    compact: AlexNetWeights,
    input: Vec<f32>,
    /// Reference conv features `[256, 6, 6]` for `input`, shared by both heads.
    features: Vec<f32>,
}

/// Built once: the full-size weights are ~230 MB and the naive reference conv takes
/// seconds, so every test shares them.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let features: Vec<_> = CONVS
            .iter()
            .map(|s| rng.conv([s.out_ch, s.in_ch, s.kernel, s.kernel]))
            .collect();
        let classic = AlexNetWeights {
            features: features.clone(),
            head: HeadWeights::Classic {
                fc6: rng.dense(4096, CLASSIC_FEATURES, 2.0),
                fc7: rng.dense(4096, 4096, 2.0),
                fc8: rng.dense(NUM_CLASSES, 4096, 1.0),
            },
        };
        let compact = AlexNetWeights {
            features,
            head: HeadWeights::Compact {
                hidden: Some(rng.dense(128, COMPACT_FEATURES, 2.0)),
                out: rng.dense(NUM_CLASSES, 128, 1.0),
            },
        };
        let input = rng.uniform(INPUT_SHAPE.to_vec(), 1.7).data;
        let features = reference_features(&classic.features, &input);
        Fixture {
            classic,
            compact,
            input,
            features,
        }
    })
}

fn options() -> ExportOptions {
    ExportOptions {
        graph_name: "alexnet-test".into(),
        doc: "exported by onnx_export tests".into(),
        metadata: vec![("labels".into(), "benign,malignant".into())],
    }
}

/// Cross-correlation as in PyTorch/ONNX `Conv`, on a single CHW image.
fn conv2d(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    cw: &ConvWeights,
    stride: usize,
    pad: usize,
) -> (Vec<f32>, (usize, usize, usize)) {
    let [o, i, k, _] = cw.weight.shape[..] else {
        panic!("conv weight is not 4D")
    };
    assert_eq!(i, c);
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let mut out = vec![0f32; o * oh * ow];
    for (oc, plane) in out.chunks_mut(oh * ow).enumerate() {
        plane.fill(cw.bias.data[oc]);
        for ic in 0..c {
            let input = &x[ic * h * w..][..h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = cw.weight.data[((oc * c + ic) * k + ky) * k + kx];
                    for oy in 0..oh {
                        let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|&v| v < h)
                        else {
                            continue;
                        };
                        for ox in 0..ow {
                            if let Some(ix) = (ox * stride + kx).checked_sub(pad).filter(|&v| v < w)
                            {
                                plane[oy * ow + ox] += wv * input[iy * w + ix];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, (o, oh, ow))
}

fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// MaxPool(kernel 3, stride 2, no padding, floor mode).
fn maxpool(x: &[f32], (c, h, w): (usize, usize, usize)) -> (Vec<f32>, (usize, usize, usize)) {
    let (oh, ow) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..3 {
                    for kx in 0..3 {
                        m = m.max(x[(ch * h + oy * 2 + ky) * w + ox * 2 + kx]);
                    }
                }
                out.push(m);
            }
        }
    }
    (out, (c, oh, ow))
}

fn reference_features(convs: &[ConvWeights], input: &[f32]) -> Vec<f32> {
    let mut x = input.to_vec();
    let mut dims = (3, 224, 224);
    for (cw, spec) in convs.iter().zip(&CONVS) {
        (x, dims) = conv2d(&x, dims, cw, spec.stride, spec.pad);
        relu(&mut x);
        if spec.pool {
            (x, dims) = maxpool(&x, dims);
        }
    }
    assert_eq!(dims, (256, 6, 6));
    x
}

fn dense(x: &[f32], d: &DenseWeights) -> Vec<f32> {
    d.weight
        .data
        .chunks(x.len())
        .zip(&d.bias.data)
        .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
        .collect()
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Reference logits of a head applied to the shared conv features.
fn reference_logits(head: &HeadWeights, features: &[f32]) -> Vec<f32> {
    match head {
        HeadWeights::Classic { fc6, fc7, fc8 } => {
            let mut x = dense(features, fc6);
            relu(&mut x);
            let mut x = dense(&x, fc7);
            relu(&mut x);
            dense(&x, fc8)
        }
        HeadWeights::Compact { hidden, out } => {
            let mut x: Vec<f32> = features
                .chunks(36)
                .map(|c| c.iter().sum::<f32>() / 36.0)
                .collect();
            if let Some(h) = hidden {
                x = dense(&x, h);
                relu(&mut x);
            }
            dense(&x, out)
        }
    }
}

fn run_tract(bytes: &[u8], input: &[f32]) -> Vec<f32> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract parses the model")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("tract plans the model");
    let x = Tensor::from_shape(&INPUT_SHAPE, input).unwrap();
    let out = model.run(tvec!(x.into())).expect("tract runs the model");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape(), &[1, NUM_CLASSES]);
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn param_count(w: &AlexNetWeights) -> usize {
    let dense = |d: &DenseWeights| d.weight.data.len() + d.bias.data.len();
    let convs: usize = w
        .features
        .iter()
        .map(|c| c.weight.data.len() + c.bias.data.len())
        .sum();
    convs
        + match &w.head {
            HeadWeights::Classic { fc6, fc7, fc8 } => dense(fc6) + dense(fc7) + dense(fc8),
            HeadWeights::Compact { hidden, out } => hidden.as_ref().map_or(0, dense) + dense(out),
        }
}

/// Checks tract's probabilities against the reference logits and returns the largest
/// absolute difference.
fn compare(label: &str, got: &[f32], logits: &[f32], rel_tol: f32) -> f32 {
    let want = softmax(logits);
    // Unsaturated probabilities, or a broken graph could still match a one-hot output.
    assert!(
        want.iter().all(|&p| p > 1e-3),
        "{label}: reference saturated: {logits:?}"
    );
    let mut max_abs = 0f32;
    for (g, w) in got.iter().zip(&want) {
        max_abs = max_abs.max((g - w).abs());
        assert!(
            (g - w).abs() <= rel_tol * w.abs(),
            "{label}: tract {got:?} vs reference {want:?} (logits {logits:?})"
        );
    }
    eprintln!("{label}: tract {got:?} reference {want:?} max |diff| {max_abs:e}");
    max_abs
}

#[test]
fn classic_head_matches_reference() {
    let f = fixture();
    let bytes = alexnet_to_onnx(&f.classic, &options()).unwrap();
    let logits = reference_logits(&f.classic.head, &f.features);
    compare("classic f32", &run_tract(&bytes, &f.input), &logits, 1e-4);

    // f32 raw data dominates the file; everything else (names, attributes) is tiny.
    let params = param_count(&f.classic);
    assert_eq!(params, 57_012_034, "torchvision AlexNet with a 2-class fc8");
    let overhead = bytes.len() - 4 * params;
    eprintln!(
        "classic f32: {} bytes, {params} params, overhead {overhead}",
        bytes.len()
    );
    assert!(
        bytes.len() > 4 * params && overhead < 16 * 1024,
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn compact_head_matches_reference() {
    let f = fixture();
    let bytes = alexnet_to_onnx(&f.compact, &options()).unwrap();
    let logits = reference_logits(&f.compact.head, &f.features);
    compare("compact f32", &run_tract(&bytes, &f.input), &logits, 1e-4);
    let params = param_count(&f.compact);
    eprintln!("compact f32: {} bytes, {params} params", bytes.len());
    assert!(bytes.len() > 4 * params && bytes.len() - 4 * params < 16 * 1024);
}

#[test]
fn compact_head_without_hidden_layer_matches_reference() {
    let f = fixture();
    let mut rng = Rng(7);
    let head = HeadWeights::Compact {
        hidden: None,
        out: rng.dense(2, 256, 1.0),
    };
    let w = AlexNetWeights {
        features: f.compact.features.clone(),
        head,
    };
    let bytes = alexnet_to_onnx(&w, &options()).unwrap();
    let logits = reference_logits(&w.head, &f.features);
    compare(
        "compact (no hidden) f32",
        &run_tract(&bytes, &f.input),
        &logits,
        1e-4,
    );
}

#[test]
fn int8_weights_are_a_quarter_the_size_and_close_to_f32() {
    let f = fixture();
    let bytes =
        alexnet_to_onnx_with(&f.classic, &options(), WeightStorage::Int8PerChannel).unwrap();
    let logits = reference_logits(&f.classic.head, &f.features);
    let diff = compare("classic int8", &run_tract(&bytes, &f.input), &logits, 0.1);
    assert!(diff < 0.02, "int8 probabilities drift by {diff}");
    let params = param_count(&f.classic);
    eprintln!(
        "classic int8: {} bytes ({:.3} bytes/param)",
        bytes.len(),
        bytes.len() as f64 / params as f64
    );
    assert!(
        bytes.len() < params + params / 50,
        "{} bytes for {params} params",
        bytes.len()
    );
}

#[test]
fn f16_weights_are_half_the_size_and_close_to_f32() {
    let f = fixture();
    let bytes = alexnet_to_onnx_with(&f.classic, &options(), WeightStorage::F16).unwrap();
    let logits = reference_logits(&f.classic.head, &f.features);
    let diff = compare("classic f16", &run_tract(&bytes, &f.input), &logits, 0.01);
    assert!(diff < 2e-3, "f16 probabilities drift by {diff}");
    let params = param_count(&f.classic);
    eprintln!(
        "classic f16: {} bytes ({:.3} bytes/param)",
        bytes.len(),
        bytes.len() as f64 / params as f64
    );
    assert!(
        bytes.len() < 2 * params + params / 50,
        "{} bytes for {params} params",
        bytes.len()
    );
}

#[test]
fn compact_int8_and_f16_run_in_tract() {
    let f = fixture();
    let logits = reference_logits(&f.compact.head, &f.features);
    for storage in [WeightStorage::Int8PerChannel, WeightStorage::F16] {
        let bytes = alexnet_to_onnx_with(&f.compact, &options(), storage).unwrap();
        compare(
            &format!("compact {storage:?}"),
            &run_tract(&bytes, &f.input),
            &logits,
            0.1,
        );
    }
}

#[test]
fn quantization_round_trips_within_half_a_step() {
    let a = Array::new(
        vec![3, 4],
        vec![
            0.5, -1.0, 0.25, 0.0, //
            0.0, 0.0, 0.0, 0.0, // all-zero channel must not yield a zero scale
            3.0, 2.9, -3.0, 1e-4,
        ],
    )
    .unwrap();
    let (q, scales) = quantize_per_channel(&a);
    assert_eq!(&q[..4], &[64, -127, 32, 0]);
    assert_eq!(&q[4..8], &[0; 4]);
    assert_eq!(scales[1], 1.0);
    for (i, (&v, &qv)) in a.data.iter().zip(&q).enumerate() {
        let s = scales[i / 4];
        assert!(
            (qv as f32 * s - v).abs() <= s / 2.0 + 1e-7,
            "{v} -> {qv} * {s}"
        );
    }
}

/// Cheap weights of the right shapes, for the validation tests.
fn zero_weights() -> AlexNetWeights {
    let zero_dense = |o, i| DenseWeights {
        weight: Array::zeros(vec![o, i]),
        bias: Array::zeros(vec![o]),
    };
    AlexNetWeights {
        features: CONVS
            .iter()
            .map(|s| ConvWeights {
                weight: Array::zeros(vec![s.out_ch, s.in_ch, s.kernel, s.kernel]),
                bias: Array::zeros(vec![s.out_ch]),
            })
            .collect(),
        head: HeadWeights::Compact {
            hidden: Some(zero_dense(64, 256)),
            out: zero_dense(2, 64),
        },
    }
}

fn export_error(w: &AlexNetWeights) -> String {
    let err = alexnet_to_onnx(w, &options()).unwrap_err();
    assert!(
        err.downcast_ref::<ExportError>().is_some(),
        "typed error: {err}"
    );
    err.to_string()
}

#[test]
fn wrong_shapes_are_reported_clearly() {
    let mut w = zero_weights();
    w.features[2].weight = Array::zeros(vec![384, 192, 5, 5]);
    assert_eq!(
        export_error(&w),
        "features[2].weight has shape [384, 192, 5, 5], expected [384, 192, 3, 3]"
    );

    let mut w = zero_weights();
    w.features[4].bias = Array::zeros(vec![128]);
    assert_eq!(
        export_error(&w),
        "features[4].bias has shape [128], expected [256]"
    );

    let mut w = zero_weights();
    w.features.pop();
    assert_eq!(
        export_error(&w),
        "expected exactly 5 feature convolutions, got 4"
    );

    let mut w = zero_weights();
    w.features[0].weight.data.pop();
    assert_eq!(
        export_error(&w),
        "features[0].weight has shape [64, 3, 11, 11] (23232 values) but holds 23231 values"
    );

    let mut w = zero_weights();
    w.features[1].bias.data[3] = f32::NAN;
    assert_eq!(export_error(&w), "features[1].bias has non-finite values");
}

#[test]
fn wrong_head_shapes_are_reported_clearly() {
    let d = |o, i| DenseWeights {
        weight: Array::zeros(vec![o, i]),
        bias: Array::zeros(vec![o]),
    };
    let mut w = zero_weights();
    // A classifier fed from globally pooled features instead of the 6x6 flatten.
    w.head = HeadWeights::Classic {
        fc6: d(4096, 256),
        fc7: d(4096, 4096),
        fc8: d(2, 4096),
    };
    assert_eq!(
        export_error(&w),
        "fc6.weight has shape [4096, 256], expected [4096, 9216]"
    );

    w.head = HeadWeights::Classic {
        fc6: d(64, 9216),
        fc7: d(32, 64),
        fc8: d(1000, 32),
    };
    assert_eq!(
        export_error(&w),
        "fc8.weight has shape [1000, 32], expected [2, 32]"
    );

    w.head = HeadWeights::Classic {
        fc6: d(64, 9216),
        fc7: d(32, 48),
        fc8: d(2, 32),
    };
    assert_eq!(
        export_error(&w),
        "fc7.weight has shape [32, 48], expected [32, 64]"
    );

    w.head = HeadWeights::Compact {
        hidden: None,
        out: d(2, 9216),
    };
    assert_eq!(
        export_error(&w),
        "head.out.weight has shape [2, 9216], expected [2, 256]"
    );

    w.head = HeadWeights::Compact {
        hidden: Some(d(64, 256)),
        out: d(2, 256),
    };
    assert_eq!(
        export_error(&w),
        "head.out.weight has shape [2, 256], expected [2, 64]"
    );

    w.head = HeadWeights::Compact {
        hidden: Some(d(64, 256)),
        out: d(2, 64),
    };
    w.head = match w.head {
        HeadWeights::Compact { hidden, mut out } => {
            out.bias = Array::zeros(vec![3]);
            HeadWeights::Compact { hidden, out }
        }
        other => other,
    };
    assert_eq!(
        export_error(&w),
        "head.out.bias has shape [3], expected [2]"
    );
}

#[test]
fn model_carries_names_metadata_and_opset() {
    let bytes = alexnet_to_onnx(&zero_weights(), &options()).unwrap();
    let m = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(
        (m.ir_version, m.opset_import[0].version),
        (IR_VERSION, OPSET)
    );
    assert_eq!(m.doc_string, "exported by onnx_export tests");
    assert_eq!(m.metadata_props[0].key, "labels");
    assert_eq!(m.metadata_props[0].value, "benign,malignant");
    let g = m.graph.unwrap();
    assert_eq!(g.name, "alexnet-test");
    let names: Vec<&str> = g.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1",
            "relu1",
            "pool1",
            "conv2",
            "relu2",
            "pool2",
            "conv3",
            "relu3",
            "conv4",
            "relu4",
            "conv5",
            "relu5",
            "pool5",
            "head.gap",
            "head.flatten",
            "head.hidden",
            "head.hidden.relu",
            "head.out",
            "softmax"
        ]
    );
    assert_eq!(g.initializer[0].name, "features.0.weight");
    assert_eq!(g.input[0].name, INPUT_NAME);
    assert_eq!(g.output[0].name, OUTPUT_NAME);
    // Zero weights give uniform probabilities: a cheap end-to-end check of the small graph.
    let probs = run_tract(&bytes, &vec![0.5; 3 * 224 * 224]);
    assert_eq!(probs, [0.5, 0.5]);
}

#[test]
fn runtime_may_choose_the_batch_size() {
    // histoscreen-edge replaces the input fact to run batches; the declared [1, 2] output
    // must not pin the batch (tract ignores declared output shapes by default).
    let bytes = alexnet_to_onnx(&zero_weights(), &options()).unwrap();
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
    let shape = [3, 3, 224, 224];
    model.set_input_fact(0, f32::fact(shape).into()).unwrap();
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan
        .run(tvec!(Tensor::zero::<f32>(&shape).unwrap().into()))
        .unwrap();
    assert_eq!(out[0].shape(), &[3, NUM_CLASSES]);
}
