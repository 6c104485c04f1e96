//! `MaxPool2d`: a separable f32 NCHW max pool that replaces tract's, which is slowest on AlexNet's 3x3 stride-2 pools.

mod op;
mod pass;

pub use op::MaxPool2d;
pub use pass::replace_max_pools;
