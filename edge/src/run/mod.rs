//! `histoscreen-edge run`: the real-time screening loop.
//!
//! Frames from a camera or replayed files are classified, debounced into a
//! screen state and shown on GPIO pins (or the console), with a JSON-lines
//! event log. Everything that can be misconfigured (log path, pins, camera,
//! model) is opened before the first frame so mistakes surface at once as
//! one-line errors.
//!
//! Exit status: 0 when the source ends or `--max-frames` is reached; after a
//! clean stop on a signal 128 + the signal, the shell's convention and the
//! trainer's (130 for SIGINT, 143 for SIGTERM); 1 on an error; 141 when the
//! reader of stdout or stderr went away (see `crate::stdio`).

pub mod camera;
pub mod classifier;
pub mod decision;
pub mod event_log;
pub mod frame;
pub mod gpio;
pub mod pipeline;
pub use crate::sharpness;
pub mod shutdown;
pub mod signals;
pub mod source;
pub mod status;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::error::{one_line, EdgeError};
use crate::field::view::{View, ViewArgs};
use crate::live::{Live, ModelInfo, RunInfo};
use crate::model::{LoadOptions, Model};
use crate::web::{Auth, Limits, StatusServer};
use camera::{CameraConfig, PixelFormat};
use classifier::{Classifier, Scripted, Tiled, WholeField, WholeFrame};
use decision::{Decider, DecisionConfig, Smoothing};
use event_log::EventLog;
use gpio::PinNumbers;
use pipeline::{run_pipeline, PipelineOptions, StopReason};
use shutdown::StopFlag;
use signals::{ConsoleSignals, PinSignals, SignalSink};
use source::{open_source, SourceSpec};

/// Threshold used with `--fake-scores`, which has no model card.
const FAKE_THRESHOLD: f32 = 0.5;
const FAKE_BAND: f32 = 0.1;

