//! Root tests: clusters in namespaces, kernel modes, ping matrix, cleanup.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use netsim::netns::privileged_or_skip;
use netsim::{Mode, Topology};

const TOOLS: &[&str] = &["ip", "bridge", "ethtool", "ping", "sysctl"];

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    netsim::run::list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

fn host_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Host links and routes that mention the run prefix or the cluster's address ranges.
fn host_traces(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = host_lines(&["-o", "link", "show"])
        .into_iter()
        .filter(|l| l.contains(prefix))
        .collect();
    v.extend(
        host_lines(&["route", "show", "table", "all"])
            .into_iter()
            .filter(|l| l.contains(prefix) || l.contains("172.31.0.") || l.contains("10.244.")),
    );
    v
}

fn check_modes(nodes: usize, pods: usize, offload: bool) {
    let before = host_traces("10.244.");
    let mut c = Topology::builder()
        .nodes(nodes)
        .pods_per_node(pods)
        .underlay_offload(offload)
        .prefix_tag("ns")
        .build()
        .unwrap();
    let prefix = c.prefix().to_owned();
    assert!(prefix.len() <= 6, "{prefix}");
    let expect = nodes + 1 + nodes * pods;
    assert_eq!(netns_with_prefix(&prefix).len(), expect);

    // Without a mode only same-node pods reach each other.
    let r = c.ping_matrix().unwrap();
    assert_eq!(r.pairs.len(), nodes * pods * (nodes * pods - 1));
    assert!(!r.all_ok(), "cross-node pings must fail without a mode");
    for p in &r.pairs {
        assert_eq!(p.rtt_ms.is_some(), p.from.0 == p.to.0, "{p:?}");
    }

    for mode in [Mode::KernelHostGw, Mode::KernelVxlan, Mode::KernelHostGw] {
        c.apply_mode(mode).unwrap();
        let r = c.ping_matrix().unwrap();
        assert!(r.all_ok(), "{mode}: {r}");
        let t = c
            .tcp_transfer_check((0, 0), (nodes - 1, pods - 1), 2_000_000)
            .unwrap();
        assert_eq!(t.bytes, 2_000_000);
    }
    assert_eq!(c.mode(), Some(Mode::KernelHostGw));
    c.clear_mode().unwrap();
    assert_eq!(c.mode(), None);
    assert!(!c.ping_matrix().unwrap().all_ok());
    // Node by node: mixed modes break the return path, uniform ones work.
    c.apply_node_mode(0, Mode::KernelHostGw).unwrap();
    for i in 1..nodes {
        c.apply_node_mode(i, Mode::KernelVxlan).unwrap();
    }
    assert_eq!(c.mode(), None);
    assert_eq!(c.node_mode(1), Some(Mode::KernelVxlan));
    assert!(!c.ping_matrix().unwrap().all_ok());
    c.apply_node_mode(0, Mode::KernelVxlan).unwrap();
    assert_eq!(c.mode(), Some(Mode::KernelVxlan));
    assert!(c.ping_matrix().unwrap().all_ok());
    drop(c);
    assert!(netns_with_prefix(&prefix).is_empty());
    assert!(
        host_traces(&prefix).iter().all(|l| before.contains(l)),
        "{:?}",
        host_traces(&prefix)
    );
    assert!(!std::path::Path::new(&format!("/run/netsim/{prefix}")).exists());
    assert!(!netsim::run::run_dir(&prefix).exists());
}

#[test]
fn two_nodes_kernel_modes_ping_matrix() {
    if !privileged_or_skip("two_nodes_kernel_modes_ping_matrix", TOOLS) {
        return;
    }
    check_modes(2, 1, true);
}

#[test]
fn three_nodes_two_pods_kernel_modes_ping_matrix_offload_off() {
    if !privileged_or_skip(
        "three_nodes_two_pods_kernel_modes_ping_matrix_offload_off",
        TOOLS,
    ) {
        return;
    }
    check_modes(3, 2, false);
}

#[test]
fn tor_sits_on_the_underlay() {
    if !privileged_or_skip("tor_sits_on_the_underlay", TOOLS) {
        return;
    }
    let c = Topology::builder()
        .nodes(2)
        .pods_per_node(0)
        .tor(true)
        .build()
        .unwrap();
    let tor = c.tor().unwrap();
    for n in c.nodes() {
        tor.run(
            "ping",
            &[
                "-c",
                "1",
                "-w",
                "3",
                "-i",
                "0.2",
                &n.underlay_ip().to_string(),
            ],
        )
        .unwrap();
    }
}

#[test]
fn panic_mid_build_leaves_nothing() {
    if !privileged_or_skip("panic_mid_build_leaves_nothing", TOOLS) {
        return;
    }
    let before = host_traces("10.244.");
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let mut c = Topology::builder()
            .nodes(2)
            .pods_per_node(1)
            .build()
            .unwrap();
        tx.send(c.prefix().to_owned()).unwrap();
        c.apply_mode(Mode::KernelVxlan).unwrap();
        panic!("test panic with a live cluster");
    });
    assert!(r.is_err());
    let prefix = rx.recv().unwrap();
    assert!(netns_with_prefix(&prefix).is_empty());
    assert!(host_traces(&prefix).iter().all(|l| before.contains(l)));
    assert!(!std::path::Path::new(&format!("/run/netsim/{prefix}")).exists());
}

#[test]
fn failed_build_cleans_up() {
    if !privileged_or_skip("failed_build_cleans_up", TOOLS) {
        return;
    }
    // A pod attach step that fails after the node is up.
    struct Failing;
    impl netsim::PodAttach for Failing {
        fn attach(&self, req: &netsim::AttachRequest<'_>) -> netsim::Result<netsim::Attached> {
            netsim::BridgeAttach.attach(req)?;
            Err(netsim::Error::Topology(format!(
                "refusing {}",
                req.pod.name()
            )))
        }
    }
    let err = Topology::builder()
        .nodes(2)
        .pods_per_node(1)
        .attach(Box::new(Failing))
        .build()
        .unwrap_err()
        .to_string();
    // "topology: refusing <prefix>-n1p1"
    let pod = err.rsplit(' ').next().unwrap();
    let prefix = pod.split('-').next().unwrap();
    assert!(err.contains("refusing") && prefix.len() == 6, "{err}");
    assert!(netns_with_prefix(prefix).is_empty());
    assert!(!std::path::Path::new(&format!("/run/netsim/{prefix}")).exists());
}
