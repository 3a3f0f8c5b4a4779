//! weftd's control loop: checks the config against the kernel, starts the
//! dataplane, keeps the kernel routes equal to the route table (fed by a
//! channel of `RouteUpdate`s: static routes and BGP) and removes
//! everything it installed on stop.
//!
//! A batch of updates is installed incrementally: for each changed pod
//! range the kernel route wanted before the batch (what is installed: the
//! table and the kernel agree after every sync) is compared with the one
//! wanted after it (`change_ops`), and only those operations go to the
//! kernel. No second per-route copy of the table is kept. The full dump + `diff` runs at start, on
//! the periodic resync, on link changes, when someone else deletes one of
//! weftd's routes, and after a failed incremental batch.
//!
//! ```text
//!  static routes ──┐
//!  BGP ────────────┴─► mpsc<Vec<RouteUpdate>> ─► control loop ─► RouteSync (rtnetlink)
//!  kernel watcher ───► mpsc<()> ──────────►      │      └─► PeerTable swap ─► dataplane threads
//!  SIGTERM/SIGINT ───► stop future ────────►     ▼
//!                                         reconcile([]) + drop TUN
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::cidr::Cidr;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::netlink::{KernelEvent, NetlinkError, RouteSync, UnderlayLink, watch_kernel};
use crate::reconcile::{KernelRoute, RouteChange, RouteOp, change_ops, desired_routes};
use crate::route_table::{RouteTable, RouteUpdate, RouteUpdates};

/// How often the routes are re-checked even without kernel events.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Why weftd stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config does not fit this machine.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The dataplane could not start.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// Checks the parts of the config that depend on this machine; nothing is
/// installed yet when this fails.
pub async fn check_host(cfg: &Config, sync: &RouteSync) -> Result<UnderlayLink, DaemonError> {
    let mut errs = Vec::new();
    let link = sync.underlay_link(cfg.underlay_ip).await?;
    if link.is_none() {
        errs.push(ConfigError {
            path: "underlay_ip".into(),
            msg: format!("no local interface holds {}", cfg.underlay_ip),
        });
    }
    if cfg.dataplane.mode.is_overlay() && sync.link_index(&cfg.dataplane.tun_name).await?.is_some()
    {
        errs.push(ConfigError {
            path: "dataplane.tun_name".into(),
            msg: format!("interface {} already exists", cfg.dataplane.tun_name),
        });
    }
    if let (Some(l), Some(mtu)) = (&link, cfg.dataplane.mtu)
        && mtu + cfg.dataplane.mode.overhead() > l.mtu
    {
        errs.push(ConfigError {
            path: "dataplane.mtu".into(),
            msg: format!(
                "{mtu} + {} bytes of {} overhead exceeds the underlay MTU {} of {}",
                cfg.dataplane.mode.overhead(),
                cfg.dataplane.mode,
                l.mtu,
                l.name
            ),
        });
    }
    match link {
        Some(l) if errs.is_empty() => Ok(l),
        _ => Err(ConfigErrors(errs).into()),
    }
}

/// Runs weftd until `stop` resolves, then removes its routes and TUN.
pub async fn run(
    cfg: Config,
    updates: RouteUpdates,
    stop: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    run_with(cfg, updates, stop, RunOptions::default()).await
}

/// Graceful-restart behaviour for [`run_with`] (BGP, see `bgp_feed`).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Leave the installed routes in the kernel on stop, so forwarding
    /// goes on while weftd restarts (host-gw with graceful restart).
    pub keep_routes_on_stop: bool,
    /// While this reads `false`, routes already in the kernel but not (yet)
    /// in the table are kept: after a restart, until BGP has relearned.
    pub stale_until: Option<watch::Receiver<bool>>,
    /// Set to the underlay MTU after every full route sync (0 until the
    /// first succeeds): the node service then writes the CNI config, tells
    /// systemd READY, and rewrites the config when the MTU changes.
    pub programmed: Option<watch::Sender<u32>>,
}

