//! Two `Session`s wired back to back through the real codec, with a virtual
//! clock (quinn's `Pair`): `step()` advances to the next event or timer,
//! `drive()` runs until a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_bgp::fsm::{
    Backoff, ConnId, DownReason, GrConfig, Input, Output, Session, SessionConfig, State,
};
use weft_bgp::wire::{self, Family, Message, SessionCaps, Update};

const LATENCY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

struct Pair {
    now: Instant,
    a: Session,
    b: Session,
    frozen: Option<Side>,
    /// In-flight inputs: (delivery time, to, input).
    wire: VecDeque<(Instant, Side, Input)>,
    next_conn: u64,
    /// Open connections: (id at A, id at B).
    links: Vec<(ConnId, ConnId)>,
    outputs: Vec<(Side, Output)>,
    connects: [u32; 2],
    caps: SessionCaps,
}

fn cfg(id: u8, asn: u32, peer_asn: u32, hold: u16) -> SessionConfig {
    SessionConfig {
        local_asn: asn,
        peer_asn,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        hold_time: hold,
        connect_retry: Duration::from_secs(5),
        passive: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        graceful_restart: Some(GrConfig {
            restart_time: 60,
            restarting: false,
        }),
        extended_next_hop: false,
        backoff: Backoff::default(),
        seed: u64::from(id) * 7919,
    }
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Self {
        Self {
            now: Instant::now(),
            a: Session::new(a),
            b: Session::new(b),
            frozen: None,
            wire: VecDeque::new(),
            next_conn: 1,
            links: Vec::new(),
            outputs: Vec::new(),
            connects: [0; 2],
            caps: SessionCaps {
                four_octet_as: true,
            },
        }
    }

    fn session(&mut self, s: Side) -> &mut Session {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn peer_conn(&self, from: Side, conn: ConnId) -> Option<ConnId> {
        self.links.iter().find_map(|(a, b)| match from {
            Side::A if *a == conn => Some(*b),
            Side::B if *b == conn => Some(*a),
            _ => None,
        })
    }

    fn input(&mut self, side: Side, input: Input) {
        if self.frozen == Some(side) {
            return;
        }
        let now = self.now;
        let outs = self.session(side).handle(now, input);
        for o in outs {
            self.apply(side, o);
        }
    }

    fn apply(&mut self, side: Side, o: Output) {
        self.outputs.push((side, o.clone()));
        let at = self.now + LATENCY;
        match o {
            Output::Connect => {
                self.connects[side as usize] += 1;
                let (x, y) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
                self.next_conn += 2;
                if self.frozen == Some(side.other()) {
                    // A stopped process still completes the TCP handshake
                    // (the kernel does); it just never answers.
                }
                let (ca, cb) = if side == Side::A { (x, y) } else { (y, x) };
                self.links.push((ca, cb));
                let (mine, theirs) = if side == Side::A { (ca, cb) } else { (cb, ca) };
                self.wire.push_back((
                    at,
                    side,
                    Input::Connected {
                        conn: mine,
                        outgoing: true,
                    },
                ));
                self.wire.push_back((
                    at,
                    side.other(),
                    Input::Connected {
                        conn: theirs,
                        outgoing: false,
                    },
                ));
            }
            Output::Send { conn, msg } => {
                let mut b = Vec::new();
                wire::encode(&msg, &self.caps, &mut b);
                let decoded = wire::decode(&b, &self.caps).unwrap();
                assert_eq!(decoded, msg);
                if let Some(pc) = self.peer_conn(side, conn) {
                    self.wire.push_back((
                        at,
                        side.other(),
                        Input::Received {
                            conn: pc,
                            msg: decoded,
                        },
                    ));
                }
            }
            Output::Close { conn } => {
                if let Some(pc) = self.peer_conn(side, conn) {
                    self.links.retain(|(a, b)| !(*a == conn || *b == conn));
                    self.wire
                        .push_back((at, side.other(), Input::Closed { conn: pc }));
                }
            }
            _ => {}
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let mut t = self.wire.iter().map(|w| w.0).min();
        for (side, s) in [(Side::A, &self.a), (Side::B, &self.b)] {
            if self.frozen == Some(side) {
                continue;
            }
            if let Some(x) = s.poll_timeout() {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        }
        t
    }

    /// Advances the clock to the next event and processes everything due.
    fn step(&mut self) -> bool {
        let Some(t) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(t);
        let due: Vec<_> = {
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest.into();
            due
        };
        for (_, side, input) in due {
            self.input(side, input);
        }
        for side in [Side::A, Side::B] {
            if self
                .session(side)
                .poll_timeout()
                .is_some_and(|x| x <= self.now)
            {
                self.input(side, Input::Tick);
            }
        }
        true
    }

    fn drive_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut steps = 0;
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
            steps += 1;
            assert!(steps < 100_000, "no progress");
        }
        self.now = end;
    }

    fn drive_until(&mut self, limit: Duration, mut f: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while !f(self) {
            match self.next_event() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => return false,
            }
        }
        true
    }

    fn start_both(&mut self) {
        self.input(Side::A, Input::Start);
        self.input(Side::B, Input::Start);
    }

    fn both_established(&self) -> bool {
        self.a.state() == State::Established && self.b.state() == State::Established
    }

    fn count(&self, side: Side, f: impl Fn(&Output) -> bool) -> usize {
        self.outputs
            .iter()
            .filter(|(s, o)| *s == side && f(o))
            .count()
    }
}

