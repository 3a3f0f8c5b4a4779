//! Black-box tests of the `loopback` plugin side by side with the reference:
//! per spec version the same result (up to the sandbox path), `lo` up after
//! ADD and down after DEL, CHECK failing on a down `lo`, DEL idempotent and
//! fine without a namespace, `prevResult` passed through.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Attachment, Runtime};
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip"];
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "lo-net", "type": "loopback"})
}

fn lo_up(ns: &Netns) -> bool {
    let o = ns.ip(&["-o", "link", "show", "lo"]).unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.split('<')
        .nth(1)
        .and_then(|f| f.split('>').next())
        .is_some_and(|f| f.split(',').any(|x| x == "UP"))
}

/// The result without what differs by run: the sandbox path; and without
/// `ips[].version`, which the reference leaves out.
fn normal(mut r: Value, ns: &Netns) -> Value {
    if let Some(ifs) = r["interfaces"].as_array_mut() {
        for i in ifs {
            assert_eq!(i["sandbox"], format!("/run/netns/{}", ns.name()));
            i["sandbox"] = json!("SANDBOX");
        }
    }
    if let Some(ips) = r["ips"].as_array_mut() {
        for ip in ips {
            ip.as_object_mut().unwrap().remove("version");
        }
    }
    r
}

fn att(ns: &Netns) -> Attachment {
    Attachment::new("lo1", "lo").with_netns(Some(&format!("/run/netns/{}", ns.name())))
}

#[test]
fn add_check_del_match_the_reference() {
    if !privileged_or_skip("add_check_del_match_the_reference", TOOLS) {
        return;
    }
    let prefix = unique_prefix("wca");
    let with_ref = common::reference_available("loopback");
    for (n, v) in VERSIONS.iter().enumerate() {
        let ours_ns = Netns::create(&format!("{prefix}-o{n}")).unwrap();
        let ref_ns = Netns::create(&format!("{prefix}-r{n}")).unwrap();
        // netsim brings lo up in new namespaces; start like a runtime's.
        for ns in [&ours_ns, &ref_ns] {
            ns.ip(&["link", "set", "lo", "down"]).unwrap();
            assert!(!lo_up(ns));
        }
        let c = conf(v);
        let r = common::ours().add(&c, &att(&ours_ns)).expect_ok("ADD");
        assert!(lo_up(&ours_ns), "{v}: lo not up");
        let ours = normal(r, &ours_ns);
        assert_eq!(
            ours,
            json!({"cniVersion": v, "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "SANDBOX"}],
                   "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
                   "dns": {}}),
            "{v}"
        );
        // The reference does not speak 1.1.0: compare with its 1.0.0 answer.
        if with_ref {
            let rv = if *v == "1.1.0" { "1.0.0" } else { v };
            let r = Runtime::reference()
                .add(&conf(rv), &att(&ref_ns))
                .expect_ok("reference ADD");
            let mut theirs = normal(r, &ref_ns);
            theirs["cniVersion"] = json!(v);
            assert_eq!(ours, theirs, "{v}: ours and the reference differ");
        }

        if *v >= "0.4.0" {
            common::ours()
                .check(&c, &att(&ours_ns), None)
                .expect_ok("CHECK");
            ours_ns.ip(&["link", "set", "lo", "down"]).unwrap();
            let r = common::ours().check(&c, &att(&ours_ns), None);
            assert!(
                !r.ok() && r.msg().contains("loopback interface is down"),
                "{r:?}"
            );
            if with_ref && *v != "1.1.0" {
                ref_ns.ip(&["link", "set", "lo", "down"]).unwrap();
                let r = Runtime::reference().check(&c, &att(&ref_ns), None);
                assert!(!r.ok(), "reference CHECK passed with lo down");
                ref_ns.ip(&["link", "set", "lo", "up"]).unwrap();
            }
            ours_ns.ip(&["link", "set", "lo", "up"]).unwrap();
        }

        // DEL brings lo down, like the reference; again is fine.
        common::ours()
            .del(&c, &att(&ours_ns), None)
            .expect_ok("DEL");
        assert!(!lo_up(&ours_ns), "{v}: lo still up after DEL");
        common::ours()
            .del(&c, &att(&ours_ns), None)
            .expect_ok("DEL again");
        if with_ref && *v != "1.1.0" {
            Runtime::reference()
                .del(&c, &att(&ref_ns), None)
                .expect_ok("reference DEL");
            assert_eq!(lo_up(&ref_ns), lo_up(&ours_ns));
        }
        // Without a namespace, or with one that is gone: success.
        let gone = Attachment::new("lo1", "lo").with_netns(Some("/run/netns/wca-no-such-ns"));
        common::ours()
            .del(&c, &gone, None)
            .expect_ok("DEL gone netns");
        let none = Attachment::new("lo1", "lo").with_netns(None);
        common::ours()
            .del(&c, &none, None)
            .expect_ok("DEL no netns");
    }
}

#[test]
fn prev_result_passes_through_and_errors_have_codes() {
    if !privileged_or_skip("prev_result_passes_through_and_errors_have_codes", TOOLS) {
        return;
    }
    let ns = Netns::create(&format!("{}-p", unique_prefix("wca"))).unwrap();
    ns.ip(&["link", "set", "lo", "down"]).unwrap();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 0}],
        "dns": {"nameservers": ["10.9.0.1"]}});
    let mut c = conf("1.0.0");
    c["prevResult"] = prev.clone();
    let r = common::ours()
        .add(&c, &att(&ns))
        .expect_ok("ADD with prevResult");
    assert_eq!(r, prev);
    assert!(lo_up(&ns));
    if common::reference_available("loopback") {
        let theirs = Runtime::reference()
            .add(&c, &att(&ns))
            .expect_ok("reference ADD with prevResult");
        assert_eq!(theirs, prev);
    }
    // ADD without CNI_NETNS: code 4; a namespace that does not exist: 999.
    let r = common::ours().add(&conf("1.0.0"), &Attachment::new("x", "lo").with_netns(None));
    assert_eq!(r.code(), Some(4), "{r:?}");
    let gone = Attachment::new("x", "lo").with_netns(Some("/run/netns/wca-no-such-ns"));
    let r = common::ours().add(&conf("1.0.0"), &gone);
    assert_eq!(r.code(), Some(999), "{r:?}");
    // An interface name that does not exist in the namespace.
    let bad = Attachment::new("x", "nolo").with_netns(Some(&format!("/run/netns/{}", ns.name())));
    let r = common::ours().add(&conf("1.0.0"), &bad);
    assert_eq!(r.code(), Some(999), "{r:?}");
    // CHECK needs 0.4.0+.
    let r = common::ours().check(&conf("0.3.1"), &att(&ns), None);
    assert_eq!(r.code(), Some(1), "{r:?}");
}
