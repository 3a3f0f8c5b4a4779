//! End-to-end scenarios on one cluster as real nodes run it: pods
//! attached through weft's CNI chain with the conflist weftd wrote, routes
//! from BGP through BIRD reflecting on the ToR, host-gw. In order, on the
//! same cluster: pod-to-pod (ping matrix, checked TCP, same node and
//! across), CNI CHECK, hostPort (from another node, from the node, hairpin),
//! masquerade to an "internet" namespace, node join, graceful restart under
//! traffic, node failure (SIGKILL), route reflector failure, pod churn.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use netsim::cni::{self, Attachment, Extra};
use netsim::netns::{Netns, privileged_or_skip};
use netsim::weftd::WeftdConfig;
use netsim::{Cluster, PodId, Routing, WeftMode};
use serde_json::json;

/// weftd's graceful-restart time in these tests: a crashed node's routes
/// leave the others within this plus BIRD's reaction.
const RESTART_TIME: i64 = 4;

fn config(c: &Cluster, i: usize) -> WeftdConfig {
    let mut cfg = c.weftd_config(i, WeftMode::HostGw).unwrap();
    cfg.ip_masq = Some(true);
    if let Some(b) = cfg.bgp.as_mut() {
        b.insert("restart_time".into(), RESTART_TIME.into());
    }
    cfg
}

fn pods_of(c: &Cluster, nodes: &[usize]) -> Vec<PodId> {
    c.all_pods()
        .map(netsim::Pod::id)
        .filter(|(i, _)| nodes.contains(i))
        .collect()
}

fn matrix(c: &Cluster, nodes: &[usize], what: &str) {
    let r = c.ping_matrix_of(&pods_of(c, nodes)).unwrap();
    assert!(r.all_ok(), "{what}: {r}\n{}", common::logs(c));
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cluster_scenarios_host_gw_with_bird_reflector() {
    if !privileged_or_skip(
        "cluster_scenarios_host_gw_with_bird_reflector",
        common::TOOLS,
    ) {
        return;
    }
    let t_all = Instant::now();
    // Node 4 joins later.
    let mut c = common::cluster(4, 2, Routing::Rr);
    c.start_route_reflector().unwrap();
    let t0 = Instant::now();
    for i in 0..3 {
        let cfg = config(&c, i);
        c.start_weftd(i, &cfg).unwrap();
    }
    let conv = c.wait_converged(Duration::from_secs(20)).unwrap();
    eprintln!(
        "3 nodes up and converged through BIRD in {:?} (routes {:?})",
        t0.elapsed(),
        conv
    );

    // Pod-to-pod, same node and across.
    matrix(&c, &[0, 1, 2], "3 nodes");
    c.tcp_transfer_check((0, 0), (0, 1), 4 << 20).unwrap();
    c.tcp_transfer_check((0, 0), (2, 1), 4 << 20).unwrap();
    c.check_pod((1, 0)).unwrap();

    host_port(&c);
    masquerade(&c);

    // Node join: every node has the new node's route within 3 s.
    let t = Instant::now();
    let cfg = config(&c, 3);
    c.start_weftd(3, &cfg).unwrap();
    let joined = c.wait_converged(Duration::from_secs(3));
    assert!(joined.is_ok(), "join: {joined:?}");
    eprintln!(
        "node 4 joined: routes everywhere {:?} after start",
        t.elapsed()
    );
    matrix(&c, &[0, 1, 2, 3], "after join");

    graceful_restart(&mut c);
    node_failure(&mut c);
    reflector_failure(&mut c);
    churn(&c);
    eprintln!("all scenarios in {:?}", t_all.elapsed());
}

/// A pod with portMappings 8080 → 80 on node 1, reached on node 1's
/// address from node 2, from node 1 itself and from the pod (hairpin).
fn host_port(c: &Cluster) {
    let files = c.node_files_dir(0);
    let list = cni::read_conflist(&files).unwrap();
    let ns = Netns::create(&format!("{}-hp", c.prefix())).unwrap();
    let att = Attachment {
        container_id: format!("{}-hostport", c.prefix()),
        netns: ns.name().to_owned(),
        ifname: "eth0".into(),
    };
    let rt = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    ]});
    let data = cni::ipam_dir(&files);
    let extra = Extra {
        data_dir: Some(&data),
        runtime: Some(&rt),
    };
    let node = c.node(0).ns();
    let plugins = common::plugins();
    let result = cni::add(node, &plugins, &list, &att, extra).unwrap();
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80));
    let target = SocketAddr::from((c.node(0).underlay_ip(), 8080));
    for (what, client) in [
        ("another node", c.node(1).ns()),
        ("the node itself", node),
        ("the pod (hairpin)", &ns),
    ] {
        let seen = common::tcp_probe(&ns, bind, client, target);
        assert!(
            seen.is_ok(),
            "hostPort from {what}: {seen:?}\n{}",
            sh(&["ip", "netns", "exec", node.name(), "nft", "list", "ruleset"])
        );
    }
    cni::del(node, &plugins, &list, &att, &result, extra).unwrap();
    cni::del(node, &plugins, &list, &att, &result, extra).unwrap();
}

