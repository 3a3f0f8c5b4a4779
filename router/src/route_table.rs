//! The pure route table: which peer serves each remote pod range, and how
//! packets get there (`NextHop`). Fed by `RouteUpdate` batches from the
//! static config and BGP (see `feed`), through the router core.
//!
//! BGP may give a range several equal-cost next hops (`[bgp] multipath`).
//! They become one multipath route when every one of them is a plain
//! gateway (host-gw, or direct routing on the underlay subnet); an overlay
//! range keeps one owner, the lowest next hop.

mod gateways;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use weft_encap::MacAddr;

use crate::FastMap;
use crate::cidr::Cidr;

use crate::config::Config;
use crate::mode::Mode;
use crate::vtep::derived_mac;
use gateways::{Gateway, GatewayId, Gateways};

/// A peer's pod range as learned from config or BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRoute {
    /// The peer's pod range.
    pub pod_cidr: Cidr,
    /// The peer's underlay address.
    pub via: IpAddr,
    /// The peer's VTEP MAC, if it is not derived from `via`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::vtep::opt_mac_text"
    )]
    pub vtep_mac: Option<MacAddr>,
}

/// Where a route came from; the lower one wins when both know a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// `[[static_routes]]` in the config file.
    Static,
    /// Another node's subnet lease in etcd (`[subnet]`).
    Etcd,
    /// Learned from a BGP peer.
    Bgp,
}

/// A change to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteUpdate {
    /// Add or replace the route `source` knows for `route.pod_cidr`.
    Upsert {
        /// The route.
        route: PeerRoute,
        /// Who says so.
        source: RouteSource,
    },
    /// Add or replace the route `source` knows for `pod_cidr` with
    /// equal-cost next hops (BGP multipath).
    UpsertMultipath {
        /// The pod range.
        pod_cidr: Cidr,
        /// The next hops: sorted, unique, two or more.
        via: Vec<IpAddr>,
        /// Who says so.
        source: RouteSource,
    },
    /// `source` no longer knows a route for `pod_cidr`.
    Withdraw {
        /// The range withdrawn.
        pod_cidr: Cidr,
        /// Who withdraws it.
        source: RouteSource,
    },
}

impl RouteUpdate {
    /// The pod range this update is about.
    pub fn cidr(&self) -> Cidr {
        update_cidr(self)
    }
}

/// How packets for a remote pod range leave this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextHop {
    /// A plain kernel route via the peer's underlay address.
    HostGw(IpAddr),
    /// A plain kernel route over equal-cost gateways (sorted, two or more):
    /// one route with `RTA_MULTIPATH` next hops.
    Multipath(Vec<IpAddr>),
    /// Encapsulated to the peer through weft's TUN.
    Overlay(OverlayPeer),
}

/// An overlay peer: where to send encapsulated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayPeer {
    /// The peer's underlay IPv4 address.
    pub underlay: Ipv4Addr,
    /// The peer's VTEP MAC (vxlan inner Ethernet destination).
    #[serde(with = "crate::vtep::mac_text")]
    pub vtep_mac: MacAddr,
    /// The encapsulation.
    pub mode: Mode,
}

/// A pod range packed for the big per-source maps: an IPv4 key is 5
/// unaligned bytes (address, length) instead of `Cidr`'s 18, so a BGP
/// route with its 32-bit gateway id takes 9 bytes per slot.
#[derive(Debug, Clone, Default)]
struct CidrMap<V> {
    v4: FastMap<[u8; 5], V>,
    v6: FastMap<([u8; 16], u8), V>,
}

fn v4_key(a: Ipv4Addr, len: u8) -> [u8; 5] {
    let [a, b, c, d] = a.octets();
    [a, b, c, d, len]
}

impl<V: Copy> CidrMap<V> {
    fn get(&self, c: &Cidr) -> Option<V> {
        match c.addr() {
            IpAddr::V4(a) => self.v4.get(&v4_key(a, c.prefix_len())).copied(),
            IpAddr::V6(a) => self.v6.get(&(a.octets(), c.prefix_len())).copied(),
        }
    }

    fn insert(&mut self, c: &Cidr, v: V) -> Option<V> {
        match c.addr() {
            IpAddr::V4(a) => self.v4.insert(v4_key(a, c.prefix_len()), v),
            IpAddr::V6(a) => self.v6.insert((a.octets(), c.prefix_len()), v),
        }
    }

