//! weftd's driver: checks the config against the kernel, starts the
//! dataplane, then runs the pure [`RouterCore`] — turning the route feed,
//! the kernel watcher, its timer and the stop signal into [`Event`]s, and
//! executing the [`Action`]s it returns (netlink, dataplane, readiness,
//! logs). Every decision is the core's; this file only does I/O.
//!
//! ```text
//!  RouteFeed (static, BGP: batches, End-of-RIB) ─┐
//!  kernel watcher (route gone, link) ────────────┼─► Event ─► RouterCore ─► Action ─► RouteSync (rtnetlink)
//!  poll_timeout() timer ─────────────────────────┤                  ▲           ├─► Dataplane::update_routes
//!  stop future (SIGTERM) ────────────────────────┘                  │           ├─► readiness watch
//!                                answers (Dumped, Applied, ..) ─────┘           └─► tracing, metrics
//! ```
//!
//! Answers to netlink requests go back to the core after whatever queued
//! up meanwhile on the feed and the watcher, so the batches that arrived
//! during one install are flushed together as the next one. Peer-table
//! updates reach the dataplane before any kernel route that needs them,
//! and otherwise as soon as the driver waits for input: a run of
//! withdrawal flushes (a peer going away with 100k routes) publishes the
//! dataplane's table once, not once per flush.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::cidr::Cidr;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::core::{
    Action, CoreConfig, Event, Note, Readiness, Released, RouterCore, StaleHold, TunLink,
};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::feed::{FeedItem, RouteUpdates};
use crate::netlink::{NetlinkError, RouteSync, UnderlayLink, watch_kernel};
use crate::reconcile::{KernelEvent, RouteOp};
use crate::reload::{ConfigLoader, ReloadRequest, Reloader};
use crate::route_table::NextHop;
use crate::snapshot::{RouterQuery, RouterSnapshot};

