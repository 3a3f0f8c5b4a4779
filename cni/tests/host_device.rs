//! Black-box tests of the `host-device` plugin beside the reference, with
//! veth ends standing in for host NICs: the device moves in renamed (by
//! name, MAC or sysfs path), gets IPAM addresses and carries traffic, comes
//! back under its host name with its addresses on DEL, and a failed ADD
//! gives it back and releases the lease.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use bridge_common::{Lab, netns_path, ping};
use common::{Attachment, Runtime};
use netsim::netns::{Netns, privileged_or_skip};
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "ping"];

/// A veth pair in the lab's host namespace: `dev` (addressed, up) is the
/// "NIC" to hand to pods, `dev`p stays in the host at 10.71.0.254/24.
fn nic(lab: &Lab, dev: &str) -> String {
    let peer = format!("{dev}p");
    let h = &lab.host;
    h.ip(&["link", "add", dev, "type", "veth", "peer", "name", &peer])
        .unwrap();
    h.ip(&["addr", "add", "10.70.0.1/24", "dev", dev]).unwrap();
    h.ip(&["addr", "add", "fd70::1/64", "dev", dev, "nodad"])
        .unwrap();
    h.ip(&["link", "set", dev, "up"]).unwrap();
    h.ip(&["addr", "add", "10.71.0.254/24", "dev", &peer])
        .unwrap();
    h.ip(&["link", "set", &peer, "up"]).unwrap();
    let l: Vec<Value> =
        serde_json::from_slice(&h.ip(&["-j", "link", "show", dev]).unwrap().stdout).unwrap();
    l[0]["address"].as_str().unwrap().to_string()
}

fn link(ns: &Netns, dev: &str) -> Option<Value> {
    let o = ns.ip(&["-j", "addr", "show", "dev", dev]).ok()?;
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).ok()?;
    v.into_iter().next()
}

fn globals(l: &Value) -> Vec<String> {
    let mut v: Vec<String> = l["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    v.sort();
    v
}

fn is_up(l: &Value) -> bool {
    l["flags"].as_array().unwrap().contains(&json!("UP"))
}

fn conf(version: &str, lab: &Lab, select: Value, ipam: bool) -> Value {
    let mut c = json!({"cniVersion": version, "name": "hnet", "type": "host-device",
        "dataDir": lab.data_dir().join("hd-state")});
    for (k, v) in select.as_object().unwrap() {
        c[k] = v.clone();
    }
    if ipam {
        c["ipam"] = json!({"type": "host-local", "dataDir": lab.data_dir(),
            "ranges": [[{"subnet": "10.71.0.0/24", "rangeStart": "10.71.0.10"}]],
            "routes": [{"dst": "10.72.0.0/16"}]});
    }
    c
}

fn shape(r: &Value) -> Value {
    let mut r = r.clone();
    r["cniVersion"] = json!("any");
    for i in r["interfaces"].as_array_mut().unwrap() {
        i["sandbox"] = json!("netns");
        i["mac"] = json!("mac of the device");
    }
    r
}

#[test]
fn moves_in_and_back_beside_the_reference_per_version() {
    if !privileged_or_skip("moves_in_and_back_beside_the_reference_per_version", TOOLS)
        || !common::reference_available("host-device")
    {
        return;
    }
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let ref_version = if version == "1.1.0" { "1.0.0" } else { version };
        let mut shapes = Vec::new();
        for (ours, rt, version) in [
            (true, common::ours(), version),
            (false, Runtime::reference(), ref_version),
        ] {
            let lab = Lab::new("wcbh");
            let mac = nic(&lab, "hd0");
            let rt = rt.in_netns(&lab.host_name());
            let pod = lab.pod(1);
            let att = Attachment::new("ch", "net1").with_netns(Some(&netns_path(&pod)));
            let c = conf(version, &lab, json!({"device": "hd0"}), true);
            let r = rt
                .add(&c, &att)
                .expect_ok(&format!("{version} ADD ours={ours}"));
            assert_eq!(r["interfaces"][0]["name"], "net1");
            assert_eq!(r["interfaces"][0]["mac"], mac.as_str(), "same device");
            assert!(
                link(&lab.host, "hd0").is_none(),
                "{version}: hd0 still in the host"
            );
            let inside = link(&pod, "net1").unwrap();
            assert!(is_up(&inside));
            assert_eq!(
                globals(&inside),
                vec!["10.71.0.10/24".to_string()],
                "{version}"
            );
            assert!(
                ping(&pod, "10.71.0.254"),
                "{version} ours={ours}: traffic over the moved device"
            );
            if !version.starts_with("0.3") {
                let chk = rt.check(&c, &att, Some(&r));
                if ours {
                    chk.expect_ok(&format!("{version} CHECK"));
                } else if !chk.ok() {
                    eprintln!("reference CHECK failed ({version}): {}", chk.msg());
                }
            }
            rt.del(&c, &att, Some(&r))
                .expect_ok(&format!("{version} DEL ours={ours}"));
            let back = link(&lab.host, "hd0").expect("hd0 back in the host under its name");
            assert!(link(&pod, "net1").is_none());
            assert!(lab.leases("hnet").is_empty(), "{version}: lease left");
            let again = rt.del(&c, &att, Some(&r));
            if ours {
                // Ours gives the addresses and the up state back and DEL is idempotent.
                assert_eq!(
                    globals(&back),
                    vec!["10.70.0.1/24", "fd70::1/64"],
                    "{version}"
                );
                assert!(is_up(&back), "{version}: hd0 up again");
                again.expect_ok(&format!("{version} 2nd DEL"));
                assert!(
                    std::fs::read_dir(lab.data_dir().join("hd-state"))
                        .unwrap()
                        .next()
                        .is_none(),
                    "state record left"
                );
            } else {
                // v1.1.1 leaves the device down without its addresses and
                // fails a repeated DEL.
                assert!(globals(&back).is_empty() && !is_up(&back));
                assert!(!again.ok());
            }
            shapes.push(shape(&r));
        }
        assert_eq!(shapes[0], shapes[1], "{version}: result ours vs reference");
    }
}

