//! The dataplane's counters, through the `metrics` facade. Workers count
//! into plain local arrays and flush them once per batch; a flush touches
//! only the peers that carried packets since the last one, and a peer's
//! counter handles are registered the first time it carries any, so
//! neither costs more with 10 000 peers than with 2.
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `weft_dataplane_tx_packets_total` | peer | inner packets encapsulated to a peer |
//! | `weft_dataplane_tx_bytes_total` | peer | their inner bytes |
//! | `weft_dataplane_rx_packets_total` | peer | inner packets accepted from a peer |
//! | `weft_dataplane_rx_bytes_total` | peer | their inner bytes |
//! | `weft_dataplane_drops_total` | reason | packets dropped, by reason |
//! | `weft_dataplane_peer_drops_total` | peer | drops of packets from a known peer |
//! | `weft_dataplane_icmp_too_big_total` | | ICMP too-big replies sent to pods |
//! | `weft_routes_installed` (gauge) | | pod ranges weftd routes in the kernel (set by the driver) |
//! | `weft_router_bgp_gateways` (gauge) | | distinct BGP next hops and next-hop sets |

use std::net::Ipv4Addr;

use metrics::{Counter, counter};
use weft_encap::DecapError;

use super::peer_table::{PeerTable, Refusal};

use crate::FastMap;

/// Inner packets sent per peer.
pub const TX_PACKETS: &str = "weft_dataplane_tx_packets_total";
/// Inner bytes sent per peer.
pub const TX_BYTES: &str = "weft_dataplane_tx_bytes_total";
/// Inner packets received per peer.
pub const RX_PACKETS: &str = "weft_dataplane_rx_packets_total";
/// Inner bytes received per peer.
pub const RX_BYTES: &str = "weft_dataplane_rx_bytes_total";
/// Drops by reason.
pub const DROPS: &str = "weft_dataplane_drops_total";
/// Drops of packets from a known peer.
pub const PEER_DROPS: &str = "weft_dataplane_peer_drops_total";
/// ICMP too-big replies sent.
pub const ICMP_TOO_BIG: &str = "weft_dataplane_icmp_too_big_total";

/// Drop reasons of weftd's own (the codec's follow them).
pub const OWN_REASONS: [&str; 12] = [
    "unknown_peer",
    "spoofed_source",
    "foreign_destination",
    "no_route",
    "too_big",
    "tun_error",
    "send_error",
    "encap_error",
    "no_key",
    "wg_invalid",
    "wg_replay",
    "wg_cookie",
];

/// Index of a drop reason in [`all_reasons`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(usize);

impl Reason {
    /// Outer source is not a peer.
    pub const UNKNOWN_PEER: Self = Self(0);
    /// Inner source outside the peer's pod ranges.
    pub const SPOOFED_SOURCE: Self = Self(1);
    /// Inner destination outside this node's pods.
    pub const FOREIGN_DESTINATION: Self = Self(2);
    /// No peer for an egress destination.
    pub const NO_ROUTE: Self = Self(3);
    /// Packet larger than the tunnel allows.
    pub const TOO_BIG: Self = Self(4);
    /// Reading or writing the TUN failed.
    pub const TUN_ERROR: Self = Self(5);
    /// Sending on the underlay failed.
    pub const SEND_ERROR: Self = Self(6);
    /// The inner packet cannot be encapsulated in this mode.
    pub const ENCAP_ERROR: Self = Self(7);
    /// wireguard: no public key is known for the destination's node.
    pub const NO_KEY: Self = Self(8);
    /// wireguard: a datagram that is no valid message or fails
    /// authentication (wrong key, bad MAC, unknown session index).
    pub const WG_INVALID: Self = Self(9);
    /// wireguard: a data message whose counter was already seen.
    pub const WG_REPLAY: Self = Self(10);
    /// wireguard: a handshake answered with a cookie reply (under load).
    pub const WG_COOKIE: Self = Self(11);

    /// The reason for a refused decapsulated packet.
    pub fn refusal(r: Refusal) -> Self {
        match r {
            Refusal::UnknownPeer => Self::UNKNOWN_PEER,
            Refusal::SpoofedSource => Self::SPOOFED_SOURCE,
            Refusal::ForeignDestination => Self::FOREIGN_DESTINATION,
        }
    }

