//! Black-box tests of the `static` IPAM plugin side by side with the
//! reference: the same results for the same configs, `CNI_ARGS` and
//! capability arguments in every spec version, failures for the same bad
//! inputs (with our codes), CHECK against a `prevResult`, and `static` as
//! the IPAM of our bridge.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use common::{Attachment, Runtime};
use serde_json::{Value, json};

const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn conf(version: &str, ipam: Value, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": "snet", "type": "static", "ipam": ipam});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn full_ipam() -> Value {
    json!({"type": "static",
        "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                      {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"},
                   {"dst": "3ffe:ffff:0:01ff::1/64"}],
        "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}})
}

/// `CNI_ARGS` pairs.
type Args = Vec<(&'static str, &'static str)>;
/// (name, ipam, extra top-level keys, CNI_ARGS, capability args)
type Case = (&'static str, Value, Value, Args, Value);

fn cases() -> Vec<Case> {
    vec![
        ("full", full_ipam(), json!({}), vec![], json!({})),
        (
            "empty",
            json!({"type": "static"}),
            json!({}),
            vec![],
            json!({}),
        ),
        (
            "cni_args",
            json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}]}),
            json!({}),
            vec![("IP", "10.2.0.5/16,fd00::3/64"), ("GATEWAY", "10.2.0.1")],
            json!({}),
        ),
        (
            "ignore_unknown",
            json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}]}),
            json!({}),
            vec![("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")],
            json!({}),
        ),
        (
            "args_ips",
            json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}]}),
            json!({"args": {"cni": {"ips": ["10.4.0.5/16"]}}}),
            vec![("IP", "10.2.0.5/16")],
            json!({}),
        ),
        (
            "runtime_ips",
            json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}]}),
            json!({"capabilities": {"ips": true}, "args": {"cni": {"ips": ["10.4.0.5/16"]}}}),
            vec![],
            json!({"ips": ["10.3.0.5/16", "fd00::5/64"]}),
        ),
    ]
}

fn attachment(args: &[(&str, &str)], caps: &Value) -> Attachment {
    let mut a = Attachment::new("s1", "eth0");
    for (k, v) in args {
        a = a.with_arg(k, v);
    }
    for (k, v) in caps.as_object().unwrap() {
        a = a.with_cap(k, v.clone());
    }
    a
}

#[test]
fn results_match_the_reference_per_version() {
    let with_ref = common::reference_available("static");
    for v in VERSIONS {
        for (name, ipam, extra, args, caps) in cases() {
            let att = attachment(&args, &caps);
            let c = conf(v, ipam.clone(), extra.clone());
            let ours = common::ours()
                .add(&c, &att)
                .expect_ok(&format!("{name} {v}"));
            assert_eq!(ours["cniVersion"], *v);
            if name == "full" {
                assert_eq!(ours["ips"].as_array().unwrap().len(), 2);
                assert_eq!(ours["routes"].as_array().unwrap().len(), 3);
                assert_eq!(ours["dns"]["domain"], "example.com");
            }
            if !with_ref {
                continue;
            }
            // The reference does not speak 1.1.0: compare with its 1.0.0 answer.
            let rv = if *v == "1.1.0" { "1.0.0" } else { v };
            let mut theirs = Runtime::reference()
                .add(&conf(rv, ipam, extra), &att)
                .expect_ok(&format!("reference {name} {v}"));
            theirs["cniVersion"] = json!(v);
            assert_eq!(ours, theirs, "{name} {v}");
            // DEL does nothing and succeeds, for both.
            common::ours().del(&c, &att, None).expect_ok("DEL");
        }
    }
}

#[test]
fn bad_inputs_fail_like_the_reference_with_codes() {
    let with_ref = common::reference_available("static");
    let addr = |a: Value| json!({"type": "static", "addresses": [a]});
    let cases: Vec<(Value, Value, Args, u64)> = vec![
        (Value::Null, json!({}), vec![], 7),
        (addr(json!({"address": "10.10.0.1"})), json!({}), vec![], 7),
        (
            addr(json!({"address": "10.10.0.300/24"})),
            json!({}),
            vec![],
            7,
        ),
        (
            addr(json!({"address": "10.1.0.1/24", "gateway": "bad"})),
            json!({}),
            vec![],
            7,
        ),
        (
            json!({"type": "static", "routes": [{"dst": "bad"}]}),
            json!({}),
            vec![],
            7,
        ),
        (
            json!({"type": "static", "addresses": {}}),
            json!({}),
            vec![],
            7,
        ),
        (
            addr(json!({"address": "10.1.0.1/24"})),
            json!({"runtimeConfig": {"ips": ["10.3.0.5"]}}),
            vec![],
            7,
        ),
        (
            addr(json!({"address": "10.1.0.1/24"})),
            json!({}),
            vec![("IP", "10.2.0.5")],
            4,
        ),
        (
            addr(json!({"address": "10.1.0.1/24"})),
            json!({}),
            vec![("GATEWAY", "foo")],
            4,
        ),
        (
            addr(json!({"address": "10.1.0.1/24"})),
            json!({}),
            vec![("FOO", "1")],
            4,
        ),
    ];
    for (ipam, extra, args, code) in cases {
        let mut c = conf("1.0.0", ipam, extra);
        if c["ipam"].is_null() {
            c.as_object_mut().unwrap().remove("ipam");
        }
        let att = attachment(&args, &json!({}));
        let r = common::ours().add(&c, &att);
        assert_eq!(r.code(), Some(code), "{c} {args:?}: {r:?}");
        if with_ref {
            let r = Runtime::reference().add(&c, &att);
            assert!(!r.ok(), "reference accepted {c} {args:?}");
        }
    }
    // 0.2.0 results hold one address per family.
    let two = json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}, {"address": "10.11.0.1/24"}]});
    let r = common::ours().add(
        &conf("0.2.0", two, json!({})),
        &Attachment::new("s", "eth0"),
    );
    assert_eq!(r.code(), Some(7), "{r:?}");
    assert!(r.msg().contains("more than 1 address per family"));
}

