//! The RFC 4271 §8 finite state machine of one peer, as a pure value.
//!
//! No sockets, clocks or tasks: the driver feeds [`Input`]s with the current
//! time into [`Session::handle`] and carries out the returned [`Output`]s;
//! [`Session::poll_timeout`] says when to call again with [`Input::Tick`].
//! A peer may briefly have two TCP connections (ours and theirs); the
//! session tracks both and resolves the collision (RFC 4271 §6.8).

mod timers;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::wire::{
    Capability, DecodeError, Family, GracefulRestart, Message, Notification, Open, RouteRefresh,
    SessionCaps, Update,
};
pub use timers::Backoff;

/// Identifies one TCP connection of a peer; the driver allocates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// RFC 4271 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Refusing connections.
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Waiting for the peer to connect.
    Active,
    /// OPEN sent, waiting for theirs.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Exchanging routes.
    Established,
}

/// Graceful restart settings (RFC 4724).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrConfig {
    /// Restart time we advertise, seconds (≤ 4095).
    pub restart_time: u16,
    /// We are restarting: set the R bit and the F bits on the first session.
    pub restarting: bool,
}

/// Static parameters of a peer session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Our AS.
    pub local_asn: u32,
    /// The peer's AS.
    pub peer_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose, seconds (0, or ≥ 3).
    pub hold_time: u16,
    /// Wait this long between outgoing connection attempts.
    pub connect_retry: Duration,
    /// Never connect out; only accept.
    pub passive: bool,
    /// Families we offer.
    pub families: Vec<Family>,
    /// Graceful restart, if enabled.
    pub graceful_restart: Option<GrConfig>,
    /// Accept IPv4 NLRI with IPv6 next hops (RFC 8950) and say so.
    pub extended_next_hop: bool,
    /// Backoff after failed sessions (jittered, exponential).
    pub backoff: Backoff,
    /// Seed of the jitter generator (the driver passes something random).
    pub seed: u64,
}

/// What was agreed with the peer when the session came up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// Hold time in seconds (0 = no keepalives).
    pub hold_time: u16,
    /// Codec parameters.
    pub caps: SessionCaps,
    /// Families both sides offered.
    pub families: Vec<Family>,
    /// Peer's AS.
    pub peer_asn: u32,
    /// Peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// Same AS on both sides.
    pub ibgp: bool,
    /// Peer accepts IPv4 NLRI with IPv6 next hops.
    pub extended_next_hop: bool,
    /// Peer's graceful restart capability.
    pub peer_gr: Option<GracefulRestart>,
    /// Peer supports ROUTE-REFRESH.
    pub route_refresh: bool,
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownReason {
    /// Manual stop.
    Stopped,
    /// The TCP connection closed or failed.
    ConnectionLost,
    /// The hold timer expired.
    HoldExpired,
    /// The peer sent a NOTIFICATION.
    PeerNotification(Notification),
    /// We sent a NOTIFICATION.
    LocalNotification(Notification),
}

/// Events into the session. Each names the RFC 4271 §8.1 event(s) it stands for.
#[allow(clippy::large_enum_variant)] // messages are moved once, not stored
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Event 1 ManualStart (Event 4 ManualStart_with_PassiveTcpEstablishment when passive).
    Start,
    /// Event 2 ManualStop.
    Stop,
    /// Event 16 Tcp_CR_Acked (`outgoing`) or Event 17 TcpConnectionConfirmed.
    Connected {
        /// The new connection.
        conn: ConnId,
        /// We initiated it.
        outgoing: bool,
    },
    /// Event 18 TcpConnectionFails for the pending outgoing attempt.
    ConnectFailed,
    /// Event 18 TcpConnectionFails on an open connection.
    Closed {
        /// Which connection.
        conn: ConnId,
    },
    /// Events 19 BGPOpen, 25 NotifMsg, 26 KeepAliveMsg, 27 UpdateMsg (and ROUTE-REFRESH).
    Received {
        /// On which connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// Events 21 BGPHeaderErr, 22 BGPOpenMsgErr, 28 UpdateMsgErr.
    Malformed {
        /// On which connection.
        conn: ConnId,
        /// What was wrong.
        error: DecodeError,
    },
    /// Events 9 ConnectRetryTimer_Expires, 10 HoldTimer_Expires,
    /// 11 KeepaliveTimer_Expires (the backoff after a failure is a jittered
    /// ConnectRetryTimer in Active), and the graceful-restart stale timer.
    Tick,
}

