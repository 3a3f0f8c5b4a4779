//! Overlay modes (udp, vxlan, ipip) over weftd's TUN: 2- and 3-node ping
//! matrices, TCP transfers checked by hash, IPv6 pods over the IPv4
//! underlay where the mode carries it, and clean removal on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::traffic::{iperf_server, tcp_transfer};
use common::{Cluster, Opts, link_stat, own_routes, pod_ip, pod_ip6};

const TOOLS: &[&str] = &[
    "ip", "ping", "sysctl", "kill", "ethtool", "iperf3", "timeout",
];

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

/// weftd's log without terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn tap_rx_bytes(c: &Cluster, n: u8) -> u64 {
    link_stat(&c.node(n).ns, "weft0tx", "rx_bytes")
}

#[test]
fn tunnel_offload_carries_vxlan_and_udp_bursts() {
    if !netsim::netns::privileged_or_skip("tunnel_offload_carries_vxlan_and_udp_bursts", TOOLS) {
        return;
    }
    // With finished checksums on the underlay (a NIC, or a veth with tx
    // checksum offload off) TSO bursts go to the kernel through the TX TAP,
    // segmented after encapsulation; the bytes must arrive intact.
    for mode in ["vxlan", "udp"] {
        let opts = Opts {
            ipv6_pods: true,
            underlay_csum_off: true,
            ..Opts::default()
        };
        let mut c = Cluster::new("rtt", 2, opts);
        c.start_all(mode, "");
        let logs = plain(&c.logs());
        assert_eq!(
            logs.matches("tunnel_gso=true").count(),
            2,
            "{mode}: TX TAP not in use on both nodes:\n{logs}"
        );
        c.assert_ping_matrix();
        let before = tap_rx_bytes(&c, 1);
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 8 << 20);
        tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 8 << 20);
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip6(2), 4 << 20);
        let sent = tap_rx_bytes(&c, 1) - before;
        assert!(
            sent > 12 << 20,
            "{mode}: only {sent} bytes went through node 1's TX TAP"
        );
        // SIGTERM under full load: weftd must still stop (bounded in
        // stop_weftd), not spin in its read loop.
        let mut server = iperf_server(&c);
        let mut client = c
            .node(1)
            .pod
            .command("timeout")
            .args(["10", "iperf3", "-c", &pod_ip(2), "-t", "4", "-P", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.stop_weftd(1);
        for p in [&mut client, &mut server] {
            let _ = p.kill();
            let _ = p.wait();
        }
        let out = c.node(1).ns.ip(&["-o", "link", "show", "weft0tx"]);
        assert!(out.is_err(), "TX TAP left after SIGTERM: {out:?}");
    }
}

#[test]
fn tunnel_offload_falls_back_to_sockets() {
    if !netsim::netns::privileged_or_skip("tunnel_offload_falls_back_to_sockets", TOOLS) {
        return;
    }
    // Switched off, or with reverse path filtering on, or on a veth that
    // leaves checksums unfinished: weftd sends through its UDP sockets.
    let cases = [
        ("tunnel_offload = false", true, "", "tunnel_gso=false"),
        (
            "",
            true,
            "net.ipv4.conf.all.rp_filter=1",
            "rp_filter is not 0",
        ),
        ("", false, "", "unfinished inner checksums"),
    ];
    for (extra, csum_off, sysctl, why) in cases {
        let opts = Opts {
            underlay_csum_off: csum_off,
            ..Opts::default()
        };
        let mut c = Cluster::new("rtt", 2, opts);
        if !sysctl.is_empty() {
            for n in [1u8, 2] {
                c.node(n).ns.run("sysctl", &["-qw", sysctl]).unwrap();
            }
        }
        c.start_all("vxlan", extra);
        let logs = plain(&c.logs());
        assert!(
            logs.contains(why),
            "{extra}/{sysctl}: no {why:?} in\n{logs}"
        );
        assert!(!logs.contains("tunnel_gso=true"), "{logs}");
        c.assert_ping_matrix();
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);
        tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
        let out = c.node(1).ns.ip(&["-o", "link", "show", "weft0tx"]);
        assert!(out.is_err(), "TX TAP exists without being used: {out:?}");
    }
}
