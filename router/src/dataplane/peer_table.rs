//! The dataplane's view of the route table: longest-prefix match from an
//! inner destination to an overlay peer (egress) and the anti-spoofing
//! checks for decapsulated packets (ingress).
//!
//! Lookups cost one hash probe per distinct prefix length in the table (one
//! or two in a cluster: every node's /24, perhaps a /16 aggregate), never a
//! scan over the peers, so the per-packet cost does not grow with the
//! cluster. The control loop changes it route by route
//! ([`PeerTable::apply`]); workers read immutable snapshots of it (an
//! `Arc<PeerTable>`), handed over without a copy by `publish`.

use std::net::{IpAddr, Ipv4Addr};

use weft_encap::MacAddr;

use crate::cidr::Cidr;
use crate::route_table::NextHop;

use crate::FastMap;

/// One overlay peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's underlay address.
    pub underlay: Ipv4Addr,
    /// The peer's VTEP MAC.
    pub vtep_mac: MacAddr,
    /// How many pod ranges are routed to this peer (0: a free slot).
    pub ranges: u32,
}

/// Why an ingress packet is refused (beyond codec errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The outer source is not a known peer.
    UnknownPeer,
    /// The inner source is not routed to the sending peer (strict reverse
    /// path: the longest prefix holding it belongs to another peer, or to
    /// none).
    SpoofedSource,
    /// The inner destination is outside this node's pod ranges.
    ForeignDestination,
}

/// Longest-prefix match over one address family, keyed by (length,
/// masked address) with the lengths in use listed longest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PrefixIndex {
    /// Distinct prefix lengths in the map, longest first.
    lens: Vec<u8>,
    /// (prefix length, network address as u128) → peer index.
    map: FastMap<(u8, u128), usize>,
}

impl PrefixIndex {
    /// The top `len` bits of a `bits`-wide, right-aligned field.
    fn mask(bits: u8, len: u8) -> u128 {
        let ones = |n: u8| {
            if n >= 128 {
                u128::MAX
            } else {
                (1u128 << n) - 1
            }
        };
        ones(bits) & !ones(bits.saturating_sub(len))
    }

    fn key(bits: u8, addr: u128, len: u8) -> (u8, u128) {
        (len, addr & Self::mask(bits, len))
    }

    fn insert(&mut self, bits: u8, addr: u128, len: u8, peer: usize) -> Option<usize> {
        if let Err(at) = self.lens.binary_search_by(|l| len.cmp(l)) {
            self.lens.insert(at, len);
        }
        self.map.insert(Self::key(bits, addr, len), peer)
    }

    fn remove(&mut self, bits: u8, addr: u128, len: u8) -> Option<usize> {
        let old = self.map.remove(&Self::key(bits, addr, len))?;
        if !self.map.keys().any(|(l, _)| *l == len) {
            self.lens.retain(|l| *l != len);
        }
        Some(old)
    }

    #[inline]
    fn lookup(&self, bits: u8, addr: u128) -> Option<usize> {
        self.lens
            .iter()
            .find_map(|&len| self.map.get(&Self::key(bits, addr, len)).copied())
    }
}

/// Splits an address into (family width, right-aligned value).
fn bits(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, u128::from(a)),
    }
}

/// Peers, a prefix index per family, and this node's ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    /// Indices are stable while a peer has ranges; a slot whose peer lost
    /// its last range is reused for the next new peer.
    peers: Vec<Peer>,
    by_underlay: FastMap<Ipv4Addr, usize>,
    free: Vec<usize>,
    v4: PrefixIndex,
    v6: PrefixIndex,
    own: Vec<Cidr>,
}

impl PeerTable {
    /// Builds the table from resolved next hops (host-gw hops are not the
    /// dataplane's business) and this node's own pod ranges.
    pub fn new(hops: &[(Cidr, NextHop)], own: &[Cidr]) -> Self {
        let mut t = Self {
            own: own.to_vec(),
            ..Self::default()
        };
        for (cidr, hop) in hops {
            t.apply(*cidr, Some(hop));
        }
        t
    }

    /// Routes `cidr` to `hop`'s peer, or removes it (`None`, or a host-gw
    /// hop). Cost independent of the table's size.
    pub fn apply(&mut self, cidr: Cidr, hop: Option<&NextHop>) {
        let (width, addr) = bits(cidr.addr());
        let index = if width == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        };
        let old = match hop {
            Some(NextHop::Overlay(p)) => {
                let idx = match self.by_underlay.get(&p.underlay) {
                    Some(&i) => i,
                    None => {
                        let peer = Peer {
                            underlay: p.underlay,
                            vtep_mac: p.vtep_mac,
                            ranges: 0,
                        };
                        let i = match self.free.pop() {
                            Some(i) => {
                                self.peers[i] = peer;
                                i
                            }
                            None => {
                                self.peers.push(peer);
                                self.peers.len() - 1
                            }
                        };
                        self.by_underlay.insert(p.underlay, i);
                        i
                    }
                };
                self.peers[idx].vtep_mac = p.vtep_mac;
                self.peers[idx].ranges += 1;
                index.insert(width, addr, cidr.prefix_len(), idx)
            }
            _ => index.remove(width, addr, cidr.prefix_len()),
        };
        if let Some(i) = old {
            self.release(i);
        }
    }

    /// One range fewer for peer `i`; its slot is freed with the last one.
    fn release(&mut self, i: usize) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        p.ranges = p.ranges.saturating_sub(1);
        if p.ranges == 0 {
            self.by_underlay.remove(&p.underlay);
            self.free.push(i);
        }
    }

    /// Every peer slot (a slot with `ranges == 0` is free); indices are
    /// those [`Self::lookup`] returns.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Number of peers with at least one range.
    pub fn len(&self) -> usize {
        self.by_underlay.len()
    }

    /// True when no peer has a range.
    pub fn is_empty(&self) -> bool {
        self.by_underlay.is_empty()
    }

    /// The peer serving `dst` (longest prefix match).
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<usize> {
        match bits(dst) {
            (32, a) => self.v4.lookup(32, a),
            (w, a) => self.v6.lookup(w, a),
        }
    }

    /// The peer with underlay address `ip`.
    #[inline]
    pub fn peer_by_underlay(&self, ip: Ipv4Addr) -> Option<usize> {
        self.by_underlay.get(&ip).copied()
    }

    /// True when `dst` lies in one of this node's own pod ranges.
    #[inline]
    pub fn owns(&self, dst: IpAddr) -> bool {
        self.own.iter().any(|c| c.contains(dst))
    }

    /// Anti-spoofing for a decapsulated packet from outer source `outer`:
    /// the peer's index, or why the packet must be dropped.
    pub fn admit(&self, outer: Ipv4Addr, src: IpAddr, dst: IpAddr) -> Result<usize, Refusal> {
        let idx = self.peer_by_underlay(outer).ok_or(Refusal::UnknownPeer)?;
        if self.lookup(src) != Some(idx) {
            return Err(Refusal::SpoofedSource);
        }
        if !self.own.iter().any(|c| c.contains(dst)) {
            return Err(Refusal::ForeignDestination);
        }
        Ok(idx)
    }
}

/// The egress plan looks peers up through the same longest-prefix match.
impl weft_encap::egress::PeerLookup for PeerTable {
    #[inline]
    fn lookup(&self, dst: IpAddr) -> Option<usize> {
        PeerTable::lookup(self, dst)
    }
}

#[cfg(test)]
mod tests;
