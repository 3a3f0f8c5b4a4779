//! Sessions on a virtual clock: the RFC 5880 §6.8.6 state table, timer
//! negotiation with the Poll Sequence, detection time and jitter.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn cfg(disc: u32) -> BfdConfig {
    BfdConfig {
        desired_min_tx: 300 * MS,
        required_min_rx: 300 * MS,
        detect_mult: 3,
        local_disc: disc,
        seed: u64::from(disc) * 7919,
    }
}

fn sent(out: &[Output]) -> Vec<ControlPacket> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(p) => Some(*p),
            Output::StateChange { .. } => None,
        })
        .collect()
}

fn changes(out: &[Output]) -> Vec<(BfdState, BfdState, Diag, bool)> {
    out.iter()
        .filter_map(|o| match *o {
            Output::StateChange {
                from,
                to,
                diag,
                peer_admin_down,
            } => Some((from, to, diag, peer_admin_down)),
            Output::Send(_) => None,
        })
        .collect()
}

/// Two sessions joined by a lossless link (or a cut one), stepped on a
/// virtual clock from timer to timer.
struct Pair {
    now: Instant,
    a: BfdSession,
    b: BfdSession,
    /// Packets from B reach A.
    b_to_a: bool,
    a_sends: Vec<Instant>,
    a_changes: Vec<(Instant, BfdState, BfdState, Diag, bool)>,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            now,
            a: BfdSession::new(cfg(1), now),
            b: BfdSession::new(cfg(2), now),
            b_to_a: true,
            a_sends: Vec::new(),
            a_changes: Vec::new(),
        }
    }

    /// Runs until `until` (virtual time).
    fn run(&mut self, until: Instant) {
        for _ in 0..100_000 {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            let out_a = self.a.handle(self.now, Input::Tick);
            let out_b = self.b.handle(self.now, Input::Tick);
            self.deliver(out_a, out_b);
        }
        panic!("no progress");
    }

    fn deliver(&mut self, mut out_a: Vec<Output>, mut out_b: Vec<Output>) {
        // Deliver until quiet (Finals answer Polls at once).
        for _ in 0..10 {
            if out_a.is_empty() && out_b.is_empty() {
                return;
            }
            for c in changes(&out_a) {
                self.a_changes.push((self.now, c.0, c.1, c.2, c.3));
            }
            let pa = sent(&out_a);
            let pb = sent(&out_b);
            self.a_sends
                .extend(pa.iter().filter(|p| !p.fin).map(|_| self.now));
            out_a = Vec::new();
            out_b = Vec::new();
            for p in pa {
                out_b.extend(self.b.handle(self.now, Input::Received(p)));
            }
            if self.b_to_a {
                for p in pb {
                    out_a.extend(self.a.handle(self.now, Input::Received(p)));
                }
            }
        }
    }
}

#[test]
fn two_sessions_come_up_then_poll_to_the_fast_interval() {
    let mut p = Pair::new();
    let t0 = p.now;
    p.run(t0 + Duration::from_secs(3));
    assert_eq!(p.a.state(), BfdState::Up);
    assert_eq!(p.b.state(), BfdState::Up);
    let ups: Vec<_> = p.a_changes.iter().map(|c| c.2).collect();
    assert_eq!(ups, vec![BfdState::Init, BfdState::Up]);
    // Detection time: 3 × max(300 ms, peer's 300 ms) once the Poll ended.
    assert_eq!(p.a.detection_time(), Some(900 * MS));
    // Periodic packets are now 75–100 % of 300 ms apart.
    let recent: Vec<_> = p
        .a_sends
        .iter()
        .filter(|t| **t > t0 + Duration::from_secs(2))
        .collect();
    assert!(recent.len() >= 3, "{recent:?}");
    for w in recent.windows(2) {
        let gap = *w[1] - *w[0];
        assert!(gap >= 225 * MS && gap <= 300 * MS, "gap {gap:?}");
    }
}

#[test]
fn slow_one_second_tx_until_up() {
    let now = Instant::now();
    let mut s = BfdSession::new(cfg(1), now);
    let first = sent(&s.handle(now, Input::Tick));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].desired_min_tx_us, 1_000_000);
    assert_eq!(first[0].state, BfdState::Down);
    assert_eq!(first[0].your_disc, 0);
    let next = s.poll_timeout().unwrap() - now;
    assert!(next >= 750 * MS && next <= 1000 * MS, "{next:?}");
}

fn peer(state: BfdState, my: u32, your: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state,
        poll: false,
        fin: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_disc: my,
        your_disc: your,
        desired_min_tx_us: 300_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
    }
}

