//! The screening loop's latest state, published for readers that must never make the loop wait.
//!
//! The loop owns a [`LiveWriter`] and, once per frame, swaps a fresh [`Snapshot`] and the
//! latest frame into [`Live`] (an atomic pointer swap, `arc-swap`): a reader that is slow, or
//! holds a snapshot for a long time, only keeps an old copy alive; it never blocks the writer.
//! Counters for `/metrics` are atomics for the same reason.

pub mod metrics;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use image::RgbImage;
use serde::Serialize;

use crate::field::map::ProbMap;
use crate::latency::LatencyHistogram;
use metrics::Metrics;

/// State changes the page lists.
pub const RECENT_TRANSITIONS: usize = 20;
/// Frames the frame rate is measured over.
const FPS_WINDOW: usize = 30;

/// What a reader is told about the model, fixed for the run.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub precision: String,
    pub sha256_prefix: String,
    pub threshold: f32,
    /// How the frame score comes from the tile map ("mean of tiles"), for the overlay legend.
    pub aggregate: String,
}

/// Fixed facts of the run, set before the first frame.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub model: Option<ModelInfo>,
    pub source: String,
    /// No frame for this long and `/healthz` says the source stalled.
    pub stall_after: Duration,
}

/// One output line as the loop last set it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PinState {
    pub role: &'static str,
    pub line: u32,
    /// Logically on (lit), whatever the line's polarity.
    pub on: bool,
}

/// One state change, newest first in a snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct TransitionRecord {
    pub time: String,
    pub frame: u64,
    pub from: &'static str,
    pub to: &'static str,
    pub p_malignant: Option<f32>,
    pub smoothed: Option<f32>,
    /// Where the page finds the thumbnail, when `--save-flagged` kept the frame.
    pub thumbnail: Option<String>,
    #[serde(skip)]
    pub thumbnail_jpeg: Option<Arc<Vec<u8>>>,
}

/// Median and 99th percentile, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Quantiles {
    pub fn of(h: &LatencyHistogram) -> Self {
        Quantiles {
            p50: h.quantile(0.5),
            p99: h.quantile(0.99),
        }
    }
}

/// Frames counted by the state the loop decided on them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DecisionCounts {
    pub benign: u64,
    pub malignant: u64,
    pub uncertain: u64,
    pub idle: u64,
}

impl DecisionCounts {
    fn add(&mut self, state: &str) {
        match state {
            "benign" => self.benign += 1,
            "malignant" => self.malignant += 1,
            "uncertain" => self.uncertain += 1,
            _ => self.idle += 1,
        }
    }
}

/// Everything the page shows that changes, as of the latest frame.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub running: bool,
    pub stop_reason: Option<String>,
    pub state: &'static str,
    pub frames: u64,
    /// Frames not scored: blank, out of focus, or not screenable.
    pub idle_frames: u64,
    /// Frames the camera delivered while the model was busy, replaced by newer ones.
    pub dropped: u64,
    /// Frames the model refused (e.g. too small at its scale); they count as idle too.
    pub frame_errors: u64,
    pub decisions: DecisionCounts,
    pub fps: f64,
    /// Capture to decision.
    pub latency_ms: Quantiles,
    /// Model time alone (preprocessing and inference).
    pub infer_ms: Quantiles,
    pub p_malignant: Option<f32>,
    pub smoothed: Option<f32>,
    /// Why the latest frame was idle, when it was.
    pub idle_reason: Option<String>,
    /// None in console mode: no pins are driven.
    pub pins: Option<Vec<PinState>>,
    pub transitions: Vec<TransitionRecord>,
    #[serde(skip)]
    pub last_frame_at: Option<Instant>,
}

impl Snapshot {
    fn starting() -> Self {
        Snapshot {
            running: true,
            stop_reason: None,
            state: "idle",
            frames: 0,
            idle_frames: 0,
            dropped: 0,
            frame_errors: 0,
            decisions: DecisionCounts::default(),
            fps: 0.0,
            latency_ms: Quantiles::default(),
            infer_ms: Quantiles::default(),
            p_malignant: None,
            smoothed: None,
            idle_reason: None,
            pins: None,
            transitions: Vec::new(),
            last_frame_at: None,
        }
    }
}

