//! The public handle: [`Speaker::spawn`] starts the listener and one task per
//! peer; [`SpeakerHandle`] announces and withdraws our prefixes; route
//! changes arrive on the returned channel in batches.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, info, info_span, warn};

use crate::bfd::BfdState;
use crate::bfd::driver::{self as bfd_driver, BFD_PORT, BfdEvent, BfdHandle, BfdTimers};
use crate::config::{PeerConfig, SpeakerConfig, parse_community};
use crate::driver::{PeerCmd, PeerEvent, Task, listener};
use crate::error::Error;
use crate::fsm::{DownReason, Negotiated, State};
use crate::policy::{self, ExportPolicy, ImportPolicy, Loops, Source};
use crate::prefix::Prefix;
use crate::rib::{self, Change, MAX_PATHS, PeerInfo, PeerKey, Rib, RouteEvent};
use crate::wire::{self, Family, MpNextHop, PathAttrs, Update};

mod export;
mod membership;
mod stats;

use membership::{PeerDefaults, spawn_peer};
use stats::PeerStats;
pub use stats::{Direction, NotificationCount, PeerKind, PeerStatus};

/// Most route events in one batch on the consumer channel.
const EVENT_BATCH: usize = 2048;
/// Event batches held for a slow consumer before peers are throttled.
const OUT_QUEUE: usize = 1;

enum Command {
    Announce(Vec<Prefix>),
    Withdraw(Vec<Prefix>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    AddPeer(PeerConfig, oneshot::Sender<Result<(), Error>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), Error>>),
    Shutdown {
        graceful: bool,
        done: oneshot::Sender<()>,
    },
}

/// Handle to a running speaker. Dropping every handle shuts it down.
#[derive(Clone, Debug)]
pub struct SpeakerHandle {
    tx: mpsc::Sender<Command>,
    listening: Vec<SocketAddr>,
}

/// Namespace for [`Speaker::spawn`].
#[derive(Debug)]
pub struct Speaker;

impl Speaker {
    /// Validates `cfg`, binds the listening sockets and starts every peer.
    /// Must run inside a tokio runtime. Route changes come out of the
    /// receiver in batches (one per burst of UPDATEs, at most 2048 events).
    pub fn spawn(
        cfg: SpeakerConfig,
    ) -> Result<(SpeakerHandle, mpsc::Receiver<Vec<RouteEvent>>), Error> {
        let errs = cfg.bgp.validate();
        if !errs.is_empty() {
            return Err(Error::Config(errs));
        }
        // Few batches of at most EVENT_BATCH queue up: a full table streams
        // through in bounded pieces instead of piling up in the channel.
        let (events_tx, events_rx) = mpsc::channel(4);
        let (peer_tx, peer_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let b = &cfg.bgp;
        let cluster_id = b.cluster_id.unwrap_or(cfg.router_id);
        let random = RandomState::new();

        let mut peers = Vec::new();
        let mut by_addr = HashMap::new();
        let mut keys = Vec::new();
        let defaults = PeerDefaults {
            bgp: b,
            router_id: cfg.router_id,
            restarting: cfg.restarting,
            max_backoff: cfg.max_backoff,
        };
        for (i, pc) in b.peers.iter().enumerate() {
            let key = PeerKey(u32::try_from(i).unwrap_or(u32::MAX));
            if let Some(p) = &pc.password {
                keys.push((pc.address, p.clone()));
            }
            let slot = spawn_peer(
                &defaults,
                key,
                pc,
                random.hash_one((i, pc.address)),
                peer_tx.clone(),
            );
            by_addr.insert(pc.address.to_canonical(), slot.cmd.clone());
            peers.push(slot);
        }
        let next_key = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        let (routes, routes_rx) = watch::channel(by_addr);

        let bfd = if b.peers.iter().any(|p| p.bfd) {
            let (h, rx) = bfd_driver::spawn(
                BfdTimers {
                    interval: Duration::from_millis(u64::from(b.bfd.interval_ms)),
                    multiplier: b.bfd.multiplier,
                },
                BFD_PORT,
            )
            .map_err(Error::Bfd)?;
            for p in b.peers.iter().filter(|p| p.bfd) {
                h.add(p.address);
            }
            Some((h, rx))
        } else {
            None
        };

        let mut listeners = Vec::new();
        let mut listening = Vec::new();
        let mut listen_socks = Vec::new();
        if b.listen_port != 0 {
            let mut addrs = b.listen_addresses.clone();
            if addrs.is_empty() {
                addrs.push(IpAddr::from([0, 0, 0, 0]));
                if b.peers.iter().any(|p| p.address.is_ipv6()) {
                    addrs.push(IpAddr::from([0u16; 8]));
                }
            }
            for a in addrs {
                // The listener's TTL floor applies to every connection on
                // it: set only when every peer of its family uses GTSM.
                let family: Vec<_> = b
                    .peers
                    .iter()
                    .filter(|p| p.address.to_canonical().is_ipv6() == a.is_ipv6())
                    .collect();
                let gtsm = !family.is_empty() && family.iter().all(|p| p.ttl_security);
                let l = listener::bind(SocketAddr::new(a, b.listen_port), &keys, gtsm)?;
                listening.push(l.local_addr().map_err(|source| Error::Listen {
                    addr: SocketAddr::new(a, b.listen_port),
                    source,
                })?);
                // A second descriptor of the socket, for the MD5 keys of
                // peers added later.
                let dup = l
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| Error::Listen {
                        addr: SocketAddr::new(a, b.listen_port),
                        source,
                    })?;
                listen_socks.push((
                    SocketAddr::new(a, b.listen_port),
                    socket2::Socket::from(dup),
                ));
                listeners.push(Task(tokio::spawn(listener::run(l, routes_rx.clone()))));
            }
        }

        let export = ExportPolicy {
            communities: b
                .communities
                .iter()
                .filter_map(|c| parse_community(c))
                .collect(),
            large_communities: Vec::new(),
        };
        let rr = b.peers.iter().any(|p| p.route_reflector_client);
        let task = SpeakerTask {
            rib: Rib::with_max_paths(
                ImportPolicy {
                    allow: cfg.import.clone(),
                },
                Loops {
                    local_asn: b.asn,
                    router_id: cfg.router_id,
                    cluster_id,
                },
                if b.multipath { MAX_PATHS } else { 1 },
            ),
            cfg,
            cluster_id,
            export,
            rr,
            local: BTreeSet::new(),
            peers,
            events: events_tx,
            markers: Vec::new(),
            out: VecDeque::new(),
            listeners,
            listen_socks,
            routes,
            peer_tx,
            next_key,
            random,
            bfd: bfd.as_ref().map(|(h, _)| h.clone()),
        };
        let bfd_rx = bfd.map(|(_, rx)| rx);
        tokio::spawn(
            task.run(cmd_rx, peer_rx, bfd_rx)
                .instrument(info_span!("bgp")),
        );
        Ok((
            SpeakerHandle {
                tx: cmd_tx,
                listening,
            },
            events_rx,
        ))
    }
}

