//! Black-box tests of the `bridge` plugin: the built binaries exec'd with
//! env + stdin like a runtime does, inside a test "host" namespace, with
//! pods in their own namespaces; traffic, results per spec version against
//! the reference plugins, and cleanup in every DEL variant.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use bridge_common::{
    HOST_OUT4, Lab, OUTSIDE4, chain, netns_path, ping, result_ip, tcp_probe, tcp_server,
};
use common::{Attachment, Runtime};
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft", "ping"];

#[test]
fn traffic_masquerade_and_every_del_variant_cleans_up() {
    if !privileged_or_skip("traffic_masquerade_and_every_del_variant_cleans_up", TOOLS) {
        return;
    }
    let lab = Lab::new("cn");
    let out = lab.outside();
    let rt = common::ours().in_netns(&lab.host_name());
    let list = chain(
        "1.0.0",
        "tnet",
        "cnb0",
        &lab.data_dir(),
        "10.51.0.0/24",
        "fd51::/64",
        json!({}),
    );
    let p1 = lab.pod(1);
    let p2 = lab.pod(2);
    let a1 = Attachment::new("c1", "eth0").with_netns(Some(&netns_path(&p1)));
    let a2 = Attachment::new("c2", "eth0").with_netns(Some(&netns_path(&p2)));
    let r1 = rt.add_list(&list, &a1).unwrap();
    let r2 = rt.add_list(&list, &a2).unwrap();
    assert_eq!(r1["interfaces"][0]["name"], "cnb0");
    assert_eq!(r1["interfaces"][2]["sandbox"], netns_path(&p1));
    assert_eq!(r1["ips"][0]["gateway"], "10.51.0.1");
    assert_eq!(r1["ips"][0]["interface"], 2);
    rt.check_list(&list, &a1, &r1).unwrap();
    let (ip1, ip2) = (result_ip(&r1, false), result_ip(&r2, false));
    let (ip1v6, ip2v6) = (result_ip(&r1, true), result_ip(&r2, true));

    // pod -> gateway, pod <-> pod, both families
    assert!(ping(&p1, "10.51.0.1"), "pod -> v4 gateway");
    assert!(ping(&p1, "fd51::1"), "pod -> v6 gateway");
    assert!(ping(&p1, &ip2), "pod1 -> pod2");
    assert!(ping(&p2, &ip1v6), "pod2 -> pod1 v6");
    assert!(ping(&p1, &ip2v6), "pod1 -> pod2 v6");
    // masquerade: the outside sees the host's address, both families
    let srv = tcp_server(out.name(), "0.0.0.0:7000", 1);
    let seen = tcp_probe(p1.name(), &format!("{OUTSIDE4}:7000")).unwrap();
    assert!(
        seen.starts_with(&format!("{HOST_OUT4}:")),
        "outside saw {seen}"
    );
    srv.join().unwrap();
    let srv = tcp_server(out.name(), "[::]:7001", 1);
    let seen = tcp_probe(p1.name(), "[fd77::2]:7001").unwrap();
    assert!(seen.starts_with("[fd77::1]:"), "outside saw {seen}");
    srv.join().unwrap();
    // traffic inside the pod subnet is not masqueraded
    let srv = tcp_server(p2.name(), "0.0.0.0:7002", 1);
    let seen = tcp_probe(p1.name(), &format!("{ip2}:7002")).unwrap();
    assert!(seen.starts_with(&format!("{ip1}:")), "pod2 saw {seen}");
    srv.join().unwrap();

    // DEL after the netns is gone, without prevResult: lease, veth, masq all gone
    let veth1 = r1["interfaces"][1]["name"].as_str().unwrap().to_string();
    drop(p1);
    rt.del_list(&list, &a1, None).unwrap();
    assert!(!lab.leases("tnet").contains(&ip1), "lease of c1 left");
    assert!(!lab.veths().contains(&veth1), "veth of c1 left");
    assert!(
        !lab.nft().contains(&format!("{ip1} ")),
        "masq element of c1 left:\n{}",
        lab.nft()
    );
    // repeated DEL, DEL with an empty CNI_NETNS
    rt.del_list(&list, &a1, Some(&r1)).unwrap();
    let a2_nonetns = Attachment::new("c2", "eth0").with_netns(Some(""));
    rt.del_list(&list, &a2_nonetns, Some(&r2)).unwrap();
    rt.del_list(&list, &a2, None).unwrap();
    assert!(
        lab.leases("tnet").is_empty(),
        "leases left: {:?}",
        lab.leases("tnet")
    );
    assert!(lab.veths().is_empty(), "veths left: {:?}", lab.veths());
    let nft = lab.nft();
    assert!(
        !nft.contains("cn-m-") && !nft.contains("jump") || !nft.contains("cn-m-"),
        "per-pod chains left:\n{nft}"
    );
    assert!(!nft.contains(&ip2), "masq element of c2 left:\n{nft}");
    assert!(
        p2.ip(&["link", "show", "eth0"]).is_err(),
        "pod interface left"
    );
}

