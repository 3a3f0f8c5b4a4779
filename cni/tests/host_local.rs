//! host-local, black box: our binary and the reference one side by side
//! with the same configs and inputs (results, files on disk, error codes),
//! interchange of a live lease directory in both directions, requested
//! addresses, GC and STATUS. No root needed.
#![allow(clippy::unwrap_used)]

mod common;

/// (description, env overrides, stdin) of one bad invocation.
type BadInput = (
    &'static str,
    Vec<(&'static str, Option<&'static str>)>,
    Vec<u8>,
);

use std::path::Path;

use common::{Attachment, Runtime, host_local_conf, lease_files, reference_available};
use serde_json::{Value, json};

fn dual(version: &str, dir: &Path, resolv: Option<&Path>) -> Value {
    let mut ipam = json!({
        "ranges": [[{"subnet": "10.44.0.0/29"}, {"subnet": "10.44.1.0/30"}], [{"subnet": "fd44::/124"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd99::/64", "gw": "fd44::1"}]
    });
    if let Some(r) = resolv {
        ipam["resolvConf"] = json!(r);
    }
    host_local_conf(version, "dual", dir, ipam)
}

/// Runs the same sequence with both implementations, each on its own data dir.
fn both(f: impl Fn(&Runtime, &Path) -> Vec<Value>) -> Option<(Vec<Value>, Vec<Value>)> {
    if !reference_available("host-local") {
        return None;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Some((
        f(&common::ours(), a.path()),
        f(&Runtime::reference(), b.path()),
    ))
}

#[test]
fn results_and_files_match_reference_per_version() {
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.96.0.10\nsearch svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let resolv = resolv.clone();
        let Some((ours, theirs)) = both(move |rt, dir| {
            let conf = dual(version, dir, Some(&resolv));
            let mut out = Vec::new();
            // 0.1.0/0.2.0 allow one address per family: use the single-set form there.
            let conf = if version < "0.3.0" {
                host_local_conf(
                    version,
                    "dual",
                    dir,
                    json!({"subnet": "10.44.0.0/29", "routes": [{"dst": "0.0.0.0/0"}], "resolvConf": resolv}),
                )
            } else {
                conf
            };
            for i in 0..8 {
                let r = rt.add(&conf, &Attachment::new(&format!("ctr{i}"), "eth0"));
                if r.ok() {
                    out.push(json!({"exit": r.exit_code, "json": r.json}));
                } else {
                    // Exhaustion is code 50 here (the reference: untyped 999).
                    let code = match r.code() {
                        Some(50) if rt.cni_path[0] == common::ours_dir() => Some(999),
                        c => c,
                    };
                    out.push(json!({"exit": r.exit_code, "code": code, "msg": r.msg()}));
                }
            }
            out.push(json!(lease_files(dir, "dual")));
            out.push(json!(common::lease_modes(dir, "dual")));
            out
        }) else {
            return;
        };
        assert_eq!(ours, theirs, "version {version}");
    }
}

#[test]
fn v1_1_results_have_the_1_0_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::ours();
    let v = rt
        .add(
            &dual("1.1.0", tmp.path(), None),
            &Attachment::new("c1", "eth0"),
        )
        .expect_ok("add");
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["ips"][0],
        json!({"address": "10.44.0.2/29", "gateway": "10.44.0.1"})
    );
    assert_eq!(
        v["ips"][1],
        json!({"address": "fd44::2/124", "gateway": "fd44::1"})
    );
    assert_eq!(v["routes"][1], json!({"dst": "fd99::/64", "gw": "fd44::1"}));
}

#[test]
fn del_and_check_match_reference() {
    let Some((ours, theirs)) = both(|rt, dir| {
        let conf = dual("1.0.0", dir, None);
        let mut out = Vec::new();
        let mut rec = |r: common::Reply| {
            out.push(json!({"exit": r.exit_code, "code": r.code(), "msg": r.msg()}));
        };
        for i in 0..3 {
            rec(rt.add(&conf, &Attachment::new(&format!("c{i}"), "eth0")));
        }
        // Duplicate ADD for the same (cid, ifname) fails; another ifname is fine.
        rec(rt.add(&conf, &Attachment::new("c1", "eth0")));
        rec(rt.add(&conf, &Attachment::new("c1", "net1")));
        rec(rt.check(&conf, &Attachment::new("c1", "eth0"), None));
        rec(rt.check(&conf, &Attachment::new("nope", "eth0"), None));
        rec(rt.del(&conf, &Attachment::new("c1", "eth0"), None));
        rec(rt.del(&conf, &Attachment::new("c1", "eth0"), None));
        rec(rt.del(&conf, &Attachment::new("c2", "eth0").with_netns(None), None));
        rec(rt.del(
            &conf,
            &Attachment::new("never", "eth0").with_netns(Some("")),
            None,
        ));
        rec(rt.check(&conf, &Attachment::new("c1", "eth0"), None));
        // Round robin continues after the last reserved address, not in the freed gap.
        rec(rt.add(&conf, &Attachment::new("c9", "eth0")));
        out.push(json!(lease_files(dir, "dual")));
        out
    }) else {
        return;
    };
    assert_eq!(ours, theirs);
}

/// (description, env overrides, stdin)
fn bad_inputs(dir: &Path) -> Vec<BadInput> {
    let good = dual("1.0.0", dir, None).to_string().into_bytes();
    let full: Vec<(&str, Option<&str>)> = vec![
        ("CNI_CONTAINERID", Some("c1")),
        ("CNI_NETNS", Some("/var/run/netns/x")),
        ("CNI_IFNAME", Some("eth0")),
    ];
    let with = |over: &[(&'static str, Option<&'static str>)]| {
        let mut v = full.clone();
        v.retain(|(k, _)| !over.iter().any(|(o, _)| o == k));
        v.extend_from_slice(over);
        v
    };
    vec![
        (
            "no command",
            with(&[("CNI_COMMAND", Some(""))]),
            good.clone(),
        ),
        (
            "unknown command",
            with(&[("CNI_COMMAND", Some("BOGUS"))]),
            good.clone(),
        ),
        (
            "no container id",
            with(&[("CNI_CONTAINERID", None)]),
            good.clone(),
        ),
        ("no netns", with(&[("CNI_NETNS", None)]), good.clone()),
        ("no ifname", with(&[("CNI_IFNAME", None)]), good.clone()),
        ("no path", with(&[("CNI_PATH", None)]), good.clone()),
        (
            "bad container id",
            with(&[("CNI_CONTAINERID", Some("a/b"))]),
            good.clone(),
        ),
        (
            "long ifname",
            with(&[("CNI_IFNAME", Some("0123456789abcdef"))]),
            good.clone(),
        ),
        (
            "ifname with colon",
            with(&[("CNI_IFNAME", Some("eth:0"))]),
            good.clone(),
        ),
        (
            "dot ifname",
            with(&[("CNI_IFNAME", Some(".."))]),
            good.clone(),
        ),
        (
            "truncated json",
            full.clone(),
            good[..good.len() - 3].to_vec(),
        ),
        ("not json", full.clone(), b"hello".to_vec()),
        ("empty stdin", full.clone(), Vec::new()),
        (
            "no name",
            full.clone(),
            br#"{"cniVersion":"1.0.0","type":"host-local","ipam":{}}"#.to_vec(),
        ),
        (
            "bad name",
            full.clone(),
            br#"{"cniVersion":"1.0.0","name":"a b","ipam":{}}"#.to_vec(),
        ),
        (
            "unsupported version",
            full.clone(),
            br#"{"cniVersion":"0.9.0","name":"n","ipam":{}}"#.to_vec(),
        ),
        (
            "check on 0.3.1",
            with(&[("CNI_COMMAND", Some("CHECK"))]),
            br#"{"cniVersion":"0.3.1","name":"n","ipam":{}}"#.to_vec(),
        ),
    ]
}

#[test]
fn bad_input_error_codes_match_reference() {
    if !reference_available("host-local") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (what, env, stdin) in bad_inputs(tmp.path()) {
        let ours = common::ours().exec_raw("host-local", &env, &stdin);
        let theirs = Runtime::reference().exec_raw("host-local", &env, &stdin);
        assert_eq!(
            ours.exit_code, theirs.exit_code,
            "{what}: {} vs {}",
            ours.stdout, theirs.stdout
        );
        assert_eq!(
            ours.code(),
            theirs.code(),
            "{what}: {} vs {}",
            ours.stdout,
            theirs.stdout
        );
        if what != "truncated json" && what != "not json" && what != "empty stdin" {
            // Decoder messages differ between serde and Go; the rest match.
            assert_eq!(ours.msg(), theirs.msg(), "{what}");
        }
        if ours.exit_code != 0 {
            assert!(
                ours.code().is_some(),
                "{what}: error JSON on stdout: {}",
                ours.stdout
            );
        }
        assert!(!ours.stderr.contains("panicked"), "{what}: {}", ours.stderr);
    }
}

#[test]
fn invalid_configs_are_code_7_with_the_reference_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        json!({"subnet": "10.0.0.0/31"}),
        json!({"subnet": "10.0.0.0/32"}),
        json!({"ranges": [[{"subnet": "fd00::/127"}]]}),
        json!({"subnet": "10.0.0.3/24"}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/24"}]]}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}),
        json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.1.0.5"}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"}),
        json!({"routes": []}),
        json!({"ranges": [[]]}),
    ];
    let have_ref = reference_available("host-local");
    for ipam in cases {
        let conf = host_local_conf("1.0.0", "bad", tmp.path(), ipam.clone());
        let ours = common::ours().add(&conf, &Attachment::new("c1", "eth0"));
        assert_eq!(ours.code(), Some(7), "{ipam}: {}", ours.stdout);
        if have_ref {
            let theirs = Runtime::reference().add(&conf, &Attachment::new("c1", "eth0"));
            assert_eq!(theirs.code(), Some(999), "{ipam}: {}", theirs.stdout);
            assert_eq!(ours.msg(), theirs.msg(), "{ipam}");
        }
    }
    let no_ipam = json!({"cniVersion": "1.0.0", "name": "x", "type": "host-local"});
    let r = common::ours().add(&no_ipam, &Attachment::new("c1", "eth0"));
    assert_eq!(
        (r.code(), r.msg()),
        (Some(7), "IPAM config missing 'ipam' key")
    );
}