/// Arguments of `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The model [default: the workspace's models/histoscreen-alexnet-compact.onnx].
    #[command(flatten)]
    pub model: crate::variants::ModelArgs,
    /// Frames from camera:/dev/videoN, dir:FOLDER_OR_GLOB (recursive,
    /// sorted) or file:IMAGE.
    #[arg(long, value_name = "SPEC", default_value = "camera:/dev/video0")]
    pub source: String,
    /// Replay rate for dir:/file: (0 = as fast as frames are classified);
    /// requested camera frame rate (0 = the driver's default).
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    /// Replay dir:/file: sources forever instead of stopping at the end.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Camera pixel format: mjpeg or yuyv.
    #[arg(long, default_value = "mjpeg", value_name = "FORMAT")]
    pub camera_format: String,
    /// Camera resolution, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_name = "WxH")]
    pub resolution: String,
    #[command(flatten)]
    pub view: ViewArgs,
    /// Classify model-size tiles of the frame one by one (batched) instead of the whole-field
    /// dense pass; the decision uses the highest tile probability.
    #[arg(long)]
    pub tiles: bool,
    /// Tile side in frame pixels (default: the model's input size).
    #[arg(long, value_name = "PX", requires = "tiles")]
    pub tile_size: Option<u32>,
    /// Exponential moving average weight of the newest frame (1 = none).
    #[arg(
        long,
        default_value_t = 0.3,
        value_name = "ALPHA",
        conflicts_with = "vote"
    )]
    pub ema: f32,
    /// k-of-n voting instead of the EMA, e.g. 3/5.
    #[arg(long, value_name = "K/N")]
    pub vote: Option<String>,
    /// Enter malignant at or above this score (default: card threshold + band).
    #[arg(long, value_name = "P")]
    pub hi: Option<f32>,
    /// Leave malignant below this score (default: card threshold - band).
    #[arg(long, value_name = "P")]
    pub lo: Option<f32>,
    /// Frames whose focus measure (variance of the Laplacian, 160 px wide
    /// grey copy) is below this are idle: blank, moving or out of focus.
    #[arg(long, default_value_t = sharpness::DEFAULT_MIN_SHARPNESS, value_name = "VAR")]
    pub min_sharpness: f64,
    /// GPIO character device; without it state changes are printed.
    #[arg(long, value_name = "DEV")]
    pub gpio_chip: Option<PathBuf>,
    /// GPIO line lit while the screen state is malignant (the PLC's alarm input).
    #[arg(long, default_value_t = 17, value_name = "LINE")]
    pub pin_malignant: u32,
    /// GPIO line lit while the screen state is benign.
    #[arg(long, default_value_t = 27, value_name = "LINE")]
    pub pin_benign: u32,
    /// GPIO line lit while the screen state is uncertain (re-image or refer).
    #[arg(long, default_value_t = 22, value_name = "LINE")]
    pub pin_uncertain: u32,
    /// GPIO line toggled once per processed frame, so a PLC can tell the screener runs.
    #[arg(long, default_value_t = 23, value_name = "LINE")]
    pub pin_heartbeat: u32,
    /// Outputs are on when the line is low.
    #[arg(long)]
    pub active_low: bool,
    /// Record pin levels to FILE instead of driving GPIO (tests, dry runs).
    #[arg(long, value_name = "FILE", hide = true, conflicts_with = "gpio_chip")]
    pub gpio_trace: Option<PathBuf>,
    /// Scripted malignant probabilities, cycled per frame, instead of a model.
    #[arg(long, value_name = "P,P,...", hide = true)]
    pub fake_scores: Option<String>,
    /// Append one JSON line per processed frame to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Save each frame that raises the malignant state to DIR (PNG).
    #[arg(long, value_name = "DIR")]
    pub save_flagged: Option<PathBuf>,
    /// Score every frame, without the not-H&E gate (tissue, stain colours, saturation) that
    /// otherwise makes frames of other stains, empty glass or noise idle.
    #[arg(long)]
    pub no_gate: bool,
    /// Seconds between status lines on stderr (0 = none).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub status_secs: f64,
    /// Stop after this many processed frames.
    #[arg(long, value_name = "N")]
    pub max_frames: Option<u64>,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Serve a read-only status page while the loop runs: PORT (on 127.0.0.1) or ADDRESS:PORT.
    /// An address beyond loopback needs --status-token.
    #[arg(long, value_name = "ADDR")]
    pub status: Option<String>,
    /// File holding the status page's secret (one line, 16+ characters); every request must
    /// carry it as `Authorization: Bearer` or via the cookie /login?token= sets.
    #[arg(long, value_name = "FILE", requires = "status")]
    pub status_token: Option<PathBuf>,
    /// Seconds without a frame after which /healthz answers 503 (source stalled).
    #[arg(long, default_value_t = 5.0, value_name = "SECS", requires = "status")]
    pub status_stall_secs: f64,
    /// Keep serving the status page this long after the loop ends, so the last state stays
    /// readable (a signal ends the wait).
    #[arg(long, default_value_t = 0.0, value_name = "SECS", requires = "status")]
    pub status_linger: f64,
    /// Seconds a client may take to send a request head (tests shorten it).
    #[arg(long, value_name = "SECS", hide = true, requires = "status")]
    pub status_header_timeout: Option<f64>,
}

/// Entry point for the CLI: returns the exit code; errors are one line.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<i32, EdgeError> {
    run_inner(args, out).map_err(|e| EdgeError::Usage(one_line(format!("{e:#}"))))
}