/// A pod reaching an address outside the cluster is masqueraded: the
/// "internet" (an address on the ToR) sees the node's address.
fn masquerade(c: &Cluster) {
    let tor = c.tor().unwrap();
    tor.ip(&["link", "set", "lo", "up"]).unwrap();
    tor.ip(&["addr", "add", "203.0.113.1/32", "dev", "lo"])
        .unwrap();
    let via = c.topology().tor_ip().unwrap().to_string();
    c.node(0)
        .ns()
        .ip(&["route", "add", "203.0.113.0/24", "via", &via])
        .unwrap();
    let target = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 1), 80));
    let seen = common::tcp_probe(tor, target, c.pod(0, 0).ns(), target).unwrap();
    assert_eq!(
        seen.ip(),
        std::net::IpAddr::V4(c.node(0).underlay_ip()),
        "the internet must see the node address, not the pod's {}",
        c.pod(0, 0).ip()
    );
}

/// Pings (every 50 ms, 1 s timeout each) from pod `from` to pod `to` while
/// `during` runs; returns (sent, received).
fn ping_during(
    c: &mut Cluster,
    from: PodId,
    to: PodId,
    during: impl FnOnce(&mut Cluster),
) -> (u32, u32) {
    let ns = c.pod(from.0, from.1).ns().name().to_owned();
    let ip = c.pod(to.0, to.1).ip().to_string();
    let pinger = std::thread::spawn(move || {
        Command::new("timeout")
            .args(["20", "ip", "netns", "exec", &ns, "ping", "-q", "-c", "80"])
            .args(["-i", "0.05", "-W", "1", &ip])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    during(c);
    let out = pinger.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let num = |w: &str| -> u32 {
        let toks: Vec<&str> = line.split([',', ' ']).filter(|t| !t.is_empty()).collect();
        toks.iter()
            .position(|t| *t == w)
            .and_then(|p| toks.get(p.wrapping_sub(1)))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (num("packets"), num("received"))
}

/// SIGTERM + start of node 2's weftd under traffic loses nothing.
fn graceful_restart(c: &mut Cluster) {
    let (sent, got) = ping_during(c, (0, 0), (1, 0), |c| {
        let cfg = config(c, 1);
        c.start_weftd(1, &cfg).unwrap();
    });
    assert_eq!(sent, 80);
    assert_eq!(
        got,
        sent,
        "graceful restart lost packets\n{}",
        common::logs(c)
    );
    c.wait_converged(Duration::from_secs(10)).unwrap();
}

/// SIGKILL of node 3's weftd: its route leaves the others within the
/// restart time; the survivors still reach each other; it comes back.
fn node_failure(c: &mut Cluster) {
    let gone = c.node(2).pod_cidr().to_string();
    let t = Instant::now();
    c.kill_weftd(2);
    let end = t + Duration::from_secs(RESTART_TIME as u64 + 5);
    for i in [0, 1, 3] {
        while c.has_routes(i, std::slice::from_ref(&gone)) {
            assert!(
                Instant::now() < end,
                "node {} still routes {gone} {:?} after the crash\n{}",
                i + 1,
                t.elapsed(),
                c.route_reflector()
                    .map(netsim::bgp::Bird::diagnostics)
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "crashed node's route gone everywhere after {:?}",
        t.elapsed()
    );
    matrix(c, &[0, 1, 3], "survivors");
    let cfg = config(c, 2);
    c.start_weftd(2, &cfg).unwrap();
    c.wait_converged(Duration::from_secs(10)).unwrap();
    matrix(c, &[0, 1, 2, 3], "after the node came back");
}

/// BIRD crashes: with graceful restart the nodes keep their routes and
/// forward; BIRD returns, every session re-establishes, routes refresh.
fn reflector_failure(c: &mut Cluster) {
    c.kill_route_reflector();
    // Longer than the hold time: a session without graceful restart is gone.
    std::thread::sleep(Duration::from_secs(4));
    let all = [0, 1, 2, 3];
    for i in all {
        assert!(
            c.has_routes(i, &c.peer_cidrs(i)),
            "node {} lost routes while the reflector was down\n{}",
            i + 1,
            common::logs(c)
        );
    }
    matrix(c, &all, "reflector down");
    let t = Instant::now();
    c.start_route_reflector().unwrap();
    let end = t + Duration::from_secs(20);
    loop {
        let out = c.route_reflector().unwrap().birdc(&["show", "protocols"]);
        if out.matches("Established").count() == 4 {
            break;
        }
        assert!(Instant::now() < end, "sessions not back: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "reflector back, 4 sessions established after {:?}",
        t.elapsed()
    );
    c.wait_converged(Duration::from_secs(10)).unwrap();
    let routes = c
        .route_reflector()
        .unwrap()
        .birdc(&["show", "route", "count"]);
    assert!(routes.contains("4 of 4 routes"), "{routes}");
    matrix(c, &all, "reflector back");
}

/// What a node holds for its pods: host-local leases, veths, the nft
/// ruleset and the routing table.
fn node_state(c: &Cluster, i: usize) -> (Vec<String>, Vec<String>, String, String) {
    let ipam = cni::ipam_dir(&c.node_files_dir(i));
    let mut leases: Vec<String> = walk(&ipam)
        .into_iter()
        .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        .collect();
    leases.sort();
    let ns = c.node(i).ns();
    let links = sh(&["ip", "-n", ns.name(), "-o", "link", "show", "type", "veth"]);
    let mut veths: Vec<String> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect();
    veths.sort();
    let nft = sh(&["ip", "netns", "exec", ns.name(), "nft", "list", "ruleset"]);
    let routes = sh(&["ip", "-n", ns.name(), "route", "show", "table", "all"]);
    (leases, veths, nft, routes)
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if let Some(n) = p.file_name() {
            out.push(n.to_string_lossy().into_owned());
        }
    }
    out
}

/// 100 pods added and deleted concurrently across 3 nodes through the
/// CNI chain: afterwards nothing of theirs is left, and a second DEL of
/// each succeeds.
fn churn(c: &Cluster) {
    const PODS: usize = 100;
    const WORKERS: usize = 6;
    let nodes = [0, 1, 2];
    let before: Vec<_> = nodes.iter().map(|&i| node_state(c, i)).collect();
    let plugins = common::plugins();
    let lists: Vec<_> = nodes
        .iter()
        .map(|&i| cni::read_conflist(&c.node_files_dir(i)).unwrap())
        .collect();
    let t = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run = |phase: &str| {
        next.store(0, std::sync::atomic::Ordering::Relaxed);
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= PODS {
                            break;
                        }
                        let n = k % nodes.len();
                        let files = c.node_files_dir(nodes[n]);
                        let data = cni::ipam_dir(&files);
                        let extra = Extra {
                            data_dir: Some(&data),
                            runtime: None,
                        };
                        let att = Attachment {
                            container_id: format!("{}-churn{k}", c.prefix()),
                            netns: format!("{}-c{k}", c.prefix()),
                            ifname: "eth0".into(),
                        };
                        let node = c.node(nodes[n]).ns();
                        match phase {
                            "add" => {
                                let ns = Netns::create(&att.netns).unwrap();
                                let r = cni::add(node, &plugins, &lists[n], &att, extra);
                                assert!(r.is_ok(), "ADD {k}: {r:?}");
                                // The namespace stays until DEL.
                                std::mem::forget(ns);
                            }
                            _ => {
                                let r = cni::del(
                                    node,
                                    &plugins,
                                    &lists[n],
                                    &att,
                                    &serde_json::Value::Null,
                                    extra,
                                );
                                assert!(r.is_ok(), "{phase} {k}: {r:?}");
                                if phase == "del" {
                                    let _ = Command::new("ip")
                                        .args(["netns", "del", &att.netns])
                                        .status();
                                }
                            }
                        }
                    }
                });
            }
        });
    };
    run("add");
    let added = t.elapsed();
    let during: usize = nodes.iter().map(|&i| node_state(c, i).0.len()).sum();
    assert_eq!(
        during,
        before.iter().map(|s| s.0.len()).sum::<usize>() + PODS
    );
    run("del");
    let deleted = t.elapsed() - added;
    run("del-again");
    eprintln!("churn: {PODS} ADD in {added:?}, {PODS} DEL in {deleted:?}");
    for (k, &i) in nodes.iter().enumerate() {
        let after = node_state(c, i);
        assert_eq!(after.0, before[k].0, "node {}: leases left", i + 1);
        assert_eq!(after.1, before[k].1, "node {}: veths left", i + 1);
        assert_eq!(after.2, before[k].2, "node {}: nft state left", i + 1);
        assert_eq!(after.3, before[k].3, "node {}: routes left", i + 1);
    }
}