#[test]
fn lease_directory_is_interchangeable_both_ways() {
    if !reference_available("host-local") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let conf = |d: &Path| {
        host_local_conf(
            "1.0.0",
            "net",
            d,
            json!({"ranges": [[{"subnet": "10.55.0.0/28"}], [{"subnet": "fd55::/124"}]]}),
        )
    };
    let (ours, theirs) = (common::ours(), Runtime::reference());
    let ip = |v: &Value| v["ips"][0]["address"].as_str().unwrap().to_owned();
    // Reference allocates first.
    for i in 0..4 {
        theirs
            .add(&conf(&dir), &Attachment::new(&format!("r{i}"), "eth0"))
            .expect_ok("ref add");
    }
    theirs
        .del(&conf(&dir), &Attachment::new("r1", "eth0"), None)
        .expect_ok("ref del");
    // What would the reference hand out next? Ask it on a copy.
    let peek = |d: &Path, who: &Runtime| {
        let copy = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(d.join("net"))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
        ip(&who
            .add(&conf(copy.path()), &Attachment::new("peek", "eth0"))
            .expect_ok("peek"))
    };
    let expected = peek(&dir, &theirs);
    let got = ip(&ours
        .add(&conf(&dir), &Attachment::new("o0", "eth0"))
        .expect_ok("our add"));
    assert_eq!(got, expected, "we continue the reference's round robin");
    // Ours releases a reference lease and refuses a reference container's duplicate.
    ours.del(&conf(&dir), &Attachment::new("r2", "eth0"), None)
        .expect_ok("our del of ref lease");
    assert!(
        !lease_files(&dir, "net")
            .values()
            .any(|c| c.starts_with("r2\r\n"))
    );
    assert!(!ours.add(&conf(&dir), &Attachment::new("r3", "eth0")).ok());
    ours.check(&conf(&dir), &Attachment::new("r0", "eth0"), None)
        .expect_ok("check ref lease");
    for i in 1..4 {
        ours.add(&conf(&dir), &Attachment::new(&format!("o{i}"), "eth0"))
            .expect_ok("our add");
    }
    // And back: the reference continues after our last address.
    let expected = peek(&dir, &ours);
    let got = ip(&theirs
        .add(&conf(&dir), &Attachment::new("r9", "eth0"))
        .expect_ok("ref add after"));
    assert_eq!(got, expected, "the reference continues our round robin");
    theirs
        .del(&conf(&dir), &Attachment::new("o2", "eth0"), None)
        .expect_ok("ref del of our lease");
    // Our index notices the reference's changes.
    ours.check(&conf(&dir), &Attachment::new("r9", "eth0"), None)
        .expect_ok("check");
    assert!(
        !ours
            .check(&conf(&dir), &Attachment::new("o2", "eth0"), None)
            .ok()
    );
    ours.add(&conf(&dir), &Attachment::new("o2", "eth0"))
        .expect_ok("re-add");
    // No address is held twice, every file names one owner.
    let files = lease_files(&dir, "net");
    let owners: Vec<&String> = files
        .iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .map(|(_, v)| v)
        .collect();
    let mut uniq = owners.clone();
    uniq.sort();
    uniq.dedup();
    // Two files (v4 + v6) per live container.
    assert_eq!(owners.len(), uniq.len() * 2);
}