fn run_inner(args: &RunArgs, out: &mut dyn Write) -> Result<i32> {
    // First, so a SIGTERM during the (seconds-long) model load still ends
    // in a clean stop with the pins safe.
    let stop = StopFlag::new();
    stop.on_signals()?;

    let spec = SourceSpec::parse(&args.source)?;
    let camera = camera_config(args)?;
    let pins = PinNumbers {
        benign: args.pin_benign,
        malignant: args.pin_malignant,
        uncertain: args.pin_uncertain,
        heartbeat: args.pin_heartbeat,
    };
    pins.validate()?;
    let pace = pace_for(&spec, args.fps)?;

    let mut log = args.log.as_deref().map(EventLog::open).transpose()?;
    if let Some(dir) = &args.save_flagged {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --save-flagged folder {}", dir.display()))?;
    }
    let mut sink = open_signals(args, pins, out)?;

    let model_path = if args.fake_scores.is_some() {
        PathBuf::new()
    } else {
        args.model
            .resolve(args.threads, Some(crate::paths::default_model()))?
    };
    let model: Model;
    let mut info: Option<ModelInfo> = None;
    let (mut classifier, threshold, band): (Box<dyn Classifier + '_>, f32, f32) =
        if let Some(list) = &args.fake_scores {
            (Box::new(Scripted::parse(list)?), FAKE_THRESHOLD, FAKE_BAND)
        } else {
            let opts = LoadOptions {
                threads: args.threads,
                conv: args.model.conv,
                ..LoadOptions::default()
            };
            model = Model::load_with(&model_path, &opts)?;
            info = Some(model_info(&model));
            let card = model.card();
            let (t, b) = (card.threshold, card.uncertain_band);
            let um_per_px = args.view.um_per_px;
            let c: Box<dyn Classifier + '_> = if args.tiles {
                let size = args.tile_size.unwrap_or(card.input.crop);
                Box::new(Tiled::new(&model, size)?)
            } else {
                match args.view.resolve(&model)? {
                    View::Field => Box::new(WholeField::new(&model, um_per_px)),
                    View::Centre => Box::new(WholeFrame {
                        model: &model,
                        um_per_px,
                    }),
                }
            };
            (c, t, b)
        };
    let decision = decision_config(args, threshold, band)?;

    let source = open_source(&spec, args.looping, camera)?;
    let live = args.status.as_ref().map(|_| {
        Live::new(RunInfo {
            model: info.clone(),
            source: source.describe(),
            stall_after: Duration::from_secs_f64(args.status_stall_secs.max(0.1)),
        })
    });
    let server = match (&args.status, &live) {
        (Some(spec), Some(live)) => Some(start_status_page(spec, args, live.clone())?),
        _ => None,
    };
    eprintln!(
        "run: {} -> {} -> {}; {} hi {:.3} lo {:.3}; min sharpness {}",
        source.describe(),
        args.fake_scores.as_ref().map_or_else(
            || model_path.display().to_string(),
            |_| "scripted scores".into()
        ),
        signals_name(args),
        decision.smoothing,
        decision.hi,
        decision.lo,
        args.min_sharpness
    );

    let opts = PipelineOptions {
        pace,
        max_frames: args.max_frames,
        min_sharpness: args.min_sharpness,
        status_every: (args.status_secs > 0.0).then(|| Duration::from_secs_f64(args.status_secs)),
        save_flagged: args.save_flagged.clone(),
        gate: !args.no_gate,
        model: info,
        live: live.clone(),
        pins: Some(pins),
    };
    let mut decider = Decider::new(decision);
    let summary = run_pipeline(
        source,
        classifier.as_mut(),
        &mut decider,
        sink.as_mut(),
        log.as_mut(),
        &opts,
        &stop,
    )?;
    let secs = summary.elapsed.as_secs_f64();
    let fmt_q = |q| {
        summary
            .latency
            .quantile(q)
            .map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
    };
    // run_pipeline returns only once the outputs are in their safe state, so this can say so.
    eprintln!(
        "run: {}: {} frames in {:.1} s ({:.1} fps), dropped {}, latency p50 {} p99 {}, final state {}, rss start {} end {}; {}",
        summary.reason.as_str(),
        summary.frames,
        secs,
        if secs > 0.0 { summary.frames as f64 / secs } else { 0.0 },
        summary.dropped,
        fmt_q(0.5),
        fmt_q(0.99),
        summary.final_state,
        status::mib(summary.rss_start),
        status::mib(summary.rss_end),
        safe_state_note(args, pins),
    );
    if let Some(server) = server {
        linger(&server, args.status_linger, &stop);
        // A signal that ends the linger is still a stop on a signal, for systemd and scripts.
        if stop.is_requested() {
            return Ok(stop.signal_exit_code().unwrap_or(0));
        }
    }
    Ok(exit_code(summary.reason, &stop))
}

/// What the status page says about the model.
fn model_info(model: &Model) -> ModelInfo {
    let card = model.card();
    ModelInfo {
        name: card.name.clone(),
        precision: card.precision.clone(),
        sha256_prefix: card.sha256.chars().take(12).collect(),
        threshold: card.threshold,
        aggregate: card
            .field
            .as_ref()
            .map(|f| f.aggregate.describe())
            .unwrap_or_default(),
    }
}

