//! Black-box tests of the `ptp` plugin beside the reference: the result and
//! the kernel state it leaves (addresses and routes in both namespaces) for
//! every spec version, traffic between pods and out through masquerade,
//! idempotent DEL with and without the namespace, and a failed ADD that
//! leaves nothing behind.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use bridge_common::{HOST_OUT4, Lab, OUTSIDE4, netns_path, ping, result_ip, tcp_probe, tcp_server};
use common::{Attachment, Runtime};
use netsim::netns::{Netns, privileged_or_skip};
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft", "ping"];

fn conf(version: &str, lab: &Lab, v4: &str, v6: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": "pnet", "type": "ptp",
        "ipMasq": true, "mtu": 1400,
        "ipam": {"type": "host-local", "dataDir": lab.data_dir(),
                 "ranges": [[{"subnet": v4}], [{"subnet": v6}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.200.0/24"}]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn json_of(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let out = ns.ip(args).unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Addresses and main-table routes of `dev` in `ns`, with the device name
/// replaced by `as_name` and link-local / kernel-generated noise dropped.
fn kernel_state(ns: &Netns, dev: &str, as_name: &str) -> Value {
    let mut addrs: Vec<Value> = Vec::new();
    for l in json_of(ns, &["-j", "addr", "show", "dev", dev]) {
        addrs.push(
            json!({"mtu": l["mtu"], "up": l["flags"].as_array().unwrap().contains(&json!("UP"))}),
        );
        for a in l["addr_info"].as_array().unwrap() {
            if a["scope"] == "link" {
                continue;
            }
            addrs.push(json!([a["family"], a["local"], a["prefixlen"], a["scope"]]));
        }
    }
    let mut routes: Vec<Value> = Vec::new();
    for fam in ["-4", "-6"] {
        for r in json_of(ns, &["-j", fam, "route", "show", "dev", dev]) {
            let dst = r["dst"].as_str().unwrap_or("");
            if dst.starts_with("fe80") || dst.starts_with("ff") {
                continue;
            }
            routes.push(json!([
                fam,
                dst,
                r["gateway"],
                r["scope"],
                r["prefsrc"],
                as_name
            ]));
        }
    }
    routes.sort_by_key(Value::to_string);
    json!({"addrs": addrs, "routes": routes})
}

/// The result with names and MACs that differ by design made comparable.
fn shape(r: &Value) -> Value {
    let mut r = r.clone();
    r["cniVersion"] = json!("any");
    for i in r["interfaces"].as_array_mut().unwrap() {
        assert_eq!(i["mac"].as_str().unwrap().len(), 17, "{i}");
        i["mac"] = json!("mac");
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("netns");
        } else {
            assert!(i["name"].as_str().unwrap().starts_with("veth"), "{i}");
            i["name"] = json!("veth*");
        }
    }
    r
}

#[test]
fn result_and_kernel_state_match_reference_per_version() {
    if !privileged_or_skip(
        "result_and_kernel_state_match_reference_per_version",
        &["ip", "nft", "iptables"],
    ) || !common::reference_available("ptp")
    {
        return;
    }
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        // The reference (v1.1.1) stops at 1.0.0; a 1.1.0 result has the 1.0.0 shape.
        let ref_version = if version == "1.1.0" { "1.0.0" } else { version };
        let mut seen = Vec::new();
        for (ours, rt, version) in [
            (true, common::ours(), version),
            (false, Runtime::reference(), ref_version),
        ] {
            let lab = Lab::new("wcbp");
            let rt = rt.in_netns(&lab.host_name());
            let c = conf(version, &lab, "10.61.0.0/24", "fd61::/64", json!({}));
            let pod = lab.pod(1);
            let att = Attachment::new("cp", "eth0").with_netns(Some(&netns_path(&pod)));
            let r = rt
                .add(&c, &att)
                .expect_ok(&format!("{version} ADD ours={ours}"));
            let hv = r["interfaces"][0]["name"].as_str().unwrap().to_string();
            let state = json!({
                "pod": kernel_state(&pod, "eth0", "eth0"),
                "host": kernel_state(&lab.host, &hv, "veth*"),
            });
            if version != "0.3.0" && version != "0.3.1" {
                let chk = rt.check(&c, &att, Some(&r));
                if ours {
                    chk.expect_ok(&format!("{version} CHECK"));
                } else if !chk.ok() {
                    // v1.1.1 looks for IPAM routes without a gateway as
                    // gateway-less kernel routes, though ADD installed them
                    // via the gateway; ours must pass.
                    eprintln!("reference CHECK failed ({version}): {}", chk.msg());
                }
            }
            rt.del(&c, &att, Some(&r))
                .expect_ok(&format!("{version} DEL"));
            rt.del(&c, &att, Some(&r))
                .expect_ok(&format!("{version} 2nd DEL"));
            assert!(lab.leases("pnet").is_empty(), "{version}: leases left");
            assert!(lab.veths().is_empty(), "{version}: veth left");
            seen.push((shape(&r), state));
        }
        assert_eq!(seen[0].0, seen[1].0, "{version}: result ours vs reference");
        assert_eq!(
            seen[0].1, seen[1].1,
            "{version}: kernel state ours vs reference"
        );
        let pod_routes = seen[0].1["pod"]["routes"].to_string();
        for want in [
            r#"["-4","10.61.0.1",null,"link","#,
            r#"["-4","10.61.0.0/24","10.61.0.1",null,"#,
            r#"["-6","default","fd61::1""#,
        ] {
            assert!(pod_routes.contains(want), "{want} not in {pod_routes}");
        }
        let host = seen[0].1["host"].to_string();
        assert!(host.contains(r#""10.61.0.1",32"#), "{host}");
        assert!(host.contains(r#""host",null,"veth*"]"#), "{host}");
        assert_eq!(
            seen[0].0["ips"][0].get("version").is_some(),
            version.starts_with("0."),
            "{version}: ips[].version"
        );
    }
}

#[test]
fn pods_talk_through_the_host_and_masquerade_out() {
    if !privileged_or_skip("pods_talk_through_the_host_and_masquerade_out", TOOLS) {
        return;
    }
    let lab = Lab::new("wcbp");
    let out = lab.outside();
    let rt = common::ours().in_netns(&lab.host_name());
    let c = conf("1.0.0", &lab, "10.62.0.0/24", "fd62::/64", json!({}));
    let (p1, p2) = (lab.pod(1), lab.pod(2));
    let a1 = Attachment::new("c1", "eth0").with_netns(Some(&netns_path(&p1)));
    let a2 = Attachment::new("c2", "eth0").with_netns(Some(&netns_path(&p2)));
    let r1 = rt.add(&c, &a1).expect_ok("ADD 1");
    let r2 = rt.add(&c, &a2).expect_ok("ADD 2");
    assert_eq!(r1["ips"][0]["gateway"], "10.62.0.1");
    assert_eq!(r1["ips"][0]["interface"], 1);
    assert_eq!(r1["interfaces"][1]["sandbox"], netns_path(&p1));
    let mtu = json_of(&p1, &["-j", "link", "show", "eth0"]);
    assert_eq!(mtu[0]["mtu"], 1400);
    assert!(ping(&p1, "10.62.0.1"), "pod -> host end v4");
    assert!(ping(&p1, "fd62::1"), "pod -> host end v6");
    assert!(ping(&p1, &result_ip(&r2, false)), "pod1 -> pod2 v4");
    assert!(ping(&p2, &result_ip(&r1, true)), "pod2 -> pod1 v6");
    let srv = tcp_server(out.name(), "0.0.0.0:7100", 1);
    let seen = tcp_probe(p1.name(), &format!("{OUTSIDE4}:7100")).unwrap();
    assert!(
        seen.starts_with(&format!("{HOST_OUT4}:")),
        "outside saw {seen}"
    );
    srv.join().unwrap();
    // CHECK notices a missing address
    rt.check(&c, &a1, Some(&r1)).expect_ok("CHECK");
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().to_string();
    p1.ip(&["addr", "del", &ip1, "dev", "eth0"]).unwrap();
    let bad = rt.check(&c, &a1, Some(&r1));
    assert!(!bad.ok() && bad.msg().contains("addr"), "{}", bad.stdout);
    // DEL with the netns gone, then again with CNI_NETNS empty and unset
    let ip1 = result_ip(&r1, false);
    drop(p1);
    rt.del(&c, &a1, None).expect_ok("DEL, netns gone");
    rt.del(&c, &a1.clone().with_netns(Some("")), None)
        .expect_ok("DEL, empty netns");
    rt.del(&c, &a1.clone().with_netns(None), None)
        .expect_ok("DEL, no netns");
    assert!(
        !lab.nft().contains(&format!("{ip1} ")),
        "masq of c1 left:\n{}",
        lab.nft()
    );
    rt.del(&c, &a2, Some(&r2)).expect_ok("DEL 2");
    assert!(lab.leases("pnet").is_empty(), "leases left");
    assert!(lab.veths().is_empty(), "veths left: {:?}", lab.veths());
    assert!(
        !lab.nft().contains("cn-m-"),
        "masq chains left:\n{}",
        lab.nft()
    );
}

#[test]
fn failed_add_leaves_nothing_and_errors_are_coded() {
    if !privileged_or_skip("failed_add_leaves_nothing_and_errors_are_coded", TOOLS) {
        return;
    }
    let lab = Lab::new("wcbp");
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod(1);
    let att = Attachment::new("cf", "eth0").with_netns(Some(&netns_path(&pod)));
    // static IPAM without a gateway: the lease is taken, then ADD fails
    let c = json!({"cniVersion": "1.0.0", "name": "pnet", "type": "ptp",
        "ipam": {"type": "host-local", "dataDir": lab.data_dir(),
                 "ranges": [[{"subnet": "10.63.0.0/24", "gateway": "10.63.0.1"}]]},
        "mtu": 40});
    let r = rt.add(&c, &att);
    assert!(!r.ok(), "ADD with mtu 40 must fail: {}", r.stdout);
    assert_eq!(r.code(), Some(999), "{}", r.stdout);
    assert!(
        lab.leases("pnet").is_empty(),
        "lease left: {:?}",
        lab.leases("pnet")
    );
    assert!(lab.veths().is_empty(), "veth left");
    assert!(pod.ip(&["link", "show", "eth0"]).is_err(), "pod end left");
    // no IPAM: invalid config (7); bad JSON: decode (6)
    let r = rt.add(
        &json!({"cniVersion": "1.0.0", "name": "pnet", "type": "ptp"}),
        &att,
    );
    assert_eq!(r.code(), Some(7), "{}", r.stdout);
    let r = rt.add_raw("ptp", "x", "eth0", &netns_path(&pod), b"{not json");
    assert_eq!(r.code(), Some(6), "{}", r.stdout);
    // an existing ifname: the second ADD fails and the first stays intact
    let good = conf("1.0.0", &lab, "10.63.1.0/24", "fd63::/64", json!({}));
    let r1 = rt.add(&good, &att).expect_ok("ADD");
    let again = rt.add(
        &good,
        &Attachment::new("cg", "eth0").with_netns(Some(&netns_path(&pod))),
    );
    assert!(
        !again.ok() && again.msg().contains("already exists"),
        "{}",
        again.stdout
    );
    assert_eq!(
        lab.leases("pnet").len(),
        2,
        "only the first ADD's leases remain"
    );
    rt.check(&good, &att, Some(&r1))
        .expect_ok("CHECK after refused ADD");
    rt.del(&good, &att, Some(&r1)).expect_ok("DEL");
    assert!(lab.leases("pnet").is_empty());
}

#[test]
fn status_and_gc_reach_ipam() {
    if !privileged_or_skip("status_and_gc_reach_ipam", TOOLS) {
        return;
    }
    let lab = Lab::new("wcbp");
    let rt = common::ours().in_netns(&lab.host_name());
    let mut p = conf("1.1.0", &lab, "10.64.0.0/24", "fd64::/64", json!({}));
    let list = json!({"cniVersion": "1.1.0", "name": "pnet", "plugins": [p.take()]});
    rt.status_list(&list).unwrap();
    let (p1, p2) = (lab.pod(1), lab.pod(2));
    let a1 = Attachment::new("g1", "eth0").with_netns(Some(&netns_path(&p1)));
    let a2 = Attachment::new("g2", "eth0").with_netns(Some(&netns_path(&p2)));
    let r1 = rt.add_list(&list, &a1).unwrap();
    let r2 = rt.add_list(&list, &a2).unwrap();
    assert_eq!(lab.leases("pnet").len(), 4);
    // only g2 is still valid: g1's leases go
    rt.gc_list(&list, std::slice::from_ref(&a2)).unwrap();
    let left = lab.leases("pnet");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&result_ip(&r2, false)), "{left:?}");
    rt.del_list(&list, &a1, Some(&r1)).unwrap();
    rt.del_list(&list, &a2, Some(&r2)).unwrap();
    assert!(lab.leases("pnet").is_empty());
    assert!(lab.veths().is_empty());
    // STATUS and GC need 1.1.0
    let mut old = list.clone();
    old["cniVersion"] = json!("1.0.0");
    assert_eq!(rt.status_list(&old).unwrap_err().code(), Some(1));
}
