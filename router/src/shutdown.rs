//! Shutdown signal: SIGTERM or SIGINT, with handlers installed up front so
//! a signal during start-up is not lost.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Which signal asked weftd to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM (systemd stop).
    Term,
    /// SIGINT (Ctrl-C).
    Int,
}

/// Installed SIGTERM/SIGINT handlers.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the handlers (needs a tokio runtime with signals enabled).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of the two signals.
    pub async fn wait(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
        }
    }
}
