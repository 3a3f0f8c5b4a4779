//! The conflist and subnet.env weftd writes, used as a runtime would: pods
//! attached by exec'ing weft's own CNI plugins (bridge or ptp, host-local,
//! portmap) with the file weftd wrote get an address in the node's pod
//! range and reach their gateway and a pod on the other node, in every
//! mode (host-gw, vxlan, udp, ipip) and both attachments (bridge, ptp).
#![allow(clippy::unwrap_used)]

mod common;

use common::node_rig::NodeRig;
use netsim::WeftMode;
use serde_json::Value;

const TOOLS: &[&str] = &["ip", "ping", "ethtool", "sysctl"];

fn pods_reach_across(tag: &str, mode: WeftMode, attach: &str, mtu: u32) {
    let test = format!("pods_reach_across_{tag}");
    if !netsim::netns::privileged_or_skip(&test, TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new(&test, 2, false) else {
        return;
    };
    for i in 0..2 {
        let cfg = rig.config(i, mode, "", &format!("attach = \"{attach}\""));
        rig.start_weftd(i, &cfg, &[]);
    }

    // The files, as weftd wrote them.
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(rig.conflist_path(0)).unwrap()).unwrap();
    assert_eq!(list["name"], rig.net.as_str());
    let main = &list["plugins"][0];
    assert_eq!(main["type"], attach);
    assert_eq!(main["mtu"], mtu);
    assert_eq!(main["ipam"]["type"], "host-local");
    assert_eq!(
        main["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24",
        "{list}"
    );
    assert_eq!(list["plugins"][1]["type"], "portmap");
    assert_eq!(
        std::fs::read_to_string(rig.subnet_env_path(1)).unwrap(),
        format!(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\n\
             FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=true\n"
        )
    );

    // Two pods on node 1, one on node 2, by the runtime's exec protocol.
    let a = rig.attach_pod(0);
    let b = rig.attach_pod(0);
    let c = rig.attach_pod(1);
    for (k, net) in [(a, "10.244.1."), (b, "10.244.1."), (c, "10.244.2.")] {
        assert!(rig.pods[k].ip.starts_with(net), "{:?}", rig.pods[k].result);
        let link = rig.pods[k].ns.ip(&["link", "show", "eth0"]).unwrap();
        let link = String::from_utf8_lossy(&link.stdout);
        assert!(link.contains(&format!("mtu {mtu}")), "{link}");
    }
    assert_ne!(rig.pods[a].ip, rig.pods[b].ip);

    // Gateway, same-node pod, other-node pod (both ways).
    assert!(rig.ping(a, "10.244.1.1"), "{}", rig.log(0));
    let (ip_b, ip_c, ip_a) = (
        rig.pods[b].ip.clone(),
        rig.pods[c].ip.clone(),
        rig.pods[a].ip.clone(),
    );
    assert!(rig.ping(a, &ip_b));
    assert!(rig.ping(a, &ip_c), "{}\n{}", rig.log(0), rig.log(1));
    assert!(rig.ping(c, &ip_a), "{}\n{}", rig.log(0), rig.log(1));

    // DEL through the same chain; then weftd stops cleanly and leaves the
    // files (they describe the node, not the process).
    rig.detach_all();
    for i in 0..2 {
        assert!(rig.stop_weftd(i).success(), "{}", rig.log(i));
    }
    assert!(rig.conflist_path(0).exists());
}

#[test]
fn pods_reach_across_hostgw_bridge() {
    pods_reach_across("cb", WeftMode::HostGw, "bridge", 1500);
}

#[test]
fn pods_reach_across_vxlan_bridge() {
    pods_reach_across("cv", WeftMode::Vxlan, "bridge", 1450);
}

#[test]
fn pods_reach_across_vxlan_ptp() {
    pods_reach_across("cp", WeftMode::Vxlan, "ptp", 1450);
}

#[test]
fn pods_reach_across_udp_bridge() {
    pods_reach_across("cu", WeftMode::Udp, "bridge", 1472);
}

#[test]
fn pods_reach_across_ipip_ptp() {
    pods_reach_across("ci", WeftMode::Ipip, "ptp", 1480);
}

/// A restart with the same config leaves the conflist untouched (same
/// inode: written only when the content changes); a changed MTU rewrites it.
#[test]
fn conflist_rewritten_only_on_change() {
    use std::os::unix::fs::MetadataExt;
    if !netsim::netns::privileged_or_skip("conflist_rewritten_only_on_change", TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new("conflist_rewritten_only_on_change", 1, false) else {
        return;
    };
    let cfg = rig.config(0, WeftMode::Vxlan, "", "");
    rig.start_weftd(0, &cfg, &[]);
    let ino = std::fs::metadata(rig.conflist_path(0)).unwrap().ino();
    rig.stop_weftd(0);
    rig.start_weftd(0, &cfg, &[]);
    assert_eq!(std::fs::metadata(rig.conflist_path(0)).unwrap().ino(), ino);
    assert!(rig.log(0).contains("changed=false"), "{}", rig.log(0));
    rig.stop_weftd(0);
    let cfg = cfg.replace("mode = \"vxlan\"", "mode = \"vxlan\"\nmtu = 1400");
    rig.start_weftd(0, &cfg, &[]);
    let text = std::fs::read_to_string(rig.conflist_path(0)).unwrap();
    assert!(text.contains("\"mtu\": 1400"), "{text}");
    assert!(
        std::fs::read_to_string(rig.subnet_env_path(0))
            .unwrap()
            .contains("FLANNEL_MTU=1400")
    );
    rig.stop_weftd(0);
}

/// The overlay's pod MTU follows an underlay MTU change at run time, and
/// so do the conflist and subnet.env.
#[test]
fn conflist_follows_the_underlay_mtu() {
    if !netsim::netns::privileged_or_skip("conflist_follows_the_underlay_mtu", TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new("conflist_follows_the_underlay_mtu", 1, false) else {
        return;
    };
    let cfg = rig.config(0, WeftMode::Vxlan, "", "");
    rig.start_weftd(0, &cfg, &[]);
    let read = |rig: &NodeRig| std::fs::read_to_string(rig.conflist_path(0)).unwrap();
    assert!(read(&rig).contains("\"mtu\": 1450"), "{}", read(&rig));
    rig.cluster
        .node(0)
        .ns()
        .ip(&["link", "set", "eth0", "mtu", "1400"])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !read(&rig).contains("\"mtu\": 1350") {
        assert!(
            std::time::Instant::now() < deadline,
            "conflist kept its MTU:\n{}\n{}",
            read(&rig),
            rig.log(0)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let env = std::fs::read_to_string(rig.subnet_env_path(0)).unwrap();
    assert!(env.contains("FLANNEL_MTU=1350"), "{env}");
    assert!(rig.stop_weftd(0).success());
}

/// An unwritable conf_dir is logged and routing goes on.
#[test]
fn unwritable_conf_dir_does_not_stop_routing() {
    if !netsim::netns::privileged_or_skip("unwritable_conf_dir_does_not_stop_routing", TOOLS) {
        return;
    }
    let Some(mut rig) = NodeRig::new("unwritable_conf_dir", 2, false) else {
        return;
    };
    // A file where node 1's conf_dir should be.
    let blocked = rig.files_dir(0).join("net.d");
    std::fs::create_dir_all(rig.files_dir(0)).unwrap();
    std::fs::write(&blocked, "").unwrap();
    let cfg0 = rig.config(0, WeftMode::HostGw, "", "");
    let cfg0 = cfg0.replace("net.d\"", "net.d/sub\"");
    rig.start_weftd(0, &cfg0, &[]);
    let log = rig.log(0);
    assert!(log.contains("not written; routing continues"), "{log}");
    assert!(log.contains("CNI config not written"), "{log}");
    let routes = rig
        .cluster
        .node(0)
        .ns()
        .ip(&["route", "show", "10.244.2.0/24"])
        .unwrap();
    assert!(!routes.stdout.is_empty(), "route missing");
    assert!(rig.subnet_env_path(0).exists());
    assert!(rig.stop_weftd(0).success());
}