#[test]
fn check_compares_with_prev_result() {
    let with_ref = common::reference_available("static");
    let att = Attachment::new("s1", "eth0");
    let ipam = json!({"type": "static", "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.9"}]});
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let c = conf(v, ipam.clone(), json!({}));
        let good = common::ours().add(&c, &att).expect_ok("ADD");
        common::ours()
            .check(&c, &att, Some(&good))
            .expect_ok("CHECK");
        let mut wrong_gw = good.clone();
        wrong_gw["ips"][0]["gateway"] = json!("10.10.0.8");
        let r = common::ours().check(&c, &att, Some(&wrong_gw));
        assert!(!r.ok() && r.msg().contains("Failed to match addr"), "{r:?}");
        let mut other_ip = good.clone();
        other_ip["ips"][0]["address"] = json!("10.10.0.2/24");
        let r = common::ours().check(&c, &att, Some(&other_ip));
        assert!(!r.ok(), "CHECK passed without the configured address");
        let r = common::ours().check(&c, &att, None);
        assert_eq!(r.code(), Some(7), "{r:?}");
        if with_ref && v != "1.1.0" {
            Runtime::reference()
                .check(&c, &att, Some(&good))
                .expect_ok("reference CHECK");
            assert!(!Runtime::reference().check(&c, &att, Some(&wrong_gw)).ok());
            assert!(!Runtime::reference().check(&c, &att, None).ok());
        }
    }
}

#[test]
fn static_as_the_bridge_ipam() {
    if !netsim::netns::privileged_or_skip("static_as_the_bridge_ipam", &["ip"]) {
        return;
    }
    let lab = bridge_common::Lab::new("wca");
    let pod = lab.pod(1);
    let rt = common::ours().in_netns(&lab.host_name());
    let c = json!({"cniVersion": "1.0.0", "name": "sbr", "type": "bridge", "bridge": "wcast0",
        "isGateway": true,
        "ipam": {"type": "static", "addresses": [{"address": "10.86.0.7/24", "gateway": "10.86.0.1"}],
                 "routes": [{"dst": "0.0.0.0/0"}]}});
    let att = Attachment::new("st1", "eth0").with_netns(Some(&bridge_common::netns_path(&pod)));
    let r = rt.add(&c, &att).expect_ok("bridge ADD with static");
    assert_eq!(r["ips"][0]["address"], "10.86.0.7/24");
    let addrs =
        String::from_utf8_lossy(&pod.ip(&["addr", "show", "eth0"]).unwrap().stdout).into_owned();
    assert!(addrs.contains("10.86.0.7/24"), "{addrs}");
    assert!(bridge_common::ping(&pod, "10.86.0.1"));
    rt.check(&c, &att, Some(&r)).expect_ok("CHECK");
    rt.del(&c, &att, Some(&r)).expect_ok("DEL");
    rt.del(&c, &att, Some(&r)).expect_ok("DEL again");
}

#[test]
fn status_and_gc_exist_from_1_1_0() {
    let ipam = json!({"type": "static", "addresses": [{"address": "10.10.0.1/24"}]});
    for plugin in ["static", "loopback", "tuning"] {
        let mut c = conf("1.1.0", ipam.clone(), json!({}));
        c["type"] = json!(plugin);
        for cmd in ["STATUS", "GC"] {
            common::ours()
                .exec(cmd, None, &c)
                .expect_ok(&format!("{plugin} {cmd}"));
            c["cniVersion"] = json!("1.0.0");
            let r = common::ours().exec(cmd, None, &c);
            assert_eq!(r.code(), Some(1), "{plugin} {cmd} at 1.0.0: {r:?}");
            c["cniVersion"] = json!("1.1.0");
        }
    }
}