    /// The reason for a codec error.
    pub fn decap(e: DecapError) -> Self {
        let label = e.reason();
        let i = DecapError::REASONS
            .iter()
            .position(|r| *r == label)
            .unwrap_or(0);
        Self(OWN_REASONS.len() + i)
    }
}

/// Every drop reason label, in index order.
pub fn all_reasons() -> impl Iterator<Item = &'static str> {
    OWN_REASONS
        .iter()
        .chain(DecapError::REASONS.iter())
        .copied()
}

const N_REASONS: usize = OWN_REASONS.len() + DecapError::REASONS.len();

/// Registered counter handles: the drop reasons up front, each peer's
/// on first use (kept across route changes, keyed by underlay address).
#[derive(Debug)]
pub struct CounterHandles {
    /// Per peer: tx packets, tx bytes, rx packets, rx bytes, drops.
    peers: FastMap<Ipv4Addr, [Counter; 5]>,
    drops: Vec<Counter>,
    icmp: Counter,
}

impl CounterHandles {
    /// Registers the drop and ICMP handles; peers come later.
    pub fn new() -> Self {
        Self {
            peers: FastMap::default(),
            drops: all_reasons()
                .map(|r| counter!(DROPS, "reason" => r))
                .collect(),
            icmp: counter!(ICMP_TOO_BIG),
        }
    }

    /// The handles of the peer at `underlay`, registered on first use.
    fn peer(&mut self, underlay: Ipv4Addr) -> &[Counter; 5] {
        self.peers.entry(underlay).or_insert_with(|| {
            let label = underlay.to_string();
            [TX_PACKETS, TX_BYTES, RX_PACKETS, RX_BYTES, PEER_DROPS]
                .map(|name| counter!(name, "peer" => label.clone()))
        })
    }
}

impl Default for CounterHandles {
    fn default() -> Self {
        Self::new()
    }
}

/// A worker's local counts since the last flush.
#[derive(Debug)]
pub struct LocalCounts {
    /// Per peer slot: tx packets, tx bytes, rx packets, rx bytes, drops.
    peers: Vec<[u64; 5]>,
    /// Slots with non-zero counts, each once.
    touched: Vec<usize>,
    drops: [u64; N_REASONS],
    icmp: u64,
    dirty: bool,
}

impl LocalCounts {
    /// Zeroed counts for `peers` peers.
    pub fn new(peers: usize) -> Self {
        Self {
            peers: vec![[0; 5]; peers],
            touched: Vec::new(),
            drops: [0; N_REASONS],
            icmp: 0,
            dirty: false,
        }
    }

    /// Room for `peers` peers, keeping the memory; call after a flush
    /// (the counts are zero then).
    pub fn resize(&mut self, peers: usize) {
        self.peers.resize(peers, [0; 5]);
    }

    /// One packet sent to `peer`.
    #[inline]
    pub fn tx(&mut self, peer: usize, bytes: usize) {
        self.tx_many(peer, 1, bytes);
    }

    /// `packets` packets of `bytes` bytes in all sent to `peer` (one TSO
    /// burst the kernel segments).
    #[inline]
    pub fn tx_many(&mut self, peer: usize, packets: usize, bytes: usize) {
        if let Some(p) = self.peers.get_mut(peer) {
            if *p == [0; 5] {
                self.touched.push(peer);
            }
            p[0] += packets as u64;
            p[1] += bytes as u64;
            self.dirty = true;
        }
    }

    /// One packet received from `peer`.
    #[inline]
    pub fn rx(&mut self, peer: usize, bytes: usize) {
        if let Some(p) = self.peers.get_mut(peer) {
            if *p == [0; 5] {
                self.touched.push(peer);
            }
            p[2] += 1;
            p[3] += bytes as u64;
            self.dirty = true;
        }
    }

