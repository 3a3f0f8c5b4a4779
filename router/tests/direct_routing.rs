//! `direct_routing = true` (flannel DirectRouting / calico CrossSubnet):
//! nodes 1 and 2 share the underlay subnet 172.31.0.0/24, node 3 sits on
//! 172.31.1.0/24 (same wire, reached through an on-link route, so no router
//! namespace is needed). Between nodes 1 and 2 weftd installs plain host-gw
//! routes and their pod traffic never touches the TUN; to and from node 3 it
//! goes through the vxlan overlay. The ping matrix and hashed TCP transfers
//! pass across both kinds of path.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::tcp_transfer;
use common::{Cluster, Opts, link_stat, pod_cidr, pod_ip};
use netsim::netns::Netns;

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill", "ethtool"];
const NODE3: &str = "172.31.1.3";

/// `ip route show <prefix> proto 87` in `ns`.
fn route(ns: &Netns, prefix: &str) -> String {
    let out = ns
        .ip(&["-4", "route", "show", prefix, "proto", "87"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Packets the TUN `weft0` in `ns` has sent towards weftd (tx) so far.
fn tun_tx_packets(ns: &Netns) -> u64 {
    link_stat(ns, "weft0", "tx_packets")
}

#[test]
fn direct_routing_mixes_host_gw_and_overlay() {
    if !netsim::netns::privileged_or_skip("direct_routing_mixes_host_gw_and_overlay", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rdr", 3, Opts::default());
    // Move node 3 onto its own underlay subnet; every node reaches the other
    // subnet on-link over the shared bridge.
    let n3 = &c.node(3).ns;
    n3.ip(&["addr", "del", "172.31.0.3/24", "dev", "eth0"])
        .unwrap();
    n3.ip(&["addr", "add", &format!("{NODE3}/24"), "dev", "eth0"])
        .unwrap();
    n3.ip(&["route", "add", "172.31.0.0/24", "dev", "eth0"])
        .unwrap();
    for n in [1, 2] {
        c.node(n)
            .ns
            .ip(&["route", "add", "172.31.1.0/24", "dev", "eth0"])
            .unwrap();
    }
    for n in 1..=3 {
        let cfg = c
            .config(n, "vxlan", "direct_routing = true")
            .replace("172.31.0.3", NODE3);
        c.start_weftd(n, &cfg);
    }

    // Same subnet: a gateway route on the underlay device.
    let r12 = route(&c.node(1).ns, &pod_cidr(2));
    assert!(
        r12.contains("via 172.31.0.2 dev eth0"),
        "node 1 -> 2 should be host-gw: {r12}"
    );
    let r21 = route(&c.node(2).ns, &pod_cidr(1));
    assert!(
        r21.contains("via 172.31.0.1 dev eth0"),
        "node 2 -> 1 should be host-gw: {r21}"
    );
    // Across subnets: the overlay.
    for (n, other) in [(1, 3), (2, 3), (3, 1), (3, 2)] {
        let r = route(&c.node(n).ns, &pod_cidr(other));
        assert!(
            r.contains("dev weft0"),
            "node {n} -> {other} should use the overlay: {r}"
        );
    }

    c.assert_ping_matrix();

    // Host-gw traffic between nodes 1 and 2 bypasses the TUN entirely.
    let before = (tun_tx_packets(&c.node(1).ns), tun_tx_packets(&c.node(2).ns));
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);
    let after = (tun_tx_packets(&c.node(1).ns), tun_tx_packets(&c.node(2).ns));
    // A stray packet (e.g. IPv6 router solicitation) may still reach a TUN;
    // 4 MiB of TCP through it would be thousands.
    assert!(
        after.0 - before.0 < 20 && after.1 - before.1 < 20,
        "host-gw transfer went through the TUN: {before:?} -> {after:?}"
    );

    // Overlay traffic to and from node 3 does go through it.
    let before3 = tun_tx_packets(&c.node(3).ns);
    tcp_transfer(&c.node(3).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(3).pod, &pod_ip(3), 4 << 20);
    let after3 = tun_tx_packets(&c.node(3).ns);
    assert!(
        after3 - before3 > 100,
        "overlay transfer did not use node 3's TUN: {before3} -> {after3}"
    );

    for n in 1..=3 {
        c.stop_weftd(n);
    }
}
