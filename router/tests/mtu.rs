//! MTU handling: the TUN MTU is the underlay's minus the mode's overhead,
//! `ping -M do` of the largest fitting size passes and one byte more gets
//! "fragmentation needed"; TCP completes over a reduced underlay MTU, also
//! when the underlay MTU drops while weftd runs.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::tcp_transfer;
use common::{Cluster, Opts, pod_ip};

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill", "ethtool"];

/// `ping -M do -s size` from pod `from` to `ip`: (success, output).
fn ping_df(c: &Cluster, from: u8, ip: &str, size: usize) -> (bool, String) {
    let out = c
        .node(from)
        .pod
        .command("ping")
        .args([
            "-M",
            "do",
            "-s",
            &size.to_string(),
            "-c",
            "1",
            "-w",
            "3",
            ip,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tun_mtu(c: &Cluster, n: u8) -> u32 {
    let out = String::from_utf8(
        c.node(n)
            .ns
            .ip(&["-o", "link", "show", "weft0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    let after = out.split(" mtu ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

fn assert_max_size(c: &Cluster, tun_mtu: usize) {
    // ICMP payload + 8 ICMP + 20 IPv4 = packet size.
    let max = tun_mtu - 28;
    let (ok, text) = ping_df(c, 1, &pod_ip(2), max);
    assert!(
        ok,
        "largest fitting ping ({max}) failed: {text}\n{}",
        c.logs()
    );
    let (ok, text) = ping_df(c, 1, &pod_ip(2), max + 1);
    assert!(!ok, "oversized DF ping passed: {text}");
    assert!(
        text.contains(&format!("mtu = {tun_mtu}")) || text.contains(&format!("mtu={tun_mtu}")),
        "no frag-needed naming mtu {tun_mtu}: {text}"
    );
}

#[test]
fn mtu_vxlan_max_size_and_frag_needed() {
    if !netsim::netns::privileged_or_skip("mtu_vxlan_max_size_and_frag_needed", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rtm", 2, Opts::default());
    c.start_all("vxlan", "");
    assert_eq!(tun_mtu(&c, 1), 1450);
    assert_max_size(&c, 1450);
}

#[test]
fn mtu_reduced_underlay_tcp_completes_for_each_mode() {
    if !netsim::netns::privileged_or_skip("mtu_reduced_underlay_tcp_completes_for_each_mode", TOOLS)
    {
        return;
    }
    // vxlan with finished underlay checksums takes the TX TAP (tunnel
    // offload); udp and ipip the sockets.
    for (mode, overhead, csum_off) in [("udp", 28, false), ("ipip", 20, false), ("vxlan", 50, true)]
    {
        let opts = Opts {
            underlay_mtu: Some(1300),
            underlay_csum_off: csum_off,
            ..Opts::default()
        };
        let mut c = Cluster::new("rtm", 2, opts);
        c.start_all(mode, "");
        assert_eq!(tun_mtu(&c, 1), 1300 - overhead, "{mode}");
        assert_max_size(&c, 1300 - overhead as usize);
        // Pods keep MTU 1500: TCP must discover the smaller path MTU.
        tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);
        tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
    }
}

#[test]
fn mtu_underlay_shrinks_while_running() {
    if !netsim::netns::privileged_or_skip("mtu_underlay_shrinks_while_running", TOOLS) {
        return;
    }
    // Through the UDP sockets, then through the TX TAP (tunnel offload).
    for csum_off in [false, true] {
        let opts = Opts {
            underlay_csum_off: csum_off,
            ..Opts::default()
        };
        let c = Cluster::new("rtm", 2, opts);
        shrink_while_running(c);
    }
}

fn shrink_while_running(mut c: Cluster) {
    c.start_all("vxlan", "");
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 1 << 20);
    // Shrink every underlay link to 1280.
    for n in [1u8, 2] {
        c.node(n)
            .ns
            .ip(&["link", "set", "eth0", "mtu", "1280"])
            .unwrap();
    }
    let ports = String::from_utf8(
        c.sw.ip(&["-o", "link", "show", "master", "br0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    for line in ports.lines() {
        let name = line.split(": ").nth(1).unwrap().split('@').next().unwrap();
        c.sw.ip(&["link", "set", name, "mtu", "1280"]).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tun_mtu(&c, 1) != 1230 || tun_mtu(&c, 2) != 1230 {
        assert!(
            std::time::Instant::now() < deadline,
            "TUN MTU did not follow the underlay\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 4 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 4 << 20);
    assert_max_size(&c, 1230);
}