    /// One packet dropped for `reason`, from `peer` if known.
    #[inline]
    pub fn drop_packet(&mut self, reason: Reason, peer: Option<usize>) {
        if let Some(d) = self.drops.get_mut(reason.0) {
            *d += 1;
        }
        if let Some(i) = peer
            && let Some(p) = self.peers.get_mut(i)
        {
            if *p == [0; 5] {
                self.touched.push(i);
            }
            p[4] += 1;
        }
        self.dirty = true;
    }

    /// One ICMP too-big reply sent.
    #[inline]
    pub fn icmp_too_big(&mut self) {
        self.icmp += 1;
        self.dirty = true;
    }

    /// Adds the counts to `h` and zeroes them; `table` names the peer of
    /// each slot (the table the counts were taken with).
    pub fn flush(&mut self, h: &mut CounterHandles, table: &PeerTable) {
        if !self.dirty {
            return;
        }
        for i in self.touched.drain(..) {
            let (Some(p), Some(peer)) = (self.peers.get_mut(i), table.peers().get(i)) else {
                continue;
            };
            for (v, c) in p.iter_mut().zip(h.peer(peer.underlay)) {
                if *v > 0 {
                    c.increment(*v);
                    *v = 0;
                }
            }
        }
        for (v, c) in self.drops.iter_mut().zip(&h.drops) {
            if *v > 0 {
                c.increment(*v);
                *v = 0;
            }
        }
        if self.icmp > 0 {
            h.icmp.increment(self.icmp);
            self.icmp = 0;
        }
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Cidr;
    use crate::mode::Mode;
    use crate::route_table::{NextHop, OverlayPeer};
    use crate::vtep::derived_mac;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::net::Ipv4Addr;

    fn counter_value(
        snap: &[(
            metrics_util::CompositeKey,
            Option<metrics::Unit>,
            Option<metrics::SharedString>,
            DebugValue,
        )],
        name: &str,
        label: (&str, &str),
    ) -> u64 {
        snap.iter()
            .filter(|(k, ..)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == label.0 && l.value() == label.1)
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn local_counts_flush_per_peer_and_reason() {
        let rec = DebuggingRecorder::new();
        let snapper = rec.snapshotter();
        metrics::with_local_recorder(&rec, || {
            let u = Ipv4Addr::new(172, 31, 0, 2);
            let table = PeerTable::new(
                &[(
                    "10.244.2.0/24".parse::<Cidr>().unwrap(),
                    NextHop::Overlay(OverlayPeer {
                        underlay: u,
                        vtep_mac: derived_mac(u),
                        mode: Mode::Udp,
                    }),
                )],
                &["10.244.1.0/24".parse().unwrap()],
            );
            let mut h = CounterHandles::new();
            let mut l = LocalCounts::new(table.peers().len());
            l.tx(0, 100);
            l.tx(0, 50);
            l.rx(0, 70);
            l.drop_packet(Reason::SPOOFED_SOURCE, Some(0));
            l.drop_packet(Reason::UNKNOWN_PEER, None);
            l.drop_packet(Reason::decap(DecapError::VxlanNoIFlag), None);
            l.icmp_too_big();
            l.flush(&mut h, &table);
            l.tx(0, 1);
            l.flush(&mut h, &table);
            l.flush(&mut h, &table);
        });
        let snap = snapper.snapshot().into_vec();
        let peer = ("peer", "172.31.0.2");
        assert_eq!(counter_value(&snap, TX_PACKETS, peer), 3);
        assert_eq!(counter_value(&snap, TX_BYTES, peer), 151);
        assert_eq!(counter_value(&snap, RX_PACKETS, peer), 1);
        assert_eq!(counter_value(&snap, RX_BYTES, peer), 70);
        assert_eq!(counter_value(&snap, PEER_DROPS, peer), 1);
        assert_eq!(counter_value(&snap, DROPS, ("reason", "spoofed_source")), 1);
        assert_eq!(counter_value(&snap, DROPS, ("reason", "unknown_peer")), 1);
        assert_eq!(
            counter_value(&snap, DROPS, ("reason", DecapError::VxlanNoIFlag.reason())),
            1
        );
    }

    #[test]
    fn every_decap_reason_has_its_own_slot() {
        let labels: Vec<&str> = all_reasons().collect();
        assert_eq!(labels.len(), N_REASONS);
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len(), "duplicate reason labels");
    }
}
