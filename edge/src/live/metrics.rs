//! The loop's counters, gauges and latency histograms in the Prometheus text format.
//!
//! Every state's series is created up front (pins on the first frame), so the loop's updates are atomic adds on existing
//! series and never take a family's write lock that a scrape could be holding.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::PinState;

const STATES: [&str; 4] = ["idle", "benign", "uncertain", "malignant"];

type Labels = Vec<(&'static str, String)>;

fn state_label(state: &str) -> Labels {
    vec![("state", state.to_string())]
}

fn pin_label(role: &str) -> Labels {
    vec![("pin", role.to_string())]
}

/// Handles into the registry; clones of prometheus-client metrics share their atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    frames: Counter,
    idle: Counter,
    frame_errors: Counter,
    dropped: Counter,
    dropped_seen: AtomicU64,
    decisions: Family<Labels, Counter>,
    state: Family<Labels, Gauge>,
    pins: Family<Labels, Gauge>,
    running: Gauge,
    latency: Histogram,
    inference: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("histoscreen");
        let frames = Counter::default();
        let idle = Counter::default();
        let frame_errors = Counter::default();
        let dropped = Counter::default();
        let decisions = Family::<Labels, Counter>::default();
        let state = Family::<Labels, Gauge>::default();
        let pins = Family::<Labels, Gauge>::default();
        let running = Gauge::default();
        // 5 ms .. ~20 s: a Pi's whole-field pass sits in the middle of this range.
        let latency = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        let inference = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        for s in STATES {
            let _ = decisions.get_or_create(&state_label(s));
            let _ = state.get_or_create(&state_label(s));
        }
        state.get_or_create(&state_label("idle")).set(1);
        running.set(1);
        registry.register("frames", "Frames processed", frames.clone());
        registry.register(
            "idle_frames",
            "Frames not scored (blank, out of focus, not screenable)",
            idle.clone(),
        );
        registry.register(
            "frame_errors",
            "Frames the model could not screen",
            frame_errors.clone(),
        );
        registry.register(
            "dropped_frames",
            "Camera frames replaced by newer ones while the model was busy",
            dropped.clone(),
        );
        registry.register(
            "decisions",
            "Processed frames by the screen state decided on them",
            decisions.clone(),
        );
        registry.register("state", "1 for the current screen state", state.clone());
        registry.register(
            "pin_on",
            "1 while the output line is lit (logically on); absent in console mode",
            pins.clone(),
        );
        registry.register(
            "running",
            "1 while the screening loop runs",
            running.clone(),
        );
        registry.register(
            "latency_seconds",
            "Capture to decision, per frame",
            latency.clone(),
        );
        registry.register(
            "inference_seconds",
            "Preprocessing and inference, per scored frame",
            inference.clone(),
        );
        Metrics {
            registry,
            frames,
            idle,
            frame_errors,
            dropped,
            dropped_seen: AtomicU64::new(0),
            decisions,
            state,
            pins,
            running,
            latency,
            inference,
        }
    }

    pub(super) fn frame(
        &self,
        state: &str,
        idle: bool,
        frame_error: bool,
        latency_ms: f64,
        infer_ms: Option<f64>,
    ) {
        self.frames.inc();
        if idle {
            self.idle.inc();
        }
        if frame_error {
            self.frame_errors.inc();
        }
        self.decisions.get_or_create(&state_label(state)).inc();
        self.latency.observe(latency_ms / 1e3);
        if let Some(ms) = infer_ms {
            self.inference.observe(ms / 1e3);
        }
    }

    /// The capture thread counts drops as a running total; the counter follows it.
    pub(super) fn set_dropped(&self, total: u64) {
        let before = self.dropped_seen.swap(total, Ordering::Relaxed);
        if total > before {
            self.dropped.inc_by(total - before);
        }
    }

    pub(super) fn set_state(&self, current: &str) {
        for s in STATES {
            self.state
                .get_or_create(&state_label(s))
                .set(i64::from(s == current));
        }
    }

    pub(super) fn set_pins(&self, pins: &[PinState]) {
        for p in pins {
            self.pins
                .get_or_create(&pin_label(p.role))
                .set(i64::from(p.on));
        }
    }

    pub(super) fn set_running(&self, running: bool) {
        self.running.set(i64::from(running));
    }

    /// The exposition text, OpenMetrics flavour (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
