//! Root test: netsim's weft modes with the real `weftd` binary (built by
//! `cargo test --workspace` next to this test's binary): every mode on a
//! 3-node cluster passes the ping matrix and a hash-checked TCP transfer,
//! and weftd leaves nothing behind when it is stopped.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use netsim::netns::privileged_or_skip;
use netsim::{Mode, Topology, WeftMode};

/// `target/<profile>/weftd`, next to `target/<profile>/deps/<this test>`.
fn weftd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("weftd")
}

#[test]
fn every_weft_mode_carries_pod_traffic_on_three_nodes() {
    if !privileged_or_skip(
        "every_weft_mode_carries_pod_traffic_on_three_nodes",
        &["ip", "ethtool", "ping"],
    ) {
        return;
    }
    let weftd = weftd();
    assert!(
        weftd.exists(),
        "{} missing: run `cargo test --workspace` (it builds weftd)",
        weftd.display()
    );
    let mut c = Topology::builder()
        .nodes(3)
        .pods_per_node(2)
        .prefix_tag("we")
        .weftd(&weftd)
        .build()
        .unwrap();
    for mode in [
        WeftMode::HostGw,
        WeftMode::Vxlan,
        WeftMode::Udp,
        WeftMode::Ipip,
    ] {
        c.apply_mode(Mode::Weft(mode)).unwrap();
        let r = c.ping_matrix().unwrap();
        assert!(r.all_ok(), "{mode:?}: failed pairs {:?}", r.failures());
        let t = c.tcp_transfer_check((0, 0), (2, 1), 8 << 20).unwrap();
        assert_eq!(t.bytes, 8 << 20, "{mode:?}");
        // SIGTERM: weftd must exit 0 and remove its routes.
        c.clear_mode().unwrap();
        let routes = c
            .node(0)
            .ns()
            .ip(&["route", "show", "proto", "87"])
            .unwrap();
        assert!(
            routes.stdout.is_empty(),
            "{mode:?}: weftd left routes: {}",
            String::from_utf8_lossy(&routes.stdout)
        );
        let r = c.ping_matrix().unwrap();
        assert!(
            !r.all_ok(),
            "{mode:?}: cross-node pings must fail once weftd is gone"
        );
    }
}
