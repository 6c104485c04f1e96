//! torchvision AlexNet's five convolutions as the graph lays them out.

use tract_onnx::pb::AttributeProto;

use super::proto::{int, ints};

/// Static description of one torchvision AlexNet convolution.
pub(crate) struct ConvSpec {
    pub(crate) out_ch: usize,
    pub(crate) in_ch: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    /// Whether a `MaxPool(3, 2)` follows the ReLU.
    pub(crate) pool: bool,
    /// Index in `torchvision.models.alexnet().features`, used to name initializers as in the
    /// PyTorch state dict, so a file can be traced back to a checkpoint.
    pub(crate) torch_index: usize,
}

impl ConvSpec {
    const fn new(out_ch: usize, in_ch: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        Self {
            out_ch,
            in_ch,
            kernel,
            stride,
            pad,
            pool: false,
            torch_index: 0,
        }
    }

    const fn at(self, torch_index: usize, pool: bool) -> Self {
        Self {
            torch_index,
            pool,
            ..self
        }
    }
}

impl ConvSpec {
    /// The attributes `Conv` and `QLinearConv` share.
    pub(crate) fn attributes(&self) -> Vec<AttributeProto> {
        let (k, s, p) = (self.kernel as i64, self.stride as i64, self.pad as i64);
        vec![
            ints("kernel_shape", &[k, k]),
            ints("strides", &[s, s]),
            ints("pads", &[p, p, p, p]),
            ints("dilations", &[1, 1]),
            int("group", 1),
        ]
    }
}

/// torchvision `alexnet().features`: (out, in, kernel, stride, pad), then the index of the Conv
/// in that `Sequential` and whether a `MaxPool(3, 2)` follows.
pub(crate) const CONVS: [ConvSpec; 5] = [
    ConvSpec::new(64, 3, 11, 4, 2).at(0, true),
    ConvSpec::new(192, 64, 5, 1, 2).at(3, true),
    ConvSpec::new(384, 192, 3, 1, 1).at(6, false),
    ConvSpec::new(256, 384, 3, 1, 1).at(8, false),
    ConvSpec::new(256, 256, 3, 1, 1).at(10, true),
];
