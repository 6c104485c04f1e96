//! `bench`: where does the time go on this device?
//!
//! Preprocessing and inference are timed separately because they scale
//! differently (image size vs. model size) and are optimised differently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::error::EdgeError;
use crate::field::geometry;
use crate::model::{LoadOptions, Model, OpTime};
use crate::winograd::LayerReport;
use crate::{paths, preprocess, variants};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["model", "model_dir"])))]
pub struct BenchArgs {
    /// ONNX model; its card must sit beside it.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Benchmark every precision variant in this folder (one table row each), and show which
    /// one `--precision auto` would take on this CPU and why not the others.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Timed iterations.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Untimed iterations first (caches, lazy kernel setup).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Matrix-multiply threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Path of the convolutions: `tract`'s own, `winograd` (per layer the fastest Winograd form
    /// whose numerics hold: 3x3 and 5x5 layers, strided ones after space-to-depth), or `auto`
    /// (per layer, the faster of tract's and Winograd's, timed once at load)
    /// [default: $HISTOSCREEN_CONV, else tract].
    #[arg(long, value_name = "auto|tract|winograd")]
    conv: Option<crate::winograd::ConvChoice>,
    /// Input image (default: a shared BreakHis image).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Also write the report as JSON here (atomically).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Save the preprocessed input tensor (raw little-endian f32, NCHW) so
    /// other runtimes can be timed on exactly the same input.
    #[arg(long)]
    save_input: Option<PathBuf>,
    /// Also time every op of the optimised plan (tract's op and kernel names), slowest first.
    #[arg(long)]
    profile: bool,
    /// Whole-field frames to time, WIDTHxHEIGHT at the model's scale, comma-separated (e.g.
    /// 700x460,1280x720): the dense pass against the same tiles classified one by one.
    #[arg(long, value_name = "WxH,...", value_delimiter = ',')]
    field: Vec<String>,
    /// With --field: write the dense ONNX graph here (input [1,3,H,W], output [cells,2]) and
    /// let --save-input hold the last frame's tensor, so ONNX Runtime can time the same pass.
    #[arg(long, value_name = "FILE", requires = "field")]
    save_dense: Option<PathBuf>,
    /// With --field: time the dense pass only, not the tile-by-tile comparison.
    #[arg(long, requires = "field")]
    dense_only: bool,
}

/// One whole-field frame size timed two ways.
#[derive(Serialize, Debug, Clone)]
pub struct FieldBench {
    pub width: u32,
    pub height: u32,
    pub rows: usize,
    pub cols: usize,
    /// The dense pass (preprocessing excluded), after one untimed run that builds its plan.
    pub dense_ms: Percentiles,
    /// Building and optimising the plan for this size (first frame only).
    pub plan_ms: f64,
    /// All `rows * cols` tiles through the tile model one by one, per frame (median).
    pub tiles_ms: f64,
    /// One tile alone (median).
    pub tile_ms: f64,
    /// `tiles_ms / dense p50`.
    pub speedup: f64,
    /// Mean tile probability of the frame (to compare runtimes on the same file).
    pub p_mean: f32,
    /// Dense p50 over (frame area / tile area) x one tile's time.
    pub cost_vs_area: f64,
    pub peak_rss_mib: Option<f64>,
}

/// What colour costs, next to inference: Macenko stain normalisation (the frame's estimate
/// plus the re-mix to the card's reference, or torchstain's when the card has none) of one
/// network-input tile and of a camera frame, and the not-H&E gate on that frame.
#[derive(Serialize, Debug, Clone)]
pub struct ColourBench {
    /// Side of the tile (the network's input).
    pub tile: u32,
    /// The camera frame, `[width, height]`.
    pub frame: [u32; 2],
    pub stain_tile_ms: Percentiles,
    pub stain_frame_ms: Percentiles,
    pub gate_frame_ms: Percentiles,
    /// Whether this model's card normalises its input (then `stain_tile_ms` is part of
    /// `preprocess_ms`).
    pub normalise: bool,
}

/// The camera frame size colour costs are stated for.
pub const COLOUR_FRAME: (u32, u32) = (1280, 720);

/// One convolution in the profiled plan: the path the convolution pass gave it and its speed.
#[derive(Serialize, Debug, Clone)]
pub struct ConvTime {
    #[serde(flatten)]
    pub layer: LayerReport,
    /// Its nodes' time per run in the profile, milliseconds.
    pub ms: f64,
    /// The direct convolution's operations over that time.
    pub gflops: f64,
}

