//! Black-box tests of bridge state over pod churn: a rejected option pair
//! takes no lease, the MAC address of a bridge the plugin made stays put as
//! ports come and go while a bridge someone else made keeps its owner's
//! address assignment (and its gateway answers unicast), and GC removes the masquerade and
//! macspoofchk state of attachments that are no longer valid, leaving valid
//! ones and other networks' alone.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use bridge_common::{Lab, netns_path, result_ip};
use common::{Attachment, Runtime};
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft"];

fn single(lab: &Lab, version: &str, net: &str, bridge: &str, v4: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": net, "type": "bridge", "bridge": bridge,
        "ipam": {"type": "host-local", "dataDir": lab.data_dir(), "ranges": [[{"subnet": v4}]]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn mac_of(ns: &netsim::netns::Netns, dev: &str) -> String {
    let o = ns.ip(&["-o", "link", "show", dev]).unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for {dev}: {s}"))
        .to_string()
}

#[test]
fn hairpin_with_promisc_is_refused_before_ipam() {
    if !privileged_or_skip("hairpin_with_promisc_is_refused_before_ipam", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let pod = lab.pod(1);
    let c = single(
        &lab,
        "1.0.0",
        "hpnet",
        "wcahp0",
        "10.81.0.0/24",
        json!({"hairpinMode": true, "promiscMode": true}),
    );
    let att = Attachment::new("hp1", "eth0").with_netns(Some(&netns_path(&pod)));
    let mut refs = vec![("ours", common::ours().in_netns(&lab.host_name()))];
    if common::reference_available("bridge") {
        refs.push(("reference", Runtime::reference().in_netns(&lab.host_name())));
    }
    for (who, rt) in refs {
        let r = rt.add(&c, &att);
        assert!(!r.ok(), "{who}: ADD must fail: {r:?}");
        assert!(
            r.msg().contains("hairpin mode and promiscuous mode"),
            "{who}: {r:?}"
        );
        if who == "ours" {
            assert_eq!(r.code(), Some(7), "{r:?}");
        }
        assert!(
            lab.leases("hpnet").is_empty(),
            "{who}: lease taken: {:?}",
            lab.leases("hpnet")
        );
        assert!(
            lab.veths().is_empty(),
            "{who}: veth left: {:?}",
            lab.veths()
        );
    }
}

#[test]
fn bridge_mac_is_stable_as_pods_come_and_go() {
    if !privileged_or_skip("bridge_mac_is_stable_as_pods_come_and_go", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let (net, bridge) = ("macnet", "wcamac0");
    let c = single(
        &lab,
        "1.0.0",
        net,
        bridge,
        "10.82.0.0/24",
        json!({"isGateway": true}),
    );
    let pods: Vec<_> = (1..=3).map(|i| lab.pod(i)).collect();
    let mut atts = Vec::new();
    let mut host_veths = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let a = Attachment::new(&format!("{net}{i}"), "eth0").with_netns(Some(&netns_path(p)));
        let r = rt.add(&c, &a).expect_ok("ADD");
        host_veths.push(r["interfaces"][1]["name"].as_str().unwrap().to_string());
        atts.push(a);
    }
    let before = mac_of(&lab.host, bridge);
    // The pod whose host veth has the lowest MAC: the one the kernel
    // would otherwise have copied to the bridge.
    let lowest = (0..3)
        .min_by_key(|i| mac_of(&lab.host, &host_veths[*i]))
        .unwrap();
    rt.del(&c, &atts[lowest], None).expect_ok("DEL");
    assert_eq!(mac_of(&lab.host, bridge), before, "{bridge} MAC changed");
    for (i, a) in atts.iter().enumerate() {
        if i != lowest {
            rt.del(&c, a, None).expect_ok("DEL");
        }
    }
    assert_eq!(mac_of(&lab.host, bridge), before, "{bridge} MAC changed");
    // A new pod does not change it either.
    let r = rt.add(&c, &atts[0]).expect_ok("ADD again");
    assert_eq!(mac_of(&lab.host, bridge), before);
    assert_eq!(r["interfaces"][0]["mac"], before.as_str());
    rt.del(&c, &atts[0], None).expect_ok("DEL");
}

/// The kernel's `addr_assign_type` of a link (3: set by hand).
fn addr_assign_type(ns: &netsim::netns::Netns, dev: &str) -> String {
    let o = ns
        .command("cat")
        .arg(format!("/sys/class/net/{dev}/addr_assign_type"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A bridge someone else made keeps its owner's address assignment. The
/// case that matters: a bridge whose last port left sits at the all-zero
/// address; freezing that (by writing it back) leaves the bridge without a
/// local FDB entry, so every unicast frame from a pod to the gateway is
/// flooded instead of received (a DHCPRELEASE, a ping).
#[test]
fn foreign_bridge_address_is_left_alone_and_gateway_answers() {
    if !privileged_or_skip(
        "foreign_bridge_address_is_left_alone_and_gateway_answers",
        TOOLS,
    ) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let bridge = "wcaext0";
    for args in [
        &["link", "add", bridge, "type", "bridge"][..],
        &["addr", "add", "10.83.0.1/24", "dev", bridge],
        &["link", "set", bridge, "up"],
        // Another user's port comes and goes: the bridge is left at 00:..:00.
        &[
            "link", "add", "wcax0", "type", "veth", "peer", "name", "wcax1",
        ],
        &["link", "set", "wcax0", "master", bridge, "up"],
        &["link", "del", "wcax0"],
    ] {
        lab.host.ip(args).unwrap();
    }
    let assigned = addr_assign_type(&lab.host, bridge);
    assert_ne!(assigned, "3", "test setup: {bridge} address set by hand");
    let c = single(&lab, "1.0.0", "extnet", bridge, "10.83.0.0/24", json!({}));
    for i in 0..2 {
        let pod = lab.pod(i);
        let a = Attachment::new(&format!("ext{i}"), "eth0").with_netns(Some(&netns_path(&pod)));
        let r = rt.add(&c, &a).expect_ok("ADD");
        assert_eq!(addr_assign_type(&lab.host, bridge), assigned);
        let mac = mac_of(&lab.host, bridge);
        assert_ne!(mac, "00:00:00:00:00:00", "{bridge} kept the zero address");
        assert!(
            bridge_common::ping(&pod, "10.83.0.1"),
            "pod {i} cannot reach the bridge's address (bridge MAC {mac})"
        );
        let ip = result_ip(&r, false);
        assert!(
            bridge_common::ping(&lab.host, &ip),
            "host cannot reach {ip}"
        );
        rt.del(&c, &a, None).expect_ok("DEL");
        assert_eq!(addr_assign_type(&lab.host, bridge), assigned);
    }
}

fn spoof_chains(lab: &Lab) -> usize {
    lab.nft().matches("chain cn-s-").count()
}

fn masq_chains(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = lab
        .nft()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain cn-m-"))
        .map(|l| l.trim_end_matches(" {").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn gc_removes_masquerade_of_stale_attachments() {
    if !privileged_or_skip("gc_removes_masquerade_of_stale_attachments", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let conf = |net: &str, bridge: &str, v4: &str| {
        let c = single(
            &lab,
            "1.1.0",
            net,
            bridge,
            v4,
            json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}),
        );
        json!({"cniVersion": "1.1.0", "name": net, "plugins": [c]})
    };
    let (list, other) = (
        conf("gcnet", "wcagc0", "10.84.0.0/24"),
        conf("gcother", "wcagc1", "10.85.0.0/24"),
    );
    let pods: Vec<_> = (1..=3).map(|i| lab.pod(i)).collect();
    let att = |i: usize, net: &str| {
        Attachment::new(&format!("{net}-gc{i}"), "eth0").with_netns(Some(&netns_path(&pods[i])))
    };
    rt.add_list(&list, &att(0, "gcnet")).unwrap();
    rt.add_list(&list, &att(1, "gcnet")).unwrap();
    rt.add_list(&other, &att(2, "gcother")).unwrap();
    let all = masq_chains(&lab);
    assert_eq!(all.len(), 3, "{}", lab.nft());
    assert_eq!(spoof_chains(&lab), 3, "{}", lab.nft());
    let masq_elems = |lab: &Lab| {
        lab.nft()
            .lines()
            .filter(|l| l.contains("10.84.0.") || l.contains("10.85.0."))
            .count()
    };
    assert!(masq_elems(&lab) > 0);

    // Only gc1 stays valid in gcnet: gc0's state goes, gc1's and gcother's stay.
    rt.gc_list(&list, &[att(1, "gcnet")]).unwrap();
    let left = masq_chains(&lab);
    assert_eq!(left.len(), 2, "{}", lab.nft());
    assert_eq!(spoof_chains(&lab), 2, "macspoofchk state of gc0 left");
    let ruleset = lab.nft();
    assert!(
        !ruleset.contains("10.84.0.2 "),
        "gc0's masquerade left: {ruleset}"
    );
    assert!(
        ruleset.contains("10.84.0.3"),
        "gc1's masquerade gone: {ruleset}"
    );
    assert!(
        ruleset.contains("10.85.0.2"),
        "other network's masquerade gone: {ruleset}"
    );
    // The lease of gc0 went with it (IPAM GC), gc1's stays.
    assert_eq!(lab.leases("gcnet"), vec!["10.84.0.3".to_string()]);
    // DEL of the collected attachment is still fine; a second GC is a no-op.
    rt.del_list(&list, &att(0, "gcnet"), None).unwrap();
    rt.gc_list(&list, &[att(1, "gcnet")]).unwrap();
    assert_eq!(masq_chains(&lab).len(), 2);
    // GC with nothing valid clears the network.
    rt.gc_list(&list, &[]).unwrap();
    assert_eq!(masq_chains(&lab).len(), 1, "{}", lab.nft());
    assert_eq!(spoof_chains(&lab), 1);
    rt.del_list(&list, &att(1, "gcnet"), None).unwrap();
    rt.del_list(&other, &att(2, "gcother"), None).unwrap();
    assert!(masq_chains(&lab).is_empty(), "{}", lab.nft());
    assert_eq!(spoof_chains(&lab), 0);
}
