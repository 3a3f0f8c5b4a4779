//! Cluster scale: a route generator (our own speaker, `weft_bgp`, in a
//! host namespace on the underlay) impersonates N nodes by announcing N
//! pod CIDRs (/24, next hop = the generator) to a route reflector that 10
//! real weftd nodes (host-gw) peer with. Measured, with BIRD 2 reflecting
//! on the ToR and with node 1's weftd reflecting for the others:
//! - time from the announcement to the last weftd having all N routes in
//!   its kernel;
//! - time from an 11th real node's weftd start to every other node having
//!   its route;
//! - each weftd's peak RSS (VmHWM).
//!
//! `CLUSTER_SCALE_N` (default `1000,10000`) lists the node counts. Root
//! only; not run in CI. Run with the release weftd next to the bench:
//! `cargo build --release -p weft-router --bin weftd && flock
//! /tmp/weft-bench.lock cargo bench -p weft-bench --bench cluster_scale`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

mod route_scale;

use netsim::bgp::{BgpSetup, with_bgp};
use netsim::netns::{privileged_or_skip, spawn_in};
use netsim::weftd::{WeftdConfig, default_weftd_path};
use netsim::{Cluster, Routing, Topology, WeftMode};
use route_scale::{fib_prefixes, peak_rss_mib, triestat};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, Speaker, SpeakerConfig};

const ASN: u32 = 64512;
const REAL: usize = 10;
const GEN: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 200);
const TIMEOUT: Duration = Duration::from_secs(120);

/// Pod CIDR of impersonated node `i`: 10.<1 + i / 256>.<i % 256>.0/24.
fn prefixes(n: u32) -> Vec<Prefix> {
    (0..n)
        .map(|i| {
            let a = Ipv4Addr::new(10, (1 + i / 256) as u8, (i % 256) as u8, 0);
            Prefix::new(IpAddr::V4(a), 24).unwrap()
        })
        .collect()
}

enum Cmd {
    Announce,
    WaitUp(std::sync::mpsc::Sender<bool>),
    Stop,
}

/// The generator: one speaker peering with the reflector at `rr`.
fn generator(n: u32, rr: Ipv4Addr, mut cmds: mpsc::Receiver<Cmd>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let peer = PeerConfig {
            local_address: Some(IpAddr::V4(GEN)),
            ..PeerConfig::new(IpAddr::V4(rr), ASN)
        };
        let mut bgp = BgpConfig::new(ASN, vec![peer]);
        bgp.listen_port = 0;
        bgp.connect_retry = 1;
        let (h, _events) = Speaker::spawn(SpeakerConfig::new(bgp, GEN, vec![])).unwrap();
        let all = prefixes(n);
        while let Some(c) = cmds.recv().await {
            match c {
                Cmd::Announce => h.announce(all.clone()).await.unwrap(),
                Cmd::WaitUp(done) => {
                    let end = Instant::now() + Duration::from_secs(30);
                    let mut up = false;
                    while !up && Instant::now() < end {
                        let peers = h.peers().await.unwrap();
                        up = peers.iter().any(|p| p.state == State::Established);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let _ = done.send(up);
                }
                Cmd::Stop => break,
            }
        }
        h.shutdown(false).await.unwrap();
    });
}

/// Who reflects: BIRD on the ToR, or node 1's weftd.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rr {
    Bird,
    Weftd,
}

fn config(c: &Cluster, i: usize, rr: Rr) -> WeftdConfig {
    let topo = c.topology();
    let base = WeftdConfig::for_node(topo, i, WeftMode::HostGw).unwrap();
    let setup = match rr {
        Rr::Bird => BgpSetup::TorReflector,
        Rr::Weftd => BgpSetup::WeftdReflector,
    };
    let mut cfg = with_bgp(base, topo, i, setup).unwrap();
    cfg.cluster_cidr = "10.0.0.0/8".into();
    let bgp = cfg.bgp.as_mut().unwrap();
    // Only the first REAL nodes exist when node 1 starts reflecting: the
    // joining node is in its peer list from the start, like the generator.
    if rr == Rr::Weftd && i == 0 {
        let mut g = toml::Table::new();
        g.insert("address".into(), GEN.to_string().into());
        g.insert("asn".into(), i64::from(ASN).into());
        g.insert("route_reflector_client".into(), true.into());
        bgp["peers"].as_array_mut().unwrap().push(g.into());
    }
    cfg
}