impl SpeakerHandle {
    /// Starts advertising `prefixes` (our pod CIDRs) to every peer.
    pub async fn announce(&self, prefixes: Vec<Prefix>) -> Result<(), Error> {
        self.tx
            .send(Command::Announce(prefixes))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Stops advertising `prefixes`.
    pub async fn withdraw(&self, prefixes: Vec<Prefix>) -> Result<(), Error> {
        self.tx
            .send(Command::Withdraw(prefixes))
            .await
            .map_err(|_| Error::Closed)
    }

    /// The state of every configured peer.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Peers(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Adds a peer while the speaker runs (the other sessions are not
    /// touched); its session starts as a configured peer's does.
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::AddPeer(peer, tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Removes a peer while the speaker runs: its session ends with a
    /// Cease NOTIFICATION and the routes learned from it are withdrawn.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::RemovePeer(address, tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stops every session and waits for the tasks. With `graceful`, the
    /// TCP connections close without a NOTIFICATION, so peers that help
    /// with graceful restart keep our routes until we are back.
    pub async fn shutdown(&self, graceful: bool) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Shutdown { graceful, done })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The addresses the listener is bound to (useful with port 0).
    pub fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }
}

struct PeerSlot {
    cfg: PeerConfig,
    key: PeerKey,
    cmd: mpsc::Sender<PeerCmd>,
    task: Option<tokio::task::JoinHandle<()>>,
    info: Option<PeerInfo>,
    last_info: Option<PeerInfo>,
    negotiated: Option<Negotiated>,
    local: Option<IpAddr>,
    state: State,
    adj_out: HashSet<Prefix>,
    last_error: Option<String>,
    /// Families the peer sent End-of-RIB for in this session.
    eor: Vec<Family>,
    /// BFD state, when BFD runs with this peer.
    bfd: Option<BfdState>,
    /// The session is being reset because BFD went down.
    bfd_reset: bool,
    stats: PeerStats,
}

