//! Stop requests: SIGINT / SIGTERM set a flag that both loop threads poll.
//!
//! Only a flag is set in the handler (the async-signal-safe minimum); the
//! loop notices it within one poll interval, leaves normally, and the signal
//! sink's shutdown puts the pins in their safe state. Exiting from the
//! handler itself would skip that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Shared stop flag.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Set this flag on SIGINT and SIGTERM. A second SIGINT while stopping
    /// exits at once (status 130), for a loop stuck in a driver call;
    /// the pins are then released by the kernel as they are.
    pub fn on_signals(&self) -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        // Order matters: the conditional exit must be registered first so it
        // sees the flag as it was before this signal's own handler sets it.
        flag::register_conditional_shutdown(SIGINT, 130, self.0.clone())
            .context("cannot install SIGINT handler")?;
        flag::register(SIGINT, self.0.clone()).context("cannot install SIGINT handler")?;
        flag::register(SIGTERM, self.0.clone()).context("cannot install SIGTERM handler")?;
        Ok(())
    }
}