    fn remove(&mut self, c: &Cidr) -> Option<V> {
        let r = match c.addr() {
            IpAddr::V4(a) => self.v4.remove(&v4_key(a, c.prefix_len())),
            IpAddr::V6(a) => self.v6.remove(&(a.octets(), c.prefix_len())),
        };
        // Give the memory back once a big table is gone.
        if self.v4.is_empty() && self.v4.capacity() > 1024 {
            self.v4 = FastMap::default();
        }
        if self.v6.is_empty() && self.v6.capacity() > 1024 {
            self.v6 = FastMap::default();
        }
        r
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn iter(&self) -> impl Iterator<Item = (Cidr, V)> + '_ {
        let v4 = self.v4.iter().filter_map(|([a, b, c, d, l], v)| {
            Cidr::new(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)), *l).map(|c| (c, *v))
        });
        let v6 = self.v6.iter().filter_map(|((a, l), v)| {
            Cidr::new(IpAddr::V6(Ipv6Addr::from(*a)), *l).map(|c| (c, *v))
        });
        v4.chain(v6)
    }
}

/// Pod range -> next hop, resolved from every source's routes. Static
/// routes (few) sit in a sorted map; BGP routes (up to a full table) in a
/// compact hash map of pod range -> interned gateway.
#[derive(Debug, Clone)]
pub struct RouteTable {
    mode: Mode,
    /// With direct routing: peers inside this underlay subnet get host-gw.
    direct_subnet: Option<Cidr>,
    statics: BTreeMap<Cidr, PeerRoute>,
    leases: BTreeMap<Cidr, PeerRoute>,
    bgp: CidrMap<GatewayId>,
    gateways: Gateways,
}

impl RouteTable {
    /// An empty table for `mode`. `direct_subnet` is the underlay's L2
    /// subnet when direct routing is on.
    pub fn new(mode: Mode, direct_subnet: Option<Cidr>) -> Self {
        Self {
            mode,
            direct_subnet,
            statics: BTreeMap::new(),
            leases: BTreeMap::new(),
            bgp: CidrMap::default(),
            gateways: Gateways::default(),
        }
    }

    /// The static routes of a config, as updates.
    pub fn static_updates(cfg: &Config) -> Vec<RouteUpdate> {
        cfg.static_routes
            .iter()
            .map(|r| RouteUpdate::Upsert {
                route: PeerRoute {
                    pod_cidr: r.pod_cidr,
                    via: r.via,
                    vtep_mac: r.vtep_mac,
                },
                source: RouteSource::Static,
            })
            .collect()
    }

    /// The static routes in the table, by pod range.
    pub fn statics(&self) -> impl Iterator<Item = &PeerRoute> {
        self.statics.values()
    }

    /// Applies one update; true when the resolved table changed.
    pub fn apply(&mut self, update: RouteUpdate) -> bool {
        self.apply_change(update).is_some()
    }

    /// Applies one update; when the pod range's resolution changed, its
    /// next hop before (`Some(None)`: it had none).
    pub fn apply_change(&mut self, update: RouteUpdate) -> Option<Option<NextHop>> {
        let cidr = update_cidr(&update);
        let before = self.next_hop(&cidr);
        match update {
            RouteUpdate::Upsert {
                route,
                source: RouteSource::Static,
            } => {
                self.statics.insert(route.pod_cidr, route);
            }
            RouteUpdate::Withdraw {
                pod_cidr,
                source: RouteSource::Static,
            } => {
                self.statics.remove(&pod_cidr);
            }
            RouteUpdate::Upsert {
                route,
                source: RouteSource::Etcd,
            } => {
                self.leases.insert(route.pod_cidr, route);
            }
            RouteUpdate::Withdraw {
                pod_cidr,
                source: RouteSource::Etcd,
            } => {
                self.leases.remove(&pod_cidr);
            }
            RouteUpdate::Upsert {
                route,
                source: RouteSource::Bgp,
            } => self.set_bgp(
                &route.pod_cidr,
                Some(Gateway::One(route.via, route.vtep_mac)),
            ),
            RouteUpdate::UpsertMultipath {
                pod_cidr,
                mut via,
                source,
            } => {
                via.sort_unstable();
                via.dedup();
                let gw = match via[..] {
                    [] => None,
                    [one] => Some(Gateway::One(one, None)),
                    _ => Some(Gateway::Many(via.into())),
                };
                match source {
                    RouteSource::Bgp => self.set_bgp(&pod_cidr, gw),
                    // Static routes and leases name one node each.
                    RouteSource::Static | RouteSource::Etcd => {}
                }
            }
            RouteUpdate::Withdraw {
                pod_cidr,
                source: RouteSource::Bgp,
            } => self.set_bgp(&pod_cidr, None),
        }
        let after = self.next_hop(&cidr);
        (before != after).then_some(before)
    }

    /// Sets (or with `None` removes) the BGP route of `cidr`.
    fn set_bgp(&mut self, cidr: &Cidr, gw: Option<Gateway>) {
        let old = match gw {
            Some(g) => {
                let id = self.gateways.acquire(g);
                self.bgp.insert(cidr, id)
            }
            None => self.bgp.remove(cidr),
        };
        if let Some(old) = old {
            self.gateways.release(old);
        }
    }