/// [`run`] with graceful-restart options.
pub async fn run_with(
    cfg: Config,
    mut updates: RouteUpdates,
    stop: impl Future<Output = ()>,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    let sync = RouteSync::new()?;
    // Subscribe before the first dump so no change is missed.
    let mut kernel = watch_kernel(&sync)?;
    let underlay = check_host(&cfg, &sync).await?;
    info!(
        node = %cfg.node_name, mode = %cfg.dataplane.mode, underlay = %underlay.name,
        underlay_mtu = underlay.mtu, "weftd starting"
    );
    let direct = cfg.dataplane.direct_routing.then_some(underlay.subnet);
    let mut table = RouteTable::new(cfg.dataplane.mode, direct);

    let dataplane = if cfg.dataplane.mode.is_overlay() {
        Some(Dataplane::start(&cfg, &underlay)?)
    } else {
        None
    };
    let tun_ifindex = match &dataplane {
        Some(_) => sync.link_index(&cfg.dataplane.tun_name).await?,
        None => None,
    };

    let mut state = LoopState {
        underlay_mtu: underlay.mtu,
        underlay_ip: cfg.underlay_ip,
        tun_ifindex,
        stale_until: opts.stale_until,
        programmed: opts.programmed,
    };
    let result = control_loop(
        &mut state,
        &sync,
        &mut table,
        &mut updates,
        &mut kernel,
        dataplane.as_ref(),
        stop,
    )
    .await;

    // Remove everything installed, even after an error (unless a graceful
    // restart keeps forwarding going).
    if opts.keep_routes_on_stop && result.is_ok() {
        info!("graceful restart: routes stay installed");
    } else {
        match sync.reconcile(&[]).await {
            Ok(ops) => info!(removed = ops.len(), "weftd routes removed"),
            Err(e) => warn!(error = %e, "removing weftd routes failed"),
        }
    }
    if let Some(dp) = dataplane {
        dp.stop();
    }
    info!("weftd stopped");
    result
}

struct LoopState {
    underlay_mtu: u32,
    underlay_ip: std::net::IpAddr,
    tun_ifindex: Option<u32>,
    stale_until: Option<watch::Receiver<bool>>,
    programmed: Option<watch::Sender<u32>>,
}

impl LoopState {
    /// The kernel route weftd wants for `cidr` now.
    fn wanted(&self, table: &RouteTable, cidr: Cidr) -> Option<KernelRoute> {
        let hop = table.next_hop(&cidr)?;
        desired_routes(&[(cidr, hop)], self.tun_ifindex).pop()
    }

    /// Whether a kernel event needs a full resync: a link change, or a
    /// route weftd still wants deleted by someone else (its own deletions
    /// come back as events too and are ignored). Only called between
    /// batches, when the table and the kernel agree.
    fn needs_resync(&self, table: &RouteTable, ev: KernelEvent) -> bool {
        match ev {
            KernelEvent::Link | KernelEvent::Unknown => true,
            KernelEvent::RouteGone(r) => self.wanted(table, r.dst) == Some(r),
        }
    }

    /// Applies a batch to the table; a pod range whose resolution changed
    /// is recorded in `changed` with the kernel route it had before.
    fn apply_batch(
        &self,
        table: &mut RouteTable,
        changed: &mut BTreeMap<Cidr, Option<KernelRoute>>,
        batch: Vec<RouteUpdate>,
    ) {
        for u in batch {
            let cidr = u.cidr();
            if let Some(before) = table.apply_change(u) {
                changed
                    .entry(cidr)
                    .or_insert_with(|| desired_routes(&[(cidr, before?)], self.tun_ifindex).pop());
            }
        }
    }
}

/// Resolves when the stale-route hold changes (never without one).
async fn stale_changed(w: Option<&mut watch::Receiver<bool>>) -> bool {
    match w {
        Some(w) => w.changed().await.is_err() || *w.borrow(),
        None => std::future::pending().await,
    }
}

