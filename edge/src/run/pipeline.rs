//! The loop: capture thread -> one-slot channel -> inference -> decision ->
//! signals -> event log.
//!
//! The channel holds one frame. For a live camera the newest frame replaces
//! an unconsumed older one (counted as dropped): a screener must show what is
//! under the objective now, not work through a backlog from seconds ago.
//! Unthrottled replay (`--fps 0`) instead waits for the consumer, so every
//! file is classified.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};

use super::classifier::{Classifier, FrameScore};
use super::decision::{Decider, Observation, ScreenState};
use super::event_log::{Event, EventLog};
use super::gpio::PinNumbers;
use super::sharpness::laplacian_variance;
use super::shutdown::StopFlag;
use super::signals::{SignalSink, Transition};
use super::source::{Frame, FrameSource};
use super::status::{rss_bytes, status_line, LatencyHistogram, Window};
use crate::error::EdgeError;
use crate::field::overlay::{render_png, OverlayText};
use crate::live::{
    FrameUpdate, Live, LiveWriter, ModelInfo, PinState, Quantiles, TransitionRecord,
};
use crate::timestamp::now_stamp;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Loop settings that are not components.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Frame interval for replayed sources; `None` = as fast as consumed.
    pub pace: Option<Duration>,
    pub max_frames: Option<u64>,
    pub min_sharpness: f64,
    /// Seconds between status lines on stderr; `None` = no status lines.
    pub status_every: Option<Duration>,
    pub save_flagged: Option<PathBuf>,
    /// Check each frame with the model's not-H&E gate before scoring it.
    pub gate: bool,
    /// The model facts a saved overlay's legend prints (None with scripted scores, which make
    /// no map).
    pub model: Option<ModelInfo>,
    /// Where the loop publishes its state for the status page.
    pub live: Option<Arc<Live>>,
    /// The output lines, for the status page's pin list.
    pub pins: Option<PinNumbers>,
}

/// Side of the thumbnails the status page lists next to state changes.
const THUMB_PX: u32 = 160;

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxFrames,
    EndOfSource,
    Signal,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxFrames => "max-frames reached",
            StopReason::EndOfSource => "end of source",
            StopReason::Signal => "stop requested",
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub reason: StopReason,
    pub frames: u64,
    pub dropped: u64,
    pub elapsed: Duration,
    pub latency: LatencyHistogram,
    pub final_state: ScreenState,
    pub rss_start: Option<u64>,
    pub rss_end: Option<u64>,
}

/// Run until `max_frames`, the end of the source, or `stop`. The sink is
/// always shut down (pins safe) before this returns, error or not.
pub fn run_pipeline(
    source: Box<dyn FrameSource>,
    classifier: &mut dyn Classifier,
    decider: &mut Decider,
    sink: &mut dyn SignalSink,
    log: Option<&mut EventLog>,
    opts: &PipelineOptions,
    stop: &StopFlag,
) -> Result<RunSummary> {
    let result = drive(source, classifier, decider, sink, log, opts, stop);
    let shut = sink
        .shutdown()
        .context("cannot put the signals in their safe state");
    if let Some(live) = &opts.live {
        let reason = match (&result, &shut) {
            (Ok(s), Ok(())) => s.reason.as_str().to_string(),
            (Err(e), _) | (Ok(_), Err(e)) => format!("error: {}", crate::error::one_line(e)),
        };
        live.mark_stopped(&reason, pin_states(sink, opts.pins));
    }
    // The loop's own error is the more useful one to report.
    let summary = result?;
    shut?;
    Ok(summary)
}