/// Actions for the driver and the RIB.
#[allow(clippy::large_enum_variant)] // messages are moved once, not stored
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Open an outgoing TCP connection (abandoning any earlier attempt).
    Connect,
    /// Abandon the pending outgoing attempt.
    CancelConnect,
    /// Send a message on a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: Message,
    },
    /// Close a connection (after flushing what was sent).
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// The session is up on `conn`: advertise the table, then End-of-RIB.
    Established {
        /// Connection.
        conn: ConnId,
        /// What was agreed.
        negotiated: Negotiated,
    },
    /// Routes from the peer.
    Update(Update),
    /// The peer asks for our routes again.
    RouteRefresh(Family),
    /// The session is gone. With `graceful`, keep its routes as stale for
    /// the listed families; else withdraw them all.
    Down {
        /// Why.
        reason: DownReason,
        /// Families whose routes are kept stale (graceful restart helper).
        graceful: Vec<Family>,
    },
    /// Drop the peer's routes of `family` still marked stale (End-of-RIB
    /// received, forwarding state lost, or the restart timer expired).
    FlushStale(Family),
    /// The peer sent End-of-RIB for `family` (RFC 4724 §2): its initial
    /// table of that family is complete. Follows the marker's `Update`.
    EndOfRib(Family),
}

#[derive(Clone, Debug)]
struct Conn {
    id: ConnId,
    outgoing: bool,
    state: State,
    peer_open: Option<Open>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    hold_time: u16,
}

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8: "large value").
const OPEN_HOLD: Duration = Duration::from_secs(240);

/// One peer's session state machine.
#[derive(Clone, Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    conns: Vec<Conn>,
    connect_pending: bool,
    connect_retry: Option<Instant>,
    auto_restart: bool,
    failures: u32,
    rng: u64,
    negotiated: Option<Negotiated>,
    stale: Vec<Family>,
    stale_until: Option<Instant>,
    first_session: bool,
}

impl Session {
    /// A session in Idle; nothing happens until [`Input::Start`].
    pub fn new(cfg: SessionConfig) -> Self {
        let rng = cfg.seed | 1;
        Self {
            cfg,
            state: State::Idle,
            conns: Vec::new(),
            connect_pending: false,
            connect_retry: None,
            auto_restart: false,
            failures: 0,
            rng,
            negotiated: None,
            stale: Vec::new(),
            stale_until: None,
            first_session: true,
        }
    }

    /// The session's RFC 4271 state (the most advanced connection's).
    pub fn state(&self) -> State {
        self.conns
            .iter()
            .map(|c| c.state)
            .max()
            .unwrap_or(self.state)
    }

