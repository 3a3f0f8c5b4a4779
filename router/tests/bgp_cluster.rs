//! weftd nodes learning each other's pod CIDRs over BGP in a netsim
//! cluster (no static routes): BIRD as iBGP route reflector on the ToR
//! (host-gw and vxlan), a 2-node weftd full mesh, and weftd reflecting for
//! other weftds. The ping matrix across pods must pass in each.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netsim::bgp::{BgpSetup, Bird, bird_reflector_conf, with_bgp};
use netsim::netns::privileged_or_skip;
use netsim::weftd::WeftdConfig;
use netsim::{Cluster, Topology, WeftMode};

const TOOLS: &[&str] = &["ip", "ping", "bird", "birdc", "kill", "bridge"];

fn cluster(nodes: usize, tor: bool) -> Cluster {
    Topology::builder()
        .nodes(nodes)
        .pods_per_node(1)
        .tor(tor)
        .prefix_tag("wb")
        .weftd(env!("CARGO_BIN_EXE_weftd"))
        .build()
        .unwrap()
}

fn logs(c: &Cluster) -> String {
    c.weftds()
        .map(WeftdProcess::log_tail)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

use netsim::weftd::WeftdProcess;

/// Starts weftd on every node with `setup` instead of static routes.
fn start_all(c: &mut Cluster, mode: WeftMode, setup: BgpSetup) {
    let topo = c.topology().clone();
    for i in 0..topo.nodes {
        let cfg = with_bgp(
            WeftdConfig::for_node(&topo, i, mode).unwrap(),
            &topo,
            i,
            setup,
        )
        .unwrap();
        c.start_weftd(i, &cfg).unwrap();
    }
}

/// Waits until every node has a weftd route to every other node's pod
/// CIDR; in host-gw the gateway must be the owner's underlay IP (next hop
/// preserved through any reflector).
fn wait_routes(c: &Cluster, mode: WeftMode, within: Duration) {
    let end = Instant::now() + within;
    for n in c.nodes() {
        for other in c.nodes().iter().filter(|o| o.number() != n.number()) {
            let cidr = other.pod_cidr().to_string();
            let want = match mode {
                WeftMode::HostGw => format!("via {} ", other.underlay_ip()),
                _ => "dev weft0".to_owned(),
            };
            loop {
                let out = n
                    .ns()
                    .ip(&["-4", "route", "show", &cidr, "proto", "87"])
                    .unwrap();
                let out = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.contains(&want) {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "node {} has no route {cidr} {want} (have {out:?})\n{}",
                    n.number(),
                    logs(c)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn ping_all(c: &Cluster, what: &str) {
    let r = c.ping_matrix().unwrap();
    assert!(r.all_ok(), "{what}: ping matrix failed: {r}\n{}", logs(c));
}

#[test]
fn bird_route_reflector_with_three_weftd_clients() {
    if !privileged_or_skip("bird_route_reflector_with_three_weftd_clients", TOOLS) {
        return;
    }
    let mut c = cluster(3, true);
    let conf = bird_reflector_conf(c.topology()).unwrap();
    let bird = Bird::start(c.tor().unwrap(), &conf, c.run_dir(), "rr").unwrap();
    for mode in [WeftMode::HostGw, WeftMode::Vxlan] {
        start_all(&mut c, mode, BgpSetup::TorReflector);
        wait_routes(&c, mode, Duration::from_secs(20));
        ping_all(&c, &format!("BIRD RR, {mode:?}"));
    }
    // BIRD reflected, it did not originate: all three CIDRs, each from its node.
    let out = bird.birdc(&["show", "route", "all"]);
    for n in c.nodes() {
        assert!(out.contains(&n.pod_cidr().to_string()), "{out}");
    }
}

#[test]
fn weftd_full_mesh_two_nodes() {
    if !privileged_or_skip("weftd_full_mesh_two_nodes", TOOLS) {
        return;
    }
    let mut c = cluster(2, false);
    start_all(&mut c, WeftMode::HostGw, BgpSetup::FullMesh);
    wait_routes(&c, WeftMode::HostGw, Duration::from_secs(20));
    ping_all(&c, "full mesh");
}

#[test]
fn weftd_as_route_reflector_for_weftds() {
    if !privileged_or_skip("weftd_as_route_reflector_for_weftds", TOOLS) {
        return;
    }
    let mut c = cluster(3, false);
    start_all(&mut c, WeftMode::HostGw, BgpSetup::WeftdReflector);
    // Nodes 2 and 3 only peer with node 1: they learn each other through it.
    wait_routes(&c, WeftMode::HostGw, Duration::from_secs(20));
    ping_all(&c, "weftd RR");
}

/// Polls `ip -n ns route show cidr proto 87` until `stop`; returns how many
/// polls found no route.
fn count_gaps(ns: String, cidr: String, stop: Arc<AtomicBool>) -> (usize, usize) {
    let (mut polls, mut gaps) = (0, 0);
    let end = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let out = Command::new("ip")
            .args(["-n", &ns, "-4", "route", "show", &cidr, "proto", "87"])
            .output()
            .unwrap();
        polls += 1;
        if out.stdout.is_empty() {
            gaps += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (polls, gaps)
}

#[test]
fn graceful_restart_keeps_routes_and_forwarding() {
    if !privileged_or_skip("graceful_restart_keeps_routes_and_forwarding", TOOLS) {
        return;
    }
    let mut c = cluster(2, false);
    start_all(&mut c, WeftMode::HostGw, BgpSetup::FullMesh);
    wait_routes(&c, WeftMode::HostGw, Duration::from_secs(20));
    ping_all(&c, "before restart");

    // Node 1 (index 0) watches its route to node 2's pods; a pod on node 1
    // pings a pod on node 2 (80 x 0.1 s) while node 2's weftd restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (ns, cidr) = (
            c.node(0).ns().name().to_owned(),
            c.node(1).pod_cidr().to_string(),
        );
        let stop = stop.clone();
        std::thread::spawn(move || count_gaps(ns, cidr, stop))
    };
    let pinger = {
        let (ns, ip) = (c.pod(0, 0).ns().name().to_owned(), c.pod(1, 0).ip());
        std::thread::spawn(move || {
            Command::new("timeout")
                .args(["30", "ip", "netns", "exec", &ns, "ping", "-q", "-c", "80"])
                .args(["-i", "0.1", "-W", "1", &ip.to_string()])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let topo = c.topology().clone();
    let cfg = with_bgp(
        WeftdConfig::for_node(&topo, 1, WeftMode::HostGw).unwrap(),
        &topo,
        1,
        BgpSetup::FullMesh,
    )
    .unwrap();
    // SIGTERM (graceful: routes stay, peers keep ours), then start again.
    c.start_weftd(1, &cfg).unwrap();
    let ping = pinger.join().unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    // The restarted weftd relearns its table and releases stale routes.
    let relearned = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        // Released by End-of-RIB from the peer, not by the restart time.
        c.weftd(1)
            .unwrap()
            .log_tail()
            .contains("relearned after restart: End-of-RIB from every peer")
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (polls, gaps) = watcher.join().unwrap();
    assert!(relearned, "no relearn after restart\n{}", logs(&c));
    assert!(polls > 20, "{polls}");
    assert_eq!(
        gaps,
        0,
        "peer lost the route {gaps}/{polls} polls\n{}",
        logs(&c)
    );
    assert!(
        ping_out.contains(" 80 received"),
        "ping lost packets during the restart: {ping_out}\n{}",
        logs(&c)
    );
    wait_routes(&c, WeftMode::HostGw, Duration::from_secs(5));
    ping_all(&c, "after restart");
}