/// The parts of a result both implementations must agree on.
fn shape(r: &Value) -> Value {
    let mut r = r.clone();
    if let Some(ifs) = r["interfaces"].as_array_mut() {
        for i in ifs {
            let mac = i["mac"].as_str().unwrap_or("");
            assert_eq!(mac.len(), 17, "mac {mac}");
            i["mac"] = json!("mac");
            let name = i["name"].as_str().unwrap_or("").to_string();
            if i.get("sandbox").is_some() {
                i["sandbox"] = json!("netns");
            }
            if name.starts_with("veth") {
                i["name"] = json!("veth*");
            }
        }
    }
    r
}

#[test]
fn results_match_reference_per_version() {
    if !privileged_or_skip(
        "results_match_reference_per_version",
        &["ip", "nft", "iptables"],
    ) {
        return;
    }
    if !common::reference_available("bridge") {
        return;
    }
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let mut shapes = Vec::new();
        // The reference (v1.1.1) stops at 1.0.0; a 1.1.0 result has the 1.0.0 shape.
        let ref_version = if version == "1.1.0" { "1.0.0" } else { version };
        for (ours, rt, version) in [
            (true, common::ours(), version),
            (false, Runtime::reference(), ref_version),
        ] {
            let lab = Lab::new("cn");
            let rt = rt.in_netns(&lab.host_name());
            let list = chain(
                version,
                "vnet",
                "cni0",
                &lab.data_dir(),
                "10.52.0.0/24",
                "fd52::/64",
                json!({}),
            );
            let pod = lab.pod(1);
            let att = Attachment::new("cv", "eth0")
                .with_netns(Some(&netns_path(&pod)))
                .with_cap(
                    "portMappings",
                    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                       {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]),
                );
            let r = rt
                .add_list(&list, &att)
                .unwrap_or_else(|e| panic!("{version} ADD: {e:?}"));
            if version != "0.3.1" {
                let c = rt.check_list(&list, &att, &r);
                if ours {
                    c.unwrap_or_else(|e| panic!("{version} CHECK: {e:?}"));
                } else if let Err(e) = c {
                    // v1.1.1 portmap CHECK looks for its IPv4 rules in the
                    // IPv6 table on dual-stack pods; ours must pass.
                    eprintln!("reference CHECK failed ({version}): {}", e.msg());
                }
            }
            rt.del_list(&list, &att, Some(&r))
                .unwrap_or_else(|e| panic!("{version} DEL: {e:?}"));
            rt.del_list(&list, &att, Some(&r))
                .unwrap_or_else(|e| panic!("{version} 2nd DEL: {e:?}"));
            assert!(lab.leases("vnet").is_empty(), "{version}: leases left");
            let mut r = shape(&r);
            r["cniVersion"] = json!("any");
            shapes.push(r);
        }
        assert_eq!(
            shapes[0], shapes[1],
            "cniVersion {version}: ours vs reference"
        );
        let has_version = shapes[0]["ips"][0].get("version").is_some();
        assert_eq!(
            has_version,
            version.starts_with("0."),
            "{version}: ips[].version"
        );
    }
}

