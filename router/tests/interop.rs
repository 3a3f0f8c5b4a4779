//! weftd `vxlan` against a Linux kernel vxlan device on the peer, set up
//! the way flannel (VNI 1, port 8472, MACs derived from the underlay IP)
//! and calico (VNI 4096, port 4789, configured MACs) do. Traffic both ways.
#![allow(clippy::unwrap_used)]

mod common;

use common::traffic::tcp_transfer;
use common::{Cluster, KernelVtep, Opts, pod_ip};

const TOOLS: &[&str] = &["ip", "ping", "sysctl", "kill", "ethtool", "bridge"];

fn opts() -> Opts {
    Opts {
        // A userspace receiver of kernel vxlan frames needs finished inner
        // checksums: no tx checksum offload on the underlay veths.
        underlay_csum_off: true,
        ..Opts::default()
    }
}

fn both_ways(c: &Cluster) {
    assert!(
        c.ping(1, &pod_ip(2)),
        "weftd -> kernel vxlan ping failed\n{}",
        c.logs()
    );
    assert!(
        c.ping(2, &pod_ip(1)),
        "kernel vxlan -> weftd ping failed\n{}",
        c.logs()
    );
    tcp_transfer(&c.node(1).pod, &c.node(2).pod, &pod_ip(2), 8 << 20);
    tcp_transfer(&c.node(2).pod, &c.node(1).pod, &pod_ip(1), 8 << 20);
}

#[test]
fn vxlan_interop_with_kernel_flannel_style() {
    if !netsim::netns::privileged_or_skip("vxlan_interop_with_kernel_flannel_style", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rti", 2, opts());
    // flannel.1: VNI 1, port 8472, VTEP MAC 02:57:<underlay ip>.
    let vtep = KernelVtep {
        name: "flannel.1".into(),
        vni: 1,
        port: 8472,
        mac: "02:57:ac:1f:00:02".into(),
    };
    c.kernel_vtep(2, &vtep, &[(1, "02:57:ac:1f:00:01".into())]);
    let cfg = c.config(1, "vxlan", "");
    c.start_weftd(1, &cfg);
    both_ways(&c);
}

#[test]
fn vxlan_interop_with_kernel_calico_style() {
    if !netsim::netns::privileged_or_skip("vxlan_interop_with_kernel_calico_style", TOOLS) {
        return;
    }
    let mut c = Cluster::new("rti", 2, opts());
    // vxlan.calico: VNI 4096, port 4789, its own MACs.
    let vtep = KernelVtep {
        name: "vxlan.calico".into(),
        vni: 4096,
        port: 4789,
        mac: "66:aa:bb:00:00:02".into(),
    };
    c.kernel_vtep(2, &vtep, &[(1, "66:aa:bb:00:00:01".into())]);
    let cfg = c
        .config(
            1,
            "vxlan",
            "vxlan_vni = 4096\nvxlan_port = 4789\nvtep_mac = \"66:aa:bb:00:00:01\"",
        )
        .replace(
            "via = \"172.31.0.2\"",
            "via = \"172.31.0.2\"\nvtep_mac = \"66:aa:bb:00:00:02\"",
        );
    c.start_weftd(1, &cfg);
    both_ways(&c);
}
