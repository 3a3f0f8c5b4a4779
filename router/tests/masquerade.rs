//! `ip_masq`: a pod's traffic to "the internet" (a namespace on the
//! underlay, outside cluster_cidr) arrives from the node's underlay
//! address; pod-to-pod traffic keeps the pod's address; the `inet weft`
//! table is repaired when deleted and gone after weftd stops.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::node_rig::NodeRig;
use netsim::WeftMode;
use netsim::netns::Netns;

const TOOLS: &[&str] = &["ip", "ping", "ethtool", "sysctl", "nft"];

/// A UDP socket bound in `ns`.
fn udp_in(ns: &Netns, bind: &str) -> UdpSocket {
    let bind = bind.to_owned();
    let s = ns.run_in(move || UdpSocket::bind(bind)).unwrap().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s
}

/// Sends from `from` to `to` until `server` receives; returns the source
/// address the server saw.
fn source_seen(from: &Netns, server: &UdpSocket, to: &str) -> SocketAddr {
    let client = udp_in(from, "0.0.0.0:0");
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        client.send_to(b"who am i", to).unwrap();
        if let Ok((_, src)) = server.recv_from(&mut buf) {
            return src;
        }
    }
    panic!("nothing arrived at {to}");
}

fn has_table(ns: &Netns) -> bool {
    ns.run("nft", &["list", "table", "inet", "weft"]).is_ok()
}

fn masquerade(tag: &str, mode: WeftMode) {
    if !netsim::netns::privileged_or_skip(&format!("masquerade_{tag}"), TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new(&format!("masquerade_{tag}"), 2, true) else {
        return;
    };
    for i in 0..2 {
        let cfg = rig.config(i, mode, "", "");
        rig.start_weftd(i, &cfg, &[]);
    }
    let a = rig.attach_pod(0);
    let b = rig.attach_pod(1);
    let node1 = rig.cluster.node(0).underlay_ip().to_string();
    let internet = rig.cluster.tor().unwrap();
    let tor_ip = rig.cluster.topology().tor_ip().unwrap().to_string();

    // Out of the cluster: the node's address, and replies come back.
    let srv = udp_in(internet, "0.0.0.0:9999");
    let src = source_seen(&rig.pods[a].ns, &srv, &format!("{tor_ip}:9999"));
    assert_eq!(src.ip().to_string(), node1, "not masqueraded");
    assert!(rig.ping(a, &tor_ip), "no reply through the NAT");

    // Pod to pod: the pod's own address.
    let srv_b = udp_in(&rig.pods[b].ns, "0.0.0.0:9998");
    let to_b = format!("{}:9998", rig.pods[b].ip);
    let src = source_seen(&rig.pods[a].ns, &srv_b, &to_b);
    assert_eq!(
        src.ip().to_string(),
        rig.pods[a].ip,
        "pod-to-pod masqueraded"
    );

    // Someone deletes the table: weftd puts it back (nftables events).
    let node_ns = rig.cluster.node(0).ns();
    node_ns
        .run("nft", &["delete", "table", "inet", "weft"])
        .unwrap();
    let t0 = Instant::now();
    while !has_table(node_ns) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "table not repaired:\n{}",
            rig.log(0)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("masquerade table repaired after {:?}", t0.elapsed());
    let srv = udp_in(internet, "0.0.0.0:9997");
    // A fresh source port: a new conntrack entry, so the rules decide.
    let src = source_seen(&rig.pods[a].ns, &srv, &format!("{tor_ip}:9997"));
    assert_eq!(
        src.ip().to_string(),
        node1,
        "repaired table does not masquerade"
    );

    // Stop: the table goes with weftd.
    rig.detach_all();
    assert!(rig.stop_weftd(0).success(), "{}", rig.log(0));
    assert!(
        !has_table(rig.cluster.node(0).ns()),
        "table left after stop"
    );
    assert!(rig.log(0).contains("masquerade removed"), "{}", rig.log(0));
    assert!(rig.stop_weftd(1).success());
}

#[test]
fn masquerade_hostgw() {
    masquerade("mh", WeftMode::HostGw);
}

#[test]
fn masquerade_vxlan() {
    masquerade("mv", WeftMode::Vxlan);
}

/// `ip_masq = false`: no table, and a table a previous run left is removed.
#[test]
fn ip_masq_off_installs_nothing_and_clears_leftovers() {
    if !netsim::netns::privileged_or_skip("ip_masq_off_installs_nothing", TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new("ip_masq_off", 1, true) else {
        return;
    };
    let ns = rig.cluster.node(0).ns();
    ns.run("nft", &["add", "table", "inet", "weft"]).unwrap();
    let cfg = rig.config(0, WeftMode::HostGw, "ip_masq = false", "");
    rig.start_weftd(0, &cfg, &[]);
    assert!(!has_table(rig.cluster.node(0).ns()), "{}", rig.log(0));
    let a = rig.attach_pod(0);
    let tor_ip = rig.cluster.topology().tor_ip().unwrap().to_string();
    let srv = udp_in(rig.cluster.tor().unwrap(), "0.0.0.0:9999");
    let src = source_seen(&rig.pods[a].ns, &srv, &format!("{tor_ip}:9999"));
    assert_eq!(src.ip().to_string(), rig.pods[a].ip);
    rig.detach_all();
    assert!(rig.stop_weftd(0).success());
}
