//! Per-peer statistics the speaker keeps for status queries and metrics:
//! prefixes the peer announces (before import policy), UPDATEs received,
//! NOTIFICATIONs by direction and code, and when the state last changed;
//! and [`PeerStatus`], a peer as the speaker's status query reports it.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bfd::BfdState;
use crate::fsm::{DownReason, State};
use crate::prefix::Prefix;
use crate::wire::Update;

/// A peer as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerStatus {
    /// Peer address.
    pub address: IpAddr,
    /// Peer AS.
    pub asn: u32,
    /// iBGP, eBGP or iBGP to a route-reflector client.
    pub kind: PeerKind,
    /// Session state.
    pub state: State,
    /// How long the session has been in `state`.
    pub state_for: Duration,
    /// Prefixes the peer announces now, before import policy.
    pub prefixes_received: usize,
    /// Routes accepted from the peer (import policy and loop checks passed).
    pub routes_received: usize,
    /// Prefixes we advertise to it.
    pub routes_advertised: usize,
    /// UPDATE messages received since the speaker started.
    pub updates_received: u64,
    /// NOTIFICATIONs sent and received since the speaker started.
    pub notifications: Vec<NotificationCount>,
    /// The peer sent End-of-RIB for every family of the current session.
    pub end_of_rib: bool,
    /// Last reason the session went down.
    pub last_error: Option<String>,
    /// BFD session state, when BFD runs with this peer.
    pub bfd: Option<BfdState>,
}

/// Which way a NOTIFICATION went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We sent it.
    Sent,
    /// The peer sent it.
    Received,
}

impl Direction {
    /// `sent` or `received`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
        }
    }
}

/// How many NOTIFICATIONs with one error code went one way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NotificationCount {
    /// Sent or received.
    pub direction: Direction,
    /// The error code (RFC 4271 §4.5).
    pub code: u8,
    /// How many since the speaker started.
    pub count: u64,
}

/// The kind of session, as `birdc`/`calicoctl` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    /// Internal BGP (same AS).
    Ibgp,
    /// External BGP.
    Ebgp,
    /// Internal BGP to a route-reflector client of ours.
    RrClient,
}

impl PeerKind {
    /// The kind for a peer in `peer_asn` seen from `local_asn`.
    pub fn of(local_asn: u32, peer_asn: u32, rr_client: bool) -> Self {
        match (local_asn == peer_asn, rr_client) {
            (false, _) => Self::Ebgp,
            (true, true) => Self::RrClient,
            (true, false) => Self::Ibgp,
        }
    }
}

/// One peer's counters (owned by the speaker task).
#[derive(Debug)]
pub(super) struct PeerStats {
    /// Prefixes the peer announces now, accepted or not.
    received: HashSet<Prefix>,
    updates: u64,
    notifications: BTreeMap<(Direction, u8), u64>,
    /// When the session entered its current state.
    pub(super) since: Instant,
}

impl PeerStats {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            received: HashSet::new(),
            updates: 0,
            notifications: BTreeMap::new(),
            since: now,
        }
    }

    /// The session moved from `old` to `new` at `now`.
    pub(super) fn state(&mut self, old: State, new: State, now: Instant) {
        if old != new {
            self.since = now;
        }
    }

    /// An UPDATE arrived (End-of-RIB markers included).
    pub(super) fn update(&mut self, u: &Update) {
        self.updates += 1;
        for p in u.withdrawn_all() {
            self.received.remove(&p);
        }
        for (p, _) in u.announced() {
            self.received.insert(p);
        }
    }

    /// The session went down: the peer's prefixes are gone; a
    /// NOTIFICATION is counted.
    pub(super) fn down(&mut self, reason: &DownReason) {
        self.received.clear();
        let (dir, code) = match reason {
            DownReason::PeerNotification(n) => (Direction::Received, n.code),
            DownReason::LocalNotification(n) => (Direction::Sent, n.code),
            _ => return,
        };
        *self.notifications.entry((dir, code)).or_default() += 1;
    }

    pub(super) fn prefixes_received(&self) -> usize {
        self.received.len()
    }

    pub(super) fn updates_received(&self) -> u64 {
        self.updates
    }

    pub(super) fn notifications(&self) -> Vec<NotificationCount> {
        self.notifications
            .iter()
            .map(|(&(direction, code), &count)| NotificationCount {
                direction,
                code,
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Notification;

    #[test]
    fn kinds() {
        assert_eq!(PeerKind::of(1, 1, false), PeerKind::Ibgp);
        assert_eq!(PeerKind::of(1, 1, true), PeerKind::RrClient);
        assert_eq!(PeerKind::of(1, 2, true), PeerKind::Ebgp);
    }

    #[test]
    fn counts_updates_prefixes_and_notifications() {
        let now = Instant::now();
        let mut s = PeerStats::new(now);
        let p: Prefix = "10.1.0.0/24".parse().unwrap_or_else(|_| unreachable!());
        let mut u = Update {
            nlri: vec![p],
            ..Update::default()
        };
        u.attrs.next_hop = Some(std::net::Ipv4Addr::new(10, 0, 0, 1));
        s.update(&u);
        s.update(&u);
        assert_eq!((s.updates_received(), s.prefixes_received()), (2, 1));
        let w = Update {
            withdrawn: vec![p],
            ..Update::default()
        };
        s.update(&w);
        assert_eq!(s.prefixes_received(), 0);
        s.update(&u);
        s.down(&DownReason::PeerNotification(Notification::new(6, 2)));
        s.down(&DownReason::PeerNotification(Notification::new(6, 4)));
        s.down(&DownReason::LocalNotification(Notification::new(4, 0)));
        s.down(&DownReason::HoldExpired);
        assert_eq!(s.prefixes_received(), 0);
        let n = s.notifications();
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].direction, n[0].code, n[0].count),
            (Direction::Sent, 4, 1)
        );
        assert_eq!(
            (n[1].direction, n[1].code, n[1].count),
            (Direction::Received, 6, 2)
        );
        let later = now + std::time::Duration::from_secs(1);
        s.state(State::Idle, State::Idle, later);
        assert_eq!(s.since, now);
        s.state(State::Idle, State::Connect, later);
        assert_eq!(s.since, later);
    }
}
