//! The dataplane's view of the route table: longest-prefix match from an
//! inner destination to an overlay peer (egress) and the anti-spoofing
//! checks for decapsulated packets (ingress). Pure and immutable; workers
//! get a fresh `Arc<PeerTable>` when routes change.

use std::net::{IpAddr, Ipv4Addr};

use crate::cidr::Cidr;
use crate::config::Mac;
use crate::route_table::NextHop;

/// One overlay peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's underlay address.
    pub underlay: Ipv4Addr,
    /// The peer's VTEP MAC.
    pub vtep_mac: Mac,
    /// The pod ranges routed to this peer.
    pub pod_cidrs: Vec<Cidr>,
}

/// Why an ingress packet is refused (beyond codec errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The outer source is not a known peer.
    UnknownPeer,
    /// The inner source is outside the sending peer's pod ranges.
    SpoofedSource,
    /// The inner destination is outside this node's pod ranges.
    ForeignDestination,
}

/// Peers, their prefixes sorted longest first, and this node's ranges.
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    peers: Vec<Peer>,
    /// (prefix, peer index), longest prefix first.
    prefixes: Vec<(Cidr, usize)>,
    own: Vec<Cidr>,
}

impl PeerTable {
    /// Builds the table from resolved next hops (host-gw hops are not the
    /// dataplane's business) and this node's own pod ranges.
    pub fn new(hops: &[(Cidr, NextHop)], own: &[Cidr]) -> Self {
        let mut peers: Vec<Peer> = Vec::new();
        let mut prefixes = Vec::new();
        for (cidr, hop) in hops {
            let NextHop::Overlay(p) = hop else { continue };
            let idx = match peers.iter().position(|x| x.underlay == p.underlay) {
                Some(i) => i,
                None => {
                    peers.push(Peer {
                        underlay: p.underlay,
                        vtep_mac: p.vtep_mac,
                        pod_cidrs: Vec::new(),
                    });
                    peers.len() - 1
                }
            };
            peers[idx].pod_cidrs.push(*cidr);
            prefixes.push((*cidr, idx));
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.prefix_len()));
        Self {
            peers,
            prefixes,
            own: own.to_vec(),
        }
    }

    /// All peers; indices are stable for this table.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer serving `dst` (longest prefix match).
    pub fn lookup(&self, dst: IpAddr) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(c, _)| c.contains(dst))
            .map(|(_, i)| *i)
    }

    /// The peer with underlay address `ip`.
    pub fn peer_by_underlay(&self, ip: Ipv4Addr) -> Option<usize> {
        self.peers.iter().position(|p| p.underlay == ip)
    }

    /// Anti-spoofing for a decapsulated packet from outer source `outer`:
    /// the peer's index, or why the packet must be dropped.
    pub fn admit(&self, outer: Ipv4Addr, src: IpAddr, dst: IpAddr) -> Result<usize, Refusal> {
        let idx = self.peer_by_underlay(outer).ok_or(Refusal::UnknownPeer)?;
        if !self.peers[idx].pod_cidrs.iter().any(|c| c.contains(src)) {
            return Err(Refusal::SpoofedSource);
        }
        if !self.own.iter().any(|c| c.contains(dst)) {
            return Err(Refusal::ForeignDestination);
        }
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::route_table::OverlayPeer;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn hop(u: &str) -> NextHop {
        let underlay: Ipv4Addr = u.parse().unwrap();
        NextHop::Overlay(OverlayPeer {
            underlay,
            vtep_mac: Mac::derived_from(underlay),
            mode: Mode::Vxlan,
        })
    }

    fn table() -> PeerTable {
        PeerTable::new(
            &[
                (c("10.244.2.0/24"), hop("172.31.0.2")),
                (c("fd10:244:2::/64"), hop("172.31.0.2")),
                (c("10.244.0.0/16"), hop("172.31.0.9")),
                (c("10.244.3.0/24"), hop("172.31.0.3")),
                (c("10.244.4.0/24"), NextHop::HostGw(ip("172.31.0.4"))),
            ],
            &[c("10.244.1.0/24"), c("fd10:244:1::/64")],
        )
    }

    #[test]
    fn longest_prefix_wins_and_host_gw_is_ignored() {
        let t = table();
        assert_eq!(t.peers().len(), 3);
        let p2 = t.lookup(ip("10.244.2.7")).unwrap();
        assert_eq!(t.peers()[p2].underlay, Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(t.lookup(ip("fd10:244:2::9")), Some(p2));
        let p9 = t.lookup(ip("10.244.77.1")).unwrap();
        assert_eq!(t.peers()[p9].underlay, Ipv4Addr::new(172, 31, 0, 9));
        // 10.244.4.0/24 is host-gw: the /16 overlay route covers it here.
        assert_eq!(t.lookup(ip("10.244.4.1")), Some(p9));
        assert_eq!(t.lookup(ip("192.168.1.1")), None);
        assert_eq!(t.peers()[p2].pod_cidrs.len(), 2);
    }

    #[test]
    fn admit_checks_peer_source_and_destination() {
        let t = table();
        let p2 = t.peer_by_underlay(Ipv4Addr::new(172, 31, 0, 2)).unwrap();
        let peer2 = Ipv4Addr::new(172, 31, 0, 2);
        assert_eq!(t.admit(peer2, ip("10.244.2.5"), ip("10.244.1.5")), Ok(p2));
        assert_eq!(
            t.admit(peer2, ip("fd10:244:2::5"), ip("fd10:244:1::5")),
            Ok(p2)
        );
        assert_eq!(
            t.admit(
                Ipv4Addr::new(172, 31, 0, 66),
                ip("10.244.2.5"),
                ip("10.244.1.5")
            ),
            Err(Refusal::UnknownPeer)
        );
        assert_eq!(
            t.admit(peer2, ip("10.244.3.5"), ip("10.244.1.5")),
            Err(Refusal::SpoofedSource)
        );
        assert_eq!(
            t.admit(peer2, ip("10.244.2.5"), ip("10.244.3.5")),
            Err(Refusal::ForeignDestination)
        );
    }
}