#[test]
fn requested_addresses_match_reference() {
    let Some((ours, theirs)) = both(|rt, dir| {
        let conf = host_local_conf(
            "1.0.0",
            "req",
            dir,
            json!({"ranges": [[{"subnet": "10.66.0.0/24"}], [{"subnet": "fd66::/64"}]]}),
        );
        let mut out = Vec::new();
        let mut rec = |r: common::Reply| {
            out.push(json!({"exit": r.exit_code, "code": r.code(), "json": if r.ok() { r.json.clone() } else { Value::Null }}));
        };
        rec(rt.add(
            &conf,
            &Attachment::new("a", "eth0").with_arg("IP", "10.66.0.50"),
        ));
        rec(rt.add(
            &conf,
            &Attachment::new("b", "eth0").with_arg("IP", "10.66.0.50"),
        ));
        rec(rt.add(
            &conf,
            &Attachment::new("c", "eth0").with_arg("IP", "10.66.0.1"),
        ));
        rec(rt.add(
            &conf,
            &Attachment::new("d", "eth0").with_arg("IP", "10.99.0.1"),
        ));
        rec(rt.add(
            &conf,
            &Attachment::new("e", "eth0")
                .with_arg("IgnoreUnknown", "1")
                .with_arg("K8S_POD_NAME", "p")
                .with_arg("IP", "10.66.0.60"),
        ));
        rec(rt.add(
            &conf,
            &Attachment::new("f", "eth0").with_arg("K8S_POD_NAME", "p"),
        ));
        let mut c2 = conf.clone();
        c2["args"] = json!({"cni": {"ips": ["10.66.0.70", "fd66::70"]}});
        rec(rt.add(&c2, &Attachment::new("g", "eth0")));
        let mut c3 = conf.clone();
        c3["runtimeConfig"] = json!({"ips": ["10.66.0.80/24"]});
        rec(rt.add(&c3, &Attachment::new("h", "eth0")));
        let mut c4 = conf.clone();
        c4["runtimeConfig"] =
            json!({"ipRanges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.100"}]]});
        rec(rt.add(&c4, &Attachment::new("i", "eth0")));
        rec(rt.add(&conf, &Attachment::new("j", "eth0")));
        out.push(json!(lease_files(dir, "req")));
        out
    }) else {
        return;
    };
    // Error codes for CNI_ARGS problems are 4 here (the reference says 999); compare the rest.
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        if o["code"] == 4 {
            assert_eq!(t["code"], 999, "case {i}");
            continue;
        }
        assert_eq!(o, t, "case {i}");
    }
}

