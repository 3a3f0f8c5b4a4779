//! Pure reconciliation: the kernel routes weftd wants, and the operations
//! that turn a dump of weftd's own routes into exactly that set; also the
//! kernel changes the netlink watcher reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::route_table::NextHop;

/// Where a kernel route sends its packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteVia {
    /// `via GATEWAY` (host-gw).
    Gateway(IpAddr),
    /// `nexthop via A nexthop via B ...`: one route over equal-cost
    /// gateways (`RTA_MULTIPATH`), sorted, two or more.
    Multipath(Vec<IpAddr>),
    /// `dev IFINDEX` (the overlay TUN).
    Dev(u32),
}

/// One kernel route of weftd's protocol, in the main table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRoute {
    /// Destination prefix.
    pub dst: Cidr,
    /// Next hop.
    pub via: RouteVia,
}

/// A change to apply to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOp {
    /// Add, replacing any route to the same destination.
    Replace(KernelRoute),
    /// Delete; "already gone" counts as success.
    Delete(KernelRoute),
}

/// A kernel change weftd may have to repair (from the netlink watcher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelEvent {
    /// A link appeared, changed or went away.
    Link,
    /// A route of weftd's protocol was deleted by someone else (the
    /// watcher drops weftd's own deletions; the core compares the route
    /// with what it installed).
    RouteGone(KernelRoute),
    /// A route of weftd's protocol that cannot be parsed was deleted.
    Unknown,
}

/// The kernel routes for a resolved route table. `tun_ifindex` is the TUN
/// for overlay next hops (`None`: overlay routes are left out).
pub fn desired_routes(hops: &[(Cidr, NextHop)], tun_ifindex: Option<u32>) -> Vec<KernelRoute> {
    hops.iter()
        .filter_map(|(dst, hop)| {
            let via = match hop {
                NextHop::HostGw(gw) => RouteVia::Gateway(*gw),
                NextHop::Multipath(gws) => RouteVia::Multipath(gws.clone()),
                NextHop::Overlay(_) => RouteVia::Dev(tun_ifindex?),
            };
            Some(KernelRoute { dst: *dst, via })
        })
        .collect()
}

impl RouteVia {
    /// The gateways (none for a device route).
    pub fn gateways(&self) -> &[IpAddr] {
        match self {
            Self::Gateway(g) => std::slice::from_ref(g),
            Self::Multipath(gs) => gs,
            Self::Dev(_) => &[],
        }
    }
}

/// True when deleting `old` would also hit `new`, a route to the same
/// destination: they share a gateway (an IPv6 delete removes every listed
/// next hop it finds) or are the same device route. The replacement took
/// `old`'s place then, so no delete is needed.
pub fn overlaps(old: &KernelRoute, new: &KernelRoute) -> bool {
    old.via == new.via
        || old
            .via
            .gateways()
            .iter()
            .any(|g| new.via.gateways().contains(g))
}

/// Operations that make `current` (a dump of weftd's own routes) equal to
/// `desired`. Replacements come first, so a changed next hop never leaves
/// a gap; deletions follow for destinations no longer wanted.
pub fn diff(desired: &[KernelRoute], current: &[KernelRoute]) -> Vec<RouteOp> {
    let have: BTreeSet<&KernelRoute> = current.iter().collect();
    let want_dst: BTreeMap<Cidr, &KernelRoute> = desired.iter().map(|r| (r.dst, r)).collect();
    let mut ops: Vec<RouteOp> = desired
        .iter()
        .filter(|r| !have.contains(r))
        .map(|r| RouteOp::Replace(r.clone()))
        .collect();
    let want: BTreeSet<&KernelRoute> = desired.iter().collect();
    let mut seen = BTreeSet::new();
    for r in current {
        if want.contains(r) {
            // A duplicate of a wanted route (IPv6 allows several routes to
            // one destination) beyond the first is stale too.
            if !seen.insert(r) {
                ops.push(RouteOp::Delete(r.clone()));
            }
            continue;
        }
        // IPv4 replaced the route to a wanted destination in place; IPv6
        // may keep a route with other next hops beside it, so remove that.
        let stale = match want_dst.get(&r.dst) {
            None => true,
            Some(w) => !r.dst.is_ipv4() && !overlaps(r, w),
        };
        if stale {
            ops.push(RouteOp::Delete(r.clone()));
        }
    }
    ops
}