#[test]
fn rfc_5880_state_table() {
    use BfdState::{AdminDown, Down, Init, Up};
    let now = Instant::now();
    // (local state reached by a prefix of packets, received state, expected)
    // Local Down: no packet yet; local Init: after a Down; local Up:
    // after an Init.
    let cases: &[(&[BfdState], BfdState, BfdState)] = &[
        (&[], Down, Init),
        (&[], Init, Up),
        (&[], Up, Down),
        (&[], AdminDown, Down),
        (&[Down], Down, Init),
        (&[Down], Init, Up),
        (&[Down], Up, Up),
        (&[Down], AdminDown, Down),
        (&[Init], Down, Down),
        (&[Init], AdminDown, Down),
        (&[Init], Init, Up),
        (&[Init], Up, Up),
    ];
    for (prefix, rx, want) in cases {
        let mut s = BfdSession::new(cfg(1), now);
        for st in *prefix {
            s.handle(now, Input::Received(peer(*st, 9, 1)));
        }
        s.handle(now, Input::Received(peer(*rx, 9, 1)));
        assert_eq!(s.state(), *want, "after {prefix:?} then {rx}");
    }
}

#[test]
fn peer_admin_down_is_not_a_failure_and_local_admin_down_ignores_packets() {
    let now = Instant::now();
    let mut s = BfdSession::new(cfg(1), now);
    s.handle(now, Input::Received(peer(BfdState::Init, 9, 1)));
    assert_eq!(s.state(), BfdState::Up);
    let out = s.handle(now, Input::Received(peer(BfdState::AdminDown, 9, 1)));
    assert_eq!(
        changes(&out),
        vec![(BfdState::Up, BfdState::Down, Diag::NeighborDown, true)]
    );
    let mut s = BfdSession::new(cfg(1), now);
    let out = s.handle(now, Input::AdminDown);
    assert_eq!(sent(&out)[0].state, BfdState::AdminDown);
    assert_eq!(sent(&out)[0].diag, Diag::AdminDown);
    s.handle(now, Input::Received(peer(BfdState::Init, 9, 1)));
    assert_eq!(s.state(), BfdState::AdminDown);
    s.handle(now, Input::AdminUp);
    assert_eq!(s.state(), BfdState::Down);
}

#[test]
fn a_poll_is_answered_with_a_final_at_once() {
    let now = Instant::now();
    let mut s = BfdSession::new(cfg(1), now);
    let mut p = peer(BfdState::Down, 9, 0);
    p.poll = true;
    let out = sent(&s.handle(now, Input::Received(p)));
    assert_eq!(out.len(), 1);
    assert!(out[0].fin && !out[0].poll);
    assert_eq!(out[0].your_disc, 9);
}

#[test]
fn a_silent_peer_is_declared_down_after_the_detection_time() {
    let mut p = Pair::new();
    let t0 = p.now;
    p.run(t0 + Duration::from_secs(3));
    assert_eq!(p.a.state(), BfdState::Up);
    // B's packets stop reaching A: A must go Down 0.9 s after the last one.
    p.b_to_a = false;
    let cut = p.now;
    p.run(cut + Duration::from_secs(2));
    let down = p
        .a_changes
        .iter()
        .find(|c| c.2 == BfdState::Down)
        .copied()
        .unwrap();
    assert_eq!(down.3, Diag::TimeExpired);
    let after_cut = down.0 - cut;
    assert!(
        after_cut <= 900 * MS && after_cut > 600 * MS,
        "{after_cut:?}"
    );
    assert_eq!(p.a.remote_disc(), 0);
    // Back to the slow rate while Down.
    assert_eq!(p.a.handle(p.now, Input::AdminDown).len(), 2);
}

#[test]
fn detection_uses_the_slower_side_and_its_multiplier() {
    let now = Instant::now();
    let mut s = BfdSession::new(cfg(1), now);
    let mut p = peer(BfdState::Down, 9, 0);
    p.detect_mult = 5;
    p.desired_min_tx_us = 1_000_000;
    s.handle(now, Input::Received(p));
    assert_eq!(s.detection_time(), Some(Duration::from_secs(5)));
    // A peer asking for no packets (Required Min RX 0) gets none.
    p.required_min_rx_us = 0;
    s.handle(now, Input::Received(p));
    assert!(sent(&s.handle(now + Duration::from_secs(2), Input::Tick)).is_empty());
}

#[test]
fn a_polling_peer_that_speeds_up_keeps_its_old_detection_time_until_done() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(cfg(1), t0);
    let mut p = peer(BfdState::Init, 9, 1);
    p.desired_min_tx_us = 1_000_000;
    let _ = s.handle(t0, Input::Received(p));
    assert_eq!(s.state(), BfdState::Up);
    assert_eq!(s.detection_time(), Some(3000 * MS));
    // The peer polls for 300 ms: until it stops polling it may still send
    // at 1 s, so the 3 s detection time stays.
    let mut poll = peer(BfdState::Up, 9, 1);
    poll.desired_min_tx_us = 300_000;
    poll.poll = true;
    let _ = s.handle(t0 + 900 * MS, Input::Received(poll));
    assert_eq!(s.detection_time(), Some(3000 * MS));
    let _ = s.handle(t0 + 1900 * MS, Input::Tick);
    assert_eq!(s.state(), BfdState::Up);
    // Done polling: 3 × 300 ms.
    poll.poll = false;
    let _ = s.handle(t0 + 2000 * MS, Input::Received(poll));
    assert_eq!(s.detection_time(), Some(900 * MS));
}