#[test]
fn gc_releases_leases_not_in_valid_attachments() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::ours();
    let conf = host_local_conf("1.1.0", "gc", tmp.path(), json!({"subnet": "10.88.0.0/24"}));
    for c in ["keep1", "drop1", "keep2", "drop2"] {
        rt.add(&conf, &Attachment::new(c, "eth0")).expect_ok("add");
    }
    rt.add(&conf, &Attachment::new("keep1", "net1"))
        .expect_ok("add");
    // A legacy (container-id-only) lease of a live container is kept.
    std::fs::write(tmp.path().join("gc/10.88.0.200"), "keep2").unwrap();
    std::fs::write(tmp.path().join("gc/10.88.0.201"), "gone").unwrap();
    let list = json!({"cniVersion": "1.1.0", "name": "gc", "plugins": [conf.clone()]});
    rt.gc_list(
        &list,
        &[
            Attachment::new("keep1", "eth0"),
            Attachment::new("keep2", "eth0"),
        ],
    )
    .map_err(|r| r.stdout)
    .unwrap();
    let files = lease_files(tmp.path(), "gc");
    let mut owners: Vec<&str> = files
        .iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .map(|(_, v)| v.as_str())
        .collect();
    owners.sort_unstable();
    assert_eq!(owners, ["keep1\r\neth0", "keep2", "keep2\r\neth0"]);
    // The index agrees: DEL of a collected container is a no-op, of a kept one frees it.
    rt.del(&conf, &Attachment::new("drop1", "eth0"), None)
        .expect_ok("del");
    rt.del(&conf, &Attachment::new("keep1", "eth0"), None)
        .expect_ok("del");
    assert_eq!(lease_files(tmp.path(), "gc").len(), 2 + 2);
    // GC needs 1.1.0.
    let old = json!({"cniVersion": "1.0.0", "name": "gc", "plugins": [conf]});
    assert_eq!(rt.gc_list(&old, &[]).unwrap_err().code(), Some(1));
}

