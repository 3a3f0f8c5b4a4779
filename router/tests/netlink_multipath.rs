//! The netlink edge with multipath routes, in a namespace: `RouteSync`
//! installs `RTA_MULTIPATH` routes for both families, dumps them back as
//! the same `KernelRoute`, and the operations `change_ops` computes for a
//! path going and coming back leave exactly the wanted route in the kernel
//! each time (IPv6 included, where a replace may keep other routes beside
//! the new one).
#![allow(clippy::unwrap_used)]

use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use weft_router::netlink::RouteSync;
use weft_router::reconcile::{KernelRoute, RouteChange, RouteOp, RouteVia, change_ops};

fn route(dst: &str, via: &[&str]) -> KernelRoute {
    let gws: Vec<_> = via.iter().map(|v| v.parse().unwrap()).collect();
    KernelRoute {
        dst: dst.parse().unwrap(),
        via: match gws[..] {
            [one] => RouteVia::Gateway(one),
            _ => RouteVia::Multipath(gws),
        },
    }
}

#[test]
fn multipath_routes_install_dump_and_change_in_place() {
    if !privileged_or_skip("multipath_routes_install_dump_and_change_in_place", &["ip"]) {
        return;
    }
    let ns = Netns::create(&format!("{}-n", unique_prefix("he"))).unwrap();
    ns.ip(&["link", "add", "hea", "type", "veth", "peer", "name", "heb"])
        .unwrap();
    for dev in ["hea", "heb"] {
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
    ns.ip(&["addr", "add", "10.98.0.1/24", "dev", "hea"])
        .unwrap();
    ns.ip(&["-6", "addr", "add", "fd98::1/64", "dev", "hea", "nodad"])
        .unwrap();
    ns.run_in(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sync = RouteSync::new().unwrap();
            let steps = [
                (
                    route("10.244.9.0/24", &["10.98.0.2", "10.98.0.3"]),
                    route("fd10:244:9::/64", &["fd98::2", "fd98::3"]),
                ),
                // One path gone.
                (
                    route("10.244.9.0/24", &["10.98.0.3"]),
                    route("fd10:244:9::/64", &["fd98::3"]),
                ),
                // Back, then to a set sharing nothing with the last.
                (
                    route("10.244.9.0/24", &["10.98.0.2", "10.98.0.3"]),
                    route("fd10:244:9::/64", &["fd98::2", "fd98::3"]),
                ),
                (
                    route("10.244.9.0/24", &["10.98.0.4", "10.98.0.5"]),
                    route("fd10:244:9::/64", &["fd98::4", "fd98::5"]),
                ),
            ];
            let mut have: Vec<KernelRoute> = Vec::new();
            for (i, (v4, v6)) in steps.into_iter().enumerate() {
                let want = vec![v4, v6];
                let changes: Vec<RouteChange> = want
                    .iter()
                    .map(|w| RouteChange {
                        old: have.iter().find(|h| h.dst == w.dst).cloned(),
                        new: Some(w.clone()),
                    })
                    .collect();
                let ops = change_ops(&changes, true);
                if i == 1 || i == 2 {
                    // A path going or coming back is one replace per route.
                    assert!(
                        ops.iter().all(|o| matches!(o, RouteOp::Replace(_))),
                        "step {i}: {ops:?}"
                    );
                }
                sync.apply_ops(&ops).await.unwrap();
                let mut dumped = sync.dump_own().await.unwrap();
                dumped.sort();
                let mut sorted = want.clone();
                sorted.sort();
                assert_eq!(dumped, sorted, "step {i} after {ops:?}");
                have = want;
            }
            let gone: Vec<RouteOp> = have.into_iter().map(RouteOp::Delete).collect();
            sync.apply_ops(&gone).await.unwrap();
            assert!(sync.dump_own().await.unwrap().is_empty());
        });
    })
    .unwrap();
}
