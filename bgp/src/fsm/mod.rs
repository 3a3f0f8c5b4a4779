//! The RFC 4271 §8 finite state machine of one peer, as a pure value.
//!
//! No sockets, clocks or tasks: the driver feeds [`Input`]s with the current
//! time into [`Session::handle`] and carries out the returned [`Output`]s;
//! [`Session::poll_timeout`] says when to call again with [`Input::Tick`].
//! A peer may briefly have two TCP connections (ours and theirs); the
//! session tracks both and resolves the collision (RFC 4271 §6.8).

mod open;
mod timers;
mod types;

use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::wire::{
    Capability, Family, GracefulRestart, Message, Notification, Open, RouteRefresh, SessionCaps,
};
pub use timers::Backoff;
pub use types::{ConnId, DownReason, GrConfig, Input, Negotiated, Output, SessionConfig, State};

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

    /// The earliest KEEPALIVE due on any connection.
    #[must_use]
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        self.conns.iter().filter_map(|c| c.keepalive).min()
    }

    /// For a driver that is waiting on its consumer and meanwhile does not
    /// read the peer: sends the KEEPALIVEs due by `now` so the peer's hold
    /// timer does not expire, and restarts our own hold timers, since the
    /// peer's messages are waiting unread on our side: the silence is ours.
    /// Only `Output::Send` of KEEPALIVEs comes out; nothing else changes.
    #[must_use]
    pub fn backpressured(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        for i in 0..self.conns.len() {
            if self.conns[i].hold.is_some() {
                self.restart_hold(now, i);
            }
            if self.conns[i].keepalive.is_some_and(|t| t <= now) {
                out.push(Output::Send {
                    conn: self.conns[i].id,
                    msg: Message::Keepalive,
                });
                self.arm_keepalive(now, i);
            }
        }
        out
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
