//! torchvision AlexNet in burn, with the seed's classifier or a compact head for the edge.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// `(out channels, kernel, stride, padding)` of torchvision's five convolutions.
pub const CONVS: [(usize, usize, usize, usize); 5] = [
    (64, 11, 4, 2),
    (192, 5, 1, 2),
    (384, 3, 1, 1),
    (256, 3, 1, 1),
    (256, 3, 1, 1),
];
/// Channels and spatial size of the feature map at 224x224 input.
pub const FEATURE_CHANNELS: usize = 256;
pub const FEATURE_SIDE: usize = 6;
pub const CLASSIC_HIDDEN: usize = 4096;
pub const COMPACT_HIDDEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// The seed recipe: 9216-4096-4096-2 with dropout (57 M parameters).
    Classic,
    /// Global average pool, 256-128-2 with dropout (33 k parameters): what a Pi can afford.
    Compact,
}

/// Which layers keep their pretrained values during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Freeze {
    /// All five convolutions (the seed recipe).
    #[value(name = "features")]
    #[serde(rename = "features")]
    Features,
    /// conv1-conv3; conv4 and conv5 are fine-tuned.
    #[value(name = "conv1-3")]
    #[serde(rename = "conv1-3")]
    Conv1To3,
    /// Nothing: the whole network is fine-tuned.
    #[value(name = "none")]
    #[serde(rename = "none")]
    None,
}

impl Freeze {
    pub fn frozen_convs(self) -> usize {
        match self {
            Freeze::Features => 5,
            Freeze::Conv1To3 => 3,
            Freeze::None => 0,
        }
    }
}

/// Field names follow torchvision (`features.N`, `classifier.N`) so its checkpoints load with
/// indices made contiguous; the compact head has its own name so no torchvision key lands in it.
#[derive(Module, Debug)]
pub struct AlexNet {
    pub features: Vec<Conv2d>,
    pub classifier: Vec<Linear>,
    pub compact: Vec<Linear>,
    pool: MaxPool2d,
    dropout: Dropout,
}

impl AlexNet {
    /// The compact head with its default hidden width ([`COMPACT_HIDDEN`]).
    pub fn new(head: Head, device: &Device) -> AlexNet {
        Self::with_hidden(head, COMPACT_HIDDEN, device)
    }

    /// `hidden` is the compact head's hidden width; 0 makes it linear (256 -> 2). The classic
    /// head ignores it.
    pub fn with_hidden(head: Head, hidden: usize, device: &Device) -> AlexNet {
        let mut in_ch = 3;
        let features = CONVS
            .iter()
            .map(|&(out, k, s, p)| {
                let conv = Conv2dConfig::new([in_ch, out], [k, k])
                    .with_stride([s, s])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .init(device);
                in_ch = out;
                conv
            })
            .collect();
        let flat = FEATURE_CHANNELS * FEATURE_SIDE * FEATURE_SIDE;
        let (classifier, compact) = match head {
            Head::Classic => (
                vec![
                    LinearConfig::new(flat, CLASSIC_HIDDEN).init(device),
                    LinearConfig::new(CLASSIC_HIDDEN, CLASSIC_HIDDEN).init(device),
                    LinearConfig::new(CLASSIC_HIDDEN, 2).init(device),
                ],
                vec![],
            ),
            Head::Compact if hidden == 0 => (
                vec![],
                vec![LinearConfig::new(FEATURE_CHANNELS, 2).init(device)],
            ),
            Head::Compact => (
                vec![],
                vec![
                    LinearConfig::new(FEATURE_CHANNELS, hidden).init(device),
                    LinearConfig::new(hidden, 2).init(device),
                ],
            ),
        };
        AlexNet {
            features,
            classifier,
            compact,
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            dropout: DropoutConfig::new(0.5).init(),
        }
    }

    /// Hidden width of the compact head (0: linear); 0 for the classic head.
    pub fn compact_hidden(&self) -> usize {
        match self.compact.as_slice() {
            [first, _] => first.weight.dims()[1],
            _ => 0,
        }
    }

    pub fn head(&self) -> Head {
        if self.classifier.is_empty() {
            Head::Compact
        } else {
            Head::Classic
        }
    }

    /// Conv feature map `[N, 256, 6, 6]` for `[N, 3, 224, 224]` input.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        for (i, conv) in self.features.iter().enumerate() {
            x = relu(conv.forward(x));
            // torchvision pools after conv1, conv2 and conv5.
            if matches!(i, 0 | 1 | 4) {
                x = self.pool.forward(x);
            }
        }
        x
    }

    /// The output of every convolution after its ReLU (before any pooling), in order.
    pub fn activations(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = x;
        let mut out = Vec::with_capacity(self.features.len());
        for (i, conv) in self.features.iter().enumerate() {
            x = relu(conv.forward(x));
            out.push(x.clone());
            if matches!(i, 0 | 1 | 4) {
                x = self.pool.forward(x);
            }
        }
        out
    }

    /// Global-average-pooled output of every convolution (after its ReLU), `[N, channels]`
    /// each: mid-level texture features next to the last layer's.
    pub fn pooled_levels(&self, x: Tensor<4>) -> Vec<Tensor<2>> {
        self.activations(x)
            .into_iter()
            .map(Self::pool_features)
            .collect()
    }

    /// Logits `[N, 2]` from a feature map.
    pub fn forward_head(&self, f: Tensor<4>) -> Tensor<2> {
        match self.head() {
            Head::Classic => {
                let mut x: Tensor<2> = f.flatten(1, 3);
                let last = self.classifier.len() - 1;
                for (i, fc) in self.classifier.iter().enumerate() {
                    if i < last {
                        x = relu(fc.forward(self.dropout.forward(x)));
                    } else {
                        x = fc.forward(x);
                    }
                }
                x
            }
            Head::Compact => self.forward_compact(Self::pool_features(f)),
        }
    }

    /// Global average pool: `[N, 256, 6, 6]` to `[N, 256]`, the compact head's input.
    pub fn pool_features(f: Tensor<4>) -> Tensor<2> {
        let [n, c, _, _] = f.dims();
        f.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// Logits `[N, 2]` of the compact head from pooled features.
    pub fn forward_compact(&self, x: Tensor<2>) -> Tensor<2> {
        // No dropout on the 256 pooled features: with so few inputs it starved the head
        // (train accuracy stalled near 0.7 on the shared data).
        match self.compact.as_slice() {
            [linear] => linear.forward(x),
            [hidden, out] => out.forward(self.dropout.forward(relu(hidden.forward(x)))),
            _ => unreachable!("the compact head has one or two layers"),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(x))
    }
}
