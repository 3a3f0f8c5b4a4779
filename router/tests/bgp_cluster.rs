//! weftd nodes learning each other's pod CIDRs over BGP in a netsim
//! cluster (no static routes): BIRD as iBGP route reflector on the ToR
//! (host-gw and vxlan), a 2-node weftd full mesh, and weftd reflecting for
//! other weftds. The ping matrix across pods must pass in each.
#![allow(clippy::unwrap_used)]

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
