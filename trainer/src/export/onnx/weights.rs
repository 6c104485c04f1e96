//! The weights an export is made from, as plain `f32` arrays, and their checks against the
//! AlexNet graph.

use anyhow::Result;

use super::layers::CONVS;

/// A dense row-major `f32` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// Builds an array, refusing a data length that disagrees with the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        anyhow::ensure!(
            data.len() == expected,
            "array of shape {shape:?} needs {expected} values, got {}",
            data.len()
        );
        Ok(Self { shape, data })
    }

    /// An all-zero array of the given shape.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; len],
        }
    }
}

/// A convolution layer: weight is OIHW, bias is `[O]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWeights {
    pub weight: Array,
    pub bias: Array,
}

/// A fully connected layer: weight is `[out, in]` (PyTorch convention), bias is `[out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseWeights {
    pub weight: Array,
    pub bias: Array,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeadWeights {
    /// torchvision classifier: flatten 256*6*6=9216 -> fc6 -> ReLU -> fc7 -> ReLU -> fc8 (2).
    /// Dropout is the identity at inference and is not exported.
    Classic {
        fc6: DenseWeights,
        fc7: DenseWeights,
        fc8: DenseWeights,
    },
    /// GlobalAveragePool over the conv features (256) -> optional hidden dense + ReLU -> out (2).
    Compact {
        hidden: Option<DenseWeights>,
        out: DenseWeights,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlexNetWeights {
    /// The five convolutions of `torchvision.models.alexnet().features`, in order.
    pub features: Vec<ConvWeights>,
    pub head: HeadWeights,
}

/// Number of classes (benign, malignant).
pub const NUM_CLASSES: usize = 2;
/// Flattened size of the conv features at 224x224 input: 256 channels of 6x6.
pub const CLASSIC_FEATURES: usize = 256 * 6 * 6;
/// Size of the globally pooled conv features.
pub const COMPACT_FEATURES: usize = 256;

/// A weight array whose shape or length does not fit the AlexNet graph.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    #[error("{name} has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{name} has shape {shape:?} ({expected} values) but holds {got} values")]
    DataLen {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("expected exactly 5 feature convolutions, got {0}")]
    FeatureCount(usize),
    #[error("{name} has non-finite values")]
    NonFinite { name: String },
}

fn check(name: &str, a: &Array, expected: &[usize]) -> Result<(), ExportError> {
    if a.shape != expected {
        return Err(ExportError::Shape {
            name: name.to_string(),
            got: a.shape.clone(),
            expected: expected.to_vec(),
        });
    }
    let len: usize = expected.iter().product();
    if a.data.len() != len {
        return Err(ExportError::DataLen {
            name: name.to_string(),
            shape: a.shape.clone(),
            expected: len,
            got: a.data.len(),
        });
    }
    // A NaN weight would export fine and then silently turn every prediction into NaN on the
    // device, so it is cheaper to refuse here.
    if a.data.iter().any(|v| !v.is_finite()) {
        return Err(ExportError::NonFinite {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks a dense layer against an input width, returns its output width. Hidden widths are
/// free (torchvision uses 4096) so that slimmer heads can be exported too.
fn check_dense(
    name: &str,
    d: &DenseWeights,
    in_features: usize,
    out_features: Option<usize>,
) -> Result<usize, ExportError> {
    let out = out_features.unwrap_or_else(|| d.weight.shape.first().copied().unwrap_or(0));
    check(&format!("{name}.weight"), &d.weight, &[out, in_features])?;
    check(&format!("{name}.bias"), &d.bias, &[out])?;
    Ok(out)
}

/// Validates every array against the graph before anything is built.
pub fn validate(w: &AlexNetWeights) -> Result<(), ExportError> {
    if w.features.len() != CONVS.len() {
        return Err(ExportError::FeatureCount(w.features.len()));
    }
    for (i, (c, spec)) in w.features.iter().zip(&CONVS).enumerate() {
        let k = spec.kernel;
        check(
            &format!("features[{i}].weight"),
            &c.weight,
            &[spec.out_ch, spec.in_ch, k, k],
        )?;
        check(&format!("features[{i}].bias"), &c.bias, &[spec.out_ch])?;
    }
    match &w.head {
        HeadWeights::Classic { fc6, fc7, fc8 } => {
            let h6 = check_dense("fc6", fc6, CLASSIC_FEATURES, None)?;
            let h7 = check_dense("fc7", fc7, h6, None)?;
            check_dense("fc8", fc8, h7, Some(NUM_CLASSES))?;
        }
        HeadWeights::Compact { hidden, out } => {
            let width = match hidden {
                Some(h) => check_dense("head.hidden", h, COMPACT_FEATURES, None)?,
                None => COMPACT_FEATURES,
            };
            check_dense("head.out", out, width, Some(NUM_CLASSES))?;
        }
    }
    Ok(())
}
