//! The pure route table: which peer serves each remote pod range, and how
//! packets get there (`NextHop`). Fed by `RouteUpdate`s from static config
//! now and from BGP later, through the same channel.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::cidr::Cidr;
use crate::config::{Config, Mac, Mode};

/// A peer's pod range as learned from config or BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRoute {
    /// The peer's pod range.
    pub pod_cidr: Cidr,
    /// The peer's underlay address.
    pub via: IpAddr,
    /// The peer's VTEP MAC, if it is not derived from `via`.
    pub vtep_mac: Option<Mac>,
}

/// Where a route came from; the lower one wins when both know a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteSource {
    /// `[[static_routes]]` in the config file.
    Static,
    /// Learned from a BGP peer.
    Bgp,
}

/// A change to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// A plain kernel route via the peer's underlay address.
    HostGw(IpAddr),
    /// Encapsulated to the peer through weft's TUN.
    Overlay(OverlayPeer),
}

/// An overlay peer: where to send encapsulated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayPeer {
    /// The peer's underlay IPv4 address.
    pub underlay: Ipv4Addr,
    /// The peer's VTEP MAC (vxlan inner Ethernet destination).
    pub vtep_mac: Mac,
    /// The encapsulation.
    pub mode: Mode,
}

/// Pod range -> next hop, resolved from every source's routes.
#[derive(Debug, Clone)]
pub struct RouteTable {
    mode: Mode,
    /// With direct routing: peers inside this underlay subnet get host-gw.
    direct_subnet: Option<Cidr>,
    routes: BTreeMap<Cidr, BTreeMap<RouteSource, PeerRoute>>,
}

impl RouteTable {
    /// An empty table for `mode`. `direct_subnet` is the underlay's L2
    /// subnet when direct routing is on.
    pub fn new(mode: Mode, direct_subnet: Option<Cidr>) -> Self {
        Self {
            mode,
            direct_subnet,
            routes: BTreeMap::new(),
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

    /// Applies one update; true when the resolved table changed.
    pub fn apply(&mut self, update: RouteUpdate) -> bool {
        let before = self.best(&update_cidr(&update));
        match update {
            RouteUpdate::Upsert { route, source } => {
                self.routes
                    .entry(route.pod_cidr)
                    .or_default()
                    .insert(source, route);
            }
            RouteUpdate::Withdraw { pod_cidr, source } => {
                if let Some(m) = self.routes.get_mut(&pod_cidr) {
                    m.remove(&source);
                    if m.is_empty() {
                        self.routes.remove(&pod_cidr);
                    }
                }
            }
        }
        before != self.best(&update_cidr(&update))
    }

    fn best(&self, cidr: &Cidr) -> Option<PeerRoute> {
        self.routes
            .get(cidr)
            .and_then(|m| m.values().next().copied())
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
                vtep_mac: r.vtep_mac.unwrap_or_else(|| Mac::derived_from(underlay)),
                mode,
            }),
            // An overlay over an IPv6 underlay is rejected by config
            // validation; fall back to a plain route should one appear.
            (_, via @ IpAddr::V6(_)) => NextHop::HostGw(via),
        }
    }

    /// Every pod range with its resolved next hop, in prefix order.
    pub fn next_hops(&self) -> Vec<(Cidr, NextHop)> {
        self.routes
            .iter()
            .filter_map(|(c, m)| m.values().next().map(|r| (*c, self.resolve(r))))
            .collect()
    }

    /// The resolved next hop of one pod range, if any source knows it.
    pub fn next_hop(&self, cidr: &Cidr) -> Option<NextHop> {
        self.best(cidr).map(|r| self.resolve(&r))
    }

    /// Number of pod ranges known.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no route is known.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
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
        let mac = Mac([2, 0x57, 9, 9, 9, 9]);
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
                vtep_mac: Mac([2, 0x57, 172, 31, 0, 2]),
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
}
