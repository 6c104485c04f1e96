//! The network: AlexNet in burn, its ImageNet weights, the stored trunk features the head
//! trains on, and inference with it.

pub mod alexnet;
pub mod device;
pub mod feature_bank;
pub mod feature_norm;
pub mod infer;
pub mod pretrained;
