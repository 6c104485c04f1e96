//! Stop requests: SIGINT / SIGTERM set a flag that both loop threads poll.
//!
//! Only a flag is set in the handler (the async-signal-safe minimum); the
//! loop notices it within one poll interval, leaves normally, and the signal
//! sink's shutdown puts the pins in their safe state. Exiting from the
//! handler itself would skip that.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Shared stop flag, with the signal that raised it.
#[derive(Clone, Debug, Default)]
pub struct StopFlag {
    requested: Arc<AtomicBool>,
    /// Number of the signal that asked for the stop; 0 when none did.
    signal: Arc<AtomicUsize>,
}

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The exit status for a stop a signal asked for: 128 + the signal (130 for SIGINT, 143
    /// for SIGTERM), the shell's convention, which both binaries follow. `None` when no
    /// signal asked (the run ended on its own).
    pub fn signal_exit_code(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(128 + n as i32),
        }
    }

    /// Set this flag on SIGINT and SIGTERM. A second SIGINT while stopping
    /// exits at once (status 130), for a loop stuck in a driver call;
    /// the pins are then released by the kernel as they are.
    pub fn on_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        // Order matters: actions run in the order they are registered. The conditional exit
        // comes first so it sees the flag as it was before this signal's own handler sets it,
        // and the signal number is stored before the flag, so whoever sees the flag also
        // finds the number.
        flag::register_conditional_shutdown(SIGINT, 130, self.requested.clone())
            .context("cannot install SIGINT handler")?;
        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            flag::register_usize(signal, self.signal.clone(), signal as usize)
                .and_then(|_| flag::register(signal, self.requested.clone()))
                .with_context(|| format!("cannot install {name} handler"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_128_plus_the_signal_that_asked() {
        let stop = StopFlag::new();
        stop.request();
        assert_eq!(stop.signal_exit_code(), None, "a stop no signal asked for");
        stop.signal.store(15, Ordering::SeqCst);
        assert_eq!(stop.signal_exit_code(), Some(143));
    }
}
