//! Overlay modes (udp, vxlan, ipip) over weftd's TUN: 2- and 3-node ping
//! matrices, TCP transfers checked by hash, IPv6 pods over the IPv4
//! underlay where the mode carries it, and clean removal on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::tcp_transfer;
use common::{Cluster, Opts, own_routes, pod_ip, pod_ip6};

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill", "ethtool"];

fn mode_suite(test: &str, mode: &str, ipv6: bool) {
    if !netsim::netns::privileged_or_skip(test, TOOLS) {
        return;
    }
    let opts = Opts {
        ipv6_pods: ipv6,
        ..Opts::default()
    };
    // Two nodes.
    let mut c = Cluster::new("rto", 2, opts.clone());
    c.start_all(mode, "");
    let links = String::from_utf8(
        c.node(1)
            .ns
            .ip(&["-o", "link", "show", "weft0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(links.contains("weft0"), "{links}");
    c.assert_ping_matrix();
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 8 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 8 << 20);
    if ipv6 {
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip6(2), 4 << 20);
    }
    c.stop_weftd(1);
    assert_eq!(own_routes(&c.node(1).ns), "", "routes left after SIGTERM");
    let out = c.node(1).ns.ip(&["-o", "link", "show", "weft0"]);
    assert!(out.is_err(), "TUN left after SIGTERM: {out:?}");
    drop(c);

    // Three nodes.
    let mut c = Cluster::new("rto", 3, opts);
    c.start_all(mode, "");
    c.assert_ping_matrix();
    tcp_transfer(&c.node(3).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(3).pod, &pod_ip(3), 4 << 20);
}

#[test]
fn vxlan_two_and_three_nodes() {
    mode_suite("vxlan_two_and_three_nodes", "vxlan", true);
}

#[test]
fn udp_two_and_three_nodes() {
    mode_suite("udp_two_and_three_nodes", "udp", true);
}

#[test]
fn ipip_two_and_three_nodes() {
    mode_suite("ipip_two_and_three_nodes", "ipip", false);
}

#[test]
fn overlay_fallback_without_offloads_single_queue() {
    if !netsim::netns::privileged_or_skip("overlay_fallback_without_offloads_single_queue", TOOLS) {
        return;
    }
    // The plain path (no vnet header, no UDP GSO/GRO, sendmmsg batches)
    // must carry the same traffic, for the UDP and the raw-socket modes.
    for mode in ["vxlan", "ipip"] {
        let mut c = Cluster::new("rto", 2, Opts::default());
        c.start_all(mode, "offload = false\nqueues = 1");
        c.assert_ping_matrix();
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);
        tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
    }
}