fn single(lab: &Lab, net: &str, bridge: &str, v4: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": net, "type": "bridge", "bridge": bridge,
        "ipam": {"type": "host-local", "dataDir": lab.data_dir(), "ranges": [[{"subnet": v4}]]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn failures_do_not_leak() {
    if !privileged_or_skip("failures_do_not_leak", TOOLS) {
        return;
    }
    let lab = Lab::new("cn");
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod(1);
    let att = Attachment::new("cf", "eth0").with_netns(Some(&netns_path(&pod)));

    // an existing CNI_IFNAME fails before anything is allocated
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"])
        .unwrap();
    let c = single(
        &lab,
        "fnet",
        "cnf0",
        "10.53.0.0/24",
        json!({"isGateway": true, "ipMasq": true}),
    );
    let r = rt.add(&c, &att);
    assert!(!r.ok() && r.msg().contains("already exists"), "{r:?}");
    assert!(lab.leases("fnet").is_empty() && lab.veths().is_empty());
    pod.ip(&["link", "del", "eth0"]).unwrap();

    // a bridge name held by a non-bridge link
    lab.host
        .ip(&[
            "link", "add", "notbr", "type", "veth", "peer", "name", "notbr1",
        ])
        .unwrap();
    let c = single(&lab, "fnet", "notbr", "10.53.0.0/24", json!({}));
    let r = rt.add(&c, &att);
    assert!(!r.ok() && r.msg().contains("is not a bridge"), "{r:?}");
    assert!(lab.leases("fnet").is_empty());

    // failure after IPAM (default route via another gateway) releases the IP
    let mut c = single(
        &lab,
        "fnet",
        "cnf0",
        "10.53.0.0/24",
        json!({"isDefaultGateway": true, "ipMasq": true}),
    );
    c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0", "gw": "10.53.0.254"}]);
    let r = rt.add(&c, &att);
    assert!(!r.ok() && r.msg().contains("ineffective"), "{r:?}");
    assert!(
        lab.leases("fnet").is_empty(),
        "lease leaked: {:?}",
        lab.leases("fnet")
    );
    assert!(lab.veths().is_empty(), "veth leaked");
    assert!(!lab.nft().contains("cn-m-"), "rules leaked");
    assert!(pod.ip(&["link", "show", "eth0"]).is_err());

    // isDefaultGateway with an IPAM default route via the same gateway works
    let mut c = single(
        &lab,
        "fnet",
        "cnf0",
        "10.53.0.0/24",
        json!({"isDefaultGateway": true}),
    );
    c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let r = rt
        .add(&c, &att)
        .expect_ok("isDefaultGateway + IPAM default route");
    let routes = String::from_utf8_lossy(&pod.ip(&["route"]).unwrap().stdout).to_string();
    assert!(routes.contains("default via 10.53.0.1"), "{routes}");
    rt.del(&c, &att, Some(&r)).expect_ok("DEL");
    assert!(lab.leases("fnet").is_empty());

    // a malformed config is an error JSON (code 6), not a panic
    let r = rt.add_raw(
        "bridge",
        "x",
        "eth0",
        "/x",
        b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"bridge\",\"mtu\":\"big\"}",
    );
    assert_eq!(r.code(), Some(6), "{r:?}");
    let r = rt.add_raw(
        "bridge",
        "x",
        "eth0",
        "/x",
        b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"bridge\",\"vlan\":5000}",
    );
    assert_eq!(r.code(), Some(7), "{r:?}");
}

fn link_detail(ns: &netsim::netns::Netns, dev: &str) -> String {
    String::from_utf8_lossy(&ns.ip(&["-d", "link", "show", dev]).unwrap().stdout).into_owned()
}

#[test]
fn options_take_effect() {
    if !privileged_or_skip("options_take_effect", TOOLS) {
        return;
    }
    let lab = Lab::new("cn");
    let rt = common::ours().in_netns(&lab.host_name());
    let (p1, p2, p3) = (lab.pod(1), lab.pod(2), lab.pod(3));
    let opts = json!({"isGateway": true, "mtu": 1400, "hairpinMode": true,
        "portIsolation": true, "macspoofchk": true, "capabilities": {"mac": true}});
    let c = single(&lab, "onet", "cno0", "10.54.0.0/24", opts);
    let a1 = Attachment::new("o1", "eth0")
        .with_netns(Some(&netns_path(&p1)))
        .with_cap("mac", json!("02:42:0a:36:00:11"));
    let a2 = Attachment::new("o2", "eth0")
        .with_netns(Some(&netns_path(&p2)))
        .with_arg("IgnoreUnknown", "1")
        .with_arg("MAC", "02:42:0a:36:00:12");
    let r1 = rt.add(&c, &a1).expect_ok("ADD o1");
    let r2 = rt.add(&c, &a2).expect_ok("ADD o2");
    assert_eq!(r1["interfaces"][2]["mac"], "02:42:0a:36:00:11");
    assert_eq!(r2["interfaces"][2]["mac"], "02:42:0a:36:00:12");
    let eth = link_detail(&p1, "eth0");
    assert!(
        eth.contains("mtu 1400") && eth.contains("02:42:0a:36:00:11"),
        "{eth}"
    );
    let hv = link_detail(&lab.host, r1["interfaces"][1]["name"].as_str().unwrap());
    assert!(
        hv.contains("hairpin on") && hv.contains("isolated on"),
        "{hv}"
    );
    // isolated ports reach the gateway but not each other
    let ip2 = result_ip(&r2, false);
    assert!(ping(&p1, "10.54.0.1"));
    assert!(!ping(&p1, &ip2), "isolated ports must not talk");
    // macspoofchk: a spoofed source MAC is dropped at the bridge
    p1.ip(&["link", "set", "eth0", "address", "02:42:0a:36:00:99"])
        .unwrap();
    assert!(!ping(&p1, "10.54.0.1"), "spoofed MAC passed");
    p1.ip(&["link", "set", "eth0", "address", "02:42:0a:36:00:11"])
        .unwrap();
    assert!(ping(&p1, "10.54.0.1"), "own MAC dropped");

    // enabledad=false (default) adds v6 addresses without DAD;
    // disableContainerInterface leaves the interface down and unconfigured
    let mut c6 = single(
        &lab,
        "o6net",
        "cno6",
        "10.55.0.0/24",
        json!({"disableContainerInterface": true, "promiscMode": true}),
    );
    c6["ipam"]["ranges"] = json!([[{"subnet": "fd55::/64"}]]);
    let a3 = Attachment::new("o3", "eth0").with_netns(Some(&netns_path(&p3)));
    rt.add(&c6, &a3).expect_ok("ADD disabled iface");
    let eth =
        String::from_utf8_lossy(&p3.ip(&["addr", "show", "eth0"]).unwrap().stdout).to_string();
    assert!(eth.contains("state DOWN") && !eth.contains("fd55"), "{eth}");
    let br = link_detail(&lab.host, "cno6");
    assert!(br.contains("PROMISC"), "{br}");
    rt.del(&c6, &a3, None).expect_ok("DEL");
    let mut c6 = single(&lab, "o6net", "cno6", "10.55.0.0/24", json!({}));
    c6["ipam"]["ranges"] = json!([[{"subnet": "fd55::/64"}]]);
    rt.add(&c6, &a3).expect_ok("ADD v6");
    let eth =
        String::from_utf8_lossy(&p3.ip(&["addr", "show", "eth0"]).unwrap().stdout).to_string();
    assert!(eth.contains("fd55::") && eth.contains("nodad"), "{eth}");
    rt.del(&c6, &a3, None).expect_ok("DEL");

    // forceAddress: a different gateway address on the bridge is an error,
    // unless forceAddress replaces it
    lab.host
        .ip(&["addr", "add", "10.56.0.9/24", "dev", "cno6"])
        .unwrap();
    let c7 = single(
        &lab,
        "o7net",
        "cno6",
        "10.55.0.0/24",
        json!({"isGateway": true}),
    );
    let r = rt.add(&c7, &a3);
    assert!(
        !r.ok() && r.msg().contains("already has an IP address"),
        "{r:?}"
    );
    assert!(lab.leases("o7net").is_empty());
    let c7 = single(
        &lab,
        "o7net",
        "cno6",
        "10.55.0.0/24",
        json!({"isGateway": true, "forceAddress": true}),
    );
    rt.add(&c7, &a3).expect_ok("forceAddress");
    let br = String::from_utf8_lossy(&lab.host.ip(&["addr", "show", "cno6"]).unwrap().stdout)
        .to_string();
    assert!(
        br.contains("10.55.0.1/24") && !br.contains("10.56.0.9"),
        "{br}"
    );
    rt.del(&c7, &a3, None).expect_ok("DEL");

    // VLAN: implemented via bridge VLAN filtering, which this kernel may lack
    let probe = lab.host.ip(&[
        "link",
        "add",
        "vlprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    let cv = single(&lab, "vnet", "cnv0", "10.57.0.0/24", json!({"vlan": 100}));
    let r = rt.add(&cv, &a3);
    if probe.is_ok() {
        assert!(r.ok(), "{r:?}");
        let v = lab.sh("bridge vlan show");
        assert!(v.contains("100"), "{v}");
        rt.del(&cv, &a3, None).expect_ok("DEL vlan");
    } else {
        eprintln!(
            "SKIPPED vlan traffic sub-check: this kernel has no bridge VLAN filtering ({probe:?}); checking the clear error instead"
        );
        assert!(!r.ok() && r.msg().contains("VLAN filtering"), "{r:?}");
        assert!(lab.leases("vnet").is_empty() && pod_has_no_eth0(&p3));
    }

    rt.del(&c, &a1, Some(&r1)).expect_ok("DEL o1");
    rt.del(&c, &a2, Some(&r2)).expect_ok("DEL o2");
    assert!(
        !lab.nft().contains("cn-s-"),
        "spoof chains left:\n{}",
        lab.nft()
    );
    assert!(lab.veths().is_empty());
}

fn pod_has_no_eth0(p: &netsim::netns::Netns) -> bool {
    p.ip(&["link", "show", "eth0"]).is_err()
}

/// True when this kernel can turn VLAN filtering on for a bridge.
fn kernel_has_vlan_filtering(lab: &Lab) -> Result<(), String> {
    let r = lab.host.ip(&[
        "link",
        "add",
        "vfprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    let _ = lab.host.ip(&["link", "del", "vfprobe"]);
    r.map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[test]
fn vlan_gateway_interface_and_dad_settle() {
    if !privileged_or_skip("vlan_gateway_interface_and_dad_settle", TOOLS) {
        return;
    }
    let lab = Lab::new("cp");
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod(1);
    let att = Attachment::new("vg1", "eth0").with_netns(Some(&netns_path(&pod)));

    // vlan + isGateway: the gateway address lives on `<bridge>.<vlan>`, a
    // veth end in the host whose peer is an access port of the VLAN.
    let cg = single(
        &lab,
        "vgnet",
        "cpvg",
        "10.58.0.0/24",
        json!({"vlan": 58, "isGateway": true}),
    );
    let r = rt.add(&cg, &att);
    match kernel_has_vlan_filtering(&lab) {
        Ok(()) => {
            assert!(r.ok(), "{r:?}");
            let gw = lab.sh("ip -d addr show cpvg.58");
            assert!(gw.contains("10.58.0.1/24") && gw.contains("UP"), "{gw}");
            let br = lab.sh("ip addr show cpvg");
            assert!(!br.contains("10.58.0.1"), "gateway on the bridge: {br}");
            let v = lab.sh("bridge vlan show");
            assert!(v.contains("58 PVID"), "{v}");
            assert!(ping(&pod, "10.58.0.1"), "pod -> VLAN gateway");
            rt.del(&cg, &att, None).expect_ok("DEL vlan gateway");
            // shared by every pod of the VLAN: kept, as the reference does
            assert!(lab.sh("ip link show cpvg.58").contains("cpvg.58"));
        }
        Err(why) => {
            eprintln!(
                "SKIPPED vlan gateway traffic sub-check: this kernel cannot enable bridge VLAN filtering ({why}); checking the clean failure instead"
            );
            assert!(!r.ok() && r.msg().contains("VLAN filtering"), "{r:?}");
            assert!(lab.leases("vgnet").is_empty(), "lease leaked");
            assert!(pod_has_no_eth0(&pod), "container interface leaked");
            assert!(lab.veths().is_empty(), "veth leaked: {:?}", lab.veths());
        }
    }
    // Without filtering the gateway interface itself is plain veth work the
    // kernel allows: check our naming rules that the plugin relies on.
    use weft_cni::plugin::bridge::attach::{vlan_gateway_name, vlan_gateway_peer};
    assert_eq!(vlan_gateway_name("cni0", 100).as_deref(), Some("cni0.100"));
    assert_eq!(vlan_gateway_name("a-long-bridge", 4094), None);
    let p = vlan_gateway_peer("cni0.100");
    assert!(
        p.len() <= 15 && p == vlan_gateway_peer("cni0.100") && p != vlan_gateway_peer("cni0.101")
    );

    // enabledad: ADD returns only once DAD is over (no tentative address).
    let mut cd = single(
        &lab,
        "dadnet",
        "cpdad",
        "10.59.0.0/24",
        json!({"enabledad": true}),
    );
    cd["ipam"]["ranges"] = json!([[{"subnet": "fd59::/64", "rangeStart": "fd59::2"}]]);
    let r = rt.add(&cd, &att);
    assert!(r.ok(), "{r:?}");
    let eth = String::from_utf8_lossy(&pod.ip(&["-6", "addr", "show", "eth0"]).unwrap().stdout)
        .to_string();
    assert!(
        eth.contains("fd59::2/64") && !eth.contains("tentative") && !eth.contains("nodad"),
        "{eth}"
    );
    rt.del(&cd, &att, None).expect_ok("DEL dad");
    // A duplicate on the link (the bridge holds fd59::2): DAD fails, ADD
    // fails cleanly within the bound and nothing is left behind.
    lab.host
        .ip(&["addr", "add", "fd59::2/64", "dev", "cpdad", "nodad"])
        .unwrap();
    let dup = Attachment::new("vg1", "eth0")
        .with_netns(Some(&netns_path(&pod)))
        .with_arg("IgnoreUnknown", "1")
        .with_arg("IP", "fd59::2");
    let r = rt.add(&cd, &dup);
    assert!(!r.ok(), "duplicate address accepted: {r:?}");
    assert!(
        r.msg().contains("duplicate address detection") || r.msg().contains("tentative"),
        "{r:?}"
    );
    assert!(
        r.elapsed < std::time::Duration::from_secs(12),
        "{:?}",
        r.elapsed
    );
    assert!(lab.leases("dadnet").is_empty(), "lease leaked");
    assert!(pod_has_no_eth0(&pod));
    assert!(lab.veths().is_empty(), "veth leaked: {:?}", lab.veths());
}