#[test]
fn both_sides_active_end_with_one_session() {
    let mut p = Pair::new(cfg(1, 65000, 65000, 9), cfg(2, 65000, 65000, 9));
    p.start_both();
    assert!(p.drive_until(Duration::from_secs(5), Pair::both_established));
    // Collision: exactly one connection survives, the other got Cease/7.
    // Both sides resolve the collision the same way: the connection they
    // close (with Cease/7) is the same one, the other survives.
    let cease7 = |o: &Output| matches!(o, Output::Send { msg: Message::Notification(n), .. } if (n.code, n.subcode) == (6, 7));
    let n = p.count(Side::A, cease7) + p.count(Side::B, cease7);
    assert!((1..=2).contains(&n), "{n} Cease/7");
    assert_eq!(p.links.len(), 1);
    let (ca, cb) = p.links[0];
    assert_eq!(p.a.established_conn(), Some(ca));
    assert_eq!(p.b.established_conn(), Some(cb));
    // And it stays up through ten minutes of keepalives.
    p.drive_for(Duration::from_secs(600));
    assert!(p.both_established());
    assert_eq!(p.count(Side::A, |o| matches!(o, Output::Down { .. })), 0);
}

#[test]
fn hold_time_negotiates_down_to_the_peers() {
    let mut p = Pair::new(cfg(1, 65000, 65000, 9), cfg(2, 65000, 65000, 3));
    p.start_both();
    assert!(p.drive_until(Duration::from_secs(5), Pair::both_established));
    assert_eq!(p.a.negotiated().unwrap().hold_time, 3);
    assert_eq!(p.b.negotiated().unwrap().hold_time, 3);
    p.drive_for(Duration::from_secs(60));
    assert!(p.both_established());
    // Keepalives every second (hold 3 / 3) from each side, roughly.
    let ka = p.count(Side::A, |o| {
        matches!(
            o,
            Output::Send {
                msg: Message::Keepalive,
                ..
            }
        )
    });
    assert!((55..=70).contains(&ka), "{ka} keepalives");
}

