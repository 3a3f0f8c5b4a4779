//! Config reload. SIGHUP and the control socket's `weft reload` send a
//! [`ReloadRequest`] on one channel; the daemon reads the file again,
//! validates it exactly as `weftd --check-config` does, and either
//! rejects it (every error logged and returned, nothing changed) or
//! applies the [`plan`]: static routes through the router core, BGP peers
//! through the speaker; fields that need a restart are named and left.
//!
//! ```text
//!  SIGHUP ─────────┐
//!  weft reload ────┴─► mpsc<ReloadRequest> ─► daemon: load() ─► plan(running, new)
//!                                                ├─► RouterCore: Event::StaticRoutes
//!                                                ├─► SpeakerHandle::add_peer / remove_peer
//!          reply ◄── Result<ReloadSummary, errors> ┘
//! ```

mod plan;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

pub use plan::{ReloadPlan, StaticCounts, plan};

use crate::config::{Config, ConfigError, ConfigErrors};

/// The answer to a reload: what was applied, or every validation error
/// (`path: message`) of a rejected file.
pub type ReloadResult = Result<ReloadSummary, Vec<String>>;

/// One reload to do.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Where the answer goes.
    pub reply: oneshot::Sender<ReloadResult>,
}

/// What a reload applied (also the control socket's JSON answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSummary {
    /// Static route changes.
    pub static_routes: StaticCounts,
    /// BGP peers started.
    pub peers_added: Vec<IpAddr>,
    /// BGP peers stopped.
    pub peers_removed: Vec<IpAddr>,
    /// BGP peers restarted with new settings.
    pub peers_changed: Vec<IpAddr>,
    /// Changed fields that need a restart (not applied).
    pub restart_needed: Vec<String>,
    /// Parts that failed to apply (e.g. a peer the speaker refused).
    pub errors: Vec<String>,
}

/// One line: `static routes +1 -0 ~0; peers added 172.31.0.9; ...`, or
/// `nothing changed`.
impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[IpAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let s = self.static_routes;
        let mut parts = Vec::new();
        if s.added + s.removed + s.changed > 0 {
            parts.push(format!(
                "static routes +{} -{} ~{}",
                s.added, s.removed, s.changed
            ));
        }
        for (what, v) in [
            ("peers added", &self.peers_added),
            ("peers removed", &self.peers_removed),
            ("peers restarted", &self.peers_changed),
        ] {
            if !v.is_empty() {
                parts.push(format!("{what} {}", list(v)));
            }
        }
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "needs a restart: {}",
                self.restart_needed.join(", ")
            ));
        }
        if !self.errors.is_empty() {
            parts.push(format!("not applied: {}", self.errors.join("; ")));
        }
        if parts.is_empty() {
            f.write_str("nothing changed")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Reads and validates the config file as it is now.
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// The daemon's reload inputs (`RunOptions::reload`).
pub struct Reloader {
    /// Reload requests (SIGHUP, control socket).
    pub requests: mpsc::Receiver<ReloadRequest>,
    /// Loads the file.
    pub load: ConfigLoader,
    /// The BGP speaker, when `[bgp]` is configured.
    pub bgp: Option<weft_bgp::SpeakerHandle>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("bgp", &self.bgp.is_some())
            .finish_non_exhaustive()
    }
}

/// A reload channel: clone the sender for every requester.
pub fn reload_channel() -> (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>) {
    mpsc::channel(4)
}

/// Asks for a reload and waits for its answer.
pub async fn request(tx: &mpsc::Sender<ReloadRequest>) -> ReloadResult {
    let (reply, rx) = oneshot::channel();
    let gone = || vec!["weftd is stopping".to_owned()];
    tx.send(ReloadRequest { reply }).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

/// A loader for a plain config file (no `[subnet]` lease).
pub fn file_loader(path: PathBuf) -> ConfigLoader {
    Box::new(move || {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                msg: format!("reading {}: {e}", path.display()),
            }])
        })?;
        Config::parse(&text)
    })
}

/// Turns every SIGHUP into a reload request (the daemon logs the result).
/// Install it early: SIGHUP's default action ends the process.
pub fn forward_sighup(tx: mpsc::Sender<ReloadRequest>) -> std::io::Result<JoinHandle<()>> {
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the config");
            let _ = request(&tx).await;
        }
    }))
}
