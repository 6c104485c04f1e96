//! Command-line interface. `run_cli` is callable in-process so end-to-end
//! tests exercise exactly what the binary does.

mod bench;
mod classify;
mod demo;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::EdgeError;

pub use bench::BenchReport;

#[derive(Parser, Debug)]
#[command(
    name = "histoscreen-edge",
    version,
    about = "Screen breast histopathology images as benign / malignant on the device"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Classify image files and folders (recursive), one row per image.
    Classify(classify::ClassifyArgs),
    /// Measure load time, preprocessing and inference latency, memory.
    Bench(bench::BenchArgs),
    /// Classify the bundled BreakHis samples and show what the rig would signal.
    Demo(demo::DemoArgs),
    /// Screen live: camera or replayed images -> model -> GPIO signals + event log.
    Run(Box<crate::run::RunArgs>),
}

/// Parse `args` (program name first) and run; returns the process exit code.
/// Normal output goes to stdout.
pub fn run_cli(args: impl IntoIterator<Item = String>) -> i32 {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run_cli_to(args, &mut lock)
}

/// Like [`run_cli`] but writes normal output to `out` (tests capture it).
///
/// Exit codes: 0 success, 1 fatal error, 2 usage error or some image rows failed; `run` also
/// 130 after SIGINT and 143 after SIGTERM, and the binary 141 when stdout or stderr closed.
pub fn run_cli_to(args: impl IntoIterator<Item = String>, out: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Classify(a) => classify::run(&a, out),
        Command::Bench(a) => bench::run(&a, out),
        Command::Demo(a) => demo::run(&a, out),
        Command::Run(a) => crate::run::run(&a, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("histoscreen-edge: {e}");
            1
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,histoscreen_edge=info",
        _ => "info,histoscreen_edge=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // try_init: in-process tests call run_cli many times; only the first wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Write `bytes` atomically to `file`, or to `out` when no file is given.
fn emit(file: Option<&PathBuf>, bytes: &[u8], out: &mut dyn Write) -> Result<(), EdgeError> {
    match file {
        Some(p) => crate::fsutil::write_atomic(p, bytes),
        None => out.write_all(bytes).and_then(|_| out.flush()).map_err(|e| {
            EdgeError::Usage(format!(
                "cannot write output: {}",
                crate::error::io_reason(&e)
            ))
        }),
    }
}
