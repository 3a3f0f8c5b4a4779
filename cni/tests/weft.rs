//! Black-box tests of the `weft` meta-plugin in flannel's place: a conflist
//! written for flannel (`"type": "flannel"`) run against a `flannel`
//! symlink to the meta-plugin binary (and `weft`, another), a subnet.env the test writes, pods really
//! attached through the delegated bridge + host-local and pinging the
//! gateway and each other, DEL after the subnet changed, and the errors.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use std::path::PathBuf;

use bridge_common::{Lab, netns_path, ping, result_ip};
use common::{Attachment, Runtime, ours_dir};
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft", "ping"];

const SUBNET_ENV: &str = "FLANNEL_NETWORK=10.80.0.0/16\nFLANNEL_SUBNET=10.80.3.1/24\n\
    FLANNEL_IPV6_NETWORK=fd80::/56\nFLANNEL_IPV6_SUBNET=fd80:0:0:3::1/64\n\
    FLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n";

/// A CNI_PATH directory, first in the path, with the meta-plugin (cargo's
/// `weft-meta`) installed as `weft` and as `flannel`, as the package
/// installs it (in target/, `weft` is the CLI).
fn flannel_dir(lab: &Lab) -> PathBuf {
    let d = lab.data_dir().join("bin");
    std::fs::create_dir_all(&d).unwrap();
    for name in ["weft", "flannel"] {
        std::os::unix::fs::symlink(ours_dir().join("weft-meta"), d.join(name)).unwrap();
    }
    d
}

fn runtime(lab: &Lab) -> Runtime {
    let bin = flannel_dir(lab);
    Runtime::new(&[&bin, &ours_dir()]).in_netns(&lab.host_name())
}

fn subnet_file(lab: &Lab) -> PathBuf {
    lab.data_dir().join("subnet.env")
}