fn drive(
    source: Box<dyn FrameSource>,
    classifier: &mut dyn Classifier,
    decider: &mut Decider,
    sink: &mut dyn SignalSink,
    mut log: Option<&mut EventLog>,
    opts: &PipelineOptions,
    stop: &StopFlag,
) -> Result<RunSummary> {
    let rss_start = rss_bytes();
    let started = Instant::now();
    let dropped = Arc::new(AtomicU64::new(0));
    let latest_wins = source.is_live() || opts.pace.is_some();
    let (tx, rx) = bounded::<Frame>(1);
    // Stops the capture thread when this function returns early with an
    // error, so its join below (or the process exit) is not held up.
    let capture_stop = StopFlag::new();
    let capture = {
        let (rx, dropped, stop, capture_stop, pace) = (
            rx.clone(),
            dropped.clone(),
            stop.clone(),
            capture_stop.clone(),
            opts.pace,
        );
        thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                capture_loop(
                    source,
                    tx,
                    rx,
                    latest_wins,
                    pace,
                    &dropped,
                    &stop,
                    &capture_stop,
                )
            })
            .context("cannot start the capture thread")?
    };
    let stop_capture = StopOnDrop(capture_stop);

    let mut live = opts.live.clone().map(LiveWriter::new);
    let mut frames = 0u64;
    let mut total = LatencyHistogram::default();
    let mut window = LatencyHistogram::default();
    let mut window_start = Instant::now();
    let mut window_frames = 0u64;
    let mut window_idle = 0u64;
    let mut last_idle: Option<String> = None;

    let reason = loop {
        if stop.is_requested() {
            break StopReason::Signal;
        }
        if opts.max_frames.is_some_and(|m| frames >= m) {
            break StopReason::MaxFrames;
        }
        let frame = match rx.recv_timeout(POLL) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            // The capture thread also stops on a signal, and may be first to see it.
            Err(RecvTimeoutError::Disconnected) if stop.is_requested() => break StopReason::Signal,
            Err(RecvTimeoutError::Disconnected) => break StopReason::EndOfSource,
        };
        frames += 1;

        // The gate measures sharpness too; a frame is measured once.
        let gate = if opts.gate {
            classifier.gate(&frame.image)
        } else {
            None
        };
        let sharpness = gate
            .as_ref()
            .map_or_else(|| laplacian_variance(&frame.image), |g| g.sharpness);
        let mut idle_reason = None;
        let mut frame_error = false;
        let score = if sharpness < opts.min_sharpness {
            idle_reason = Some(format!(
                "blank, moving or out of focus (sharpness {sharpness:.0} < {})",
                opts.min_sharpness
            ));
            None
        } else if let Some(reason) = gate
            .as_ref()
            .filter(|g| !g.pass)
            .map(|g| g.reason.clone().unwrap_or_else(|| "failed the gate".into()))
        {
            idle_reason = Some(format!("not H&E: {reason}"));
            None
        } else {
            match classifier.classify_frame(&frame.image) {
                Ok(s) => Some(s),
                // A frame the model cannot screen (too small at its scale) is idle, not fatal.
                Err(e) if matches!(e.downcast_ref::<EdgeError>(), Some(EdgeError::Frame(_))) => {
                    tracing::warn!("frame {frames} idle: {e}");
                    idle_reason = Some(crate::error::one_line(&e));
                    frame_error = true;
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let obs = score
            .as_ref()
            .map_or(Observation::Unsharp, |s| Observation::Score(s.p_malignant));
        let previous = decider.state();
        let decision = decider.observe(obs);
        if decision.changed {
            sink.show(&Transition {
                frame: frames,
                from: previous,
                to: decision.state,
                p_malignant: score.as_ref().map(|s| s.p_malignant),
                smoothed: decision.smoothed,
            })?;
        }
        sink.heartbeat()?;
        let latency_ms = frame.captured.elapsed().as_secs_f64() * 1e3;
        total.record(latency_ms);
        window.record(latency_ms);
        window_frames += 1;
        if let Some(r) = &idle_reason {
            window_idle += 1;
            last_idle = Some(r.clone());
        }

        // After the signal update, so disk writes never delay the lamps.
        let saved = match (
            &opts.save_flagged,
            decision.changed && decision.state == ScreenState::Malignant,
        ) {
            (Some(dir), true) => {
                let path = save_frame(dir, frames, &frame)?;
                if let (Some(s), Some(model)) = (score.as_ref(), opts.model.as_ref()) {
                    save_overlay(&path, &frame, s, decision.state, model)?;
                }
                Some(path)
            }
            _ => None,
        };
        let dropped_now = dropped.load(Ordering::Relaxed);
        if let Some(log) = log.as_deref_mut() {
            let (time, unix_ms) = now_stamp();
            let (preprocess_ms, infer_ms) = score
                .as_ref()
                .map_or((0.0, 0.0), |s| (s.preprocess_ms, s.infer_ms));
            log.write(&Event {
                time,
                unix_ms,
                frame: frames,
                source_frame: frame.seq,
                origin: frame.origin.clone(),
                sharpness,
                p_malignant: score.as_ref().map(|s| s.p_malignant),
                probs: score.as_ref().map(|s| s.probs),
                smoothed: decision.smoothed,
                state: decision.state,
                changed: decision.changed,
                latency_ms,
                preprocess_ms,
                infer_ms,
                dropped: dropped_now,
                tiles: score.as_ref().and_then(|s| s.tiles.clone()),
                saved: saved.as_ref().map(|p| p.display().to_string()),
                idle_reason: idle_reason.clone(),
                gate: gate.clone(),
            })?;
        }

        if let Some(every) = opts.status_every {
            let span = window_start.elapsed();
            if span >= every {
                eprintln!(
                    "{}",
                    status_line(
                        &Window {
                            frames: window_frames,
                            span,
                            latencies: &window,
                            idle: last_idle.as_deref().map(|r| (window_idle, r)),
                        },
                        dropped_now,
                        decision.state.as_str(),
                        frames,
                        rss_bytes(),
                    )
                );
                window.clear();
                window_frames = 0;
                window_idle = 0;
                window_start = Instant::now();
            }
        }
        if let Some(w) = live.as_mut() {
            let transition = decision.changed.then(|| TransitionRecord {
                time: now_stamp().0,
                frame: frames,
                from: previous.as_str(),
                to: decision.state.as_str(),
                p_malignant: score.as_ref().map(|s| s.p_malignant),
                smoothed: decision.smoothed,
                thumbnail: saved.is_some().then(|| format!("/thumb/{frames}")),
                thumbnail_jpeg: saved.is_some().then(|| thumbnail(&frame)).flatten(),
            });
            w.frame(FrameUpdate {
                frame: frames,
                infer_ms: score.as_ref().map(|s| s.preprocess_ms + s.infer_ms),
                p_malignant: score.as_ref().map(|s| s.p_malignant),
                map: score.and_then(|s| s.map),
                image: frame.image,
                state: decision.state.as_str(),
                smoothed: decision.smoothed,
                idle_reason,
                frame_error,
                latency_ms,
                latency: Quantiles::of(&total),
                dropped: dropped_now,
                pins: pin_states(sink, opts.pins),
                transition,
            });
        }
    };

    drop(stop_capture);
    drop(rx);
    let captured = capture
        .join()
        .map_err(|_| anyhow!("the capture thread panicked"))?;
    // A source error ends the stream early; report it rather than calling it
    // the end of the source.
    captured?;
    Ok(RunSummary {
        reason,
        frames,
        dropped: dropped.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latency: total,
        final_state: decider.state(),
        rss_start,
        rss_end: rss_bytes(),
    })
}

/// Each line's level as the sink last set it, for the status page (None in console mode).
fn pin_states(sink: &dyn SignalSink, pins: Option<PinNumbers>) -> Option<Vec<PinState>> {
    let (outputs, pins) = (sink.outputs()?, pins?);
    Some(
        outputs
            .iter()
            .map(|&(role, on)| PinState {
                role: role.as_str(),
                line: pins.line(role),
                on,
            })
            .collect(),
    )
}

/// A small JPEG of a kept frame; a frame that cannot be encoded just has no thumbnail.
fn thumbnail(frame: &Frame) -> Option<Arc<Vec<u8>>> {
    let (w, h) = frame.image.dimensions();
    let scale = THUMB_PX as f32 / w.max(h).max(1) as f32;
    let small = image::imageops::thumbnail(
        &frame.image,
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    let mut bytes = Vec::new();
    small
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut bytes, 80,
        ))
        .ok()?;
    Some(Arc::new(bytes))
}

