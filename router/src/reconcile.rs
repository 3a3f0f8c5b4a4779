//! Pure reconciliation: the kernel routes weftd wants, and the operations
//! that turn a dump of weftd's own routes into exactly that set; also the
//! kernel changes the netlink watcher reports.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::route_table::NextHop;

/// Where a kernel route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteVia {
    /// `via GATEWAY` (host-gw).
    Gateway(IpAddr),
    /// `dev IFINDEX` (the overlay TUN).
    Dev(u32),
}

/// One kernel route of weftd's protocol, in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRoute {
    /// Destination prefix.
    pub dst: Cidr,
    /// Next hop.
    pub via: RouteVia,
}

/// A change to apply to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOp {
    /// Add, replacing any route to the same destination.
    Replace(KernelRoute),
    /// Delete; "already gone" counts as success.
    Delete(KernelRoute),
}

/// A kernel change weftd may have to repair (from the netlink watcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One destination whose kernel route changes: what weftd installed
/// before (`old`) and what it wants now (`new`); `None` is "no route".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        .filter_map(|c| c.new.map(RouteOp::Replace))
        .collect();
    if delete {
        for c in changes {
            let Some(old) = c.old else { continue };
            let gone = match c.new {
                None => true,
                // IPv4 replaces the route in place; IPv6 keeps the old next
                // hop beside the new one, so it must go explicitly.
                Some(new) => new != old && !old.dst.is_ipv4(),
            };
            if gone {
                ops.push(RouteOp::Delete(old));
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
            ch(None, Some(a)),
            ch(Some(b_old), Some(b_new)),
            ch(Some(c_old), None),
            // Unchanged (e.g. a shadowed source changed): nothing to do.
            ch(Some(a), Some(a)),
            ch(None, None),
        ];
        assert_eq!(
            change_ops(&changes, true),
            vec![
                RouteOp::Replace(a),
                RouteOp::Replace(b_new),
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
            change_ops(&[ch(Some(old), Some(new))], true),
            vec![RouteOp::Replace(new), RouteOp::Delete(old)]
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
                    old.iter().find(|r| r.dst == *d).copied(),
                    new.iter().find(|r| r.dst == *d).copied(),
                )
            })
            .collect();
        let apply = |ops: &[RouteOp]| {
            let mut k: BTreeSet<KernelRoute> = old.iter().copied().collect();
            for op in ops {
                match op {
                    RouteOp::Replace(r) => {
                        if r.dst.is_ipv4() {
                            k.retain(|x| x.dst != r.dst);
                        }
                        k.insert(*r);
                    }
                    RouteOp::Delete(r) => {
                        k.remove(r);
                    }
                }
            }
            k
        };
        let want: BTreeSet<KernelRoute> = new.iter().copied().collect();
        assert_eq!(apply(&change_ops(&changes, true)), want);
        assert_eq!(apply(&diff(&new, &old)), want);
    }
}
