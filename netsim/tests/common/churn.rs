//! Pod churn through the CNI chain: 100 pods added and deleted
//! concurrently across 3 nodes, then nothing of theirs may be left.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use netsim::Cluster;
use netsim::cni::{self, Attachment, Extra};
use netsim::netns::Netns;

use super::scenario::sh;

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
pub fn churn(c: &Cluster) {
    const PODS: usize = 100;
    const WORKERS: usize = 6;
    let nodes = [0, 1, 2];
    let before: Vec<_> = nodes.iter().map(|&i| node_state(c, i)).collect();
    let plugins = super::plugins();
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