/// The heatmap next to a saved frame, where the classifier made a map.
fn save_overlay(
    frame_path: &std::path::Path,
    frame: &Frame,
    score: &FrameScore,
    state: ScreenState,
    model: &ModelInfo,
) -> Result<()> {
    let Some(map) = score.map.as_ref() else {
        return Ok(());
    };
    let text = OverlayText {
        score: score.p_malignant,
        label: state.as_str(),
        threshold: model.threshold,
        aggregate: &model.aggregate,
    };
    let png = render_png(&frame.image, map, &text)?;
    crate::fsutil::write_atomic(&frame_path.with_extension("heatmap.png"), &png)?;
    Ok(())
}

struct StopOnDrop(StopFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.request();
    }
}

#[allow(clippy::too_many_arguments)]
fn capture_loop(
    mut source: Box<dyn FrameSource>,
    tx: Sender<Frame>,
    // A receiver on the producer side lets it take back a stale frame.
    stale: Receiver<Frame>,
    latest_wins: bool,
    pace: Option<Duration>,
    dropped: &AtomicU64,
    stop: &StopFlag,
    capture_stop: &StopFlag,
) -> Result<()> {
    let stopping = || stop.is_requested() || capture_stop.is_requested();
    let mut next_due = Instant::now();
    while !stopping() {
        if let Some(interval) = pace {
            // Sleep in short steps so a stop request is seen promptly even
            // at very low replay rates.
            loop {
                let now = Instant::now();
                if now >= next_due || stopping() {
                    break;
                }
                thread::sleep((next_due - now).min(POLL));
            }
            // Schedule from the due time, not from now, so the average rate
            // holds; after a long stall, restart the schedule instead of
            // bursting to catch up.
            next_due += interval;
            if next_due < Instant::now() {
                next_due = Instant::now() + interval;
            }
            if stopping() {
                break;
            }
        }
        let Some(mut frame) = source.next_frame()? else {
            return Ok(());
        };
        if stopping() {
            break;
        }
        if latest_wins {
            loop {
                match tx.try_send(frame) {
                    Ok(()) => break,
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                    Err(TrySendError::Full(f)) => {
                        frame = f;
                        if stale.try_recv().is_ok() {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        } else {
            loop {
                match tx.send_timeout(frame, POLL) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Disconnected(_)) => return Ok(()),
                    Err(SendTimeoutError::Timeout(f)) => {
                        if stopping() {
                            return Ok(());
                        }
                        frame = f;
                    }
                }
            }
        }
    }
    Ok(())
}

fn save_frame(dir: &std::path::Path, frame_no: u64, frame: &Frame) -> Result<PathBuf> {
    let path = dir.join(format!("flagged-{frame_no:08}-src{:08}.png", frame.seq));
    let mut bytes = Vec::new();
    frame
        .image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .with_context(|| format!("cannot encode flagged frame {frame_no}"))?;
    crate::fsutil::write_atomic(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::classifier::{FrameScore, Scripted};
    use crate::run::decision::{DecisionConfig, Smoothing};
    use image::RgbImage;

    /// Produces `n` textured frames as fast as asked.
    struct Burst {
        n: u64,
        seq: u64,
        live: bool,
    }

    impl FrameSource for Burst {
        fn next_frame(&mut self) -> Result<Option<Frame>> {
            if self.seq == self.n {
                return Ok(None);
            }
            self.seq += 1;
            let s = self.seq as u32;
            Ok(Some(Frame {
                seq: self.seq,
                captured: Instant::now(),
                image: RgbImage::from_fn(64, 48, |x, y| {
                    image::Rgb([((x * 37 + y * 91 + s) % 251) as u8, (x * 5) as u8, 128])
                }),
                origin: format!("burst#{}", self.seq),
            }))
        }
        fn describe(&self) -> String {
            "burst".into()
        }
        fn is_live(&self) -> bool {
            self.live
        }
    }

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl SignalSink for Recorder {
        fn show(&mut self, t: &Transition) -> Result<()> {
            self.calls.push(format!("show {}", t.to));
            Ok(())
        }
        fn heartbeat(&mut self) -> Result<()> {
            self.calls.push("beat".into());
            Ok(())
        }
        fn shutdown(&mut self) -> Result<()> {
            self.calls.push("shutdown".into());
            Ok(())
        }
    }

    /// Remembers which source frames it saw; fails on request.
    struct Watching {
        seen: Vec<u64>,
        fail_at: Option<usize>,
    }

    impl Classifier for Watching {
        fn classify_frame(&mut self, img: &RgbImage) -> Result<FrameScore> {
            if self.fail_at == Some(self.seen.len()) {
                anyhow::bail!("inference failed: test");
            }
            // The burst encodes its sequence number in pixel (0, 0).
            self.seen.push(u64::from(img.get_pixel(0, 0)[0]));
            Scripted::new(vec![0.1])?.classify_frame(img)
        }
    }

    fn opts(max_frames: Option<u64>) -> PipelineOptions {
        PipelineOptions {
            pace: None,
            max_frames,
            min_sharpness: 1.0,
            status_every: None,
            save_flagged: None,
            gate: true,
            model: None,
            live: None,
            pins: None,
        }
    }

    fn decider() -> Decider {
        Decider::new(DecisionConfig {
            smoothing: Smoothing::Ema { alpha: 1.0 },
            hi: 0.6,
            lo: 0.4,
        })
    }

    #[test]
    fn replay_without_pacing_processes_every_frame_in_order() {
        let mut c = Watching {
            seen: Vec::new(),
            fail_at: None,
        };
        let mut sink = Recorder::default();
        let source = Box::new(Burst {
            n: 30,
            seq: 0,
            live: false,
        });
        let s = run_pipeline(
            source,
            &mut c,
            &mut decider(),
            &mut sink,
            None,
            &opts(None),
            &StopFlag::new(),
        )
        .unwrap();
        assert_eq!(s.reason, StopReason::EndOfSource);
        assert_eq!((s.frames, s.dropped), (30, 0));
        assert_eq!(c.seen, (1..=30).collect::<Vec<_>>());
        assert_eq!(sink.calls.first().map(String::as_str), Some("show benign"));
        assert_eq!(sink.calls.last().map(String::as_str), Some("shutdown"));
        assert_eq!(sink.calls.iter().filter(|c| *c == "beat").count(), 30);
    }

    #[test]
    fn live_source_drops_stale_frames_but_never_the_newest() {
        let mut c = Watching {
            seen: Vec::new(),
            fail_at: None,
        };
        let mut sink = Recorder::default();
        let source = Box::new(Burst {
            n: 200,
            seq: 0,
            live: true,
        });
        let s = run_pipeline(
            source,
            &mut c,
            &mut decider(),
            &mut sink,
            None,
            &opts(None),
            &StopFlag::new(),
        )
        .unwrap();
        // However the threads interleave: nothing lost without being
        // counted, order kept, and the last frame is always shown.
        assert_eq!(s.frames + s.dropped, 200);
        assert!(c.seen.windows(2).all(|w| w[0] < w[1]), "{:?}", c.seen);
        assert_eq!(c.seen.last(), Some(&200));
    }

    #[test]
    fn max_frames_and_stop_flag_end_the_loop() {
        let mut c = Watching {
            seen: Vec::new(),
            fail_at: None,
        };
        let mut sink = Recorder::default();
        let forever = Box::new(Burst {
            n: u64::MAX,
            seq: 0,
            live: false,
        });
        let s = run_pipeline(
            forever,
            &mut c,
            &mut decider(),
            &mut sink,
            None,
            &opts(Some(7)),
            &StopFlag::new(),
        )
        .unwrap();
        assert_eq!((s.reason, s.frames), (StopReason::MaxFrames, 7));

        let stop = StopFlag::new();
        stop.request();
        let forever = Box::new(Burst {
            n: u64::MAX,
            seq: 0,
            live: true,
        });
        let s = run_pipeline(
            forever,
            &mut c,
            &mut decider(),
            &mut sink,
            None,
            &opts(None),
            &stop,
        )
        .unwrap();
        assert_eq!((s.reason, s.frames), (StopReason::Signal, 0));
        assert_eq!(sink.calls.last().map(String::as_str), Some("shutdown"));
    }

    #[test]
    fn an_inference_error_still_shuts_the_signals_down() {
        let mut c = Watching {
            seen: Vec::new(),
            fail_at: Some(2),
        };
        let mut sink = Recorder::default();
        let source = Box::new(Burst {
            n: 10,
            seq: 0,
            live: false,
        });
        let err = run_pipeline(
            source,
            &mut c,
            &mut decider(),
            &mut sink,
            None,
            &opts(None),
            &StopFlag::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("inference failed"), "{err}");
        assert_eq!(sink.calls.last().map(String::as_str), Some("shutdown"));
    }
}
