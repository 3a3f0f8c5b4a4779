//! Throughput probe (ignored by default; run under the bench lock):
//! `flock /tmp/weft-bench.lock cargo test --release -p weft-router --test perf -- --ignored --nocapture`
//! Prints iperf3 single-stream and P=4 TCP throughput for weft's modes and
//! the kernel's vxlan / host-gw on the same topology. `WEFT_PERF_OFFLOAD=off`
//! turns segmentation/checksum offloads off on the underlay veths.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::iperf_gbps;
use common::{Cluster, KernelVtep, Opts, pod_cidr, pod_ip, underlay};

fn setup(mode: &str, offload_off: bool) -> Cluster {
    let opts = Opts {
        underlay_csum_off: true,
        no_masq: true,
        ..Opts::default()
    };
    let mut c = Cluster::new("rtp", 2, opts);
    if offload_off {
        for n in [1u8, 2] {
            c.node(n)
                .ns
                .run(
                    "ethtool",
                    &["-K", "eth0", "tso", "off", "gso", "off", "gro", "off"],
                )
                .unwrap();
        }
    }
    match mode {
        "kernel-vxlan" => {
            for (n, p) in [(1u8, 2u8), (2, 1)] {
                let v = KernelVtep {
                    name: "flannel.1".into(),
                    vni: 1,
                    port: 8472,
                    mac: format!("02:57:ac:1f:00:{n:02x}"),
                };
                c.kernel_vtep(n, &v, &[(p, format!("02:57:ac:1f:00:{p:02x}"))]);
            }
        }
        "kernel-hostgw" => {
            for (n, p) in [(1u8, 2u8), (2, 1)] {
                c.node(n)
                    .ns
                    .ip(&["route", "add", &pod_cidr(p), "via", &underlay(p)])
                    .unwrap();
            }
        }
        m => {
            let extra = std::env::var("WEFT_PERF_EXTRA")
                .unwrap_or_default()
                .replace("\\n", "\n");
            c.start_all(m, &extra);
        }
    }
    assert!(c.ping(1, &pod_ip(2)));
    c
}

#[test]
#[ignore = "throughput probe; run under flock /tmp/weft-bench.lock"]
fn throughput_table() {
    if !netsim::netns::privileged_or_skip("throughput_table", &["iperf3", "ethtool", "ip"]) {
        return;
    }
    let off = std::env::var("WEFT_PERF_OFFLOAD").is_ok_and(|v| v == "off");
    let modes = std::env::var("WEFT_PERF_MODES")
        .unwrap_or_else(|_| "kernel-vxlan,vxlan,udp,kernel-hostgw,host-gw,ipip".into());
    let secs: u32 = std::env::var("WEFT_PERF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("underlay offload {}", if off { "off" } else { "on" });
    for mode in modes.split(',') {
        let c = setup(mode, off);
        for n in [1u8, 2] {
            let _ = c.node(n).ns.run("nstat", &["-n"]);
        }
        let p1 = iperf_gbps(&c, 1, secs);
        if std::env::var("WEFT_PERF_NSTAT").is_ok() {
            for n in [1u8, 2] {
                let o = c.node(n).ns.run("nstat", &[]).unwrap();
                let l = c
                    .node(n)
                    .ns
                    .ip(&["-s", "link", "show", "weft0"])
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                println!("node {n} weft0:\n{}", String::from_utf8_lossy(&l));
                let t = c.node(n).pod.run("nstat", &["-a"]).unwrap();
                let t = String::from_utf8_lossy(&t.stdout);
                println!(
                    "pod {n}: {}",
                    t.lines()
                        .filter(|l| l.contains("Retrans")
                            || l.contains("OFO")
                            || l.contains("Csum"))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                println!("node {n} nstat:\n{}", String::from_utf8_lossy(&o.stdout));
            }
        }
        let p4 = iperf_gbps(&c, 4, secs);
        println!("{mode:14} P=1 {p1:6.2} Gbit/s   P=4 {p4:6.2} Gbit/s");
    }
}
