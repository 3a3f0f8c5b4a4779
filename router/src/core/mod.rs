//! The router core: every decision weftd's control side makes, as a pure
//! state machine. `RouterCore::handle(now, Event) -> Vec<Action>`; time
//! is passed in (`now`: time since the driver started), nothing here
//! touches netlink, tokio, clocks or the dataplane. The daemon
//! (`daemon.rs`) is the driver: it turns channels, timers and signals into
//! [`Event`]s, executes the [`Action`]s in order and feeds their answers
//! back as events.
//!
//! ```text
//!  Routes(batch) ─┐                     ┌─► ReadUnderlay, DumpRoutes ──► Dumped / DumpFailed ─┐
//!  EndOfRib ──────┤                     ├─► ApplyRoutes(ops) ──────────► Applied / ApplyFailed ┤
//!  Kernel(..) ────┼─► RouterCore ───────┼─► UpdatePeers (Dataplane::update_routes)             │
//!  UnderlayMtu ───┤   RouteTable        ├─► SetUnderlayMtu, SetTunMtu                          │
//!  Timeout ───────┤   + sync state      ├─► Readiness, Summary, Log                            │
//!  Stop ──────────┘        ▲            └─► Exit                                               │
//!                          └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! At most one netlink request (a dump or a list of operations) is in
//! flight; route batches arriving meanwhile go into the table at once and
//! are flushed together when the answer comes. A batch changes the kernel
//! incrementally: for each pod range whose resolution changed, the kernel
//! route it had at the last flush is compared with the one wanted now
//! (`change_ops`). A full dump + diff runs at start, every
//! `resync_every_ms`, on link changes, when someone else deletes a route
//! weftd wants, after a failed incremental update and when the stale-route
//! hold of a graceful restart ends. The dataplane's peer table follows the
//! route table change by change, so a full sync does not rebuild it.

mod event;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

pub use event::{
    Action, CoreConfig, Event, Note, RESYNC_EVERY_MS, Readiness, Released, StaleHold, SyncReason,
    TunLink,
};

use crate::cidr::Cidr;
use crate::reconcile::{
    KernelEvent, KernelRoute, RouteChange, RouteOp, change_ops, desired_routes, diff,
};
use crate::route_table::{PeerRoute, RouteSource, RouteTable, RouteUpdate};

/// The netlink request whose answer the core waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Dump(SyncReason),
    Apply(Applying),
}

/// Operations in flight: why, and how many of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applying {
    kind: ApplyKind,
    installed: usize,
    removed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyKind {
    /// The operations of a full sync.
    Full,
    /// A flush of changed pod ranges.
    Incremental,
    /// Removing everything on stop.
    Stop,
}

/// How the core stops once nothing is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StopPlan {
    keep_routes: bool,
    error: Option<String>,
}

/// The stale-route hold in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    peers: BTreeSet<IpAddr>,
    /// Set at [`Event::Start`]; End-of-RIB counts before it too.
    until: Option<Duration>,
}

/// weftd's control-side state machine (see the module header).
#[derive(Debug, Clone)]
pub struct RouterCore {
    cfg: CoreConfig,
    table: RouteTable,
    started: bool,
    pending: Option<Pending>,
    /// A full sync is wanted, and the first reason for it.
    dirty: Option<SyncReason>,
    /// Pod ranges changed since the last flush, with the kernel route each
    /// had then.
    changed: BTreeMap<Cidr, Option<KernelRoute>>,
    underlay_mtu: u32,
    /// Setting the TUN MTU failed: retry on the next MTU reading.
    tun_mtu_stale: bool,
    hold: Option<Hold>,
    next_resync: Option<Duration>,
    readiness: Readiness,
    stop: Option<StopPlan>,
    done: bool,
}