struct Figures {
    converge: Duration,
    join: Duration,
    rss_max: f64,
    rss_mean: f64,
}

fn run(n: u32, rr: Rr, weftd: &std::path::Path) -> Figures {
    let mut c = Topology::builder()
        .nodes(REAL + 1)
        .pods_per_node(0)
        .prefix_tag("hs")
        .weftd(weftd)
        .routing(if rr == Rr::Bird {
            Routing::Rr
        } else {
            Routing::Static
        })
        .build()
        .unwrap();
    let g = c.add_host("gen", GEN).unwrap();
    let rr_ip = match rr {
        Rr::Bird => {
            c.add_reflector_client(GEN);
            c.start_route_reflector().unwrap();
            c.topology().tor_ip().unwrap()
        }
        Rr::Weftd => c.node(0).underlay_ip(),
    };
    for i in 0..REAL {
        let cfg = config(&c, i, rr);
        c.start_weftd(i, &cfg).unwrap();
    }
    c.wait_converged(Duration::from_secs(30)).unwrap();
    let mut fibs: Vec<_> = (0..REAL).map(|i| triestat(c.node(i).ns())).collect();
    let base: Vec<usize> = fibs.iter_mut().map(fib_prefixes).collect();

    let (tx, rx) = mpsc::channel(4);
    let t = spawn_in(c.host(g).name(), move || generator(n, rr_ip, rx)).unwrap();
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    tx.blocking_send(Cmd::WaitUp(up_tx)).unwrap();
    assert!(up_rx.recv().unwrap(), "generator session not up");
    let t0 = Instant::now();
    tx.blocking_send(Cmd::Announce).unwrap();
    let want = n as usize;
    for (k, f) in fibs.iter_mut().enumerate() {
        while fib_prefixes(f) < base[k] + want {
            assert!(
                t0.elapsed() < TIMEOUT,
                "node {} has {} of {} routes",
                k + 1,
                fib_prefixes(f) - base[k],
                want
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let converge = t0.elapsed();

    let t1 = Instant::now();
    let cfg = config(&c, REAL, rr);
    c.start_weftd(REAL, &cfg).unwrap();
    let cidr = vec![c.node(REAL).pod_cidr().to_string()];
    for i in 0..REAL {
        while !c.has_routes(i, &cidr) {
            assert!(t1.elapsed() < TIMEOUT, "node {} lacks {cidr:?}", i + 1);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let join = t1.elapsed();
    let rss: Vec<f64> = (0..REAL)
        .filter_map(|i| c.weftd(i).and_then(netsim::weftd::WeftdProcess::pid))
        .map(peak_rss_mib)
        .collect();
    tx.blocking_send(Cmd::Stop).unwrap();
    t.join().unwrap().unwrap();
    Figures {
        converge,
        join,
        rss_max: rss.iter().copied().fold(0.0, f64::max),
        rss_mean: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
    }
}

fn main() {
    if !privileged_or_skip("cluster_scale", &["ip", "bird", "birdc"]) {
        return;
    }
    let weftd = default_weftd_path();
    assert!(weftd.exists(), "{} missing", weftd.display());
    let ns: Vec<u32> = std::env::var("CLUSTER_SCALE_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "cluster_scale: {REAL} weftd nodes (host-gw) + 1 joining, generator through the reflector\n"
    );
    println!(
        "| impersonated nodes | reflector | all routes in the last weftd's kernel | new node's route on all others | weftd peak RSS max / mean |"
    );
    println!("|---:|---|---:|---:|---:|");
    for &n in &ns {
        for rr in [Rr::Bird, Rr::Weftd] {
            let f = run(n, rr, &weftd);
            println!(
                "| {n} | {} | {:.0} ms | {:.0} ms | {:.1} / {:.1} MiB |",
                match rr {
                    Rr::Bird => "BIRD 2 on the ToR",
                    Rr::Weftd => "weftd on node 1",
                },
                f.converge.as_secs_f64() * 1000.0,
                f.join.as_secs_f64() * 1000.0,
                f.rss_max,
                f.rss_mean
            );
        }
    }
}