async fn control_loop(
    state: &mut LoopState,
    sync: &RouteSync,
    table: &mut RouteTable,
    updates: &mut RouteUpdates,
    kernel: &mut mpsc::UnboundedReceiver<KernelEvent>,
    dataplane: Option<&Dataplane>,
    stop: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    tokio::pin!(stop);
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    // Full dump + diff wanted.
    let mut dirty = true;
    // Pod ranges changed since the last sync, with the kernel route each
    // had then (incremental install).
    let mut changed: BTreeMap<Cidr, Option<KernelRoute>> = BTreeMap::new();
    let mut feed_open = true;
    loop {
        if dirty {
            dirty = false;
            changed.clear();
            let hops = table.next_hops();
            if let Some(dp) = dataplane {
                follow_underlay_mtu(state, sync, dp).await?;
                dp.set_routes(&hops);
            }
            let desired = desired_routes(&hops, state.tun_ifindex);
            let ops = sync
                .reconcile_with(&desired, state.stale_until.is_none())
                .await?;
            log_ops(&ops);
            metrics::gauge!("weft_router_routes").set(desired.len() as f64);
            // Node service hook: routes are programmed (at this MTU).
            if let Some(tx) = &state.programmed {
                let mtu = state.underlay_mtu;
                tx.send_if_modified(|m| std::mem::replace(m, mtu) != mtu);
            }
        } else if !changed.is_empty() {
            if let Some(dp) = dataplane {
                let hops: Vec<_> = changed.keys().map(|c| (*c, table.next_hop(c))).collect();
                dp.update_routes(&hops);
            }
            let changes: Vec<RouteChange> = std::mem::take(&mut changed)
                .into_iter()
                .map(|(c, old)| RouteChange {
                    old,
                    new: state.wanted(table, c),
                })
                .collect();
            let ops = change_ops(&changes, state.stale_until.is_none());
            match sync.apply_ops(&ops).await {
                Ok(()) => {
                    log_ops(&ops);
                    metrics::gauge!("weft_router_routes").set(table.len() as f64);
                }
                Err(e) => {
                    // The kernel state is unknown now: a full resync finds
                    // out (and fails the daemon if netlink stays broken).
                    warn!(error = %e, "incremental route update failed, resyncing");
                    dirty = true;
                    continue;
                }
            }
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            u = updates.recv(), if feed_open => match u {
                Some(batch) => {
                    state.apply_batch(table, &mut changed, batch);
                    // Take everything already queued before installing.
                    while let Ok(batch) = updates.try_recv() {
                        state.apply_batch(table, &mut changed, batch);
                    }
                }
                None => feed_open = false,
            },
            Some(ev) = kernel.recv() => {
                dirty |= state.needs_resync(table, ev);
                while let Ok(ev) = kernel.try_recv() {
                    dirty |= state.needs_resync(table, ev);
                }
            },
            released = stale_changed(state.stale_until.as_mut()) => if released {
                info!("stale routes released");
                state.stale_until = None;
                // The relearned routes are on the feed before the release:
                // take them into the table before the full sync deletes
                // whatever it lacks.
                while let Ok(batch) = updates.try_recv() {
                    state.apply_batch(table, &mut changed, batch);
                }
                dirty = true;
            },
            _ = resync.tick() => dirty = true,
        }
    }
}

/// Keeps the TUN MTU fitting the underlay when the underlay MTU changes
/// at run time, so a reduced underlay never blackholes big packets.
async fn follow_underlay_mtu(
    state: &mut LoopState,
    sync: &RouteSync,
    dp: &Dataplane,
) -> Result<(), DaemonError> {
    let Some(link) = sync.underlay_link(state.underlay_ip).await? else {
        warn!(ip = %state.underlay_ip, "underlay address disappeared");
        return Ok(());
    };
    if link.mtu == state.underlay_mtu {
        return Ok(());
    }
    info!(
        old = state.underlay_mtu,
        new = link.mtu,
        "underlay MTU changed"
    );
    state.underlay_mtu = link.mtu;
    if let (Some(tun_mtu), Some(idx)) = (dp.underlay_mtu_changed(link.mtu), state.tun_ifindex) {
        sync.set_mtu(idx, tun_mtu).await?;
        info!(tun_mtu, "TUN MTU follows the underlay");
    }
    Ok(())
}

fn log_ops(ops: &[RouteOp]) {
    // Bulk changes (a BGP table arriving) get one line, not one per route.
    if ops.len() > 16 {
        let added = ops
            .iter()
            .filter(|o| matches!(o, RouteOp::Replace(_)))
            .count();
        info!(
            installed = added,
            removed = ops.len() - added,
            "routes reconciled"
        );
        return;
    }
    for op in ops {
        match op {
            RouteOp::Replace(r) => info!(dst = %r.dst, via = ?r.via, "route installed"),
            RouteOp::Delete(r) => info!(dst = %r.dst, via = ?r.via, "route removed"),
        }
    }
}