#[test]
fn status_reports_50_when_the_pool_is_exhausted() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = common::ours();
    // 10.89.0.0/29 with rangeStart .5: .5 and .6 are assignable.
    let conf = host_local_conf(
        "1.1.0",
        "st",
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.89.0.0/29", "rangeStart": "10.89.0.5"}], [{"subnet": "fd89::/120"}]]}),
    );
    let list = json!({"cniVersion": "1.1.0", "name": "st", "plugins": [conf.clone()]});
    rt.status_list(&list).map_err(|r| r.stdout).unwrap();
    rt.add(&conf, &Attachment::new("a", "eth0"))
        .expect_ok("add");
    rt.status_list(&list).map_err(|r| r.stdout).unwrap();
    rt.add(&conf, &Attachment::new("b", "eth0"))
        .expect_ok("add");
    let e = rt.status_list(&list).unwrap_err();
    assert_eq!(e.code(), Some(50), "{}", e.stdout);
    let e = rt.add(&conf, &Attachment::new("c", "eth0"));
    assert_eq!(e.code(), Some(50), "{}", e.stdout);
    assert_eq!(
        e.msg(),
        "failed to allocate for range 0: no IP addresses available in range set: 10.89.0.5-10.89.0.6"
    );
    // The failed ADD took nothing from the v6 set.
    assert_eq!(
        lease_files(tmp.path(), "st")
            .keys()
            .filter(|k| k.starts_with("fd89"))
            .count(),
        2
    );
    rt.del(&conf, &Attachment::new("a", "eth0"), None)
        .expect_ok("del");
    rt.status_list(&list).map_err(|r| r.stdout).unwrap();
    let old = json!({"cniVersion": "1.0.0", "name": "st", "plugins": [conf]});
    assert_eq!(rt.status_list(&old).unwrap_err().code(), Some(1));
}

#[test]
fn lock_contention_is_code_11() {
    use nix::fcntl::{Flock, FlockArg};
    let tmp = tempfile::tempdir().unwrap();
    let conf = host_local_conf("1.0.0", "lk", tmp.path(), json!({"subnet": "10.90.0.0/24"}));
    let rt = common::ours().with_env("WEFT_CNI_LOCK_TIMEOUT_MS", "200");
    rt.add(&conf, &Attachment::new("a", "eth0"))
        .expect_ok("add");
    let f = std::fs::File::open(tmp.path().join("lk/lock")).unwrap();
    let held = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let r = rt.add(&conf, &Attachment::new("b", "eth0"));
    assert_eq!(r.code(), Some(11), "{}", r.stdout);
    assert!(r.elapsed >= std::time::Duration::from_millis(200));
    drop(held);
    rt.add(&conf, &Attachment::new("b", "eth0"))
        .expect_ok("add after unlock");
}
