//! The overlay modes as real nodes run them: pods attached through weft's
//! CNI chain with the conflist weftd wrote (its MTU), routes over BGP
//! through BIRD on the ToR. On one cluster, vxlan, udp and ipip in turn:
//! convergence, the ping matrix (same node and across) and a checked TCP
//! transfer across nodes.
#![allow(clippy::unwrap_used)]

mod common;

use netsim::netns::privileged_or_skip;
use netsim::{Mode, Routing, WeftMode};

#[test]
fn overlay_modes_with_cni_pods_and_bird_reflector() {
    if !privileged_or_skip(
        "overlay_modes_with_cni_pods_and_bird_reflector",
        common::TOOLS,
    ) {
        return;
    }
    let mut c = common::cluster(3, 2, Routing::Rr);
    for (mode, mtu) in [
        (WeftMode::Vxlan, 1450),
        (WeftMode::Udp, 1472),
        (WeftMode::Ipip, 1480),
    ] {
        c.apply_mode(Mode::Weft(mode)).unwrap();
        eprintln!("{mode:?}: converged in {:?}", c.last_convergence().unwrap());
        let link = c.pod(1, 1).ns().ip(&["link", "show", "eth0"]).unwrap();
        let link = String::from_utf8_lossy(&link.stdout).into_owned();
        assert!(link.contains(&format!("mtu {mtu}")), "{mode:?}: {link}");
        let r = c.ping_matrix().unwrap();
        assert!(r.all_ok(), "{mode:?}: {r}\n{}", common::logs(&c));
        let t = c.tcp_transfer_check((0, 1), (2, 0), 4 << 20).unwrap();
        assert_eq!(t.bytes, 4 << 20);
    }
    // Every pod came through the chain once and CHECK still passes.
    for p in c.all_pods() {
        assert!(p.ip().to_string().starts_with("10.244."), "{}", p.ip());
        c.check_pod(p.id()).unwrap();
    }
}

/// calico's attachment: weftd's conflist with `[cni] attach = "ptp"`, so
/// each pod gets a veth with no bridge and the node a /32 route to it; the
/// cluster passes in host-gw and vxlan the same way.
#[test]
fn ptp_attached_pods_in_host_gw_and_vxlan() {
    if !privileged_or_skip("ptp_attached_pods_in_host_gw_and_vxlan", common::TOOLS) {
        return;
    }
    let mut c = common::cluster_attached(3, 2, Routing::Rr, Some("ptp"));
    for mode in [WeftMode::HostGw, WeftMode::Vxlan] {
        c.apply_mode(Mode::Weft(mode)).unwrap();
        let r = c.ping_matrix().unwrap();
        assert!(r.all_ok(), "{mode:?}: {r}\n{}", common::logs(&c));
        let t = c.tcp_transfer_check((0, 1), (2, 0), 4 << 20).unwrap();
        assert_eq!(t.bytes, 4 << 20);
    }
    // No bridge on the node; a host route per pod (ptp's, not a subnet's).
    let node = c.node(0).ns();
    let links = node.ip(&["-o", "link", "show", "type", "bridge"]).unwrap();
    assert!(
        links.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&links.stdout)
    );
    let routes = node.ip(&["route", "show"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    for p in c.all_pods().filter(|p| p.id().0 == 0) {
        let ip = p.ip().to_string();
        assert!(
            routes.lines().any(|l| l.starts_with(&format!("{ip} dev "))),
            "no /32 route to {ip}:\n{routes}"
        );
    }
}