#[test]
fn a_frozen_peer_is_torn_down_by_the_hold_timer() {
    let mut a = cfg(1, 65000, 65000, 9);
    a.graceful_restart = None;
    let mut p = Pair::new(a, cfg(2, 65000, 65000, 9));
    p.start_both();
    assert!(p.drive_until(Duration::from_secs(5), Pair::both_established));
    let frozen_at = p.now;
    p.frozen = Some(Side::B);
    assert!(p.drive_until(Duration::from_secs(20), |p| p.a.state()
        != State::Established));
    let took = p.now - frozen_at;
    assert!(
        took <= Duration::from_secs(9) + LATENCY * 2 && took >= Duration::from_secs(6),
        "{took:?}"
    );
    assert!(p.outputs.iter().any(|(s, o)| *s == Side::A
        && matches!(o, Output::Down { reason: DownReason::HoldExpired, graceful } if graceful.is_empty())));
}

#[test]
fn a_restarted_peer_re_establishes() {
    let mut p = Pair::new(cfg(1, 65000, 65000, 9), cfg(2, 65000, 65000, 9));
    p.start_both();
    assert!(p.drive_until(Duration::from_secs(5), Pair::both_established));
    p.input(Side::B, Input::Stop);
    assert!(p.drive_until(Duration::from_secs(1), |p| p.a.state()
        != State::Established));
    p.input(Side::B, Input::Start);
    assert!(p.drive_until(Duration::from_secs(120), Pair::both_established));
}

#[test]
fn a_peer_that_keeps_rejecting_us_sees_bounded_retries() {
    // B expects another AS, so it answers every OPEN with 2/2.
    let mut p = Pair::new(cfg(1, 65000, 65000, 9), cfg(2, 65000, 65111, 9));
    p.input(Side::A, Input::Start);
    p.input(Side::B, Input::Start);
    p.drive_for(Duration::from_secs(600));
    assert!(!p.both_established());
    let a = p.connects[0];
    // Backoff 1,2,4,...,60 s: about 14 attempts in 10 minutes, never hundreds.
    assert!((5..=25).contains(&a), "{a} connects");
}

#[test]
fn gr_helper_keeps_routes_until_end_of_rib() {
    let mut p = Pair::new(cfg(1, 65000, 65000, 9), cfg(2, 65000, 65000, 9));
    p.start_both();
    assert!(p.drive_until(Duration::from_secs(5), Pair::both_established));
    // B's process restarts: its TCP connection dies without NOTIFICATION,
    // and the new B advertises R and F bits (forwarding state kept).
    let (ca, _) = p.links[0];
    p.links.clear();
    p.input(Side::A, Input::Closed { conn: ca });
    let mut restarted = cfg(2, 65000, 65000, 9);
    restarted.graceful_restart = Some(GrConfig {
        restart_time: 60,
        restarting: true,
    });
    p.b = Session::new(restarted);
    p.input(Side::B, Input::Start);
    assert!(
        p.outputs.iter().any(|(s, o)| *s == Side::A
            && matches!(o, Output::Down { graceful, .. } if graceful.len() == 2))
    );
    assert!(p.drive_until(Duration::from_secs(120), Pair::both_established));
    // B re-advertises and ends with End-of-RIB for IPv4: A flushes IPv4 stale.
    let conn = p.b.established_conn().unwrap();
    p.apply(
        Side::B,
        Output::Send {
            conn,
            msg: Message::Update(Update::eor(Family::Ipv4Unicast)),
        },
    );
    p.drive_for(Duration::from_millis(50));
    assert_eq!(
        p.count(Side::A, |o| matches!(
            o,
            Output::FlushStale(Family::Ipv4Unicast)
        )),
        1
    );
    assert_eq!(
        p.count(Side::A, |o| matches!(
            o,
            Output::FlushStale(Family::Ipv6Unicast)
        )),
        0
    );
    // IPv6 never got its End-of-RIB: the restart timer (60 s) flushes it.
    p.drive_for(Duration::from_secs(61));
    assert_eq!(
        p.count(Side::A, |o| matches!(
            o,
            Output::FlushStale(Family::Ipv6Unicast)
        )),
        1
    );
}