    /// The next hop of a BGP route in this table's mode: several
    /// gateways make a multipath route when every one is a plain gateway;
    /// otherwise the lowest one owns the range alone.
    fn resolve_bgp(&self, cidr: Cidr, gw: &Gateway) -> NextHop {
        match gw {
            Gateway::One(via, vtep_mac) => self.resolve(&PeerRoute {
                pod_cidr: cidr,
                via: *via,
                vtep_mac: *vtep_mac,
            }),
            Gateway::Many(vias) => {
                let plain = vias.iter().all(|v| self.plain_gateway(cidr, *v));
                match vias.first() {
                    Some(first) if !plain => self.resolve(&PeerRoute {
                        pod_cidr: cidr,
                        via: *first,
                        vtep_mac: None,
                    }),
                    _ => NextHop::Multipath(vias.to_vec()),
                }
            }
        }
    }

    /// True when `via` is reached by a plain kernel route (no overlay).
    fn plain_gateway(&self, cidr: Cidr, via: IpAddr) -> bool {
        self.mode == Mode::HostGw
            || self
                .direct_subnet
                .is_some_and(|s| s.contains(via) && via.is_ipv4() == cidr.is_ipv4())
    }

    /// How a route is reached in this table's mode.
    pub fn resolve(&self, r: &PeerRoute) -> NextHop {
        match (self.mode, r.via) {
            (_, via) if self.plain_gateway(r.pod_cidr, via) => NextHop::HostGw(via),
            (mode, IpAddr::V4(underlay)) => NextHop::Overlay(OverlayPeer {
                underlay,
                vtep_mac: r.vtep_mac.unwrap_or_else(|| derived_mac(underlay)),
                mode,
            }),
            // An overlay over an IPv6 underlay is rejected by config
            // validation; fall back to a plain route should one appear.
            (_, via @ IpAddr::V6(_)) => NextHop::HostGw(via),
        }
    }

    /// Every pod range with its resolved next hop, in prefix order.
    pub fn next_hops(&self) -> Vec<(Cidr, NextHop)> {
        self.sourced().into_iter().map(|(c, h, _)| (c, h)).collect()
    }

    /// Every pod range with its resolved next hop and the source it comes
    /// from, in prefix order (for status queries).
    pub fn sourced(&self) -> Vec<(Cidr, NextHop, RouteSource)> {
        let mut out: Vec<(Cidr, NextHop, RouteSource)> = self
            .statics
            .values()
            .map(|r| (r, RouteSource::Static))
            .chain(
                self.leases
                    .values()
                    .filter(|r| !self.statics.contains_key(&r.pod_cidr))
                    .map(|r| (r, RouteSource::Etcd)),
            )
            .map(|(r, s)| (r.pod_cidr, self.resolve(r), s))
            .collect();
        for (cidr, id) in self.bgp.iter() {
            if self.statics.contains_key(&cidr) || self.leases.contains_key(&cidr) {
                continue;
            }
            out.push((
                cidr,
                self.resolve_bgp(cidr, self.gateways.get(id)),
                RouteSource::Bgp,
            ));
        }
        out.sort_unstable_by_key(|(c, ..)| *c);
        out
    }

    /// The resolved next hop of one pod range, if any source knows it.
    pub fn next_hop(&self, cidr: &Cidr) -> Option<NextHop> {
        if let Some(r) = self.statics.get(cidr).or_else(|| self.leases.get(cidr)) {
            return Some(self.resolve(r));
        }
        let id = self.bgp.get(cidr)?;
        Some(self.resolve_bgp(*cidr, self.gateways.get(id)))
    }

    /// Number of distinct BGP gateways (next hops and equal-cost sets).
    pub fn gateways(&self) -> usize {
        self.gateways.len()
    }

    /// Number of pod ranges known.
    pub fn len(&self) -> usize {
        // Static and lease ranges are few; count what they shadow.
        let leases_only = self.leases.keys().filter(|c| !self.statics.contains_key(c));
        let shadowed = self
            .statics
            .keys()
            .chain(leases_only.clone())
            .filter(|c| self.bgp.get(c).is_some())
            .count();
        self.statics.len() + leases_only.count() + self.bgp.len() - shadowed
    }

    /// True when no route is known.
    pub fn is_empty(&self) -> bool {
        self.statics.is_empty() && self.leases.is_empty() && self.bgp.len() == 0
    }
}

fn update_cidr(u: &RouteUpdate) -> Cidr {
    match u {
        RouteUpdate::Upsert { route, .. } => route.pod_cidr,
        RouteUpdate::UpsertMultipath { pod_cidr, .. } | RouteUpdate::Withdraw { pod_cidr, .. } => {
            *pod_cidr
        }
    }
}

#[cfg(test)]
mod tests;