fn start_status_page(spec: &str, args: &RunArgs, live: Arc<Live>) -> Result<StatusServer> {
    let addr = crate::web::addr::parse_listen(spec)?;
    let token = args
        .status_token
        .as_deref()
        .map(crate::web::addr::read_token)
        .transpose()?;
    crate::web::addr::check_exposure(addr, token.as_deref())?;
    let auth = match &token {
        Some(t) => Auth::with_token(t)?,
        None => Auth::open(),
    };
    let mut limits = Limits::default();
    if let Some(secs) = args
        .status_header_timeout
        .filter(|s| s.is_finite() && *s > 0.0)
    {
        limits.header_timeout = Duration::from_secs_f64(secs);
    }
    let server = StatusServer::start(addr, auth, limits, live)?;
    // The one line a script (or a person) needs to find the page, port 0 included.
    eprintln!(
        "run: status page on http://{}/{}",
        server.local_addr(),
        if token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    Ok(server)
}

/// Serve the final state a while longer; the pins are already safe.
fn linger(server: &StatusServer, secs: f64, stop: &StopFlag) {
    if !(secs.is_finite() && secs > 0.0) {
        return;
    }
    eprintln!(
        "run: status page stays up {secs:.0} s on http://{}/ (Ctrl-C ends it)",
        server.local_addr()
    );
    let until = std::time::Instant::now() + Duration::from_secs_f64(secs);
    while std::time::Instant::now() < until && !stop.is_requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 0 when the run ended on its own; 128 + the signal (130 SIGINT, 143 SIGTERM) when one
/// stopped it, the shell's convention and the trainer's. systemd's unit lists both as success.
fn exit_code(reason: StopReason, stop: &StopFlag) -> i32 {
    match reason {
        StopReason::Signal => stop.signal_exit_code().unwrap_or(0),
        StopReason::MaxFrames | StopReason::EndOfSource => 0,
    }
}

/// Which outputs the stop left in their safe state, in every mode: a technician reading the
/// journal after a stop should not have to know the defaults to tell what the PLC now sees.
fn safe_state_note(args: &RunArgs, pins: PinNumbers) -> String {
    let levels = pins.safe_levels(args.active_low);
    match (&args.gpio_chip, &args.gpio_trace) {
        (Some(chip), _) => format!("pins safe on {}: {levels}", chip.display()),
        (None, Some(trace)) => format!("pins safe (trace {}): {levels}", trace.display()),
        (None, None) => format!(
            "console mode, no pins driven (with --gpio-chip they would now be safe: {levels})"
        ),
    }
}

fn signals_name(args: &RunArgs) -> String {
    match (&args.gpio_chip, &args.gpio_trace) {
        (Some(chip), _) => format!("GPIO {}", chip.display()),
        (None, Some(trace)) => format!("GPIO trace {}", trace.display()),
        (None, None) => "console".into(),
    }
}

fn open_signals<'o>(
    args: &RunArgs,
    pins: PinNumbers,
    out: &'o mut dyn Write,
) -> Result<Box<dyn SignalSink + 'o>> {
    Ok(match (&args.gpio_chip, &args.gpio_trace) {
        (Some(chip), _) => Box::new(PinSignals::new(
            gpio::open_cdev_pins(chip, pins, args.active_low)?,
            args.active_low,
        )?),
        (None, Some(trace)) => Box::new(PinSignals::new(
            gpio::open_trace_pins(trace, pins)?,
            args.active_low,
        )?),
        (None, None) => Box::new(ConsoleSignals::new(out)),
    })
}

fn camera_config(args: &RunArgs) -> Result<CameraConfig> {
    let (w, h) = args
        .resolution
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| w > 0 && h > 0)
        .ok_or_else(|| {
            anyhow!(
                "--resolution {:?}: expected WIDTHxHEIGHT, e.g. 1280x720",
                args.resolution
            )
        })?;
    Ok(CameraConfig {
        format: PixelFormat::parse(&args.camera_format)?,
        width: w,
        height: h,
        fps: args.fps.round().max(0.0) as u32,
    })
}

/// Replays are paced by us; a camera paces itself.
fn pace_for(spec: &SourceSpec, fps: f64) -> Result<Option<Duration>> {
    if !(fps.is_finite() && fps >= 0.0) {
        bail!("--fps {fps}: must be 0 or more");
    }
    Ok(match spec {
        SourceSpec::Camera(_) => None,
        _ if fps == 0.0 => None,
        _ => Some(Duration::from_secs_f64(1.0 / fps)),
    })
}

fn decision_config(args: &RunArgs, threshold: f32, band: f32) -> Result<DecisionConfig> {
    let smoothing = match &args.vote {
        Some(kn) => {
            let parsed = kn
                .split_once('/')
                .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
            let (k, n) = parsed.ok_or_else(|| anyhow!("--vote {kn:?}: expected K/N, e.g. 3/5"))?;
            Smoothing::KOfN { k, n }
        }
        None => Smoothing::Ema { alpha: args.ema },
    };
    let mut cfg = DecisionConfig::from_card(threshold, band, smoothing);
    if let Some(hi) = args.hi {
        cfg.hi = hi;
    }
    if let Some(lo) = args.lo {
        cfg.lo = lo;
    }
    cfg.validate().map_err(|e| anyhow!(e))?;
    Ok(cfg)
}