#[test]
fn selects_by_mac_and_kernel_path_like_the_reference() {
    if !privileged_or_skip("selects_by_mac_and_kernel_path_like_the_reference", TOOLS)
        || !common::reference_available("host-device")
    {
        return;
    }
    for (ours, rt) in [(true, common::ours()), (false, Runtime::reference())] {
        let lab = Lab::new("wcbh");
        let rt = rt.in_netns(&lab.host_name());
        // "ab0" sorts first under /sys/devices/virtual/net (before "lo").
        let mac = nic(&lab, "ab0");
        let pod = lab.pod(1);
        let att = Attachment::new("cm", "net1").with_netns(Some(&netns_path(&pod)));
        for select in [
            json!({"hwaddr": mac.to_uppercase()}),
            json!({"kernelpath": "/sys/devices/virtual"}),
        ] {
            let c = conf("1.0.0", &lab, select.clone(), false);
            let r = rt
                .add(&c, &att)
                .expect_ok(&format!("ADD {select} ours={ours}"));
            assert_eq!(r["interfaces"][0]["mac"], mac.as_str(), "{select}");
            assert_eq!(r.get("ips"), None);
            assert!(link(&pod, "net1").is_some());
            rt.del(&c, &att, Some(&r)).expect_ok("DEL");
            assert!(link(&lab.host, "ab0").is_some(), "{select}: ab0 back");
            lab.host.ip(&["link", "set", "ab0", "up"]).unwrap();
        }
    }
}

#[test]
fn failed_add_gives_the_device_back_and_errors_are_coded() {
    if !privileged_or_skip(
        "failed_add_gives_the_device_back_and_errors_are_coded",
        TOOLS,
    ) {
        return;
    }
    let lab = Lab::new("wcbh");
    nic(&lab, "hd0");
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod(1);
    let att = Attachment::new("cf", "net1").with_netns(Some(&netns_path(&pod)));
    // A route via an unreachable gateway fails after the device moved and
    // the lease was taken.
    let mut c = conf("1.0.0", &lab, json!({"device": "hd0"}), true);
    c["ipam"]["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let r = rt.add(&c, &att);
    assert_eq!(r.code(), Some(999), "{}", r.stdout);
    let back = link(&lab.host, "hd0").expect("hd0 given back");
    assert_eq!(globals(&back), vec!["10.70.0.1/24", "fd70::1/64"]);
    assert!(is_up(&back));
    assert!(link(&pod, "net1").is_none());
    assert!(
        lab.leases("hnet").is_empty(),
        "lease left: {:?}",
        lab.leases("hnet")
    );
    // unknown device (999), nothing named (7), PCI (2), bad JSON (6)
    let r = rt.add(
        &conf("1.0.0", &lab, json!({"device": "nope0"}), false),
        &att,
    );
    assert!(
        r.code() == Some(999) && r.msg().contains("failed to find host device"),
        "{}",
        r.stdout
    );
    let r = rt.add(&conf("1.0.0", &lab, json!({}), false), &att);
    assert_eq!(r.code(), Some(7), "{}", r.stdout);
    let r = rt.add(
        &conf("1.0.0", &lab, json!({"pciBusID": "0000:00:1f.6"}), false),
        &att,
    );
    assert_eq!(r.code(), Some(2), "{}", r.stdout);
    let r = rt.add_raw("host-device", "x", "net1", &netns_path(&pod), b"[");
    assert_eq!(r.code(), Some(6), "{}", r.stdout);
    // DEL while another link took the host name: refused, the device stays
    // in the pod, and a retry after the name is free succeeds.
    let c = conf("1.0.0", &lab, json!({"device": "hd0"}), true);
    let r = rt.add(&c, &att).expect_ok("ADD");
    lab.host
        .ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "imp0"])
        .unwrap();
    let d = rt.del(&c, &att, Some(&r));
    assert_eq!(d.code(), Some(999), "{}", d.stdout);
    assert!(
        link(&pod, "net1").is_some(),
        "device kept in the pod for a retry"
    );
    lab.host.ip(&["link", "del", "hd0"]).unwrap();
    rt.del(&c, &att, Some(&r)).expect_ok("DEL retried");
    assert_eq!(
        globals(&link(&lab.host, "hd0").unwrap()),
        vec!["10.70.0.1/24", "fd70::1/64"]
    );
    // DEL after the namespace is gone (a veth dies with it): fine, twice.
    rt.add(&c, &att).expect_ok("ADD");
    drop(pod);
    rt.del(&c, &att, None).expect_ok("DEL, netns gone");
    rt.del(&c, &att.clone().with_netns(None), None)
        .expect_ok("DEL, no netns");
    assert!(lab.leases("hnet").is_empty());
}