/// Each convolution of `layers` with its time in `ops` (the nodes named after it).
fn conv_times(layers: &[LayerReport], ops: &[OpTime]) -> Vec<ConvTime> {
    layers
        .iter()
        .map(|layer| {
            let prefix = format!("{}.", layer.node);
            let ms: f64 = ops
                .iter()
                .filter(|o| o.node == layer.node || o.node.starts_with(&prefix))
                .map(|o| o.ms)
                .sum();
            ConvTime {
                gflops: layer.direct_flops / (ms * 1e6).max(1e-9),
                ms,
                layer: layer.clone(),
            }
        })
        .collect()
}

/// Latency percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
}

/// Everything `bench` measures; also its JSON output.
#[derive(Serialize, Debug, Clone)]
pub struct BenchReport {
    pub model: String,
    pub image: String,
    pub threads: usize,
    /// `--conv`: the convolution path asked for.
    pub conv: String,
    pub iterations: usize,
    pub warmup: usize,
    pub load_ms: f64,
    pub optimize_ms: f64,
    pub plan_ms: f64,
    pub preprocess_ms: Percentiles,
    pub infer_ms: Percentiles,
    pub fps: f64,
    pub peak_rss_mib: Option<f64>,
    pub rss_mib: Option<f64>,
    pub p_malignant: f32,
    /// Colour work per frame: stain normalisation and the not-H&E gate.
    pub colour: ColourBench,
    /// Per-op time with `--profile`, slowest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpTime>,
    /// With `--profile`: each convolution's path and speed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub convs: Vec<ConvTime>,
    /// Whole-field frames with `--field`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub field: Vec<FieldBench>,
}

pub fn run(args: &BenchArgs, out: &mut dyn Write) -> Result<i32, EdgeError> {
    if args.iterations == 0 {
        return Err(EdgeError::Usage("--iterations must be at least 1".into()));
    }
    let model_path = match (&args.model, &args.model_dir) {
        (Some(m), _) => m.clone(),
        (None, Some(dir)) => return variants_table(args, dir, out),
        (None, None) => unreachable!("clap requires --model or --model-dir"),
    };
    let image_path = args
        .image
        .clone()
        .unwrap_or_else(paths::default_bench_image);
    let img = preprocess::load_image(&image_path)?;
    let model = Model::load_with(
        &model_path,
        &LoadOptions {
            threads: args.threads,
            conv: args.conv,
            ..LoadOptions::default()
        },
    )?;
    let mut chw = vec![0f32; model.image_len()];
    let mut pre = Vec::with_capacity(args.iterations);
    let mut inf = Vec::with_capacity(args.iterations);
    let mut p_malignant = 0.0;
    let mut measured_s = 0.0;
    for i in 0..args.warmup + args.iterations {
        let t0 = Instant::now();
        model.preprocess_into(&img, &mut chw);
        let t1 = Instant::now();
        let probs = model.predict(&chw)?;
        let t2 = Instant::now();
        p_malignant = probs[1];
        if i >= args.warmup {
            pre.push((t1 - t0).as_secs_f64() * 1e3);
            inf.push((t2 - t1).as_secs_f64() * 1e3);
            measured_s += (t2 - t0).as_secs_f64();
        }
    }
    let colour = colour_bench(args, &model, &img);
    let field = field_benches(args, &model, &img)?;
    if let (Some(file), Some(f)) = (&args.save_dense, field.last()) {
        crate::fsutil::write_atomic(file, &model.dense_onnx()?)?;
        let frame = preprocess::resize_exact(&img, f.width, f.height);
        let spec = &model.card().input;
        chw = vec![0f32; 3 * (f.width * f.height) as usize];
        preprocess::normalize_into(&frame, spec.mean, spec.std, &mut chw);
    }
    if let Some(file) = &args.save_input {
        let bytes: Vec<u8> = chw.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::fsutil::write_atomic(file, &bytes)?;
    }
    let (peak_rss_mib, rss_mib) = memory_mib();
    let t = model.timings();
    // With --field, the profile is the last frame size's dense pass.
    let (ops, convs) = match (args.profile, field.last()) {
        (false, _) => (Vec::new(), Vec::new()),
        (true, None) => {
            let ops = model.profile(args.iterations)?;
            let convs = conv_times(model.conv_layers(), &ops);
            (ops, convs)
        }
        (true, Some(f)) => {
            let ops = model.profile_field(f.width, f.height, args.iterations)?;
            let convs = conv_times(&model.field_conv_layers(f.width, f.height)?, &ops);
            (ops, convs)
        }
    };
    let report = BenchReport {
        model: model_path.display().to_string(),
        image: image_path.display().to_string(),
        threads: model.threads(),
        conv: model.conv_choice().name().to_string(),
        iterations: args.iterations,
        warmup: args.warmup,
        load_ms: t.load_ms,
        optimize_ms: t.optimize_ms,
        plan_ms: t.plan_ms,
        preprocess_ms: percentiles(&mut pre),
        infer_ms: percentiles(&mut inf),
        fps: args.iterations as f64 / measured_s,
        peak_rss_mib,
        rss_mib,
        p_malignant,
        colour,
        ops,
        convs,
        field,
    };
    if let Some(file) = &args.json {
        let mut text = serde_json::to_string_pretty(&report)
            .map_err(|e| EdgeError::Usage(format!("cannot serialise report: {e}")))?;
        text.push('\n');
        crate::fsutil::write_atomic(file, text.as_bytes())?;
    }
    super::emit(None, table(&report).as_bytes(), out)?;
    Ok(0)
}

