//! Black-box tests of the state portmap owns: CHECK fails as soon as a map
//! element or a rule of the container's DNAT state is gone (for every spec
//! version with CHECK), and GC removes the DNAT state of containers no longer
//! in `cni.dev/valid-attachments`, leaving valid ones and other networks'.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use bridge_common::Lab;
use common::Attachment;
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "nft"];

fn conf(version: &str, net: &str, mappings: Value) -> Value {
    json!({"cniVersion": version, "name": net, "type": "portmap",
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": {"cniVersion": version,
            "interfaces": [{"name": "cni0"}, {"name": "vethx"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.63.0.5/24", "gateway": "10.63.0.1", "interface": 2},
                    {"address": "fd63::5/64", "gateway": "fd63::1", "interface": 2}]}})
}

fn nft(lab: &Lab, cmd: &str) {
    let o = lab.host.command("nft").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "nft {cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The DNAT chains (`cn-p-…`) in the ruleset.
fn dnat_chains(lab: &Lab) -> Vec<String> {
    lab.nft()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain "))
        .filter(|c| c.starts_with("cn-p-"))
        .map(|c| c.trim_end_matches(" {").to_string())
        .collect()
}

/// Handle of the first rule containing `needle` in `chain`.
fn rule_handle(lab: &Lab, chain: &str, needle: &str) -> String {
    let out = lab.sh(&format!("nft -a list chain inet weft-cni {chain}"));
    out.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit("# handle ").next())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no rule with {needle:?} in {out}"))
}

#[test]
fn check_fails_when_dnat_state_is_removed() {
    if !privileged_or_skip("check_fails_when_dnat_state_is_removed", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let m = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                   {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]);
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(v, "cnet", m.clone());
        let att = Attachment::new("chk", "eth0");
        rt.exec("ADD", Some(&att), &c).expect_ok("ADD");
        rt.exec("CHECK", Some(&att), &c)
            .expect_ok("CHECK after ADD");
        let chain = dnat_chains(&lab).pop().unwrap();

        // a map element of a host port
        nft(&lab, "delete element inet weft-cni pm-any4 { tcp . 8080 }");
        let r = rt.exec("CHECK", Some(&att), &c);
        assert!(!r.ok(), "{v}: CHECK passed without the map element");
        assert_eq!(r.code(), Some(999), "{r:?}");
        assert!(r.stdout.contains("pm-any4"), "{r:?}");
        // ADD again repairs it
        rt.exec("ADD", Some(&att), &c).expect_ok("ADD again");
        rt.exec("CHECK", Some(&att), &c)
            .expect_ok("CHECK after repair");

        // one DNAT rule
        let chain = dnat_chains(&lab).pop().unwrap_or(chain);
        let h = rule_handle(&lab, &chain, "dnat ip6 to");
        nft(
            &lab,
            &format!("delete rule inet weft-cni {chain} handle {h}"),
        );
        let r = rt.exec("CHECK", Some(&att), &c);
        assert!(!r.ok(), "{v}: CHECK passed without a DNAT rule");
        assert!(r.stdout.contains("rules"), "{r:?}");

        // the whole chain flushed (owner records included)
        rt.exec("ADD", Some(&att), &c).expect_ok("ADD again");
        let chain = dnat_chains(&lab).pop().unwrap();
        nft(&lab, &format!("flush chain inet weft-cni {chain}"));
        let r = rt.exec("CHECK", Some(&att), &c);
        assert!(!r.ok(), "{v}: CHECK passed with a flushed chain");

        rt.exec("ADD", Some(&att), &c).expect_ok("ADD after flush");
        rt.exec("CHECK", Some(&att), &c)
            .expect_ok("CHECK after ADD");
        rt.exec("DEL", Some(&att), &c).expect_ok("DEL");
        rt.exec("DEL", Some(&att), &c).expect_ok("DEL again");
        assert!(dnat_chains(&lab).is_empty(), "{}", lab.nft());
        let r = rt.exec("CHECK", Some(&att), &c);
        assert!(!r.ok(), "{v}: CHECK passed after DEL");
    }
}

#[test]
fn gc_removes_dnat_of_stale_containers() {
    if !privileged_or_skip("gc_removes_dnat_of_stale_containers", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let map = |port: u16| json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]);
    let list = |net: &str| {
        json!({"cniVersion": "1.1.0", "name": net,
            "plugins": [{"type": "portmap", "capabilities": {"portMappings": true}}]})
    };
    let add = |net: &str, cid: &str, port: u16| {
        let mut prev = conf("1.1.0", "x", json!([]))["prevResult"].clone();
        prev["ips"][0]["address"] = json!(format!("10.63.0.{}/24", port - 9000));
        prev["ips"][1]["address"] = json!(format!("fd63::{}/64", port - 9000));
        let att = Attachment::new(cid, "eth0").with_cap("portMappings", map(port));
        let c = common::inject(
            &list(net)["plugins"][0],
            Some(&list(net)),
            Some(&prev),
            &att,
        );
        rt.exec("ADD", Some(&att), &c).expect_ok("ADD");
        att
    };
    let g1 = add("gnet", "g1", 9101);
    let g2 = add("gnet", "g2", 9102);
    let _o1 = add("gother", "o1", 9103);
    assert_eq!(dnat_chains(&lab).len(), 3);

    rt.gc_list(&list("gnet"), std::slice::from_ref(&g2))
        .unwrap();
    let ruleset = lab.nft();
    assert_eq!(dnat_chains(&lab).len(), 2, "{ruleset}");
    assert!(!ruleset.contains("9101"), "g1's host port left: {ruleset}");
    assert!(
        ruleset.contains("9102") && ruleset.contains("9103"),
        "{ruleset}"
    );
    // the collected container's DEL is still fine; GC again is a no-op
    let c1 = common::inject(&list("gnet")["plugins"][0], Some(&list("gnet")), None, &g1);
    rt.exec("DEL", Some(&g1), &c1).expect_ok("DEL g1");
    rt.gc_list(&list("gnet"), &[g2]).unwrap();
    assert_eq!(dnat_chains(&lab).len(), 2);
    // nothing valid: the network is empty, the other one untouched
    rt.gc_list(&list("gnet"), &[]).unwrap();
    let ruleset = lab.nft();
    assert_eq!(dnat_chains(&lab).len(), 1, "{ruleset}");
    assert!(ruleset.contains("9103"), "{ruleset}");
}
