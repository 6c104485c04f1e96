//! histoscreen's trainer: fine-tunes ImageNet AlexNet on BreakHis, evaluates it on patients it
//! never saw, and exports ONNX models for `histoscreen-edge`.

pub mod cli;
pub mod commands;
pub mod data;
pub mod eval;
pub mod export;
pub mod fit;
pub mod model;
pub mod report;

mod error_text;

// The end-to-end crate (`tests/`) names these by their flat paths of old.
pub use data::{dataset, settings};
pub use error_text::one_line;

/// Runs the CLI with `args` (the first is the program name); returns the process exit code.
pub fn run_cli<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(cli.quiet);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let line = format!("histoscreen-train: {}", one_line(&e));
            histoscreen_edge::stdio::eprint_line(&line);
            if e.is::<commands::UsageError>() {
                2
            } else {
                1
            }
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HISTOSCREEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes would litter logs redirected to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}