    /// What was agreed, while Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The connection carrying the established session.
    pub fn established_conn(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|c| c.state == State::Established)
            .map(|c| c.id)
    }

    /// Consecutive failed attempts (drives the backoff).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The earliest time at which [`Input::Tick`] has something to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn_timers = self.conns.iter().flat_map(|c| [c.hold, c.keepalive]);
        [self.connect_retry, self.stale_until]
            .into_iter()
            .chain(conn_timers)
            .flatten()
            .min()
    }

    /// Feeds one event at time `now`; returns what to do, in order.
    #[must_use]
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(now, &mut out),
            Input::Stop => self.stop(&mut out),
            Input::Connected { conn, outgoing } => self.connected(now, conn, outgoing, &mut out),
            Input::ConnectFailed => {
                // Event 18 in Connect: to Active, retry after the (jittered) timer.
                self.connect_pending = false;
                if self.state == State::Connect {
                    self.failures = self.failures.saturating_add(1);
                    self.state = State::Active;
                    self.connect_retry = Some(now + self.retry_delay());
                }
            }
            Input::Closed { conn } => {
                if self.find(conn).is_some() {
                    self.drop_conn(now, conn, DownReason::ConnectionLost, &mut out);
                }
            }
            Input::Received { conn, msg } => self.received(now, conn, msg, &mut out),
            Input::Malformed { conn, error } => {
                if self.find(conn).is_some() {
                    let n = error.notification();
                    if let Some(n) = &n {
                        out.push(Output::Send {
                            conn,
                            msg: Message::Notification(n.clone()),
                        });
                    }
                    let reason =
                        n.map_or(DownReason::ConnectionLost, DownReason::LocalNotification);
                    self.drop_conn(now, conn, reason, &mut out);
                }
            }
            Input::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn find(&self, conn: ConnId) -> Option<usize> {
        self.conns.iter().position(|c| c.id == conn)
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: jitter only, no cryptographic use.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn retry_delay(&mut self) -> Duration {
        let r = self.next_rand();
        let base = self
            .cfg
            .connect_retry
            .max(self.cfg.backoff.delay(self.failures));
        timers::jitter(base, r)
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.auto_restart = true;
        if self.state != State::Idle || !self.conns.is_empty() {
            return;
        }
        if self.cfg.passive {
            // Event 4: wait for the peer.
            self.state = State::Active;
        } else {
            // Event 1 / Event 3: connect out, arm ConnectRetryTimer.
            self.state = State::Connect;
            self.connect_pending = true;
            self.connect_retry = Some(now + self.cfg.connect_retry);
            out.push(Output::Connect);
        }
    }

    fn stop(&mut self, out: &mut Vec<Output>) {
        self.auto_restart = false;
        let was_up = self.negotiated.is_some();
        for c in std::mem::take(&mut self.conns) {
            if c.state >= State::OpenSent {
                out.push(Output::Send {
                    conn: c.id,
                    msg: Message::Notification(Notification::new(6, 2)),
                });
            }
            out.push(Output::Close { conn: c.id });
        }
        if self.connect_pending {
            self.connect_pending = false;
            out.push(Output::CancelConnect);
        }
        self.state = State::Idle;
        self.connect_retry = None;
        self.negotiated = None;
        if was_up || !self.stale.is_empty() {
            self.stale.clear();
            self.stale_until = None;
            out.push(Output::Down {
                reason: DownReason::Stopped,
                graceful: Vec::new(),
            });
        }
    }

    fn our_open(&mut self) -> Open {
        let mut caps = vec![Capability::FourOctetAs(self.cfg.local_asn)];
        for f in &self.cfg.families {
            caps.push(Capability::Multiprotocol {
                afi: f.afi(),
                safi: f.safi(),
            });
        }
        caps.push(Capability::RouteRefresh);
        if self.cfg.extended_next_hop {
            caps.push(Capability::ExtendedNextHop(vec![(1, 1, 2)]));
        }
        if let Some(gr) = self.cfg.graceful_restart {
            let restarting = gr.restarting && self.first_session;
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restarting,
                notification: false,
                restart_time: gr.restart_time.min(4095),
                families: self.cfg.families.iter().map(|f| (*f, restarting)).collect(),
            }));
        }
        Open {
            asn: self.cfg.local_asn,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            caps,
        }
    }

    fn connected(&mut self, now: Instant, conn: ConnId, outgoing: bool, out: &mut Vec<Output>) {
        if outgoing {
            self.connect_pending = false;
        }
        // Idle refuses connections (RFC 4271 §8.2.2); so does a peer that
        // already has two connections.
        if self.state == State::Idle || self.conns.len() >= 2 || self.find(conn).is_some() {
            out.push(Output::Close { conn });
            return;
        }
        self.connect_retry = None;
        let open = self.our_open();
        out.push(Output::Send {
            conn,
            msg: Message::Open(open),
        });
        self.conns.push(Conn {
            id: conn,
            outgoing,
            state: State::OpenSent,
            peer_open: None,
            hold: Some(now + OPEN_HOLD),
            keepalive: None,
            hold_time: 0,
        });
    }

    fn received(&mut self, now: Instant, conn: ConnId, msg: Message, out: &mut Vec<Output>) {
        let Some(i) = self.find(conn) else {
            return;
        };
        let state = self.conns[i].state;
        match (state, msg) {
            (_, Message::Notification(n)) => {
                // Event 25 NotifMsg (Event 24 when it reports a version error).
                info!(code = n.code, subcode = n.subcode, "peer sent NOTIFICATION");
                self.drop_conn(now, conn, DownReason::PeerNotification(n), out);
            }
            (State::OpenSent, Message::Open(open)) => self.open_received(now, i, open, out),
            (State::OpenConfirm, Message::Keepalive) => {
                // Event 26 in OpenConfirm: Established.
                self.conns[i].state = State::Established;
                self.restart_hold(now, i);
                if let Some(negotiated) = self.negotiate(i) {
                    self.failures = 0;
                    self.first_session = false;
                    self.negotiated = Some(negotiated.clone());
                    info!(peer = %negotiated.peer_id, hold = negotiated.hold_time, "session established");
                    let gr_fwd: Vec<Family> = negotiated
                        .peer_gr
                        .as_ref()
                        .map(|g| {
                            g.families
                                .iter()
                                .filter(|(_, f)| *f)
                                .map(|(f, _)| *f)
                                .collect()
                        })
                        .unwrap_or_default();
                    let flush: Vec<Family> = self
                        .stale
                        .iter()
                        .filter(|f| !gr_fwd.contains(f))
                        .copied()
                        .collect();
                    out.push(Output::Established { conn, negotiated });
                    for f in flush {
                        // RFC 4724 §4.2: F bit clear (or GR gone): stale routes go now.
                        self.stale.retain(|s| *s != f);
                        out.push(Output::FlushStale(f));
                    }
                    if self.stale.is_empty() {
                        self.stale_until = None;
                    }
                }
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now, i),
            (State::Established, Message::Update(u)) => {
                // Event 27 UpdateMsg.
                self.restart_hold(now, i);
                let eor = u.end_of_rib();
                if let Some(f) = eor
                    && self.stale.contains(&f)
                {
                    self.stale.retain(|s| *s != f);
                    out.push(Output::FlushStale(f));
                    if self.stale.is_empty() {
                        self.stale_until = None;
                    }
                }
                out.push(Output::Update(u));
                if let Some(f) = eor {
                    out.push(Output::EndOfRib(f));
                }
            }
            (State::Established, Message::RouteRefresh(RouteRefresh { afi, safi, subtype })) => {
                self.restart_hold(now, i);
                if let (Some(f), 0) = (Family::from_afi_safi(afi, safi), subtype) {
                    out.push(Output::RouteRefresh(f));
                }
            }
            (State::OpenConfirm, Message::RouteRefresh(_)) => {}
            (s, _) => {
                // Event 19/26/27 in the wrong state: FSM error (RFC 6608 subcodes).
                let sub = match s {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    State::Established => 3,
                    _ => 0,
                };
                let n = Notification::new(5, sub);
                out.push(Output::Send {
                    conn,
                    msg: Message::Notification(n.clone()),
                });
                self.drop_conn(now, conn, DownReason::LocalNotification(n), out);
            }
        }
    }

    fn open_received(&mut self, now: Instant, i: usize, open: Open, out: &mut Vec<Output>) {
        // Event 19 BGPOpen in OpenSent.
        let conn = self.conns[i].id;
        let reject = if open.asn != self.cfg.peer_asn {
            Some(Notification {
                code: 2,
                subcode: 2,
                data: Vec::new(),
            })
        } else if open.hold_time == 1 || open.hold_time == 2 {
            Some(Notification::new(2, 6))
        } else if open.router_id == self.cfg.router_id && open.asn == self.cfg.local_asn {
            Some(Notification::new(2, 3))
        } else {
            None
        };
        if let Some(n) = reject {
            out.push(Output::Send {
                conn,
                msg: Message::Notification(n.clone()),
            });
            self.drop_conn(now, conn, DownReason::LocalNotification(n), out);
            return;
        }
        // Collision detection (RFC 4271 §6.8) against the other connection.
        if let Some(j) = (0..self.conns.len()).find(|j| *j != i) {
            let other = self.conns[j].clone();
            let peer_restarting_gr = other.state == State::Established
                && self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.peer_gr.is_some());
            if peer_restarting_gr {
                // RFC 4724 §4.2: a new OPEN from a GR peer ends the old session.
                debug!("graceful restart: new connection replaces the established one");
                self.drop_conn(now, other.id, DownReason::ConnectionLost, out);
                return self.open_received(now, self.find(conn).unwrap_or(0), open, out);
            }
            let other_knows_peer = other.state >= State::OpenConfirm;
            if other.state == State::Established || other_knows_peer {
                let keep_new = if other.state == State::Established {
                    false
                } else {
                    // Keep the connection initiated by the higher BGP identifier.
                    let local_higher = u32::from(self.cfg.router_id) > u32::from(open.router_id);
                    self.conns[i].outgoing == local_higher
                };
                let victim = if keep_new { other.id } else { conn };
                let n = Notification::new(6, 7);
                out.push(Output::Send {
                    conn: victim,
                    msg: Message::Notification(n),
                });
                info!("connection collision: closing one with Cease/7");
                out.push(Output::Close { conn: victim });
                self.conns.retain(|c| c.id != victim);
                if !keep_new {
                    return;
                }
            }
        }
        let Some(i) = self.find(conn) else {
            return;
        };
        let hold = self.cfg.hold_time.min(open.hold_time);
        let c = &mut self.conns[i];
        c.hold_time = hold;
        c.peer_open = Some(open);
        c.state = State::OpenConfirm;
        out.push(Output::Send {
            conn,
            msg: Message::Keepalive,
        });
        self.restart_hold(now, i);
        self.arm_keepalive(now, i);
    }

    fn negotiate(&self, i: usize) -> Option<Negotiated> {
        let c = &self.conns[i];
        let open = c.peer_open.as_ref()?;
        let theirs = open.families();
        let families = self
            .cfg
            .families
            .iter()
            .filter(|f| theirs.contains(f))
            .copied()
            .collect();
        Some(Negotiated {
            hold_time: c.hold_time,
            caps: SessionCaps {
                four_octet_as: open.four_octet_as(),
            },
            families,
            peer_asn: open.asn,
            peer_id: open.router_id,
            ibgp: open.asn == self.cfg.local_asn,
            extended_next_hop: self.cfg.extended_next_hop && open.extended_next_hop_v4(),
            peer_gr: open
                .graceful_restart()
                .cloned()
                .filter(|g| g.restart_time > 0),
            route_refresh: open.route_refresh(),
        })
    }

    fn restart_hold(&mut self, now: Instant, i: usize) {
        let c = &mut self.conns[i];
        c.hold = match c.state {
            State::OpenSent => Some(now + OPEN_HOLD),
            _ if c.hold_time == 0 => None,
            _ => Some(now + Duration::from_secs(u64::from(c.hold_time))),
        };
    }

    fn arm_keepalive(&mut self, now: Instant, i: usize) {
        let c = &mut self.conns[i];
        c.keepalive =
            (c.hold_time > 0).then(|| now + Duration::from_secs(u64::from(c.hold_time)) / 3);
    }

    /// Removes a connection; if it carried the session, the session goes
    /// down; if nothing is left, back to Idle with backoff (or Active).
    fn drop_conn(&mut self, now: Instant, conn: ConnId, reason: DownReason, out: &mut Vec<Output>) {
        let Some(i) = self.find(conn) else {
            return;
        };
        let c = self.conns.remove(i);
        out.push(Output::Close { conn });
        if c.state == State::Established {
            let negotiated = self.negotiated.take();
            // Graceful restart helper (RFC 4724 §4.2): on a TCP failure keep
            // the routes of the families the peer listed, for its restart time.
            let gr = negotiated
                .as_ref()
                .and_then(|n| n.peer_gr.clone().map(|g| (g, n.families.clone())));
            // Only when we advertised GR too, and only on a TCP failure: a hold
            // timer expiry withdraws (RFC 8538's N bit is not negotiated).
            let gr = gr.filter(|_| self.cfg.graceful_restart.is_some());
            let graceful = match (&reason, gr) {
                (DownReason::ConnectionLost, Some((g, fams))) => {
                    self.stale_until = Some(now + Duration::from_secs(u64::from(g.restart_time)));
                    g.families
                        .iter()
                        .map(|(f, _)| *f)
                        .filter(|f| fams.contains(f))
                        .collect()
                }
                _ => Vec::new(),
            };
            self.stale = graceful.clone();
            if self.stale.is_empty() {
                self.stale_until = None;
            }
            info!(?reason, ?graceful, "session down");
            out.push(Output::Down { reason, graceful });
        } else {
            debug!(?reason, state = ?c.state, "connection closed before Established");
        }
        if c.state != State::Established {
            // A peer that keeps rejecting us (or dropping us) backs off.
            self.failures = self.failures.saturating_add(1);
        }
        if self.conns.is_empty() && !self.connect_pending {
            self.go_idle(now);
        }
    }

    fn go_idle(&mut self, now: Instant) {
        self.connect_retry = None;
        if !self.auto_restart {
            self.state = State::Idle;
            return;
        }
        // Back to Active: the peer may connect to us at any time (two
        // speakers that both refused while backing off would livelock);
        // our own next attempt waits out the jittered, growing backoff.
        self.state = State::Active;
        if !self.cfg.passive {
            let r = self.next_rand();
            let d = timers::jitter(self.cfg.backoff.delay(self.failures), r);
            self.connect_retry = Some(now + d);
            debug!(
                delay_ms = d.as_millis() as u64,
                failures = self.failures,
                "backing off"
            );
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.stale_until.is_some_and(|t| t <= now) {
            self.stale_until = None;
            for f in std::mem::take(&mut self.stale) {
                out.push(Output::FlushStale(f));
            }
        }
        if self.connect_retry.is_some_and(|t| t <= now) {
            // Event 9 ConnectRetryTimer_Expires.
            self.connect_retry = Some(now + self.retry_delay());
            if matches!(self.state, State::Connect | State::Active) && self.conns.is_empty() {
                self.state = State::Connect;
                self.connect_pending = true;
                out.push(Output::Connect);
            } else {
                self.connect_retry = None;
            }
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            let Some(i) = self.find(id) else { continue };
            if self.conns[i].hold.is_some_and(|t| t <= now) {
                // Event 10 HoldTimer_Expires.
                let n = Notification::new(4, 0);
                out.push(Output::Send {
                    conn: id,
                    msg: Message::Notification(n),
                });
                info!("hold timer expired");
                self.drop_conn(now, id, DownReason::HoldExpired, out);
                continue;
            }
            if self.conns[i].keepalive.is_some_and(|t| t <= now) {
                // Event 11 KeepaliveTimer_Expires.
                out.push(Output::Send {
                    conn: id,
                    msg: Message::Keepalive,
                });
                self.arm_keepalive(now, i);
            }
        }
    }
}

#[cfg(test)]
mod tests;
