//! A captured frame and the trait of what produces frames (camera, replayed files).

use std::time::Instant;

use anyhow::Result;
use image::RgbImage;

/// One captured frame.
#[derive(Debug)]
pub struct Frame {
    /// 1-based number of the frame from this source (dropped frames included).
    pub seq: u64,
    /// When the raw frame became available (dequeued, or read from disk);
    /// latency is measured from here to the signal update.
    pub captured: Instant,
    pub image: RgbImage,
    /// Device#sequence or file path, for the event log.
    pub origin: String,
}

/// A producer of frames, driven by the capture thread.
pub trait FrameSource: Send {
    /// The next frame; `Ok(None)` when a finite source is exhausted.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// For the startup line.
    fn describe(&self) -> String;
    /// Live sources keep producing whether or not we keep up, so stale
    /// frames are dropped; replayed files can wait for the consumer.
    fn is_live(&self) -> bool;
}