/// [`ColourBench`] on the bench image: its centre tile at the network's input size and the
/// image resized to [`COLOUR_FRAME`].
fn colour_bench(args: &BenchArgs, model: &Model, img: &image::RgbImage) -> ColourBench {
    let crop = model.card().input.crop;
    let tile = preprocess::center_crop(&preprocess::resize_shorter_side(img, crop), crop);
    let (fw, fh) = COLOUR_FRAME;
    let frame = preprocess::resize_exact(img, fw, fh);
    let spec = model
        .card()
        .stain
        .clone()
        .unwrap_or_else(crate::card::StainSpec::torchstain_default);
    let normaliser = crate::colour::Normaliser::new(&spec);
    let time = |f: &dyn Fn()| {
        for _ in 0..args.warmup {
            f();
        }
        let mut v: Vec<f64> = (0..args.iterations)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        percentiles(&mut v)
    };
    ColourBench {
        tile: crop,
        frame: [fw, fh],
        stain_tile_ms: time(&|| drop(normaliser.normalise_or_keep(&tile))),
        stain_frame_ms: time(&|| drop(normaliser.normalise_or_keep(&frame))),
        gate_frame_ms: time(&|| drop(model.gate(&frame))),
        normalise: model.stain_normaliser().is_some(),
    }
}

/// `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(u32, u32), EdgeError> {
    let bad = || {
        EdgeError::Usage(format!(
            "--field {s:?}: expected WIDTHxHEIGHT, e.g. 1280x720"
        ))
    };
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    match (w.parse::<u32>(), h.parse::<u32>()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(bad()),
    }
}