/// One destination whose kernel route changes: what weftd installed
/// before (`old`) and what it wants now (`new`); `None` is "no route".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    /// The route installed before the change.
    pub old: Option<KernelRoute>,
    /// The route wanted after it.
    pub new: Option<KernelRoute>,
}

/// Operations for a batch of table changes, without looking at the kernel:
/// the incremental counterpart of [`diff`] (which the periodic resync still
/// runs). Replacements come first, then deletions; with `delete` false
/// (stale routes held during a graceful restart) nothing is deleted.
pub fn change_ops(changes: &[RouteChange], delete: bool) -> Vec<RouteOp> {
    let mut ops: Vec<RouteOp> = changes
        .iter()
        .filter(|c| c.new.is_some() && c.new != c.old)
        .filter_map(|c| c.new.clone().map(RouteOp::Replace))
        .collect();
    if delete {
        for c in changes {
            let Some(old) = &c.old else { continue };
            let gone = match &c.new {
                None => true,
                // IPv4 replaces the route in place; IPv6 may keep the old
                // next hops beside the new ones, so they go explicitly.
                Some(new) => new != old && !old.dst.is_ipv4() && !overlaps(old, new),
            };
            if gone {
                ops.push(RouteOp::Delete(old.clone()));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use crate::route_table::OverlayPeer;
    use weft_encap::MacAddr;

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
                    vtep_mac: MacAddr([2, 0x57, 172, 31, 0, 3]),
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

    fn ch(old: Option<KernelRoute>, new: Option<KernelRoute>) -> RouteChange {
        RouteChange { old, new }
    }

    #[test]
    fn change_ops_add_replace_withdraw() {
        let a = gw("10.244.2.0/24", "172.31.0.2");
        let b_old = gw("10.244.3.0/24", "172.31.0.3");
        let b_new = gw("10.244.3.0/24", "172.31.0.33");
        let c_old = gw("10.244.4.0/24", "172.31.0.4");
        let changes = [
            ch(None, Some(a.clone())),
            ch(Some(b_old), Some(b_new.clone())),
            ch(Some(c_old.clone()), None),
            // Unchanged (e.g. a shadowed source changed): nothing to do.
            ch(Some(a.clone()), Some(a.clone())),
            ch(None, None),
        ];
        assert_eq!(
            change_ops(&changes, true),
            vec![
                RouteOp::Replace(a.clone()),
                RouteOp::Replace(b_new.clone()),
                RouteOp::Delete(c_old),
            ]
        );
        // Stale hold: additions and in-place replacements only.
        assert_eq!(
            change_ops(&changes, false),
            vec![RouteOp::Replace(a), RouteOp::Replace(b_new)]
        );
    }

    #[test]
    fn change_ops_ipv6_new_next_hop_deletes_the_old_one_after() {
        let old = gw("fd10:244:2::/64", "fd00::2");
        let new = gw("fd10:244:2::/64", "fd00::9");
        assert_eq!(
            change_ops(&[ch(Some(old.clone()), Some(new.clone()))], true),
            vec![RouteOp::Replace(new), RouteOp::Delete(old)]
        );
    }

    fn multi(dst: &str, via: &[&str]) -> KernelRoute {
        KernelRoute {
            dst: c(dst),
            via: RouteVia::Multipath(via.iter().map(|v| v.parse().unwrap()).collect()),
        }
    }

    #[test]
    fn multipath_changes_are_one_replace_never_a_delete() {
        // Two paths, then one gone, then back: each step is one replace of
        // the whole route, so the prefix is never absent.
        let two = multi("10.244.9.0/24", &["10.0.1.1", "10.0.2.1"]);
        let one = gw("10.244.9.0/24", "10.0.1.1");
        assert_eq!(
            change_ops(&[ch(Some(two.clone()), Some(one.clone()))], true),
            vec![RouteOp::Replace(one.clone())]
        );
        assert_eq!(
            change_ops(&[ch(Some(one), Some(two.clone()))], true),
            vec![RouteOp::Replace(two)]
        );
        // IPv6: a delete of the old route would take the shared next hop
        // of the new one with it, so there is none; disjoint sets still
        // delete the old one after.
        let two6 = multi("fd10:244:9::/64", &["fd00::1", "fd00::2"]);
        let one6 = gw("fd10:244:9::/64", "fd00::2");
        let other6 = multi("fd10:244:9::/64", &["fd00::3", "fd00::4"]);
        assert_eq!(
            change_ops(&[ch(Some(two6.clone()), Some(one6.clone()))], true),
            vec![RouteOp::Replace(one6.clone())]
        );
        assert_eq!(
            change_ops(&[ch(Some(two6.clone()), Some(other6.clone()))], true),
            vec![
                RouteOp::Replace(other6.clone()),
                RouteOp::Delete(two6.clone())
            ]
        );
        // The full diff agrees.
        assert_eq!(
            diff(std::slice::from_ref(&one6), std::slice::from_ref(&two6)),
            vec![RouteOp::Replace(one6)]
        );
        assert_eq!(
            diff(std::slice::from_ref(&other6), std::slice::from_ref(&two6)),
            vec![RouteOp::Replace(other6), RouteOp::Delete(two6)]
        );
    }

    #[test]
    fn desired_multipath_route() {
        let hops = vec![(
            c("10.244.9.0/24"),
            NextHop::Multipath(vec![
                "10.0.1.1".parse().unwrap(),
                "10.0.2.1".parse().unwrap(),
            ]),
        )];
        assert_eq!(
            desired_routes(&hops, None),
            vec![multi("10.244.9.0/24", &["10.0.1.1", "10.0.2.1"])]
        );
    }

    #[test]
    fn change_ops_agree_with_a_full_diff() {
        // Applying the incremental ops to the old set gives the same kernel
        // state as the full diff does.
        let old = vec![
            gw("10.244.2.0/24", "172.31.0.2"),
            gw("10.244.3.0/24", "172.31.0.3"),
            gw("fd10:244:3::/64", "fd00::3"),
        ];
        let new = vec![
            gw("10.244.3.0/24", "172.31.0.30"),
            gw("10.244.5.0/24", "172.31.0.5"),
            gw("fd10:244:3::/64", "fd00::30"),
        ];
        let dsts: BTreeSet<Cidr> = old.iter().chain(&new).map(|r| r.dst).collect();
        let changes: Vec<RouteChange> = dsts
            .iter()
            .map(|d| {
                ch(
                    old.iter().find(|r| r.dst == *d).cloned(),
                    new.iter().find(|r| r.dst == *d).cloned(),
                )
            })
            .collect();
        let apply = |ops: &[RouteOp]| {
            let mut k: BTreeSet<KernelRoute> = old.iter().cloned().collect();
            for op in ops {
                match op {
                    RouteOp::Replace(r) => {
                        k.retain(|x| x.dst != r.dst || !(r.dst.is_ipv4() || overlaps(x, r)));
                        k.insert(r.clone());
                    }
                    RouteOp::Delete(r) => {
                        k.remove(r);
                    }
                }
            }
            k
        };
        let want: BTreeSet<KernelRoute> = new.iter().cloned().collect();
        assert_eq!(apply(&change_ops(&changes, true)), want);
        assert_eq!(apply(&diff(&new, &old)), want);
    }
}