impl RouterCore {
    /// A core with an empty table; nothing happens before [`Event::Start`]
    /// except that route batches are taken into the table.
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            table: RouteTable::new(cfg.mode, cfg.direct_subnet),
            started: false,
            pending: None,
            dirty: None,
            changed: BTreeMap::new(),
            underlay_mtu: cfg.underlay_mtu,
            tun_mtu_stale: false,
            hold: cfg
                .stale_hold
                .as_ref()
                .filter(|h| !h.peers.is_empty())
                .map(|h| Hold {
                    peers: h.peers.clone(),
                    until: None,
                }),
            next_resync: None,
            readiness: Readiness::Starting,
            stop: None,
            done: false,
            cfg,
        }
    }

    /// The route table (for status queries).
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Current readiness.
    pub fn readiness(&self) -> Readiness {
        self.readiness
    }

    /// True once [`Action::Exit`] was emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// When the driver must send [`Event::Timeout`] next (time since its
    /// start); `None`: no timer.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.done || self.stop.is_some() || !self.started {
            return None;
        }
        let hold = self.hold.as_ref().and_then(|h| h.until);
        match (self.next_resync, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles one event at `now` and returns what to do, in order.
    #[must_use]
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match event {
            Event::Start => self.start(now),
            Event::Routes(batch) => {
                if self.stop.is_none() {
                    self.apply_batch(batch);
                }
            }
            Event::StaticRoutes(routes) => {
                if self.stop.is_none() {
                    self.replace_statics(routes, &mut out);
                }
            }
            Event::EndOfRib { peer } => {
                if let Some(h) = &mut self.hold {
                    h.peers.remove(&peer);
                    if h.peers.is_empty() {
                        self.release(Released::EndOfRib, &mut out);
                    }
                }
            }
            Event::Kernel(k) => self.kernel(k),
            Event::UnderlayMtu { mtu } => self.underlay(mtu, &mut out),
            Event::Timeout => self.timeout(now, &mut out),
            Event::Stop { graceful } => self.request_stop(
                StopPlan {
                    keep_routes: graceful && self.cfg.keep_routes_on_graceful_stop,
                    error: None,
                },
                &mut out,
            ),
            Event::Dumped { routes } => match self.pending.take() {
                Some(Pending::Dump(reason)) => self.dumped(now, reason, &routes, &mut out),
                other => self.pending = other,
            },
            Event::DumpFailed { error } => match self.pending.take() {
                Some(Pending::Dump(SyncReason::Stop)) => {
                    out.push(Action::Log(Note::CleanupFailed { error }));
                    self.exit(&mut out);
                }
                Some(Pending::Dump(_)) => self.fail(error, &mut out),
                other => self.pending = other,
            },
            Event::Applied => match self.pending.take() {
                Some(Pending::Apply(a)) => self.applied(now, a, &mut out),
                other => self.pending = other,
            },
            Event::ApplyFailed { error } => match self.pending.take() {
                Some(Pending::Apply(a)) => match a.kind {
                    ApplyKind::Incremental => {
                        // The kernel state is unknown now: a full resync
                        // finds out (and stops weftd if netlink stays broken).
                        out.push(Action::Log(Note::ApplyFailed { error }));
                        self.dirty.get_or_insert(SyncReason::ApplyFailed);
                    }
                    ApplyKind::Full => self.fail(error, &mut out),
                    ApplyKind::Stop => {
                        out.push(Action::Log(Note::CleanupFailed { error }));
                        self.exit(&mut out);
                    }
                },
                other => self.pending = other,
            },
            Event::TunMtuFailed { error } => {
                out.push(Action::Log(Note::TunMtuFailed { error }));
                self.tun_mtu_stale = true;
            }
        }
        self.step(&mut out);
        out
    }

    fn start(&mut self, now: Duration) {
        if self.started {
            return;
        }
        self.started = true;
        self.dirty.get_or_insert(SyncReason::Start);
        if let (Some(h), Some(cfg)) = (&mut self.hold, &self.cfg.stale_hold) {
            h.until = Some(now + Duration::from_millis(cfg.restart_time_ms));
        }
    }

    /// The kernel route weftd wants for `cidr` now.
    fn wanted(&self, cidr: Cidr) -> Option<KernelRoute> {
        let hop = self.table.next_hop(&cidr)?;
        desired_routes(&[(cidr, hop)], self.tun_ifindex()).pop()
    }

    fn tun_ifindex(&self) -> Option<u32> {
        self.cfg.tun.map(|t| t.ifindex)
    }

    /// Takes a batch into the table; each pod range whose resolution
    /// changed is recorded with the kernel route it had before.
    fn apply_batch(&mut self, batch: Vec<RouteUpdate>) {
        let tun = self.tun_ifindex();
        for u in batch {
            let cidr = u.cidr();
            if let Some(before) = self.table.apply_change(u) {
                self.changed
                    .entry(cidr)
                    .or_insert_with(|| desired_routes(&[(cidr, before?)], tun).pop());
            }
        }
    }

    /// Replaces the static routes: only the pod ranges whose static route
    /// appeared, went or changed are updated.
    fn replace_statics(&mut self, routes: Vec<PeerRoute>, out: &mut Vec<Action>) {
        let new: BTreeMap<Cidr, PeerRoute> = routes.into_iter().map(|r| (r.pod_cidr, r)).collect();
        let old: BTreeMap<Cidr, PeerRoute> =
            self.table.statics().map(|r| (r.pod_cidr, *r)).collect();
        let mut batch = Vec::new();
        let (mut added, mut changed) = (0, 0);
        for (cidr, r) in &new {
            match old.get(cidr) {
                Some(o) if o == r => continue,
                Some(_) => changed += 1,
                None => added += 1,
            }
            batch.push(RouteUpdate::Upsert {
                route: *r,
                source: RouteSource::Static,
            });
        }
        let gone: Vec<Cidr> = old
            .keys()
            .filter(|c| !new.contains_key(c))
            .copied()
            .collect();
        let removed = gone.len();
        batch.extend(gone.into_iter().map(|pod_cidr| RouteUpdate::Withdraw {
            pod_cidr,
            source: RouteSource::Static,
        }));
        out.push(Action::Log(Note::StaticRoutesReloaded {
            added,
            removed,
            changed,
        }));
        self.apply_batch(batch);
    }

    fn kernel(&mut self, ev: KernelEvent) {
        if !self.started || self.stop.is_some() {
            return;
        }
        let reason = match ev {
            KernelEvent::Link => SyncReason::LinkChanged,
            KernelEvent::Unknown => SyncReason::RouteDeleted,
            // Someone else deleted a route: repair it if weftd wants it
            // (or installed it and has not flushed the change yet).
            KernelEvent::RouteGone(r)
                if self.wanted(r.dst).as_ref() == Some(&r)
                    || self
                        .changed
                        .get(&r.dst)
                        .is_some_and(|o| o.as_ref() == Some(&r)) =>
            {
                SyncReason::RouteDeleted
            }
            KernelEvent::RouteGone(_) => return,
        };
        self.dirty.get_or_insert(reason);
    }

    fn underlay(&mut self, mtu: Option<u32>, out: &mut Vec<Action>) {
        let Some(mtu) = mtu else {
            out.push(Action::Log(Note::UnderlayGone));
            return;
        };
        let changed = mtu != self.underlay_mtu;
        if changed {
            out.push(Action::Log(Note::UnderlayMtuChanged {
                old: self.underlay_mtu,
                new: mtu,
            }));
            self.underlay_mtu = mtu;
        }
        let Some(tun) = self.cfg.tun else { return };
        if changed {
            out.push(Action::SetUnderlayMtu { mtu });
        }
        if (changed || self.tun_mtu_stale) && !tun.fixed_mtu {
            self.tun_mtu_stale = false;
            out.push(Action::SetTunMtu {
                ifindex: tun.ifindex,
                mtu: mtu.saturating_sub(self.cfg.mode.overhead()),
            });
        }
    }

    fn timeout(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self
            .hold
            .as_ref()
            .and_then(|h| h.until)
            .is_some_and(|t| now >= t)
        {
            self.release(Released::RestartTimeOver, out);
        }
        if self.next_resync.is_some_and(|t| now >= t) {
            self.next_resync = None;
            self.dirty.get_or_insert(SyncReason::Periodic);
        }
    }

    /// Ends the stale-route hold: a full sync deletes what BGP did not
    /// relearn (the relearned routes came on the feed before).
    fn release(&mut self, by: Released, out: &mut Vec<Action>) {
        if self.hold.take().is_some() {
            out.push(Action::Log(Note::StaleReleased { by }));
            self.dirty.get_or_insert(SyncReason::StaleReleased);
        }
    }

    fn request_stop(&mut self, plan: StopPlan, out: &mut Vec<Action>) {
        if self.stop.is_none() {
            out.push(Action::Readiness(Readiness::Stopping));
            self.readiness = Readiness::Stopping;
            self.stop = Some(plan);
        }
    }

    /// A full sync failed: stop, removing the routes, with the error.
    fn fail(&mut self, error: String, out: &mut Vec<Action>) {
        out.push(Action::Log(Note::SyncFailed {
            error: error.clone(),
        }));
        match &mut self.stop {
            Some(plan) => {
                plan.keep_routes = false;
                plan.error.get_or_insert(error);
            }
            None => self.request_stop(
                StopPlan {
                    keep_routes: false,
                    error: Some(error),
                },
                out,
            ),
        }
    }

    fn exit(&mut self, out: &mut Vec<Action>) {
        let error = self.stop.as_mut().and_then(|p| p.error.take());
        out.push(Action::Exit { error });
        self.done = true;
    }

    /// Starts the next netlink request, if none is in flight.
    fn step(&mut self, out: &mut Vec<Action>) {
        if self.pending.is_some() || self.done {
            return;
        }
        if let Some(plan) = &self.stop {
            if plan.keep_routes {
                out.push(Action::Log(Note::RoutesKept));
                self.exit(out);
            } else {
                self.pending = Some(Pending::Dump(SyncReason::Stop));
                out.push(Action::DumpRoutes {
                    reason: SyncReason::Stop,
                });
            }
            return;
        }
        if !self.started {
            return;
        }
        if let Some(reason) = self.dirty.take() {
            self.flush_peers(out);
            if self.cfg.tun.is_some() {
                out.push(Action::ReadUnderlay);
            }
            self.pending = Some(Pending::Dump(reason));
            out.push(Action::DumpRoutes { reason });
        } else if !self.changed.is_empty() {
            self.flush(out);
        }
    }

    /// Hands the dataplane the changed pod ranges' next hops.
    fn peer_update(&self, out: &mut Vec<Action>) {
        if self.cfg.tun.is_some() && !self.changed.is_empty() {
            let changes = self
                .changed
                .keys()
                .map(|c| (*c, self.table.next_hop(c)))
                .collect();
            out.push(Action::UpdatePeers { changes });
        }
    }

    /// Before a full sync: the dataplane gets the changes, the kernel gets
    /// them from the diff.
    fn flush_peers(&mut self, out: &mut Vec<Action>) {
        self.peer_update(out);
        self.changed.clear();
    }

    /// Installs the changed pod ranges incrementally.
    fn flush(&mut self, out: &mut Vec<Action>) {
        self.peer_update(out);
        let changed = std::mem::take(&mut self.changed);
        let changes: Vec<RouteChange> = changed
            .into_iter()
            .map(|(c, old)| RouteChange {
                old,
                new: self.wanted(c),
            })
            .collect();
        let ops = change_ops(&changes, self.hold.is_none());
        if !ops.is_empty() {
            self.submit(ApplyKind::Incremental, ops, out);
        }
    }

    fn submit(&mut self, kind: ApplyKind, ops: Vec<RouteOp>, out: &mut Vec<Action>) {
        let installed = ops
            .iter()
            .filter(|o| matches!(o, RouteOp::Replace(_)))
            .count();
        self.pending = Some(Pending::Apply(Applying {
            kind,
            installed,
            removed: ops.len() - installed,
        }));
        out.push(Action::ApplyRoutes { ops });
    }

    fn dumped(
        &mut self,
        now: Duration,
        reason: SyncReason,
        routes: &[KernelRoute],
        out: &mut Vec<Action>,
    ) {
        if reason == SyncReason::Stop {
            let ops = diff(&[], routes);
            if ops.is_empty() {
                self.exit(out);
            } else {
                self.submit(ApplyKind::Stop, ops, out);
            }
            return;
        }
        // Batches that came during the dump are in the table: the diff
        // covers them.
        self.flush_peers(out);
        let desired = desired_routes(&self.table.next_hops(), self.tun_ifindex());
        let mut ops = diff(&desired, routes);
        if self.hold.is_some() {
            ops.retain(|o| matches!(o, RouteOp::Replace(_)));
        }
        if ops.is_empty() {
            self.synced(now, out);
        } else {
            self.submit(ApplyKind::Full, ops, out);
        }
    }

    fn applied(&mut self, now: Duration, a: Applying, out: &mut Vec<Action>) {
        let routes = match a.kind {
            ApplyKind::Stop => 0,
            ApplyKind::Full | ApplyKind::Incremental => self.table.len(),
        };
        out.push(Action::Summary {
            installed: a.installed,
            removed: a.removed,
            routes,
        });
        match a.kind {
            ApplyKind::Full => self.synced(now, out),
            ApplyKind::Incremental => {}
            ApplyKind::Stop => self.exit(out),
        }
    }

    /// A full sync completed.
    fn synced(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.next_resync = Some(now + Duration::from_millis(self.cfg.resync_every_ms));
        if self.readiness == Readiness::Starting {
            self.readiness = Readiness::Ready;
            out.push(Action::Readiness(Readiness::Ready));
        }
    }
}

#[cfg(test)]
mod tests;