struct SpeakerTask {
    cfg: SpeakerConfig,
    rib: Rib,
    cluster_id: Ipv4Addr,
    export: ExportPolicy,
    rr: bool,
    local: BTreeSet<Prefix>,
    peers: Vec<PeerSlot>,
    events: mpsc::Sender<Vec<RouteEvent>>,
    /// End-of-RIB events waiting for the route changes before them.
    markers: Vec<RouteEvent>,
    /// Event batches the consumer has not taken yet. While it holds
    /// `OUT_QUEUE` batches, peer events wait (backpressure), but commands
    /// (status, announce, shutdown) are still served.
    out: VecDeque<Vec<RouteEvent>>,
    listeners: Vec<Task>,
    /// Second descriptors of the listening sockets (MD5 keys of peers
    /// added later), with their addresses.
    listen_socks: Vec<(SocketAddr, socket2::Socket)>,
    /// The listeners' map of peer address to peer task.
    routes: watch::Sender<HashMap<IpAddr, mpsc::Sender<PeerCmd>>>,
    /// For the tasks of peers added later.
    peer_tx: mpsc::Sender<PeerEvent>,
    /// The key of the next peer added (keys are never reused).
    next_key: u32,
    random: RandomState,
    /// The BFD driver (keeps it running while the speaker runs).
    bfd: Option<BfdHandle>,
}