mod reload;

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
    /// The routes could not be kept in sync with the kernel.
    #[error("route sync: {0}")]
    Sync(String),
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
    // A TUN of that name is one a graceful stop left: it is adopted.
    if cfg.dataplane.mode.is_overlay() && sync.is_tun(&cfg.dataplane.tun_name).await? == Some(false)
    {
        errs.push(ConfigError {
            path: "dataplane.tun_name".into(),
            msg: format!(
                "interface {} already exists and is no TUN",
                cfg.dataplane.tun_name
            ),
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

/// Options for [`run_with`]: graceful restart and readiness.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Leave the installed routes in the kernel when `stop` resolves, so
    /// forwarding goes on while weftd restarts (host-gw with graceful
    /// restart).
    pub keep_routes_on_stop: bool,
    /// After a graceful restart: keep the routes already in the kernel but
    /// not (yet) in the table until these peers sent End-of-RIB on the
    /// feed, or the restart time passed.
    pub stale_hold: Option<StaleHold>,
    /// Receives every readiness change: `Ready` once the routes known at
    /// start are programmed, `Stopping` when the stop begins (for
    /// sd_notify and status queries).
    pub readiness: Option<watch::Sender<Readiness>>,
    /// Set to the underlay MTU once the routes known at start are
    /// programmed, and again on every underlay MTU change (0 before): the
    /// node service then writes the CNI config, tells systemd READY, and
    /// rewrites the config when the MTU changes.
    pub programmed: Option<watch::Sender<u32>>,
    /// Status queries (see [`crate::snapshot`]), answered between events.
    pub queries: Option<mpsc::Receiver<RouterQuery>>,
    /// wireguard: other nodes' keys learned from etcd leases.
    pub wireguard_keys: Option<std::sync::Arc<crate::dataplane::wireguard::key_book::KeyBook>>,
    /// Config reloads (SIGHUP, the control socket): see [`crate::reload`].
    pub reload: Option<Reloader>,
}

/// [`run`] with graceful-restart and readiness options.
pub async fn run_with(
    cfg: Config,
    updates: RouteUpdates,
    stop: impl Future<Output = ()>,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    let sync = RouteSync::new()?;
    // Subscribe before the first dump so no change is missed.
    let kernel = watch_kernel(&sync)?;
    let underlay = check_host(&cfg, &sync).await?;
    info!(
        node = %cfg.node_name, mode = %cfg.dataplane.mode, underlay = %underlay.name,
        underlay_mtu = underlay.mtu, "weftd starting"
    );
    let dataplane = if cfg.dataplane.mode.is_overlay() {
        let dp = Dataplane::start_with_keys(&cfg, &underlay, opts.wireguard_keys.clone())?;
        // An empty peer table that knows this node's own pod ranges (the
        // anti-spoofing check needs them); the core's peer updates fill it.
        dp.set_routes(&[]);
        Some(dp)
    } else {
        None
    };
    let tun = match &dataplane {
        Some(_) => sync
            .link_index(&cfg.dataplane.tun_name)
            .await?
            .map(|ifindex| TunLink {
                ifindex,
                fixed_mtu: cfg.dataplane.mtu.is_some(),
            }),
        None => None,
    };
    let core = RouterCore::new(CoreConfig {
        direct_subnet: cfg.dataplane.direct_routing.then_some(underlay.subnet),
        tun,
        stale_hold: opts.stale_hold,
        keep_routes_on_graceful_stop: opts.keep_routes_on_stop,
        ..CoreConfig::new(cfg.dataplane.mode, underlay.mtu)
    });
    let (reload_rx, reloader) = match opts.reload {
        Some(r) => (Some(r.requests), Some((r.load, r.bgp))),
        None => (None, None),
    };
    let mut driver = Driver {
        running: cfg.clone(),
        reloader,
        core,
        t0: Instant::now(),
        sync,
        dataplane: dataplane.as_ref(),
        underlay_ip: cfg.underlay_ip,
        readiness: opts.readiness,
        programmed: opts.programmed,
        underlay_mtu: underlay.mtu,
        ready: false,
        answers: VecDeque::new(),
        peer_backlog: Vec::new(),
        exit: None,
        programming: Programming::default(),
    };
    let result = driver
        .run(updates, kernel, reload_rx, stop, opts.queries)
        .await;
    if let Some(dp) = dataplane {
        dp.stop();
    }
    info!("weftd stopped");
    result
}

/// The I/O side of one [`RouterCore`].
struct Driver<'a> {
    /// The config in force (the file's live parts after a reload).
    running: Config,
    /// Loads the file again, and the speaker to apply peer changes to.
    reloader: Option<(ConfigLoader, Option<weft_bgp::SpeakerHandle>)>,
    core: RouterCore,
    t0: Instant,
    sync: RouteSync,
    dataplane: Option<&'a Dataplane>,
    underlay_ip: IpAddr,
    readiness: Option<watch::Sender<Readiness>>,
    programmed: Option<watch::Sender<u32>>,
    /// The underlay MTU as last reported to the node service.
    underlay_mtu: u32,
    /// The routes known at start are programmed.
    ready: bool,
    /// Answers to executed requests, not yet handed to the core.
    answers: VecDeque<Event>,
    /// Peer-table changes not yet handed to the dataplane, in order.
    peer_backlog: Vec<(Cidr, Option<NextHop>)>,
    /// Set by [`Action::Exit`].
    exit: Option<Option<String>>,
    programming: Programming,
}

/// Route programming time for `weft_route_programming_seconds`: from the
/// first route change a netlink request covers to its ACK.
#[derive(Debug, Default)]
struct Programming {
    /// The oldest route change not yet in a netlink request.
    waiting: Option<Instant>,
    /// The oldest change the request in flight covers.
    in_flight: Option<Instant>,
    /// A netlink request (dump or apply) is in flight.
    busy: bool,
}

/// The histogram of route programming times.
pub const ROUTE_PROGRAMMING: &str = "weft_route_programming_seconds";
/// The gauge of pod ranges routed.
pub const ROUTES_INSTALLED: &str = "weft_routes_installed";

impl Driver<'_> {
    /// Node service hook: the routes are programmed, at this underlay MTU.
    fn tell_programmed(&self) {
        if let (true, Some(tx)) = (self.ready, &self.programmed) {
            let mtu = self.underlay_mtu;
            tx.send_if_modified(|m| std::mem::replace(m, mtu) != mtu);
        }
    }

    async fn run(
        &mut self,
        mut updates: RouteUpdates,
        mut kernel: mpsc::UnboundedReceiver<KernelEvent>,
        mut reloads: Option<mpsc::Receiver<ReloadRequest>>,
        stop: impl Future<Output = ()>,
        mut queries: Option<mpsc::Receiver<RouterQuery>>,
    ) -> Result<(), DaemonError> {
        tokio::pin!(stop);
        let mut feed_open = true;
        let mut stopping = false;
        // What is already queued (the static routes) goes into the table
        // before the first sync, so a restart does not flap them.
        while let Ok(item) = updates.try_recv() {
            self.handle(feed_event(item)).await;
        }
        self.handle(Event::Start).await;
        while self.exit.is_none() {
            let event = if let Some(answer) = self.answers.pop_front() {
                // Whatever queued up while netlink worked reaches the core
                // first: it is flushed together after this answer.
                while let Ok(item) = updates.try_recv() {
                    self.handle(feed_event(item)).await;
                }
                while let Ok(k) = kernel.try_recv() {
                    self.handle(Event::Kernel(k)).await;
                }
                answer
            } else {
                self.publish_peers();
                let deadline = self.core.poll_timeout().map(|d| self.t0 + d);
                tokio::select! {
                    () = &mut stop, if !stopping => {
                        stopping = true;
                        info!("stopping");
                        Event::Stop { graceful: true }
                    }
                    item = updates.recv(), if feed_open => match item {
                        Some(item) => feed_event(item),
                        None => {
                            feed_open = false;
                            continue;
                        }
                    },
                    Some(k) = kernel.recv() => Event::Kernel(k),
                    Some(req) = recv_reload(reloads.as_mut()), if !stopping => {
                        let result = self.reload().await;
                        let _ = req.reply.send(result);
                        continue;
                    }
                    () = sleep_until(deadline) => Event::Timeout,
                    Some(q) = recv_query(queries.as_mut()) => {
                        let _ = q.send(self.snapshot());
                        continue;
                    }
                }
            };
            self.handle(event).await;
        }
        self.publish_peers();
        match self.exit.take().flatten() {
            Some(e) => Err(DaemonError::Sync(e)),
            None => Ok(()),
        }
    }

    /// Hands the dataplane the peer changes held back.
    fn publish_peers(&mut self) {
        if let Some(dp) = self.dataplane
            && !self.peer_backlog.is_empty()
        {
            dp.update_routes(&self.peer_backlog);
        }
        self.peer_backlog.clear();
    }

    /// The core's state for a status query.
    fn snapshot(&self) -> RouterSnapshot {
        RouterSnapshot {
            readiness: self.core.readiness(),
            underlay_mtu: self.underlay_mtu,
            offloads: self.dataplane.map(|d| d.offloads),
            routes: self.core.table().sourced(),
        }
    }

    /// Hands one event to the core and executes what it returns.
    async fn handle(&mut self, event: Event) {
        let now = self.t0.elapsed();
        let p = &mut self.programming;
        match &event {
            Event::Routes(_) => {
                p.waiting.get_or_insert_with(Instant::now);
            }
            Event::Applied => {
                if let Some(t) = p.in_flight.take() {
                    metrics::histogram!(ROUTE_PROGRAMMING).record(t.elapsed().as_secs_f64());
                }
            }
            _ => {}
        }
        if matches!(
            event,
            Event::Applied
                | Event::ApplyFailed { .. }
                | Event::Dumped { .. }
                | Event::DumpFailed { .. }
        ) {
            p.busy = false;
            p.in_flight = None;
        }
        let actions = self.core.handle(now, event);
        let p = &mut self.programming;
        for a in &actions {
            match a {
                Action::ApplyRoutes { .. } => {
                    p.busy = true;
                    p.in_flight = p.waiting.take();
                }
                Action::DumpRoutes { .. } => p.busy = true,
                _ => {}
            }
        }
        if !p.busy {
            // Nothing in flight: the changes needed no kernel update.
            p.waiting = None;
        }
        for action in actions {
            self.execute(action).await;
        }
    }

    async fn execute(&mut self, action: Action) {
        match action {
            Action::ReadUnderlay => {
                let mtu = match self.sync.underlay_link(self.underlay_ip).await {
                    Ok(l) => l.map(|l| l.mtu),
                    Err(e) => {
                        warn!(error = %e, "reading the underlay link");
                        return;
                    }
                };
                self.answers.push_back(Event::UnderlayMtu { mtu });
            }
            Action::DumpRoutes { reason } => {
                debug!(?reason, "full route sync");
                self.answers.push_back(match self.sync.dump_own().await {
                    Ok(routes) => Event::Dumped { routes },
                    Err(e) => Event::DumpFailed {
                        error: e.to_string(),
                    },
                });
            }
            Action::ApplyRoutes { ops } => {
                // A new kernel route finds its peer in the dataplane.
                if ops.iter().any(|o| matches!(o, RouteOp::Replace(_))) {
                    self.publish_peers();
                }
                self.answers
                    .push_back(match self.sync.apply_ops(&ops).await {
                        Ok(()) => {
                            log_ops(&ops);
                            Event::Applied
                        }
                        Err(e) => Event::ApplyFailed {
                            error: e.to_string(),
                        },
                    });
            }
            Action::UpdatePeers { mut changes } => {
                if self.dataplane.is_some() {
                    self.peer_backlog.append(&mut changes);
                }
            }
            Action::SetUnderlayMtu { mtu } => {
                if let Some(dp) = self.dataplane {
                    // The TUN MTU comes as its own action.
                    let _ = dp.underlay_mtu_changed(mtu);
                }
                self.underlay_mtu = mtu;
                self.tell_programmed();
            }
            Action::SetTunMtu { ifindex, mtu } => match self.sync.set_mtu(ifindex, mtu).await {
                Ok(()) => info!(tun_mtu = mtu, "TUN MTU follows the underlay"),
                Err(e) => self.answers.push_back(Event::TunMtuFailed {
                    error: e.to_string(),
                }),
            },
            Action::Readiness(r) => {
                info!(readiness = ?r, "readiness");
                if let Some(tx) = &self.readiness {
                    let _ = tx.send(r);
                }
                if r == Readiness::Ready {
                    self.ready = true;
                    self.tell_programmed();
                }
            }
            Action::Summary {
                installed,
                removed,
                routes,
            } => {
                // One line per applied batch, counts only.
                info!(installed, removed, routes, "routes applied");
                metrics::gauge!(ROUTES_INSTALLED).set(routes as f64);
                metrics::gauge!("weft_router_bgp_gateways")
                    .set(self.core.table().gateways() as f64);
            }
            Action::Log(note) => log_note(&note),
            Action::Exit { error } => self.exit = Some(error),
        }
    }
}

