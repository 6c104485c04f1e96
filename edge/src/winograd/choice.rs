//! `--conv auto|tract|winograd` and `HISTOSCREEN_CONV`: which convolution path a loaded model takes.

use std::str::FromStr;

use clap::ValueEnum;

/// Environment variable read when no `--conv` is given.
pub const CONV_ENV: &str = "HISTOSCREEN_CONV";

/// Which path the eligible convolutions (f32, 3x3 or 5x5, or strided ones that are 3x3 or 5x5 after space-to-depth) take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvChoice {
    /// Per layer, the faster of tract's convolution and the Winograd ones whose numerics hold,
    /// timed once at load on this CPU.
    Auto,
    /// tract's own convolution everywhere.
    #[default]
    Tract,
    /// Winograd wherever its numerics hold (the fastest of its tile sizes), even if slower.
    Winograd,
}

impl ConvChoice {
    pub fn name(self) -> &'static str {
        match self {
            ConvChoice::Auto => "auto",
            ConvChoice::Tract => "tract",
            ConvChoice::Winograd => "winograd",
        }
    }

    /// `choice` when given, else `HISTOSCREEN_CONV` when set, else the default.
    pub fn resolve(choice: Option<ConvChoice>) -> Result<ConvChoice, String> {
        if let Some(c) = choice {
            return Ok(c);
        }
        match std::env::var(CONV_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                v.parse().map_err(|e: String| format!("{CONV_ENV}: {e}"))
            }
            _ => Ok(ConvChoice::default()),
        }
    }
}

impl FromStr for ConvChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <ConvChoice as ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| format!("'{s}' is not auto, tract or winograd"))
    }
}
