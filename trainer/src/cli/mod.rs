//! Command-line interface of `histoscreen-train`: the arguments, and each subcommand handed
//! to its command as plain values.

mod args;
mod jobs;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use args::{
    CalibrationArgs, CalibrationKind, DataArgs, EvalArgs, ExportArgs, PredictArgs, TrainArgs,
};

use crate::commands;
use crate::data::download::{self, DownloadArgs};

#[derive(Debug, Parser)]
#[command(
    name = "histoscreen-train",
    version,
    about = "Fine-tune ImageNet AlexNet on BreakHis, evaluate on unseen patients, export ONNX"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only warnings and errors; no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train, report on held-out patients, export ONNX; checkpoints every epoch (--resume after Ctrl-C).
    Train(TrainArgs),
    /// Evaluate an exported model on a BreakHis folder through the edge runtime; prints JSON.
    Eval(EvalArgs),
    /// Download the BreakHis archive or torchvision's AlexNet weights (resumable, verified).
    Download(DownloadArgs),
    /// Classify images with a training checkpoint, without exporting (a quick look).
    Predict(PredictArgs),
    /// Write a checkpoint's network as ONNX with f32, int8 or f16 weights, checked against f32.
    Export(ExportArgs),
}

/// Runs one subcommand; returns the process exit code for outcomes that are not errors.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Train(args) => commands::train::run(&args.job(!cli.quiet)),
        Command::Eval(args) => commands::eval::run(&args.job()),
        Command::Download(args) => download::run(&args).map(|_| 0),
        Command::Export(args) => commands::export::export_command(&args.job()).map(|_| 0),
        Command::Predict(args) => commands::predict::run(&args.job()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every subcommand, nested ones included, explains itself in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        let mut stack = vec![(String::new(), super::Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            stack.extend(cmd.get_subcommands().map(|c| (path.clone(), c.clone())));
        }
        assert!(missing.is_empty(), "no help text: {}", missing.join(", "));
    }
}