/// The dense pass on frames of each `--field` size (the bench image resized to it, already at
/// the model's scale) against the same tile positions classified one by one.
fn field_benches(
    args: &BenchArgs,
    model: &Model,
    img: &image::RgbImage,
) -> Result<Vec<FieldBench>, EdgeError> {
    let mut out = Vec::new();
    for size in &args.field {
        let (w, h) = parse_size(size)?;
        let spec = model.field()?.clone();
        let frame = preprocess::resize_exact(img, w, h);
        let t = Instant::now();
        let first = model.screen(&frame, None)?;
        let plan_ms = t.elapsed().as_secs_f64() * 1e3 - first.preprocess_ms;
        let mut dense = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations {
            dense.push(model.screen(&frame, None)?.infer_ms);
        }
        let dense_ms = percentiles(&mut dense);
        // Tile by tile is slow by design: a few repetitions give a stable median.
        let (rows, cols) = (first.map.rows, first.map.cols);
        let input = &model.card().input;
        let mut chw = vec![0f32; model.image_len()];
        let mut per_frame = Vec::new();
        let mut per_tile = Vec::new();
        let reps = if args.dense_only {
            0
        } else {
            args.iterations.clamp(1, 3)
        };
        for _ in 0..reps {
            let t = Instant::now();
            for r in 0..rows {
                for c in 0..cols {
                    let (x, y, side) = geometry::cell_rect(r, c, spec.tile, spec.stride);
                    let tile = image::imageops::crop_imm(&frame, x, y, side, side).to_image();
                    preprocess::normalize_into(&tile, input.mean, input.std, &mut chw);
                    let t1 = Instant::now();
                    model.predict(&chw)?;
                    per_tile.push(t1.elapsed().as_secs_f64() * 1e3);
                }
            }
            per_frame.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let median = |v: &mut Vec<f64>| {
            if v.is_empty() {
                f64::NAN
            } else {
                percentiles(v).p50
            }
        };
        let tiles_ms = median(&mut per_frame);
        let tile_ms = median(&mut per_tile);
        let values = &first.map.values;
        let p_mean = values.iter().sum::<f32>() / values.len() as f32;
        let area = (w as f64 * h as f64) / (spec.tile as f64 * spec.tile as f64);
        out.push(FieldBench {
            width: w,
            height: h,
            rows,
            cols,
            speedup: tiles_ms / dense_ms.p50,
            p_mean,
            cost_vs_area: dense_ms.p50 / (area * tile_ms),
            dense_ms,
            plan_ms,
            tiles_ms,
            tile_ms,
            peak_rss_mib: memory_mib().0,
        });
    }
    Ok(out)
}

/// `bench --model-dir`: every variant timed on this CPU, with its recorded accuracy against
/// f32, the kernels tract chose, and what `--precision auto` makes of it.
fn variants_table(args: &BenchArgs, dir: &Path, out: &mut dyn Write) -> Result<i32, EdgeError> {
    let found = variants::find(dir)?;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut timer = variants::WallClock::new(threads, args.warmup, args.image.as_deref())?;
    let tol = variants::Tolerance::default();
    let rows = variants::survey(&found, &tol, &mut timer, args.iterations, true);
    let pick = variants::fastest(&rows).cloned();
    let reference = rows.iter().find(|r| r.precision == "f32");
    let mut s = format!(
        "model dir    {}\ncpu          {}\nthreads      {threads}   runs {} per variant (+{} warmup; median shown)\n\n",
        dir.display(),
        variants::cpu_description(),
        args.iterations,
        args.warmup
    );
    let w = rows
        .iter()
        .map(|r| r.file.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    s.push_str(&format!(
        "{:<w$} {:<13} {:>8} {:>6} {:>10} {:>7} {:>7} {:>7}  {}\n",
        "file", "precision", "MB", "size", "median ms", "time", "agree", "d bal", "kernels"
    ));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    for r in &rows {
        s.push_str(&format!(
            "{:<w$} {:<13} {:>8.2} {:>6} {:>10} {:>7} {:>7} {:>7}  {}\n",
            r.file,
            r.precision,
            r.size_bytes as f64 / 1e6,
            ratio(
                Some(r.size_bytes as f64),
                reference.map(|f| f.size_bytes as f64)
            ),
            r.ms.map_or("-".into(), |m| format!("{m:.2}")),
            ratio(r.ms, reference.and_then(|f| f.ms)),
            r.agreement
                .map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
            r.balanced_accuracy_change
                .map_or("-".into(), |d| format!("{:+.3}", d)),
            if r.kernels.is_empty() {
                "-".to_string()
            } else {
                r.kernels.join(",")
            }
        ));
    }
    s.push('\n');
    for r in &rows {
        let verdict = match &pick {
            Some(p) if p.file == r.file => "auto takes it: fastest within tolerance (variants within 10% tie; f32, then the smaller file, wins a tie)".to_string(),
            p => variants::rejection(r, p.as_ref()),
        };
        s.push_str(&format!("{:<w$} {verdict}\n", r.file));
    }
    if let Some(file) = &args.json {
        let mut text = serde_json::to_string_pretty(&serde_json::json!({
            "model_dir": dir.display().to_string(),
            "cpu": variants::cpu_description(),
            "threads": threads,
            "runs": args.iterations,
            "variants": rows,
            "auto": pick.as_ref().map(|p| p.file.clone()),
        }))
        .map_err(|e| EdgeError::Usage(format!("cannot serialise report: {e}")))?;
        text.push('\n');
        crate::fsutil::write_atomic(file, text.as_bytes())?;
    }
    super::emit(None, s.as_bytes(), out)?;
    Ok(0)
}

/// Nearest-rank percentiles (no interpolation: every value was measured).
fn percentiles(v: &mut [f64]) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min: v[0],
    }
}

