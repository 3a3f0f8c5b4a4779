//! host-local under many processes: 120 concurrent ADDs into a pool of
//! exactly 120 addresses, the same mixed with the reference plugin, and
//! processes killed mid-ADD. No root needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::{Attachment, Runtime, host_local_conf, lease_files, reference_available, wait};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// A /25 whose rangeStart .7 leaves exactly .7-.126 = 120 assignable
/// addresses (the gateway .1 is outside the range).
fn pool120(dir: &Path, name: &str) -> Value {
    host_local_conf(
        "1.1.0",
        name,
        dir,
        json!({"subnet": "10.120.0.0/25", "rangeStart": "10.120.0.7"}),
    )
}

fn lease_ips(dir: &Path, name: &str) -> Vec<(IpAddr, String)> {
    lease_files(dir, name)
        .into_iter()
        .filter_map(|(k, v)| k.parse().ok().map(|ip| (ip, v)))
        .collect()
}

fn run_concurrently(
    jobs: Vec<(Runtime, &'static str, Attachment)>,
    conf: &Value,
) -> Vec<common::Reply> {
    let children: Vec<_> = jobs
        .iter()
        .map(|(rt, cmd, att)| rt.spawn(cmd, Some(att), conf).unwrap())
        .collect();
    children.into_iter().map(|c| wait(c, T)).collect()
}

fn assert_fills_pool(dir: &Path, name: &str, replies: &[common::Reply]) {
    let mut ips = BTreeSet::new();
    for r in replies {
        assert!(r.ok(), "ADD failed: {} {}", r.stdout, r.stderr);
        let a = r.json["ips"][0]["address"].as_str().unwrap();
        let ip: IpAddr = a.split('/').next().unwrap().parse().unwrap();
        assert!(ips.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(ips.len(), 120);
    let on_disk: BTreeSet<IpAddr> = lease_ips(dir, name).into_iter().map(|(ip, _)| ip).collect();
    assert_eq!(on_disk, ips);
    let first: IpAddr = "10.120.0.7".parse().unwrap();
    let last: IpAddr = "10.120.0.126".parse().unwrap();
    assert_eq!((ips.first(), ips.last()), (Some(&first), Some(&last)));
}

#[test]
fn concurrent_adds_fill_the_pool_exactly_then_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = pool120(tmp.path(), "p120");
    let rt = common::ours();
    let jobs = (0..120)
        .map(|i| (rt.clone(), "ADD", Attachment::new(&format!("c{i}"), "eth0")))
        .collect();
    let replies = run_concurrently(jobs, &conf);
    assert_fills_pool(tmp.path(), "p120", &replies);
    for i in 0..3 {
        let r = rt.add(&conf, &Attachment::new(&format!("extra{i}"), "eth0"));
        assert_eq!(r.code(), Some(50), "{}", r.stdout);
    }
    let list = json!({"cniVersion": "1.1.0", "name": "p120", "plugins": [conf.clone()]});
    assert_eq!(rt.status_list(&list).unwrap_err().code(), Some(50));
    // Concurrent DELs empty it again, and the index agrees with the files.
    let jobs = (0..120)
        .map(|i| (rt.clone(), "DEL", Attachment::new(&format!("c{i}"), "eth0")))
        .collect();
    for r in run_concurrently(jobs, &conf) {
        assert!(r.ok(), "DEL failed: {}", r.stdout);
    }
    assert!(lease_ips(tmp.path(), "p120").is_empty());
    rt.status_list(&list).map_err(|r| r.stdout).unwrap();
    assert!(!rt.check(&conf, &Attachment::new("c5", "eth0"), None).ok());
}

#[test]
fn concurrent_adds_mixed_with_the_reference_share_the_pool() {
    if !reference_available("host-local") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The reference knows 1.0.0 at most.
    let mut conf = pool120(tmp.path(), "mix");
    conf["cniVersion"] = json!("1.0.0");
    let jobs = (0..120)
        .map(|i| {
            let rt = if i % 2 == 0 {
                common::ours()
            } else {
                Runtime::reference()
            };
            (rt, "ADD", Attachment::new(&format!("m{i}"), "eth0"))
        })
        .collect();
    let replies = run_concurrently(jobs, &conf);
    assert_fills_pool(tmp.path(), "mix", &replies);
    let r = common::ours().add(&conf, &Attachment::new("late", "eth0"));
    assert_eq!(r.code(), Some(50));
    // Each implementation releases the other's leases.
    let jobs = (0..120)
        .map(|i| {
            let rt = if i % 2 == 1 {
                common::ours()
            } else {
                Runtime::reference()
            };
            (rt, "DEL", Attachment::new(&format!("m{i}"), "eth0"))
        })
        .collect();
    for r in run_concurrently(jobs, &conf) {
        assert!(r.ok(), "DEL failed: {}", r.stdout);
    }
    assert!(lease_ips(tmp.path(), "mix").is_empty());
}

/// Every lease file names exactly one owner, nobody holds two addresses,
/// and the next ADD/DEL work (no stale lock).
fn assert_usable(dir: &Path, conf: &Value, killed: &[String]) {
    let rt = common::ours().with_env("WEFT_CNI_LOCK_TIMEOUT_MS", "5000");
    let before = lease_ips(dir, "crash");
    let mut owners = BTreeSet::new();
    for (ip, owner) in &before {
        assert!(owner.contains("\r\n"), "{ip}: torn lease file {owner:?}");
        assert!(
            owners.insert(owner.clone()),
            "{owner:?} holds two addresses"
        );
    }
    let mut taken: BTreeSet<IpAddr> = before.iter().map(|(ip, _)| *ip).collect();
    for i in 0..5 {
        let v = rt
            .add(conf, &Attachment::new(&format!("after{i}"), "eth0"))
            .expect_ok("add after crash");
        let ip: IpAddr = v["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(taken.insert(ip), "{ip} handed out twice after a crash");
    }
    // The runtime DELs the containers whose ADD died: their leases go.
    for cid in killed {
        rt.del(conf, &Attachment::new(cid, "eth0"), None)
            .expect_ok("del of killed container");
    }
    for (_, owner) in lease_ips(dir, "crash") {
        let cid = owner.split("\r\n").next().unwrap();
        assert!(
            cid.starts_with("after") || cid.starts_with("live"),
            "leftover lease of {cid}"
        );
    }
}

#[test]
fn add_killed_right_after_reserving_leaves_a_usable_store() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = host_local_conf(
        "1.0.0",
        "crash",
        tmp.path(),
        json!({"subnet": "10.121.0.0/24"}),
    );
    let rt = common::ours();
    for i in 0..3 {
        rt.add(&conf, &Attachment::new(&format!("live{i}"), "eth0"))
            .expect_ok("add");
    }
    let faulty = common::ours().with_env("WEFT_CNI_TEST_FAULT", "abort-after-reserve");
    let r = faulty.add(&conf, &Attachment::new("dead0", "eth0"));
    assert!(!r.ok());
    // Its lease file exists; the index does not know it yet.
    assert!(
        lease_files(tmp.path(), "crash")
            .values()
            .any(|v| v == "dead0\r\neth0")
    );
    assert_usable(tmp.path(), &conf, &["dead0".into()]);
}

#[test]
fn adds_killed_at_random_points_leave_a_usable_store() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = host_local_conf(
        "1.0.0",
        "crash",
        tmp.path(),
        json!({"subnet": "10.122.0.0/24"}),
    );
    let rt = common::ours();
    rt.add(&conf, &Attachment::new("live0", "eth0"))
        .expect_ok("add");
    // Time one ADD to spread the kill points over its whole run.
    let span = rt
        .add(&conf, &Attachment::new("live1", "eth0"))
        .elapsed
        .as_micros()
        .max(200) as u64;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut killed = Vec::new();
    for i in 0..40 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = (seed >> 33) % (span + span / 2);
        let cid = format!("k{i}");
        let mut child = rt
            .spawn("ADD", Some(&Attachment::new(&cid, "eth0")), &conf)
            .unwrap();
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        let _ = child.wait();
        killed.push(cid);
    }
    assert_usable(tmp.path(), &conf, &killed);
}