/// kube-flannel's conflist, with the file locations moved into the lab.
fn flannel_list(lab: &Lab, version: &str, plugin: &str) -> Value {
    json!({"name": "cbr0", "cniVersion": version, "plugins": [
        {"type": plugin, "subnetFile": subnet_file(lab), "dataDir": lab.data_dir().join("flannel"),
         "ipam": {"dataDir": lab.data_dir()},
         "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

fn kept(lab: &Lab, cid: &str) -> Option<Value> {
    let b = std::fs::read(lab.data_dir().join("flannel").join(cid)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn in_subnet(ip: &str, prefix: &str) -> bool {
    ip.starts_with(prefix)
}

#[test]
fn flannel_conflist_attaches_pods_that_talk() {
    if !privileged_or_skip("flannel_conflist_attaches_pods_that_talk", TOOLS) {
        return;
    }
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let lab = Lab::new("wcbw");
        std::fs::write(subnet_file(&lab), SUBNET_ENV).unwrap();
        let rt = runtime(&lab);
        let list = flannel_list(&lab, version, "flannel");
        let (p1, p2) = (lab.pod(1), lab.pod(2));
        let a1 = Attachment::new("w1", "eth0").with_netns(Some(&netns_path(&p1)));
        let a2 = Attachment::new("w2", "eth0").with_netns(Some(&netns_path(&p2)));
        let r1 = rt
            .add_list(&list, &a1)
            .unwrap_or_else(|e| panic!("{version} ADD: {e:?}"));
        let r2 = rt
            .add_list(&list, &a2)
            .unwrap_or_else(|e| panic!("{version} ADD 2: {e:?}"));
        assert_eq!(r1["cniVersion"], version);
        assert_eq!(r1["interfaces"][0]["name"], "cni0", "{version}: {r1}");
        assert_eq!(r1["ips"][0]["gateway"], "10.80.3.1", "{version}");
        let (ip1, ip2) = (result_ip(&r1, false), result_ip(&r2, false));
        assert!(in_subnet(&ip1, "10.80.3."), "{ip1}");
        assert!(in_subnet(&result_ip(&r1, true), "fd80:0:0:3::"), "{r1}");
        // the delegate flannel would have rendered
        let d = kept(&lab, "w1").expect("delegate config kept by container id");
        assert_eq!(d["type"], "bridge");
        assert_eq!(
            d["ipMasq"], false,
            "FLANNEL_IPMASQ=true: the node masquerades"
        );
        assert_eq!(d["mtu"], 1400);
        assert_eq!(d["isGateway"], true);
        assert_eq!(d["hairpinMode"], true);
        assert_eq!(d["cniVersion"], version);
        assert_eq!(
            d["ipam"]["routes"],
            json!([{"dst": "10.80.0.0/16"}, {"dst": "fd80::/56"}])
        );
        // kernel state and traffic
        let link = p1.ip(&["-j", "link", "show", "eth0"]).unwrap();
        let link: Vec<Value> = serde_json::from_slice(&link.stdout).unwrap();
        assert_eq!(link[0]["mtu"], 1400, "{version}: FLANNEL_MTU");
        let routes = String::from_utf8(p1.ip(&["route"]).unwrap().stdout).unwrap();
        assert!(routes.contains("10.80.0.0/16 via 10.80.3.1"), "{routes}");
        assert!(routes.contains("default via 10.80.3.1"), "{routes}");
        assert!(ping(&p1, "10.80.3.1"), "{version}: pod -> bridge gateway");
        assert!(ping(&p2, "fd80:0:0:3::1"), "{version}: pod -> v6 gateway");
        assert!(ping(&p1, &ip2), "{version}: pod1 -> pod2");
        assert!(
            ping(&p2, &result_ip(&r1, true)),
            "{version}: pod2 -> pod1 v6"
        );
        assert!(
            !lab.nft().contains("cn-m-"),
            "no pod masquerade with FLANNEL_IPMASQ=true"
        );
        if version != "0.3.0" && version != "0.3.1" {
            rt.check_list(&list, &a1, &r1)
                .unwrap_or_else(|e| panic!("{version} CHECK: {e:?}"));
        }
        // The node's subnet changes; DEL still releases the old lease.
        std::fs::write(
            subnet_file(&lab),
            SUBNET_ENV.replace("10.80.3.1/24", "10.80.9.1/24"),
        )
        .unwrap();
        rt.del_list(&list, &a1, Some(&r1))
            .unwrap_or_else(|e| panic!("{version} DEL: {e:?}"));
        assert!(kept(&lab, "w1").is_none(), "{version}: kept config left");
        assert!(
            !lab.leases("cbr0").contains(&ip1),
            "{version}: lease of w1 left"
        );
        assert!(
            p1.ip(&["link", "show", "eth0"]).is_err(),
            "{version}: pod1 eth0 left"
        );
        rt.del_list(&list, &a1, Some(&r1))
            .unwrap_or_else(|e| panic!("{version} 2nd DEL: {e:?}"));
        // A new pod now gets the new subnet.
        let p3 = lab.pod(3);
        let a3 = Attachment::new("w3", "eth0").with_netns(Some(&netns_path(&p3)));
        let mut l3 = list.clone();
        l3["plugins"][0]["delegate"]["bridge"] = json!("cni9");
        let r3 = rt.add_list(&l3, &a3).unwrap();
        assert!(in_subnet(&result_ip(&r3, false), "10.80.9."), "{r3}");
        rt.del_list(&l3, &a3, Some(&r3)).unwrap();
        rt.del_list(&list, &a2, Some(&r2)).unwrap();
        assert!(
            lab.leases("cbr0").is_empty(),
            "{version}: {:?}",
            lab.leases("cbr0")
        );
        assert!(lab.veths().is_empty(), "{version}: {:?}", lab.veths());
    }
}

#[test]
fn weft_type_status_gc_and_errors() {
    if !privileged_or_skip("weft_type_status_gc_and_errors", TOOLS) {
        return;
    }
    let lab = Lab::new("wcbw");
    let rt = runtime(&lab);
    let list = flannel_list(&lab, "1.1.0", "weft");
    let pod = lab.pod(1);
    let att = Attachment::new("e1", "eth0").with_netns(Some(&netns_path(&pod)));
    // no subnet file yet: ADD says try later (11), STATUS not available (50)
    let e = rt.add_list(&list, &att).unwrap_err();
    assert_eq!(e.code(), Some(11), "{}", e.stdout);
    let e = rt.status_list(&list).unwrap_err();
    assert_eq!(e.code(), Some(50), "{}", e.stdout);
    std::fs::write(subnet_file(&lab), "FLANNEL_NETWORK=10.80.0.0/16\n").unwrap();
    let e = rt.add_list(&list, &att).unwrap_err();
    assert!(
        e.msg().contains("is missing FLANNEL_SUBNET"),
        "{}",
        e.stdout
    );
    assert_eq!(rt.status_list(&list).unwrap_err().code(), Some(50));
    std::fs::write(subnet_file(&lab), SUBNET_ENV).unwrap();
    rt.status_list(&list).unwrap();
    // delegate keys flannel refuses (7)
    for bad in [
        json!({"name": "x"}),
        json!({"ipam": {}}),
        json!({"type": 1}),
    ] {
        let mut l = list.clone();
        l["plugins"][0]["delegate"] = bad.clone();
        let e = rt.add_list(&l, &att).unwrap_err();
        assert_eq!(e.code(), Some(7), "{bad}: {}", e.stdout);
    }
    // a delegate that fails is rolled back: no kept config, no lease
    let mut l = list.clone();
    l["plugins"][0]["delegate"]["bridge"] = json!("a-name-too-long-for-linux");
    let e = rt.add_list(&l, &att).unwrap_err();
    assert_eq!(e.code(), Some(7), "{}", e.stdout);
    assert!(kept(&lab, "e1").is_none());
    assert!(lab.leases("cbr0").is_empty());
    // GC: only e2 stays valid; e1's lease and kept config go
    let p2 = lab.pod(2);
    let a2 = Attachment::new("e2", "eth0").with_netns(Some(&netns_path(&p2)));
    let r1 = rt.add_list(&list, &att).unwrap();
    let r2 = rt.add_list(&list, &a2).unwrap();
    rt.gc_list(&list, std::slice::from_ref(&a2)).unwrap();
    assert!(kept(&lab, "e2").is_some(), "e2's kept config must stay");
    assert!(kept(&lab, "e1").is_none(), "e1's kept config must go");
    assert_eq!(
        lab.leases("cbr0").len(),
        2,
        "e2's two leases: {:?}",
        lab.leases("cbr0")
    );
    // GC releases resources, not links (as bridge): e1's pod goes away.
    drop(pod);
    rt.del_list(&list, &att, Some(&r1)).unwrap();
    rt.del_list(&list, &a2, Some(&r2)).unwrap();
    assert!(lab.leases("cbr0").is_empty());
    assert!(lab.veths().is_empty(), "{:?}", lab.veths());
}
