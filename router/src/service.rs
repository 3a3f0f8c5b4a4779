//! What weftd does as a node service around the router, once the router
//! has programmed its routes: pod masquerade ([`crate::masquerade`]), the
//! CNI conflist and subnet.env ([`crate::cni_conf`]), and systemd's notify
//! protocol ([`crate::notify`]): `READY=1` after those, `WATCHDOG=1` while
//! the runtime turns, `STOPPING=1` when a stop begins. Nothing is installed
//! or written before the router's host checks pass.
//!
//! ```text
//!  daemon: route sync ─ watch(underlay MTU) ─► node task: masquerade installed,
//!                                              conflist + subnet.env, READY=1; then
//!                                              keeps masquerade intact and rewrites the
//!                                              files when the MTU changes
//!  watchdog task: WATCHDOG=1 every WatchdogSec/2
//!  stop signal ─ stopping(): STOPPING=1;  after the daemon ─ stop(keep): masquerade removed
//! ```

use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::cni_conf::{NodeFiles, pod_mtu};
use crate::config::Config;
use crate::masquerade::{self, MasqKeeper, MasqPlan};
use crate::notify::{Notifier, watchdog_interval};

/// The running node-service tasks.
#[derive(Debug)]
pub struct NodeService {
    notifier: Arc<Notifier>,
    files: watch::Receiver<Option<NodeFiles>>,
    stop: Option<oneshot::Sender<bool>>,
    task: Option<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
}

/// Writes the CNI files for `underlay_mtu`, publishes their state on
/// `state`; returns the status line.
async fn write_files(
    cfg: &Config,
    underlay_mtu: u32,
    state: &watch::Sender<Option<NodeFiles>>,
) -> String {
    let mtu = pod_mtu(&cfg.dataplane, underlay_mtu);
    let files = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || NodeFiles::write(&cfg, mtu))
            .await
            .unwrap_or_default()
    };
    state.send_replace(Some(files.clone()));
    let mut status = if files.errors.is_empty() {
        "routes programmed, CNI config written".to_owned()
    } else {
        format!(
            "routes programmed; CNI config not written: {}",
            files.errors.join("; ")
        )
    };
    if let Some(first) = files.shadowed_by.first() {
        status += &format!("; runtimes use {first} before weft's conflist");
    }
    status
}

/// Waits for the routes, then sets up and keeps up the node's side.
async fn node_task(
    cfg: Config,
    notifier: Arc<Notifier>,
    mut programmed: watch::Receiver<u32>,
    mut stop: oneshot::Receiver<bool>,
    files: watch::Sender<Option<NodeFiles>>,
) {
    let first = tokio::select! {
        m = programmed.wait_for(|m| *m != 0) => match m {
            Ok(m) => *m,
            // The router ended before programming anything.
            Err(_) => return,
        },
        _ = &mut stop => return,
    };
    let mut keeper = MasqKeeper::new(masquerade::install(MasqPlan::from_config(&cfg)));
    // READY even when a file failed: routing works, and systemd would
    // otherwise kill weftd at its start timeout.
    let status = write_files(&cfg, first, &files).await;
    info!(%status, notify = notifier.enabled(), "ready");
    notifier.ready(&status);
    let mut feed_open = true;
    let keep = loop {
        tokio::select! {
            keep = &mut stop => break keep.unwrap_or(false),
            () = keeper.changed() => keeper.check(),
            r = programmed.changed(), if feed_open => match r {
                // The underlay MTU changed: the pod MTU follows.
                Ok(()) => {
                    let mtu = *programmed.borrow_and_update();
                    let status = write_files(&cfg, mtu, &files).await;
                    notifier.status(&status);
                }
                Err(_) => feed_open = false,
            },
        }
    };
    keeper.finish(keep);
}

impl NodeService {
    /// Starts the tasks (inside a tokio runtime). The returned sender is
    /// the daemon's "routes programmed" signal (`RunOptions::programmed`):
    /// the underlay MTU, 0 until the first route sync.
    pub fn start(cfg: &Config) -> (Self, watch::Sender<u32>) {
        let notifier = Arc::new(Notifier::from_env());
        let (prog_tx, prog_rx) = watch::channel(0);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (files_tx, files) = watch::channel(None);
        let task = tokio::spawn(node_task(
            cfg.clone(),
            Arc::clone(&notifier),
            prog_rx,
            stop_rx,
            files_tx,
        ));
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
        .filter(|_| notifier.enabled())
        .map(|every| {
            let notifier = Arc::clone(&notifier);
            info!(?every, "systemd watchdog enabled");
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    notifier.watchdog();
                }
            })
        });
        (
            Self {
                notifier,
                files,
                stop: Some(stop_tx),
                task: Some(task),
                watchdog,
            },
            prog_tx,
        )
    }

    /// The CNI files' state: None until first written (for `/readyz`).
    pub fn files(&self) -> watch::Receiver<Option<NodeFiles>> {
        self.files.clone()
    }

    /// A stop begins: tells the service manager.
    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    /// Ends the tasks; masquerade is removed unless `keep` (graceful
    /// restart).
    pub async fn stop(mut self, keep: bool) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(keep);
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