impl SpeakerTask {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut peer_rx: mpsc::Receiver<PeerEvent>,
        mut bfd_rx: Option<mpsc::UnboundedReceiver<BfdEvent>>,
    ) {
        let events = self.events.clone();
        loop {
            let (ready, room) = (!self.out.is_empty(), self.out.len() < OUT_QUEUE);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Command::Announce(p)) => self.announce(p).await,
                    Some(Command::Withdraw(p)) => self.withdraw(p).await,
                    Some(Command::Peers(tx)) => {
                        let _ = tx.send(self.status());
                    }
                    Some(Command::AddPeer(pc, done)) => {
                        let _ = done.send(self.add_peer(pc));
                    }
                    Some(Command::RemovePeer(addr, done)) => {
                        let r = match self.remove_peer(addr).await {
                            Ok(changes) => {
                                self.publish(changes).await;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        };
                        let _ = done.send(r);
                    }
                    Some(Command::Shutdown { graceful, done }) => {
                        self.shutdown(graceful).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown(false).await;
                        return;
                    }
                },
                Some(ev) = recv_bfd(bfd_rx.as_mut()) => self.bfd_event(ev).await,
                permit = events.reserve(), if ready => {
                    if let (Ok(permit), Some(batch)) = (permit, self.out.pop_front()) {
                        permit.send(batch);
                    } else {
                        // The consumer is gone: nothing will take them.
                        self.out.clear();
                    }
                }
                Some(ev) = peer_rx.recv(), if room => {
                    // Batch: everything already queued becomes one event list.
                    let mut changes = Vec::new();
                    self.peer_event(ev, &mut changes).await;
                    let mut n = 0;
                    while n < 512 && changes.len() < EVENT_BATCH {
                        match peer_rx.try_recv() {
                            Ok(ev) => self.peer_event(ev, &mut changes).await,
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    self.publish(changes).await;
                }
            }
        }
    }

    /// Queues `changes` for the consumer, then any End-of-RIB markers
    /// (after the routes they close).
    async fn publish(&mut self, changes: Vec<Change>) {
        if !changes.is_empty() {
            if self.rr {
                self.reflect_changes(&changes).await;
            }
            for chunk in changes.chunks(EVENT_BATCH) {
                let ev = rib::events(chunk);
                if !ev.is_empty() {
                    self.out.push_back(ev);
                }
            }
        }
        if !self.markers.is_empty() {
            let m = std::mem::take(&mut self.markers);
            self.out.push_back(m);
        }
    }

    async fn shutdown(&mut self, graceful: bool) {
        for p in &self.peers {
            let _ = p.cmd.send(PeerCmd::Stop { graceful }).await;
        }
        for p in &mut self.peers {
            if let Some(t) = p.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
            }
        }
        self.listeners.clear();
    }

    fn status(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        self.peers
            .iter()
            .map(|p| PeerStatus {
                address: p.cfg.address,
                asn: p.cfg.asn,
                kind: PeerKind::of(self.cfg.bgp.asn, p.cfg.asn, p.cfg.route_reflector_client),
                state: p.state,
                state_for: now.saturating_duration_since(p.stats.since),
                prefixes_received: p.stats.prefixes_received(),
                routes_received: self.rib.received(p.key),
                routes_advertised: p.adj_out.len(),
                updates_received: p.stats.updates_received(),
                notifications: p.stats.notifications(),
                end_of_rib: p.state == State::Established
                    && p.negotiated
                        .as_ref()
                        .is_some_and(|n| n.families.iter().all(|f| p.eor.contains(f))),
                last_error: p.last_error.clone(),
                bfd: p.bfd,
            })
            .collect()
    }

    async fn peer_event(&mut self, ev: PeerEvent, changes: &mut Vec<Change>) {
        match ev {
            PeerEvent::State(key, st) => {
                if let Some(p) = self.slot(key) {
                    p.stats.state(p.state, st, Instant::now());
                    p.state = st;
                }
            }
            PeerEvent::Established {
                key,
                negotiated,
                local,
            } => {
                let Some(p) = self.slot(key) else { return };
                let info = PeerInfo {
                    key,
                    addr: p.cfg.address,
                    router_id: negotiated.peer_id,
                    asn: negotiated.peer_asn,
                    ebgp: !negotiated.ibgp,
                    rr_client: p.cfg.route_reflector_client,
                };
                info!(peer = %p.cfg.address, ?local, families = ?negotiated.families, "established");
                p.info = Some(info.clone());
                p.last_info = Some(info);
                p.negotiated = Some(negotiated);
                p.local = Some(local);
                p.stats.state(p.state, State::Established, Instant::now());
                p.state = State::Established;
                p.adj_out.clear();
                p.eor.clear();
                self.export_table(key, None).await;
            }
            PeerEvent::Updates(key, updates) => {
                let Some(p) = self.slot(key) else { return };
                for u in &updates {
                    p.stats.update(u);
                }
                let Some(info) = p.info.clone() else {
                    return;
                };
                for u in &updates {
                    changes.extend(self.rib.apply_update(&info, u));
                    if changes.len() >= EVENT_BATCH {
                        self.publish(std::mem::take(changes)).await;
                    }
                }
            }
            PeerEvent::Down {
                key,
                reason,
                graceful,
            } => {
                let Some(p) = self.slot(key) else { return };
                p.info = None;
                p.negotiated = None;
                p.adj_out.clear();
                p.stats.down(&reason);
                let bfd_reset = std::mem::take(&mut p.bfd_reset);
                if !(bfd_reset && reason == DownReason::Stopped) {
                    p.last_error = Some(match &reason {
                        DownReason::PeerNotification(n) => {
                            format!("peer sent NOTIFICATION {}/{}", n.code, n.subcode)
                        }
                        DownReason::LocalNotification(n) => {
                            format!("sent NOTIFICATION {}/{}", n.code, n.subcode)
                        }
                        r => format!("{r:?}"),
                    });
                }
                if graceful.is_empty() {
                    changes.extend(self.rib.peer_down(key));
                } else {
                    changes.extend(self.rib.peer_restarting(key, &graceful));
                }
            }
            PeerEvent::FlushStale(key, f) => changes.extend(self.rib.flush_stale(key, f)),
            PeerEvent::EndOfRib(key, family) => {
                let Some(p) = self.slot(key) else { return };
                if !p.eor.contains(&family) {
                    p.eor.push(family);
                }
                let complete = p
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.families.iter().all(|f| p.eor.contains(f)));
                info!(peer = %p.cfg.address, ?family, complete, "End-of-RIB received");
                let ev = RouteEvent::EndOfRib {
                    peer: p.cfg.address,
                    family,
                    complete,
                };
                self.markers.push(ev);
            }
            PeerEvent::RouteRefresh(key, family) => self.export_table(key, Some(family)).await,
        }
    }

    /// A BFD state change: a failure (Up to Down, not the peer's
    /// AdminDown) takes the peer's BGP session down at once.
    async fn bfd_event(&mut self, ev: BfdEvent) {
        let Some(p) = self
            .peers
            .iter_mut()
            .find(|p| p.cfg.address.to_canonical() == ev.peer)
        else {
            return;
        };
        p.bfd = Some(ev.to);
        if ev.is_failure() {
            warn!(peer = %ev.peer, diag = ?ev.diag, "BFD down: dropping the BGP session");
            p.last_error = Some(format!("BFD down ({:?})", ev.diag));
            p.bfd_reset = true;
            let _ = p.cmd.send(PeerCmd::BfdDown).await;
        }
    }

    fn slot(&mut self, key: PeerKey) -> Option<&mut PeerSlot> {
        self.peers.iter_mut().find(|p| p.key == key)
    }
}

async fn recv_bfd(rx: Option<&mut mpsc::UnboundedReceiver<BfdEvent>>) -> Option<BfdEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
