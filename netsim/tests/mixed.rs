//! A mixed cluster on one set of namespaces: first a node running kernel
//! vxlan configured the flannel way (flannel.1, VTEP MAC derived from the
//! underlay address like weftd's) beside weft vxlan nodes; then, in
//! host-gw, a node whose routes come from FRR (zebra + bgpd) instead of
//! weftd, peering with the same BIRD route reflector as the weftd nodes.
//! Both exchange traffic with the weft nodes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use netsim::frr::{Frr, bgpd_conf};
use netsim::netns::privileged_or_skip;
use netsim::weftd::WeftdConfig;
use netsim::{Mode, Routing, Topology, WeftMode};

#[test]
fn kernel_vxlan_and_frr_nodes_beside_weft_nodes() {
    if !privileged_or_skip(
        "kernel_vxlan_and_frr_nodes_beside_weft_nodes",
        &["ip", "ping", "ethtool", "bird", "birdc", "vtysh"],
    ) {
        return;
    }
    assert!(
        std::path::Path::new(netsim::frr::FRR_DIR)
            .join("bgpd")
            .exists(),
        "FRR is not installed (scripts/deps installs it)"
    );
    // Built-in attach: the kernel and FRR nodes have no weftd to write a
    // conflist; what is under test here is the routing interop.
    let mut c = Topology::builder()
        .nodes(4)
        .pods_per_node(1)
        .prefix_tag("hc")
        .weftd(common::weftd())
        .routing(Routing::Rr)
        .build()
        .unwrap();
    let topo = c.topology().clone();

    // Weft vxlan (static routes) on nodes 1-3, kernel vxlan on node 4.
    for i in 0..3 {
        let cfg = WeftdConfig::for_node(&topo, i, WeftMode::Vxlan).unwrap();
        c.start_weftd(i, &cfg).unwrap();
    }
    c.apply_node_mode(3, Mode::KernelVxlan).unwrap();
    let r = c.ping_matrix().unwrap();
    assert!(r.all_ok(), "weft + kernel vxlan: {r}\n{}", common::logs(&c));
    c.tcp_transfer_check((0, 0), (3, 0), 4 << 20).unwrap();
    c.tcp_transfer_check((3, 0), (1, 0), 4 << 20).unwrap();
    c.clear_mode().unwrap();

    // host-gw over BGP: weftd on nodes 1-3, FRR on node 4, one reflector.
    c.start_route_reflector().unwrap();
    for i in 0..3 {
        let cfg = c.weftd_config(i, WeftMode::HostGw).unwrap();
        c.start_weftd(i, &cfg).unwrap();
    }
    let n4 = c.node(3);
    let conf = bgpd_conf(
        &n4.underlay_ip().to_string(),
        &n4.pod_cidr().to_string(),
        &topo.tor_ip().unwrap().to_string(),
    );
    let frr = Frr::start(n4.ns(), &conf, c.run_dir(), "n4").unwrap();
    c.mark_externally_routed(3);
    let conv = c.wait_converged(Duration::from_secs(20));
    assert!(
        conv.is_ok(),
        "{conv:?}\nFRR:\n{}",
        frr.vtysh("show bgp ipv4 unicast")
    );
    let r = c.ping_matrix().unwrap();
    assert!(r.all_ok(), "weft + FRR host-gw: {r}\n{}", common::logs(&c));
    c.tcp_transfer_check((3, 0), (0, 0), 4 << 20).unwrap();
    let routes = c
        .node(3)
        .ns()
        .ip(&["route", "show", "proto", "bgp"])
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert_eq!(routes.lines().count(), 3, "FRR installed: {routes}");
    drop(frr);
}
