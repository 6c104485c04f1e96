//! `/frame.jpg`: the latest frame with its tile map, drawn once per new frame however many ask.

use std::sync::Arc;

use axum::body::Bytes;
use image::codecs::jpeg::JpegEncoder;
use tokio::sync::Mutex;

use crate::field::overlay::{render_jpeg, OverlayText};
use crate::live::{LatestFrame, Live};

/// JPEG quality of a frame without a map (scripted scores, tiles).
const PLAIN_QUALITY: u8 = 85;

/// One rendering at a time: a second client asking for the same frame waits for the first
/// rendering and reuses it, so the page's cost on the board does not grow with its viewers.
#[derive(Default)]
pub struct FrameCache {
    latest: Mutex<Option<(u64, Bytes)>>,
}

impl FrameCache {
    /// None before the first frame.
    pub async fn jpeg(&self, live: &Arc<Live>) -> Option<Bytes> {
        let frame = live.latest_frame()?;
        let mut cached = self.latest.lock().await;
        if let Some((seq, bytes)) = cached.as_ref() {
            if *seq == frame.frame {
                return Some(bytes.clone());
            }
        }
        let live = live.clone();
        let seq = frame.frame;
        // Off the async thread: a 1280x720 overlay takes tens of milliseconds.
        let bytes = tokio::task::spawn_blocking(move || encode(&live, &frame))
            .await
            .ok()??;
        *cached = Some((seq, bytes.clone()));
        Some(bytes)
    }
}

fn encode(live: &Live, f: &LatestFrame) -> Option<Bytes> {
    let bytes = match (&f.map, live.info().model.as_ref()) {
        (Some(map), Some(model)) => {
            let text = OverlayText {
                score: f.p_malignant.unwrap_or(0.0),
                label: f.state,
                threshold: model.threshold,
                aggregate: &model.aggregate,
            };
            render_jpeg(&f.image, map, &text).ok()?
        }
        _ => {
            let mut out = Vec::new();
            f.image
                .write_with_encoder(JpegEncoder::new_with_quality(&mut out, PLAIN_QUALITY))
                .ok()?;
            out
        }
    };
    Some(Bytes::from(bytes))
}