async fn recv_reload(rx: Option<&mut mpsc::Receiver<ReloadRequest>>) -> Option<ReloadRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn feed_event(item: FeedItem) -> Event {
    match item {
        FeedItem::Routes(batch) => Event::Routes(batch),
        FeedItem::EndOfRib { peer } => Event::EndOfRib { peer },
    }
}

/// The next status query; never without a query channel.
async fn recv_query(rx: Option<&mut mpsc::Receiver<RouterQuery>>) -> Option<RouterQuery> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Each operation at debug level (the batch's info line is the summary's).
fn log_ops(ops: &[RouteOp]) {
    for op in ops {
        match op {
            RouteOp::Replace(r) => debug!(dst = %r.dst, via = ?r.via, "route installed"),
            RouteOp::Delete(r) => debug!(dst = %r.dst, via = ?r.via, "route removed"),
        }
    }
}

fn log_note(note: &Note) {
    match note {
        Note::StaleReleased {
            by: Released::EndOfRib,
        } => info!("BGP table relearned after restart: End-of-RIB from every peer"),
        Note::StaleReleased {
            by: Released::RestartTimeOver,
        } => warn!(
            "BGP table relearned after restart: restart time over without End-of-RIB from every peer"
        ),
        Note::UnderlayMtuChanged { old, new } => info!(old, new, "underlay MTU changed"),
        Note::UnderlayGone => warn!("underlay address disappeared"),
        Note::TunMtuFailed { error } => warn!(%error, "setting the TUN MTU failed"),
        Note::ApplyFailed { error } => {
            warn!(%error, "incremental route update failed, resyncing");
        }
        Note::SyncFailed { error } => warn!(%error, "route sync failed, stopping"),
        Note::CleanupFailed { error } => warn!(%error, "removing weftd routes failed"),
        Note::RoutesKept => info!("graceful restart: routes stay installed"),
        Note::StaticRoutesReloaded {
            added,
            removed,
            changed,
        } => info!(added, removed, changed, "static routes reloaded"),
    }
}
