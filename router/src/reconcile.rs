//! Pure reconciliation: the kernel routes weftd wants, and the operations
//! that turn a dump of weftd's own routes into exactly that set.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::route_table::NextHop;

/// Where a kernel route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteVia {
    /// `via GATEWAY` (host-gw).
    Gateway(IpAddr),
    /// `dev IFINDEX` (the overlay TUN).
    Dev(u32),
}

/// One kernel route of weftd's protocol, in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelRoute {
    /// Destination prefix.
    pub dst: Cidr,
    /// Next hop.
    pub via: RouteVia,
}

/// A change to apply to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    /// Add, replacing any route to the same destination.
    Replace(KernelRoute),
    /// Delete; "already gone" counts as success.
    Delete(KernelRoute),
}

/// The kernel routes for a resolved route table. `tun_ifindex` is the TUN
/// for overlay next hops (`None`: overlay routes are left out).
pub fn desired_routes(hops: &[(Cidr, NextHop)], tun_ifindex: Option<u32>) -> Vec<KernelRoute> {
    hops.iter()
        .filter_map(|(dst, hop)| {
            let via = match hop {
                NextHop::HostGw(gw) => RouteVia::Gateway(*gw),
                NextHop::Overlay(_) => RouteVia::Dev(tun_ifindex?),
            };
            Some(KernelRoute { dst: *dst, via })
        })
        .collect()
}

/// Operations that make `current` (a dump of weftd's own routes) equal to
/// `desired`. Replacements come first, so a changed next hop never leaves
/// a gap; deletions follow for destinations no longer wanted.
pub fn diff(desired: &[KernelRoute], current: &[KernelRoute]) -> Vec<RouteOp> {
    let have: BTreeSet<&KernelRoute> = current.iter().collect();
    let want_dst: BTreeSet<Cidr> = desired.iter().map(|r| r.dst).collect();
    let mut ops: Vec<RouteOp> = desired
        .iter()
        .filter(|r| !have.contains(r))
        .map(|r| RouteOp::Replace(*r))
        .collect();
    let want: BTreeSet<&KernelRoute> = desired.iter().collect();
    let mut seen = BTreeSet::new();
    for r in current {
        if want.contains(r) {
            // A duplicate of a wanted route (IPv6 allows several routes to
            // one destination) beyond the first is stale too.
            if !seen.insert(*r) {
                ops.push(RouteOp::Delete(*r));
            }
            continue;
        }
        // IPv4 replaced the route to a wanted destination in place; IPv6
        // keeps a route with another next hop beside it, so remove that.
        if !want_dst.contains(&r.dst) || !r.dst.is_ipv4() {
            ops.push(RouteOp::Delete(*r));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mac, Mode};
    use crate::route_table::OverlayPeer;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn gw(dst: &str, via: &str) -> KernelRoute {
        KernelRoute {
            dst: c(dst),
            via: RouteVia::Gateway(via.parse().unwrap()),
        }
    }

    #[test]
    fn desired_maps_next_hops() {
        let hops = vec![
            (
                c("10.244.2.0/24"),
                NextHop::HostGw("172.31.0.2".parse().unwrap()),
            ),
            (
                c("10.244.3.0/24"),
                NextHop::Overlay(OverlayPeer {
                    underlay: "172.31.0.3".parse().unwrap(),
                    vtep_mac: Mac([2, 0x57, 172, 31, 0, 3]),
                    mode: Mode::Vxlan,
                }),
            ),
        ];
        assert_eq!(
            desired_routes(&hops, Some(7)),
            vec![
                gw("10.244.2.0/24", "172.31.0.2"),
                KernelRoute {
                    dst: c("10.244.3.0/24"),
                    via: RouteVia::Dev(7)
                }
            ]
        );
        assert_eq!(desired_routes(&hops, None).len(), 1);
    }

    #[test]
    fn in_sync_means_no_ops() {
        let d = vec![gw("10.244.2.0/24", "172.31.0.2")];
        assert!(diff(&d, &d).is_empty());
    }

    #[test]
    fn adds_missing_removes_stale_replaces_changed() {
        let desired = vec![
            gw("10.244.2.0/24", "172.31.0.2"),
            gw("10.244.3.0/24", "172.31.0.3"),
        ];
        let current = vec![
            gw("10.244.3.0/24", "172.31.0.33"),
            gw("10.244.9.0/24", "172.31.0.9"),
        ];
        let ops = diff(&desired, &current);
        assert_eq!(
            ops,
            vec![
                RouteOp::Replace(gw("10.244.2.0/24", "172.31.0.2")),
                RouteOp::Replace(gw("10.244.3.0/24", "172.31.0.3")),
                RouteOp::Delete(gw("10.244.9.0/24", "172.31.0.9")),
            ]
        );
    }

    #[test]
    fn ipv6_stale_sibling_and_duplicates_are_deleted() {
        let desired = vec![gw("fd10:244:2::/64", "fd00::2")];
        let current = vec![
            gw("fd10:244:2::/64", "fd00::9"),
            gw("fd10:244:2::/64", "fd00::2"),
            gw("fd10:244:2::/64", "fd00::2"),
        ];
        let ops = diff(&desired, &current);
        assert_eq!(
            ops,
            vec![
                RouteOp::Delete(gw("fd10:244:2::/64", "fd00::9")),
                RouteOp::Delete(gw("fd10:244:2::/64", "fd00::2")),
            ]
        );
    }

    #[test]
    fn empty_desired_removes_everything() {
        let current = vec![
            gw("10.244.2.0/24", "172.31.0.2"),
            gw("10.244.3.0/24", "172.31.0.3"),
        ];
        let ops = diff(&[], &current);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| matches!(o, RouteOp::Delete(_))));
    }
}