/// The latest frame with what was decided on it; the overlay is drawn from it on request.
pub struct LatestFrame {
    pub frame: u64,
    pub image: RgbImage,
    pub map: Option<ProbMap>,
    pub p_malignant: Option<f32>,
    pub state: &'static str,
}

/// Health as `/healthz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Flowing,
    NoFrameYet,
    Stalled { secs: u64 },
    Stopped { reason: String },
}

/// Shared between the loop (writer) and the status server (readers).
pub struct Live {
    info: RunInfo,
    started: Instant,
    started_at: String,
    snapshot: ArcSwap<Snapshot>,
    frame: ArcSwapOption<LatestFrame>,
    metrics: Metrics,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("source", &self.info.source)
            .finish()
    }
}

impl Live {
    pub fn new(info: RunInfo) -> Arc<Self> {
        Arc::new(Live {
            info,
            started: Instant::now(),
            started_at: crate::timestamp::now_stamp().0,
            snapshot: ArcSwap::from_pointee(Snapshot::starting()),
            frame: ArcSwapOption::empty(),
            metrics: Metrics::new(),
        })
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn latest_frame(&self) -> Option<Arc<LatestFrame>> {
        self.frame.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The loop ended, its writer is gone, and the pins are already in their safe state.
    pub fn mark_stopped(&self, reason: &str, pins: Option<Vec<PinState>>) {
        let mut snap = Snapshot::clone(&self.snapshot.load());
        snap.running = false;
        snap.stop_reason = Some(reason.to_string());
        snap.state = "idle";
        if let Some(pins) = &pins {
            self.metrics.set_pins(pins);
        }
        snap.pins = pins;
        self.metrics.set_state("idle");
        self.metrics.set_running(false);
        self.snapshot.store(Arc::new(snap));
    }

    pub fn health(&self) -> Health {
        let s = self.snapshot.load();
        if !s.running {
            return Health::Stopped {
                reason: s.stop_reason.clone().unwrap_or_else(|| "stopped".into()),
            };
        }
        match s.last_frame_at {
            None => Health::NoFrameYet,
            Some(t) if t.elapsed() > self.info.stall_after => Health::Stalled {
                secs: t.elapsed().as_secs(),
            },
            Some(_) => Health::Flowing,
        }
    }
}

/// What the loop reports about one processed frame.
pub struct FrameUpdate {
    pub frame: u64,
    pub image: RgbImage,
    pub map: Option<ProbMap>,
    pub state: &'static str,
    pub p_malignant: Option<f32>,
    pub smoothed: Option<f32>,
    pub idle_reason: Option<String>,
    pub frame_error: bool,
    pub latency_ms: f64,
    /// Of every frame so far, from the loop's own histogram (which also ends the run's summary).
    pub latency: Quantiles,
    pub infer_ms: Option<f64>,
    pub dropped: u64,
    pub pins: Option<Vec<PinState>>,
    pub transition: Option<TransitionRecord>,
}

/// The loop's side: keeps the running tallies and publishes a snapshot per frame.
pub struct LiveWriter {
    live: Arc<Live>,
    snap: Snapshot,
    transitions: VecDeque<TransitionRecord>,
    infer: LatencyHistogram,
    frame_times: VecDeque<Instant>,
}

impl LiveWriter {
    pub fn new(live: Arc<Live>) -> Self {
        LiveWriter {
            live,
            snap: Snapshot::starting(),
            transitions: VecDeque::with_capacity(RECENT_TRANSITIONS + 1),
            infer: LatencyHistogram::default(),
            frame_times: VecDeque::with_capacity(FPS_WINDOW + 1),
        }
    }

    pub fn frame(&mut self, u: FrameUpdate) {
        let now = Instant::now();
        self.frame_times.push_back(now);
        if self.frame_times.len() > FPS_WINDOW {
            self.frame_times.pop_front();
        }
        if let Some(ms) = u.infer_ms {
            self.infer.record(ms);
        }
        if let Some(t) = u.transition {
            self.transitions.push_front(t);
            self.transitions.truncate(RECENT_TRANSITIONS);
        }
        let idle = u.p_malignant.is_none();
        let m = &self.live.metrics;
        m.frame(u.state, idle, u.frame_error, u.latency_ms, u.infer_ms);
        m.set_dropped(u.dropped);
        m.set_state(u.state);
        if let Some(pins) = &u.pins {
            m.set_pins(pins);
        }

        let s = &mut self.snap;
        s.frames = u.frame;
        s.idle_frames += u64::from(idle);
        s.frame_errors += u64::from(u.frame_error);
        s.dropped = u.dropped;
        s.decisions.add(u.state);
        s.state = u.state;
        s.fps = fps(&self.frame_times);
        s.latency_ms = u.latency;
        s.infer_ms = Quantiles::of(&self.infer);
        s.p_malignant = u.p_malignant;
        s.smoothed = u.smoothed;
        s.idle_reason = u.idle_reason;
        s.pins = u.pins;
        s.transitions = self.transitions.iter().cloned().collect();
        s.last_frame_at = Some(now);
        self.live.snapshot.store(Arc::new(s.clone()));
        self.live.frame.store(Some(Arc::new(LatestFrame {
            frame: u.frame,
            image: u.image,
            map: u.map,
            p_malignant: u.p_malignant,
            state: u.state,
        })));
    }
}

fn fps(times: &VecDeque<Instant>) -> f64 {
    match (times.front(), times.back()) {
        (Some(a), Some(b)) if times.len() > 1 && b > a => {
            (times.len() - 1) as f64 / (*b - *a).as_secs_f64()
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(stall_ms: u64) -> Arc<Live> {
        Live::new(RunInfo {
            model: None,
            source: "test".into(),
            stall_after: Duration::from_millis(stall_ms),
        })
    }

    fn update(frame: u64, p: Option<f32>, state: &'static str) -> FrameUpdate {
        FrameUpdate {
            frame,
            image: RgbImage::new(4, 4),
            map: None,
            state,
            p_malignant: p,
            smoothed: p,
            idle_reason: p.is_none().then(|| "out of focus".into()),
            frame_error: false,
            latency_ms: 10.0,
            latency: Quantiles::default(),
            infer_ms: p.map(|_| 8.0),
            dropped: frame / 2,
            pins: None,
            transition: None,
        }
    }

    #[test]
    fn snapshots_tally_frames_and_keep_only_recent_transitions() {
        let l = live(60_000);
        let mut w = LiveWriter::new(l.clone());
        assert_eq!(l.health(), Health::NoFrameYet);
        for i in 1..=30u64 {
            let mut u = update(i, (i % 3 != 0).then_some(0.9), "malignant");
            u.transition = Some(TransitionRecord {
                time: String::new(),
                frame: i,
                from: "benign",
                to: "malignant",
                p_malignant: Some(0.9),
                smoothed: None,
                thumbnail: None,
                thumbnail_jpeg: None,
            });
            w.frame(u);
        }
        let s = l.snapshot();
        assert_eq!((s.frames, s.idle_frames, s.dropped), (30, 10, 15));
        assert_eq!(s.decisions.malignant, 30);
        assert_eq!(s.transitions.len(), RECENT_TRANSITIONS);
        assert_eq!(s.transitions[0].frame, 30, "newest first");
        assert_eq!(l.latest_frame().unwrap().frame, 30);
        assert_eq!(l.health(), Health::Flowing);
        drop(w);
        l.mark_stopped("end of source", None);
        assert_eq!(
            l.health(),
            Health::Stopped {
                reason: "end of source".into()
            }
        );
    }

    #[test]
    fn a_source_that_stops_delivering_reads_as_stalled() {
        let l = live(20);
        let mut w = LiveWriter::new(l.clone());
        w.frame(update(1, Some(0.1), "benign"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            matches!(l.health(), Health::Stalled { .. }),
            "{:?}",
            l.health()
        );
    }

    #[test]
    fn a_reader_holding_a_snapshot_does_not_hold_up_the_writer() {
        let l = live(60_000);
        let mut w = LiveWriter::new(l.clone());
        w.frame(update(1, Some(0.1), "benign"));
        let held = l.snapshot();
        let held_frame = l.latest_frame();
        for i in 2..=5 {
            w.frame(update(i, Some(0.1), "benign"));
        }
        assert_eq!(held.frames, 1);
        assert_eq!(held_frame.unwrap().frame, 1);
        assert_eq!(l.snapshot().frames, 5);
    }
}
