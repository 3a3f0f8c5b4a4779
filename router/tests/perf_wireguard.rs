//! WireGuard throughput probe (ignored by default; run under the bench
//! lock, ideally with a release weftd):
//! `WEFT_PERF_WEFTD=target/release/weftd flock /tmp/weft-bench.lock cargo test -p weft-router --test perf_wireguard -- --ignored --nocapture`
//! Same run, same topology: weft wireguard ↔ weft wireguard,
//! wireguard-go ↔ wireguard-go, weftd ↔ wireguard-go and weft vxlan as the
//! unencrypted reference; iperf3 TCP single stream and 4 streams; Gbit/s
//! and core·s per Gbit (all CPUs of the machine, busy time over the run).
//! `WEFT_PERF_OFFLOAD=off` turns segmentation offloads off on the underlay.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::iperf_gbps;
use common::wireguard::{WgGo, genkey, sh, start_weftd, start_wggo, weftd_config};
use common::{Cluster, Opts, pod_ip};
use netsim::process::{CpuSnapshot, cpu_count};

/// A cluster of two nodes in `mode`, with whatever runs wireguard-go.
fn setup(mode: &str, offload_off: bool, bin: Option<&str>) -> (Cluster, Vec<WgGo>) {
    let opts = Opts {
        no_masq: true,
        ..Opts::default()
    };
    let mut c = Cluster::new("hwp", 2, opts);
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
    let mut gos = Vec::new();
    let (k1, p1) = genkey(&c.dir, "k1");
    let (k2, p2) = genkey(&c.dir, "k2");
    let weft = |n: u8| matches!((mode, n), ("weft-wg", _) | ("weft-wggo", 1));
    for (n, key, peer, peer_pub) in [(1u8, &k1, 2u8, &p2), (2, &k2, 1, &p1)] {
        match mode {
            "vxlan" => {
                let cfg = c.config(n, "vxlan", "");
                start_weftd(&mut c, n, &cfg, peer, bin);
            }
            _ if weft(n) => {
                let cfg = weftd_config(&c, n, key, peer, peer_pub);
                start_weftd(&mut c, n, &cfg, peer, bin);
            }
            _ => gos.push(start_wggo(&c, n, key, peer, peer_pub)),
        }
    }
    assert!(c.ping(1, &pod_ip(2)), "{mode}: {}", c.logs());
    // The key files must be the ones weftd uses (sanity of the setup).
    let _ = sh("wg pubkey", &std::fs::read_to_string(&k1).unwrap());
    (c, gos)
}

#[test]
#[ignore = "throughput probe; run under flock /tmp/weft-bench.lock"]
fn wireguard_throughput_table() {
    let tools = [
        "iperf3",
        "ethtool",
        "ip",
        "wireguard-go",
        "wg",
        "nsenter",
        "unshare",
    ];
    if !netsim::netns::privileged_or_skip("wireguard_throughput_table", &tools) {
        return;
    }
    let off = std::env::var("WEFT_PERF_OFFLOAD").is_ok_and(|v| v == "off");
    let bin = std::env::var("WEFT_PERF_WEFTD").ok();
    let modes =
        std::env::var("WEFT_PERF_MODES").unwrap_or_else(|_| "weft-wg,wggo,weft-wggo,vxlan".into());
    let secs: u32 = std::env::var("WEFT_PERF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "underlay offload {}, weftd {}",
        if off { "off" } else { "on" },
        bin.as_deref().unwrap_or(common::weftd_bin())
    );
    println!("| pair | P=1 Gbit/s | core·s/Gbit | P=4 Gbit/s | core·s/Gbit |");
    println!("|---|---|---|---|---|");
    for mode in modes.split(',') {
        let (c, gos) = setup(mode, off, bin.as_deref());
        let mut row = format!("| {mode} |");
        for streams in [1u32, 4] {
            let before = CpuSnapshot::take().unwrap();
            let gbps = iperf_gbps(&c, streams, secs);
            let after = CpuSnapshot::take().unwrap();
            let cores = before.cores_busy_until(&after, cpu_count());
            // Core-seconds per gigabit moved.
            let cost = if gbps > 0.0 { cores / gbps } else { f64::NAN };
            row += &format!(" {gbps:.2} | {cost:.2} |");
        }
        println!("{row}");
        drop(gos);
        drop(c);
    }
}
