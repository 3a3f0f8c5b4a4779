//! Black-box tests of the `tuning` meta plugin chained after our bridge,
//! side by side with the reference: per spec version the same result and
//! the same kernel state after ADD, CHECK catching a changed value, DEL
//! putting back the original values (also when the other implementation
//! saved them), failures undoing themselves, and error codes.
#![allow(clippy::unwrap_used)]

mod bridge_common;
mod common;

use std::path::Path;

use bridge_common::{Lab, netns_path};
use common::{Attachment, Runtime};
use netsim::netns::{Netns, privileged_or_skip};
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip"];
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const SYSCTLS: &[&str] = &["net/ipv4/conf/eth0/arp_notify", "net/core/somaxconn"];

/// What tuning changes, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    mac: String,
    mtu: String,
    qlen: String,
    promisc: bool,
    allmulti: bool,
    sysctl: Vec<String>,
}

fn state(pod: &Netns) -> State {
    let o = pod.ip(&["-o", "link", "show", "eth0"]).unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let word_after = |k: &str| {
        s.split(k)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .trim_end_matches('\\')
            .to_string()
    };
    let flags = s
        .split('<')
        .nth(1)
        .and_then(|f| f.split('>').next())
        .unwrap_or_default()
        .to_string();
    let sysctl = SYSCTLS
        .iter()
        .map(|k| {
            let o = pod
                .command("cat")
                .arg(format!("/proc/sys/{k}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    State {
        mac: word_after("link/ether "),
        mtu: word_after(" mtu "),
        qlen: word_after(" qlen "),
        promisc: flags.split(',').any(|f| f == "PROMISC"),
        allmulti: flags.split(',').any(|f| f == "ALLMULTI"),
        sysctl,
    }
}

fn bridge_conf(lab: &Lab, version: &str) -> Value {
    json!({"cniVersion": version, "name": "tnet", "type": "bridge", "bridge": "wcatu0",
        "ipam": {"type": "host-local", "dataDir": lab.data_dir(), "ranges": [[{"subnet": "10.87.0.0/24"}]]}})
}

fn tuning_conf(version: &str, data_dir: &Path, prev: &Value) -> Value {
    json!({"cniVersion": version, "name": "tnet", "type": "tuning", "dataDir": data_dir,
        "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1", "net/core/somaxconn": "512"},
        "mac": "02:aa:bb:cc:dd:01", "mtu": 1400, "promisc": true, "allmulti": true, "txQLen": 123,
        "prevResult": prev})
}

fn tuned() -> State {
    State {
        mac: "02:aa:bb:cc:dd:01".into(),
        mtu: "1400".into(),
        qlen: "123".into(),
        promisc: true,
        allmulti: true,
        sysctl: vec!["1".into(), "512".into()],
    }
}

/// The result without `ips[].version` (0.3.x/0.4.0), which the two
/// implementations' result conversions disagree on.
fn normal(mut r: Value) -> Value {
    if let Some(ips) = r["ips"].as_array_mut() {
        for ip in ips {
            ip.as_object_mut().unwrap().remove("version");
        }
    }
    r
}

#[test]
fn add_check_del_match_the_reference() {
    if !privileged_or_skip("add_check_del_match_the_reference", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let with_ref = common::reference_available("tuning");
    let reference = Runtime::reference().in_netns(&lab.host_name());
    for (n, v) in VERSIONS.iter().enumerate() {
        let pod = lab.pod(n + 1);
        let att = Attachment::new(&format!("tu{n}"), "eth0").with_netns(Some(&netns_path(&pod)));
        let br = bridge_conf(&lab, v);
        let prev = rt.add(&br, &att).expect_ok("bridge ADD");
        let original = state(&pod);
        assert_ne!(original, tuned());
        let dir = lab.data_dir().join("tuning-ours");
        let c = tuning_conf(v, &dir, &prev);

        let ours = rt.exec("ADD", Some(&att), &c).expect_ok("tuning ADD");
        let mut want = prev.clone();
        want["interfaces"][2]["mac"] = json!("02:aa:bb:cc:dd:01");
        assert_eq!(ours, want, "{v}: prevResult with the new MAC");
        assert_eq!(state(&pod), tuned(), "{v}");
        let saved = dir.join(format!("tu{n}_eth0.json"));
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
        assert_eq!(file["mac"], original.mac.as_str(), "{file}");
        assert_eq!(file["mtu"].to_string(), original.mtu, "{file}");

        if *v >= "0.4.0" {
            rt.exec("CHECK", Some(&att), &c).expect_ok("CHECK");
            pod.ip(&["link", "set", "eth0", "mtu", "1300"]).unwrap();
            let r = rt.exec("CHECK", Some(&att), &c);
            assert!(!r.ok() && r.msg().contains("MTU"), "{r:?}");
            pod.ip(&["link", "set", "eth0", "mtu", "1400"]).unwrap();
            pod.command("sh")
                .args(["-c", "echo 0 > /proc/sys/net/ipv4/conf/eth0/arp_notify"])
                .status()
                .unwrap();
            let r = rt.exec("CHECK", Some(&att), &c);
            assert!(!r.ok() && r.msg().contains("arp_notify"), "{r:?}");
            rt.exec("ADD", Some(&att), &c).expect_ok("ADD again");
            rt.exec("CHECK", Some(&att), &c)
                .expect_ok("CHECK after ADD again");
        }

        rt.exec("DEL", Some(&att), &c).expect_ok("tuning DEL");
        assert_eq!(state(&pod), original, "{v}: DEL did not restore");
        assert!(!saved.exists(), "saved file left");
        rt.exec("DEL", Some(&att), &c).expect_ok("tuning DEL again");

        if with_ref && *v != "1.1.0" {
            // The reference 1.1.1 has no txQLen: compare without it.
            let without_txqlen = |dir: &Path| {
                let mut c = tuning_conf(v, dir, &prev);
                c.as_object_mut().unwrap().remove("txQLen");
                c
            };
            let rdir = lab.data_dir().join("tuning-ref");
            let rc = without_txqlen(&rdir);
            let c = without_txqlen(&dir);
            let tuned = State {
                qlen: original.qlen.clone(),
                ..tuned()
            };
            let theirs = reference
                .exec("ADD", Some(&att), &rc)
                .expect_ok("reference ADD");
            assert_eq!(normal(ours.clone()), normal(theirs), "{v}: results differ");
            assert_eq!(state(&pod), tuned, "{v}: reference state differs");
            if *v >= "0.4.0" {
                // Each CHECKs the other's work.
                rt.exec("CHECK", Some(&att), &rc)
                    .expect_ok("our CHECK of the reference");
            }
            // Our DEL restores from the reference's file.
            rt.exec("DEL", Some(&att), &rc).expect_ok("our DEL");
            let mut restored = state(&pod);
            // The reference saves no sysctl values: those stay tuned.
            restored.sysctl.clone_from(&original.sysctl);
            assert_eq!(restored, original, "{v}: not restored from reference file");
            // And the reference's DEL restores from ours.
            rt.exec("ADD", Some(&att), &c).expect_ok("ADD");
            reference
                .exec("DEL", Some(&att), &c)
                .expect_ok("reference DEL");
            let mut restored = state(&pod);
            restored.sysctl.clone_from(&original.sysctl);
            assert_eq!(restored, original, "{v}: reference did not restore ours");
        }
        rt.del(&br, &att, Some(&prev)).expect_ok("bridge DEL");
        // DEL after the interface (and the pod) are gone.
        rt.exec("DEL", Some(&att), &c)
            .expect_ok("tuning DEL after bridge DEL");
        drop(pod);
        rt.exec("DEL", Some(&att), &c)
            .expect_ok("tuning DEL after netns gone");
    }
}

#[test]
fn failures_undo_and_errors_have_codes() {
    if !privileged_or_skip("failures_undo_and_errors_have_codes", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod(1);
    let att = Attachment::new("tf", "eth0").with_netns(Some(&netns_path(&pod)));
    let prev = rt
        .add(&bridge_conf(&lab, "1.0.0"), &att)
        .expect_ok("bridge ADD");
    let original = state(&pod);
    let dir = lab.data_dir().join("tuning");
    let base = tuning_conf("1.0.0", &dir, &prev);
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };

    // A failing sysctl after good ones and link changes: nothing stays.
    let c = with(
        "sysctl",
        json!({"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.no_such_key": "1"}),
    );
    let r = rt.exec("ADD", Some(&att), &c);
    assert!(!r.ok(), "{r:?}");
    assert_eq!(state(&pod), original);
    assert!(!dir.join("tf_eth0.json").exists());

    let cases = [
        (with("sysctl", json!({"kernel.hostname": "x"})), 7),
        (with("mac", json!("nope")), 7),
        (with("mac", json!("01:00:5e:00:00:01")), 7),
        (with("mtu", json!(10)), 7),
        (with("txQLen", json!(-1)), 7),
        (with("prevResult", Value::Null), 7),
    ];
    for (c, code) in cases {
        let r = rt.exec("ADD", Some(&att), &c);
        assert_eq!(r.code(), Some(code), "{c}: {r:?}");
        assert_eq!(state(&pod), original);
    }
    // Duplicate sysctl keys (undecodable for both implementations).
    let raw = br#"{"cniVersion":"1.0.0","name":"tnet","type":"tuning","sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"},"prevResult":{"cniVersion":"1.0.0"}}"#;
    let env = [
        ("CNI_COMMAND", Some("ADD")),
        ("CNI_CONTAINERID", Some("tf")),
        ("CNI_IFNAME", Some("eth0")),
        ("CNI_NETNS", Some("/x")),
    ];
    let r = common::ours().exec_raw("tuning", &env, raw);
    assert_eq!(r.code(), Some(6), "{r:?}");
    assert!(r.msg().contains("duplicated sysctl keys"), "{r:?}");
    // Unknown CNI_ARGS: code 4; with IgnoreUnknown fine; MAC= taken.
    let a2 = att.clone().with_arg("FOO", "1");
    assert_eq!(rt.exec("ADD", Some(&a2), &base).code(), Some(4));
    let a3 = att
        .clone()
        .with_arg("IgnoreUnknown", "1")
        .with_arg("MAC", "02:aa:bb:cc:dd:09");
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("mac");
    let r = rt.exec("ADD", Some(&a3), &c).expect_ok("ADD with MAC=");
    assert_eq!(r["interfaces"][2]["mac"], "02:aa:bb:cc:dd:09");
    // runtimeConfig.mac (the mac capability) wins over MAC=.
    c["runtimeConfig"] = json!({"mac": "02:aa:bb:cc:dd:0a"});
    let r = rt
        .exec("ADD", Some(&a3), &c)
        .expect_ok("ADD with runtimeConfig");
    assert_eq!(r["interfaces"][2]["mac"], "02:aa:bb:cc:dd:0a");
    rt.exec("DEL", Some(&a3), &c).expect_ok("DEL");
    // The first saved values win: the original MAC is back.
    assert_eq!(state(&pod), original);
}

#[test]
fn sysctl_allowlist_is_honoured() {
    if !privileged_or_skip("sysctl_allowlist_is_honoured", TOOLS) {
        return;
    }
    let lab = Lab::new("wca");
    let list = lab.data_dir().join("allowlist.conf");
    std::fs::write(
        &list,
        "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n^net[./]core[./]somaxconn$\n",
    )
    .unwrap();
    let rt = common::ours()
        .in_netns(&lab.host_name())
        .with_env("WEFT_CNI_TUNING_ALLOWLIST", list.to_str().unwrap());
    let pod = lab.pod(1);
    let att = Attachment::new("ta", "eth0").with_netns(Some(&netns_path(&pod)));
    let prev = rt
        .add(&bridge_conf(&lab, "1.0.0"), &att)
        .expect_ok("bridge ADD");
    let original = state(&pod);
    let dir = lab.data_dir().join("tuning");
    let c = tuning_conf("1.0.0", &dir, &prev);
    // Both keys allowed.
    rt.exec("ADD", Some(&att), &c).expect_ok("ADD allowed");
    rt.exec("DEL", Some(&att), &c).expect_ok("DEL");
    // One key not allowed: code 7, nothing changed.
    let mut bad = c.clone();
    bad["sysctl"]["net.ipv4.ip_forward"] = json!("1");
    let r = rt.exec("ADD", Some(&att), &bad);
    assert_eq!(r.code(), Some(7), "{r:?}");
    assert!(r.msg().contains("is not allowed"), "{r:?}");
    assert_eq!(state(&pod), original);
    // DEL does not look at the allowlist.
    rt.exec("DEL", Some(&att), &bad).expect_ok("DEL");
    // An invalid expression is a config error too.
    std::fs::write(&list, "(\n").unwrap();
    assert_eq!(rt.exec("ADD", Some(&att), &c).code(), Some(7));
    rt.del(&bridge_conf(&lab, "1.0.0"), &att, Some(&prev))
        .expect_ok("bridge DEL");
}

#[test]
fn gc_removes_saved_values_of_stale_attachments_only() {
    if !privileged_or_skip("gc_removes_saved_values_of_stale_attachments_only", TOOLS) {
        return;
    }
    let lab = Lab::new("wcd");
    let rt = common::ours().in_netns(&lab.host_name());
    let dir = lab.data_dir().join("tuning");
    let br = bridge_conf(&lab, "1.1.0");
    // gc0, gc1 on network tnet; gc2 on another network sharing dataDir.
    let mut pods = Vec::new();
    for (n, net) in ["tnet", "tnet", "onet"].iter().enumerate() {
        let pod = lab.pod(n + 1);
        let att = Attachment::new(&format!("gc{n}"), "eth0").with_netns(Some(&netns_path(&pod)));
        let prev = rt.add(&br, &att).expect_ok("bridge ADD");
        let original = state(&pod);
        let mut c = tuning_conf("1.1.0", &dir, &prev);
        c["name"] = json!(net);
        rt.exec("ADD", Some(&att), &c).expect_ok("tuning ADD");
        assert_eq!(state(&pod), tuned());
        pods.push((pod, att, c, original));
    }
    // A file in the reference's format (no owner): not ours to collect.
    std::fs::write(dir.join("refc_eth0.json"), r#"{"mtu":1500}"#).unwrap();
    let file = |cid: &str| dir.join(format!("{cid}_eth0.json"));
    let gc = |net: &str, valid: &[&str]| {
        let valid: Vec<Value> = valid
            .iter()
            .map(|c| json!({"containerID": c, "ifname": "eth0"}))
            .collect();
        json!({"cniVersion": "1.1.0", "name": net, "type": "tuning", "dataDir": dir,
            "cni.dev/valid-attachments": valid})
    };
    // Below 1.1.0 there is no GC.
    let mut old = gc("tnet", &[]);
    old["cniVersion"] = json!("1.0.0");
    assert!(!rt.exec("GC", None, &old).ok());
    assert!(file("gc0").exists() && file("gc1").exists());

    rt.exec("GC", None, &gc("tnet", &["gc0"])).expect_ok("GC");
    assert!(file("gc0").exists(), "valid attachment's file removed");
    assert!(!file("gc1").exists(), "stale attachment's file left");
    assert!(file("gc2").exists(), "other network's file removed");
    assert!(
        dir.join("refc_eth0.json").exists(),
        "reference file removed"
    );
    // GC changes no kernel state; the kept file still restores on DEL.
    for (pod, _, _, _) in &pods {
        assert_eq!(state(pod), tuned());
    }
    let (pod, att, c, original) = &pods[0];
    rt.exec("DEL", Some(att), c).expect_ok("DEL gc0");
    assert_eq!(&state(pod), original);
    // The other network's GC with nothing valid takes its own file only.
    rt.exec("GC", None, &gc("onet", &[])).expect_ok("GC onet");
    assert!(!file("gc2").exists());
    assert!(dir.join("refc_eth0.json").exists());
    // GC of a dataDir that does not exist is fine.
    let mut none = gc("tnet", &[]);
    none["dataDir"] = json!(lab.data_dir().join("absent"));
    rt.exec("GC", None, &none).expect_ok("GC without dataDir");
    for (_, att, _, _) in &pods {
        rt.del(&br, att, None).expect_ok("bridge DEL");
    }
}
