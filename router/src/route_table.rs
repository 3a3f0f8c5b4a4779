//! The pure route table: which peer serves each remote pod range, and how
//! packets get there (`NextHop`). Fed by `RouteUpdate` batches from the
//! static config and BGP (see `feed`), through the router core.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use weft_encap::MacAddr;

use crate::FastMap;
use crate::cidr::Cidr;

use crate::config::Config;
use crate::mode::Mode;
use crate::vtep::derived_mac;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteUpdate {
    /// Add or replace the route `source` knows for `route.pod_cidr`.
    Upsert {
        /// The route.
        route: PeerRoute,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextHop {
    /// A plain kernel route via the peer's underlay address.
    HostGw(IpAddr),
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
/// route with its 16-bit gateway id takes 8 bytes per slot.
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

/// Where a route goes, without its pod range: interned, since a whole
/// BGP table shares a handful of next hops.
type Gateway = (IpAddr, Option<MacAddr>);

/// Interned gateways with reference counts; freed slots are reused. A
/// 16-bit id keeps an IPv4 BGP route at 8 bytes; 65 536 distinct gateways
/// at once (next hops: nodes of one cluster) is the limit.
#[derive(Debug, Clone, Default)]
struct Gateways {
    slots: Vec<(Gateway, u32)>,
    ids: HashMap<Gateway, u16>,
    free: Vec<u16>,
}

impl Gateways {
    fn get(&self, id: u16) -> Gateway {
        self.slots[usize::from(id)].0
    }

    /// The id of `g`, one more reference; `None` when every id is taken.
    fn acquire(&mut self, g: Gateway) -> Option<u16> {
        if let Some(&id) = self.ids.get(&g) {
            self.slots[usize::from(id)].1 += 1;
            return Some(id);
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[usize::from(id)] = (g, 1);
                id
            }
            None => {
                let id = u16::try_from(self.slots.len()).ok()?;
                self.slots.push((g, 1));
                id
            }
        };
        self.ids.insert(g, id);
        Some(id)
    }

    fn release(&mut self, id: u16) {
        let slot = &mut self.slots[usize::from(id)];
        slot.1 -= 1;
        if slot.1 == 0 {
            self.ids.remove(&slot.0);
            self.free.push(id);
        }
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
    bgp: CidrMap<u16>,
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
        let before = self.best(&cidr);
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
            } => {
                let old = match self.gateways.acquire((route.via, route.vtep_mac)) {
                    Some(id) => self.bgp.insert(&route.pod_cidr, id),
                    None => {
                        tracing::warn!(pod_cidr = %route.pod_cidr, via = %route.via,
                            "too many distinct BGP gateways, route dropped");
                        self.bgp.remove(&route.pod_cidr)
                    }
                };
                if let Some(old) = old {
                    self.gateways.release(old);
                }
            }
            RouteUpdate::Withdraw {
                pod_cidr,
                source: RouteSource::Bgp,
            } => {
                if let Some(old) = self.bgp.remove(&pod_cidr) {
                    self.gateways.release(old);
                }
            }
        }
        (before != self.best(&cidr)).then(|| before.map(|r| self.resolve(&r)))
    }

    fn best(&self, cidr: &Cidr) -> Option<PeerRoute> {
        if let Some(r) = self.statics.get(cidr).or_else(|| self.leases.get(cidr)) {
            return Some(*r);
        }
        self.bgp.get(cidr).map(|id| {
            let (via, vtep_mac) = self.gateways.get(id);
            PeerRoute {
                pod_cidr: *cidr,
                via,
                vtep_mac,
            }
        })
    }

    /// How a route is reached in this table's mode.
    pub fn resolve(&self, r: &PeerRoute) -> NextHop {
        let direct = self
            .direct_subnet
            .is_some_and(|s| s.contains(r.via) && r.via.is_ipv4() == r.pod_cidr.is_ipv4());
        match (self.mode, r.via) {
            (Mode::HostGw, via) => NextHop::HostGw(via),
            (_, via) if direct => NextHop::HostGw(via),
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
        let mut out: Vec<(Cidr, NextHop)> = self
            .statics
            .values()
            .chain(
                self.leases
                    .values()
                    .filter(|r| !self.statics.contains_key(&r.pod_cidr)),
            )
            .map(|r| (r.pod_cidr, self.resolve(r)))
            .collect();
        for (cidr, id) in self.bgp.iter() {
            if self.statics.contains_key(&cidr) || self.leases.contains_key(&cidr) {
                continue;
            }
            let (via, vtep_mac) = self.gateways.get(id);
            let r = PeerRoute {
                pod_cidr: cidr,
                via,
                vtep_mac,
            };
            out.push((cidr, self.resolve(&r)));
        }
        out.sort_unstable_by_key(|(c, _)| *c);
        out
    }

    /// The resolved next hop of one pod range, if any source knows it.
    pub fn next_hop(&self, cidr: &Cidr) -> Option<NextHop> {
        self.best(cidr).map(|r| self.resolve(&r))
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
        RouteUpdate::Withdraw { pod_cidr, .. } => *pod_cidr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn up(cidr: &str, via: &str, source: RouteSource) -> RouteUpdate {
        RouteUpdate::Upsert {
            route: PeerRoute {
                pod_cidr: c(cidr),
                via: via.parse().unwrap(),
                vtep_mac: None,
            },
            source,
        }
    }

    #[test]
    fn host_gw_resolves_to_gateway() {
        let mut t = RouteTable::new(Mode::HostGw, None);
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
        assert_eq!(
            t.next_hops(),
            vec![(
                c("10.244.2.0/24"),
                NextHop::HostGw("172.31.0.2".parse().unwrap())
            )]
        );
    }

    #[test]
    fn overlay_derives_vtep_mac_unless_set() {
        let mut t = RouteTable::new(Mode::Vxlan, None);
        t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static));
        let mac = MacAddr([2, 0x57, 9, 9, 9, 9]);
        t.apply(RouteUpdate::Upsert {
            route: PeerRoute {
                pod_cidr: c("10.244.3.0/24"),
                via: "172.31.0.3".parse().unwrap(),
                vtep_mac: Some(mac),
            },
            source: RouteSource::Static,
        });
        let hops = t.next_hops();
        assert_eq!(
            hops[0].1,
            NextHop::Overlay(OverlayPeer {
                underlay: Ipv4Addr::new(172, 31, 0, 2),
                vtep_mac: MacAddr([2, 0x57, 172, 31, 0, 2]),
                mode: Mode::Vxlan
            })
        );
        assert!(matches!(hops[1].1, NextHop::Overlay(p) if p.vtep_mac == mac));
    }

    #[test]
    fn direct_routing_uses_host_gw_on_the_same_subnet() {
        let mut t = RouteTable::new(Mode::Vxlan, Some(c("172.31.0.0/24")));
        t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static));
        t.apply(up("10.244.3.0/24", "172.31.9.3", RouteSource::Static));
        let hops = t.next_hops();
        assert!(matches!(hops[0].1, NextHop::HostGw(_)));
        assert!(matches!(hops[1].1, NextHop::Overlay(_)));
    }

    #[test]
    fn static_wins_over_bgp_and_withdraw_falls_back() {
        let mut t = RouteTable::new(Mode::HostGw, None);
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
        // BGP changing its path is invisible while static wins.
        assert!(!t.apply(up("10.244.2.0/24", "172.31.0.8", RouteSource::Bgp)));
        assert_eq!(
            t.next_hops()[0].1,
            NextHop::HostGw("172.31.0.2".parse().unwrap())
        );
        assert!(t.apply(RouteUpdate::Withdraw {
            pod_cidr: c("10.244.2.0/24"),
            source: RouteSource::Static
        }));
        assert_eq!(
            t.next_hops()[0].1,
            NextHop::HostGw("172.31.0.8".parse().unwrap())
        );
        assert!(t.apply(RouteUpdate::Withdraw {
            pod_cidr: c("10.244.2.0/24"),
            source: RouteSource::Bgp
        }));
        assert!(t.is_empty());
        // Withdrawing something unknown changes nothing.
        assert!(!t.apply(RouteUpdate::Withdraw {
            pod_cidr: c("10.244.2.0/24"),
            source: RouteSource::Bgp
        }));
    }

    #[test]
    fn leases_win_over_bgp_and_lose_to_static() {
        let mut t = RouteTable::new(Mode::HostGw, None);
        let hop = |t: &RouteTable| t.next_hop(&c("10.244.2.0/24"));
        let gw = |s: &str| Some(NextHop::HostGw(s.parse().unwrap()));
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.3", RouteSource::Etcd)));
        assert_eq!(hop(&t), gw("172.31.0.3"));
        assert_eq!(t.len(), 1);
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
        assert_eq!(hop(&t), gw("172.31.0.2"));
        assert_eq!(t.next_hops().len(), 1);
        assert_eq!(t.len(), 1);
        assert!(t.apply(RouteUpdate::Withdraw {
            pod_cidr: c("10.244.2.0/24"),
            source: RouteSource::Static
        }));
        assert_eq!(hop(&t), gw("172.31.0.3"));
        assert!(t.apply(RouteUpdate::Withdraw {
            pod_cidr: c("10.244.2.0/24"),
            source: RouteSource::Etcd
        }));
        assert_eq!(hop(&t), gw("172.31.0.9"));
        assert!(t.apply(up("10.244.3.0/24", "172.31.0.3", RouteSource::Etcd)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_hops().len(), 2);
    }

    #[test]
    fn bgp_gateways_are_shared_and_released() {
        let mut t = RouteTable::new(Mode::HostGw, None);
        t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Bgp));
        t.apply(up("10.244.3.0/24", "172.31.0.2", RouteSource::Bgp));
        t.apply(up("fd10:244:3::/64", "fd00::3", RouteSource::Bgp));
        assert_eq!(t.gateways.ids.len(), 2);
        // A changed next hop releases the old gateway once unused.
        assert!(t.apply(up("10.244.3.0/24", "172.31.0.9", RouteSource::Bgp)));
        assert_eq!(t.gateways.ids.len(), 3);
        assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
        assert_eq!(t.gateways.ids.len(), 2);
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.next_hops(),
            vec![
                (
                    c("10.244.2.0/24"),
                    NextHop::HostGw("172.31.0.9".parse().unwrap())
                ),
                (
                    c("10.244.3.0/24"),
                    NextHop::HostGw("172.31.0.9".parse().unwrap())
                ),
                (
                    c("fd10:244:3::/64"),
                    NextHop::HostGw("fd00::3".parse().unwrap())
                ),
            ]
        );
        for cidr in ["10.244.2.0/24", "10.244.3.0/24", "fd10:244:3::/64"] {
            assert!(t.apply(RouteUpdate::Withdraw {
                pod_cidr: c(cidr),
                source: RouteSource::Bgp
            }));
        }
        assert!(t.is_empty());
        assert!(t.gateways.ids.is_empty());
        // Freed slots are reused, not appended.
        t.apply(up("10.244.2.0/24", "172.31.0.7", RouteSource::Bgp));
        assert_eq!(t.gateways.slots.len(), 3);
    }
}