/// Peak (VmHWM) and current (VmRSS) resident memory from /proc, in MiB.
fn memory_mib() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn table(r: &BenchReport) -> String {
    let mib = |v: Option<f64>| v.map_or("n/a".to_string(), |m| format!("{m:.1} MiB"));
    let row = |name: &str, p: &Percentiles| {
        format!(
            "{name:<12} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  mean {:>8.3} ms\n",
            p.p50, p.p90, p.p99, p.mean
        )
    };
    let mut s = String::new();
    s.push_str(&format!("model        {}\n", r.model));
    s.push_str(&format!("image        {}\n", r.image));
    s.push_str(&format!(
        "threads      {}   conv {}   iterations {} (+{} warmup)\n",
        r.threads, r.conv, r.iterations, r.warmup
    ));
    s.push_str(&format!(
        "load         {:.1} ms   optimise {:.1} ms   plan {:.1} ms\n",
        r.load_ms, r.optimize_ms, r.plan_ms
    ));
    s.push_str(&row("preprocess", &r.preprocess_ms));
    s.push_str(&row("inference", &r.infer_ms));
    s.push_str(&format!(
        "throughput   {:.1} fps (preprocess + inference)\n",
        r.fps
    ));
    s.push_str(&format!(
        "memory       peak {}   current {}\n",
        mib(r.peak_rss_mib),
        mib(r.rss_mib)
    ));
    let c = &r.colour;
    s.push_str(&format!(
        "stain norm   p50 {:>8.3} ms  per {}x{} tile ({:.1}% of inference p50; {})\n",
        c.stain_tile_ms.p50,
        c.tile,
        c.tile,
        100.0 * c.stain_tile_ms.p50 / r.infer_ms.p50.max(1e-9),
        if c.normalise {
            "this card normalises: included in preprocess"
        } else {
            "this card does not normalise"
        }
    ));
    s.push_str(&format!(
        "stain norm   p50 {:>8.3} ms  per {}x{} frame\n",
        c.stain_frame_ms.p50, c.frame[0], c.frame[1]
    ));
    s.push_str(&format!(
        "H&E gate     p50 {:>8.3} ms  per {}x{} frame\n",
        c.gate_frame_ms.p50, c.frame[0], c.frame[1]
    ));
    s.push_str(&format!("p_malignant  {:.4}\n", r.p_malignant));
    for f in &r.field {
        // --dense-only times no tile-by-tile pass: NaN there means "not timed".
        let against = if f.tiles_ms.is_finite() {
            format!(
                "tile by tile {:>9.1} ms  -> {:.1}x faster; cost {:.2}x area x one tile ({:.2} ms)",
                f.tiles_ms, f.speedup, f.cost_vs_area, f.tile_ms
            )
        } else {
            "tile by tile not timed (--dense-only)".to_string()
        };
        s.push_str(&format!(
            "field {:>9} {:>2}x{:<2} tiles  dense p50 {:>8.2} ms  p99 {:>8.2} ms  (plan {:.0} ms)  \
             {against}; peak {}\n",
            format!("{}x{}", f.width, f.height),
            f.rows,
            f.cols,
            f.dense_ms.p50,
            f.dense_ms.p99,
            f.plan_ms,
            mib(f.peak_rss_mib)
        ));
    }
    if !r.ops.is_empty() {
        let total: f64 = r.ops.iter().map(|o| o.ms).sum();
        s.push_str(&format!(
            "\nper op (mean of {} profiled runs, {total:.3} ms in all)\n",
            r.iterations
        ));
        for o in &r.ops {
            // tract's op descriptions can be long; the kernel name is near the front.
            let op: String = o.op.chars().take(90).collect();
            s.push_str(&format!(
                "{:>9.3} ms {:>5.1}%  {:<28} {op}\n",
                o.ms,
                100.0 * o.ms / total.max(1e-9),
                o.node
            ));
        }
    }
    if !r.convs.is_empty() {
        s.push_str("\nconvolutions (GFLOP/s of the direct convolution's operations)\n");
        for c in &r.convs {
            let l = &c.layer;
            let measured = match l.tract_ms {
                Some(t) => {
                    let tiles: Vec<String> = l
                        .candidates
                        .iter()
                        .map(|w| {
                            format!(
                                "{} {:.3} ms (rel |d| {:.1e})",
                                w.tile, w.ms, w.relative_diff
                            )
                        })
                        .collect();
                    format!("; at load: tract {t:.3} ms, {}", tiles.join(", "))
                }
                None => String::new(),
            };
            s.push_str(&format!(
                "{:>9.3} ms {:>7.1} GFLOP/s  {:<28} {:<22} {:<11} {}{measured}\n",
                c.ms, c.gflops, l.node, l.shape, l.path, l.why
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.min), (50.0, 90.0, 99.0, 1.0));
        let mut one = vec![3.0];
        assert_eq!(percentiles(&mut one).p99, 3.0);
    }
}
