//! Black-box tests of the `dhcp` plugin and `dhcp daemon` against a real
//! DHCP server (dnsmasq in a test "host" namespace serving a bridge): a pod
//! attached by our `bridge` plugin with `"ipam": {"type": "dhcp"}` gets a
//! lease, the daemon renews it at T1, keeps serving across a crash and
//! restart, and releases it on DEL; results per spec version side by side
//! with the reference plugin and daemon on the same server; error codes.
#![allow(clippy::unwrap_used)]

mod common;
mod dhcp_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Attachment, REFERENCE_DIR, Runtime, reference_available};
use dhcp_common::{Daemon, DhcpLab, bridge_conf, ipam_conf, wait_until};
use netsim::netns::privileged_or_skip;
use serde_json::{Value, json};

const TOOLS: &[&str] = &["ip", "dnsmasq"];

fn ours() -> PathBuf {
    common::ours_dir().join("dhcp")
}

fn netns_path(ns: &netsim::netns::Netns) -> String {
    format!("/run/netns/{}", ns.name())
}

fn addr_of(pod: &netsim::netns::Netns) -> String {
    let out = pod
        .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bridge_pod_lease_renews_survives_daemon_restart_and_is_released() {
    if !privileged_or_skip(
        "bridge_pod_lease_renews_survives_daemon_restart_and_is_released",
        TOOLS,
    ) {
        return;
    }
    // T1 8 s, T2 14 s: renewals happen well inside the 2-minute lease.
    let mut lab = DhcpLab::new("wcd", "10.93.0", Some((8, 14)));
    let state = lab.path("state").display().to_string();
    let daemon = Daemon::start(&ours(), lab.dir.path(), "d", &["-statedir", &state]);
    let conf = bridge_conf("1.0.0", "dnet", &daemon.socket);
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod();
    let att = Attachment::new("c1", "eth0").with_netns(Some(&netns_path(&pod)));

    let started = Instant::now();
    let r = rt.add(&conf, &att).expect_ok("bridge ADD with dhcp");
    let cidr = r["ips"][0]["address"].as_str().unwrap().to_owned();
    let ip = cidr.split('/').next().unwrap().to_owned();
    assert!(lab.in_range(&ip), "{cidr} not in the server's range");
    assert!(cidr.ends_with("/24"), "{cidr}");
    assert_eq!(r["ips"][0]["gateway"], "10.93.0.1");
    assert!(
        addr_of(&pod).contains(&cidr),
        "pod has {cidr}: {}",
        addr_of(&pod)
    );
    let first = lab
        .lease_of("c1/dnet/eth0")
        .expect("lease in dnsmasq's file");
    assert_eq!(first.ip, ip);
    rt.check(&conf, &att, Some(&r)).expect_ok("CHECK");

    // Renewed at T1: the server's expiry moves forward, long before expiry.
    let renewed = wait_until(Duration::from_secs(20), || {
        lab.lease_of("c1/dnet/eth0")
            .is_some_and(|l| l.expiry > first.expiry)
    });
    assert!(renewed, "no renewal within 20 s: {:?}", lab.leases());
    assert!(started.elapsed() < Duration::from_secs(60));
    let second = lab.lease_of("c1/dnet/eth0").unwrap();
    assert_eq!(second.ip, ip);

    // A crash and a restart: the new daemon resumes the lease from its
    // state directory and renews it again.
    daemon.kill();
    let requests = lab.log_count("DHCPREQUEST");
    let daemon = Daemon::start(&ours(), lab.dir.path(), "d", &["-statedir", &state]);
    assert!(
        daemon.log_text().contains("resuming lease"),
        "{}",
        daemon.log_text()
    );
    let renewed = wait_until(Duration::from_secs(20), || {
        lab.lease_of("c1/dnet/eth0")
            .is_some_and(|l| l.expiry > second.expiry)
    });
    assert!(
        renewed,
        "restarted daemon did not renew: {:?}",
        lab.leases()
    );
    assert!(lab.log_count("DHCPREQUEST") > requests);
    rt.check(&conf, &att, Some(&r))
        .expect_ok("CHECK after restart");
    // ADD again for the same attachment would fail in bridge (veth exists);
    // the IPAM plugin alone returns the lease it holds.
    let again = rt
        .add(&ipam_conf("1.0.0", "dnet", &daemon.socket), &att)
        .expect_ok("IPAM ADD of a held lease");
    assert_eq!(again["ips"][0]["address"], cidr.as_str());

    // DEL releases: the lease leaves dnsmasq's file; DEL again is fine.
    rt.del(&conf, &att, Some(&r)).expect_ok("DEL");
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .lease_of("c1/dnet/eth0")
            .is_none()),
        "lease not released: {:?}",
        lab.leases()
    );
    assert!(lab.log_count("DHCPRELEASE") >= 1);
    assert_eq!(std::fs::read_dir(lab.path("state")).unwrap().count(), 0);
    rt.del(&conf, &att, Some(&r)).expect_ok("second DEL");
    let c = rt.check(&conf, &att, Some(&r));
    assert!(!c.ok(), "CHECK after DEL must fail");
    daemon.terminate();
    assert!(!lab.path("d.sock").exists(), "socket removed on SIGTERM");
}

#[test]
fn rebinds_after_t2_when_the_server_was_silent() {
    if !privileged_or_skip("rebinds_after_t2_when_the_server_was_silent", TOOLS) {
        return;
    }
    let mut lab = DhcpLab::new("wci", "10.99.0", Some((4, 8)));
    let state = lab.path("state").display().to_string();
    let d = Daemon::start(&ours(), lab.dir.path(), "d", &["-statedir", &state]);
    let conf = bridge_conf("1.0.0", "dnet", &d.socket);
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.pod();
    let att = Attachment::new("c1", "eth0").with_netns(Some(&netns_path(&pod)));
    let r = rt.add(&conf, &att).expect_ok("ADD");
    let first = lab.lease_of("c1/dnet/eth0").unwrap();
    // Silent from before T1 until after T2: renewals go unanswered, then
    // the daemon rebinds by broadcast and the server, back, answers that.
    lab.pause_server(true);
    std::thread::sleep(Duration::from_secs(9));
    lab.pause_server(false);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("how=rebound")),
        "no rebind: {}",
        d.log_text()
    );
    let now = lab.lease_of("c1/dnet/eth0").unwrap();
    assert_eq!(now.ip, first.ip);
    assert!(now.expiry > first.expiry);
    rt.del(&conf, &att, Some(&r)).expect_ok("DEL");
    assert!(wait_until(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
}

/// The result with the (server-chosen) address replaced by its prefix length.
fn normalized(mut v: Value, lab: &DhcpLab) -> Value {
    for ptr in ["/ips/0/address", "/ip4/ip"] {
        if let Some(slot) = v.pointer_mut(ptr) {
            let a = slot.as_str().unwrap().to_owned();
            let (ip, len) = a.split_once('/').unwrap();
            assert!(lab.in_range(ip), "{a}");
            *slot = json!(format!("<leased>/{len}"));
        }
    }
    v
}

#[test]
fn results_per_version_match_reference() {
    if !privileged_or_skip("results_per_version_match_reference", TOOLS) {
        return;
    }
    let mut lab = DhcpLab::new("wce", "10.94.0", None);
    let state = lab.path("state").display().to_string();
    let ours_d = Daemon::start(&ours(), lab.dir.path(), "ours", &["-statedir", &state]);
    let theirs_d = reference_available("dhcp").then(|| {
        Daemon::start(
            &PathBuf::from(REFERENCE_DIR).join("dhcp"),
            lab.dir.path(),
            "ref",
            &[],
        )
    });
    let host = lab.host_name();
    let versions = [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ];
    for (i, version) in versions.iter().enumerate() {
        let mut run = |rt: Runtime, d: &Daemon, cid: &str| -> Value {
            let pod = lab.plugged_pod();
            let att = Attachment::new(cid, "eth0").with_netns(Some(&netns_path(&pod)));
            let conf = ipam_conf(version, "dnet", &d.socket);
            let r = rt
                .add(&conf, &att)
                .expect_ok(&format!("{cid} ADD {version}"));
            let id = format!("{cid}/dnet/eth0");
            let lease = lab.lease_of(&id).expect("lease in the server's file");
            let addr = r
                .pointer("/ips/0/address")
                .or_else(|| r.pointer("/ip4/ip"))
                .and_then(Value::as_str)
                .unwrap();
            assert!(addr.starts_with(&format!("{}/", lease.ip)), "{addr}");
            if *version >= "0.4.0" {
                rt.check(&conf, &att, Some(&r)).expect_ok("CHECK");
            }
            rt.del(&conf, &att, Some(&r)).expect_ok("DEL");
            assert!(
                wait_until(Duration::from_secs(5), || lab.lease_of(&id).is_none()),
                "{cid}: lease not released"
            );
            normalized(r, &lab)
        };
        let o = run(common::ours().in_netns(&host), &ours_d, &format!("o{i}"));
        assert_eq!(o["cniVersion"], *version);
        if *version == "1.1.0" {
            // The reference 1.1.1 stops at 1.0.0; 1.1.0 has the 1.0.0 shape here.
            assert_eq!(
                o,
                json!({"cniVersion": "1.1.0", "ips": [{"address": "<leased>/24", "gateway": "10.94.0.1"}],
                       "routes": [{"dst": "0.0.0.0/0", "gw": "10.94.0.1"}], "dns": {}})
            );
            continue;
        }
        if let Some(d) = &theirs_d {
            let t = run(Runtime::reference().in_netns(&host), d, &format!("r{i}"));
            assert_eq!(o, t, "version {version}");
        }
    }
}

#[test]
fn errors_and_idempotence() {
    if !privileged_or_skip("errors_and_idempotence", TOOLS) {
        return;
    }
    let mut lab = DhcpLab::new("wcf", "10.95.0", None);
    let rt = common::ours().in_netns(&lab.host_name());
    let pod = lab.plugged_pod();
    let att = Attachment::new("c1", "eth0").with_netns(Some(&netns_path(&pod)));
    let nowhere = lab.path("none.sock");
    // No daemon: try again later.
    let r = rt.add(&ipam_conf("1.0.0", "dnet", &nowhere), &att);
    assert_eq!(r.code(), Some(11), "{}", r.stdout);
    assert!(r.msg().contains("error dialing DHCP daemon"), "{}", r.msg());
    let r = rt.exec("STATUS", None, &ipam_conf("1.1.0", "dnet", &nowhere));
    assert_eq!(r.code(), Some(50), "{}", r.stdout);

    let state = lab.path("state").display().to_string();
    let d = Daemon::start(
        &ours(),
        lab.dir.path(),
        "d",
        &["-statedir", &state, "-timeout", "3s"],
    );
    let conf = ipam_conf("1.0.0", "dnet", &d.socket);
    let r = rt.exec("STATUS", None, &ipam_conf("1.1.0", "dnet", &d.socket));
    assert!(r.ok(), "{}", r.stdout);
    // Nothing held: CHECK fails, DEL succeeds.
    assert!(!rt.check(&conf, &att, None).ok());
    rt.del(&conf, &att, None).expect_ok("DEL without lease");
    // A bad option name is a config error.
    let mut bad = conf.clone();
    bad["ipam"]["request"] = json!([{"option": "no-such-option"}]);
    let r = rt.add(&bad, &att);
    assert_eq!(r.code(), Some(7), "{}", r.stdout);
    // A missing interface fails at once.
    let r = rt.add(
        &conf,
        &Attachment::new("c1", "eth9").with_netns(Some(&netns_path(&pod))),
    );
    assert!(!r.ok());
    assert!(r.msg().contains("eth9"), "{}", r.msg());
    // ADD twice: the same lease; provided options reach the server.
    let mut named = conf.clone();
    named["ipam"]["provide"] = json!([{"option": "host-name", "fromArg": "K8S_POD_NAME"}]);
    let att = att
        .with_arg("K8S_POD_NAME", "web-1")
        .with_arg("IgnoreUnknown", "1");
    let a = rt.add(&named, &att).expect_ok("ADD");
    let b = rt.add(&named, &att).expect_ok("ADD again");
    assert_eq!(a["ips"], b["ips"]);
    assert!(lab.log_count("web-1") > 0, "host name not sent");
    // A server that does not answer (other interface, none on it): code 11 within the timeout.
    let lone = lab.pod();
    lone.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"])
        .unwrap();
    lone.ip(&["link", "set", "x0", "up"]).unwrap();
    let started = Instant::now();
    let r = rt.add(
        &conf,
        &Attachment::new("c9", "eth0").with_netns(Some(&netns_path(&lone))),
    );
    assert_eq!(r.code(), Some(11), "{}", r.stdout);
    assert!(started.elapsed() < Duration::from_secs(8));
    rt.del(&named, &att, None).expect_ok("DEL");
    assert!(wait_until(Duration::from_secs(5), || lab
        .leases()
        .is_empty()));
}

#[test]
fn concurrent_pods_get_distinct_leases() {
    if !privileged_or_skip("concurrent_pods_get_distinct_leases", TOOLS) {
        return;
    }
    let mut lab = DhcpLab::new("wcg", "10.97.0", None);
    let state = lab.path("state").display().to_string();
    let d = Daemon::start(&ours(), lab.dir.path(), "d", &["-statedir", &state]);
    let conf = bridge_conf("1.0.0", "dnet", &d.socket);
    let rt = common::ours().in_netns(&lab.host_name());
    let pods: Vec<_> = (0..6).map(|_| lab.pod()).collect();
    let atts: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| Attachment::new(&format!("c{i}"), "eth0").with_netns(Some(&netns_path(p))))
        .collect();
    let conf_in = |a: &Attachment| common::inject(&conf, None, None, a);
    let children: Vec<_> = atts
        .iter()
        .map(|a| rt.spawn("ADD", Some(a), &conf_in(a)).unwrap())
        .collect();
    let mut ips = Vec::new();
    for c in children {
        let r = common::wait(c, Duration::from_secs(30)).expect_ok("concurrent ADD");
        ips.push(r["ips"][0]["address"].as_str().unwrap().to_owned());
    }
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 6, "{ips:?}");
    assert_eq!(lab.leases().len(), 6);
    for (p, ip) in pods.iter().zip(&ips) {
        assert!(addr_of(p).contains(ip.as_str()));
    }
    // GC (1.1) through bridge: only c0..c2 are still valid.
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!(
        (0..3)
            .map(|i| json!({"containerID": format!("c{i}"), "ifname": "eth0"}))
            .collect::<Vec<_>>()
    );
    rt.exec("GC", None, &gc).expect_ok("GC");
    let kept = |i: usize| lab.lease_of(&format!("c{i}/dnet/eth0")).is_some();
    assert!(
        wait_until(Duration::from_secs(5), || (3..6).all(|i| !kept(i))),
        "GC released {:?}",
        lab.leases()
    );
    assert!(
        (0..3).all(kept),
        "GC kept {:?}; daemon: {}",
        lab.leases(),
        d.log_text()
    );
    let children: Vec<_> = atts
        .iter()
        .map(|a| rt.spawn("DEL", Some(a), &conf_in(a)).unwrap())
        .collect();
    for c in children {
        common::wait(c, Duration::from_secs(30)).expect_ok("concurrent DEL");
    }
    assert!(
        wait_until(Duration::from_secs(5), || lab.leases().is_empty()),
        "{:?}",
        lab.leases()
    );
}

/// A `CNI_PATH` directory holding `bridge` and `dhcp` from the given places.
fn mixed_dir(
    lab: &DhcpLab,
    name: &str,
    bridge: &std::path::Path,
    dhcp: &std::path::Path,
) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(bridge, dir.join("bridge")).unwrap();
    std::os::unix::fs::symlink(dhcp, dir.join("dhcp")).unwrap();
    dir
}

#[test]
fn drop_in_with_reference_bridge_and_reference_dhcp() {
    if !privileged_or_skip("drop_in_with_reference_bridge_and_reference_dhcp", TOOLS)
        || !reference_available("dhcp")
        || !reference_available("bridge")
    {
        return;
    }
    let mut lab = DhcpLab::new("wch", "10.98.0", None);
    let state = lab.path("state").display().to_string();
    let ours_d = Daemon::start(&ours(), lab.dir.path(), "ours", &["-statedir", &state]);
    let ref_d = Daemon::start(
        &PathBuf::from(REFERENCE_DIR).join("dhcp"),
        lab.dir.path(),
        "ref",
        &[],
    );
    let reference = PathBuf::from(REFERENCE_DIR);
    let our_bridge = common::ours_dir().join("bridge");
    // (CNI_PATH, daemon, container id, released by DEL). The reference
    // bridge deletes the pod's interface before it runs IPAM DEL, so no
    // daemon can send DHCPRELEASE any more (the reference's own pairing
    // included); ours runs IPAM DEL first.
    let cases = [
        (
            mixed_dir(&lab, "m1", &reference.join("bridge"), &ours()),
            &ours_d,
            "a",
            false,
        ),
        (
            mixed_dir(&lab, "m2", &our_bridge, &reference.join("dhcp")),
            &ref_d,
            "b",
            true,
        ),
        (
            mixed_dir(
                &lab,
                "m3",
                &reference.join("bridge"),
                &reference.join("dhcp"),
            ),
            &ref_d,
            "c",
            false,
        ),
        (
            mixed_dir(&lab, "m4", &our_bridge, &ours()),
            &ours_d,
            "d",
            true,
        ),
    ];
    for (dir, d, cid, released) in cases {
        let rt = Runtime::new(&[dir.as_path()]).in_netns(&lab.host_name());
        let conf = bridge_conf("1.0.0", "dnet", &d.socket);
        let pod = lab.pod();
        let att = Attachment::new(cid, "eth0").with_netns(Some(&netns_path(&pod)));
        let r = rt.add(&conf, &att).expect_ok(&format!("ADD {cid}"));
        let cidr = r["ips"][0]["address"].as_str().unwrap().to_owned();
        assert!(addr_of(&pod).contains(&cidr), "{cid}: {cidr}");
        let id = format!("{cid}/dnet/eth0");
        assert_eq!(
            lab.lease_of(&id).unwrap().ip,
            cidr.split('/').next().unwrap()
        );
        rt.check(&conf, &att, Some(&r))
            .expect_ok(&format!("CHECK {cid}"));
        rt.del(&conf, &att, Some(&r))
            .expect_ok(&format!("DEL {cid}"));
        let gone = wait_until(Duration::from_secs(if released { 5 } else { 1 }), || {
            lab.lease_of(&id).is_none()
        });
        assert_eq!(
            gone,
            released,
            "{cid}: released? daemon log: {}",
            d.log_text()
        );
    }
    // Our daemon forgot the lease it could not release.
    assert_eq!(std::fs::read_dir(lab.path("state")).unwrap().count(), 0);
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// ADD+DEL wall time, ours against the reference, same server and config.
/// Run alone: `flock /tmp/weft-bench.lock cargo test -p weft-cni --test dhcp -- --ignored --nocapture`;
/// `WEFT_DHCP_BENCH_DIR=<target>/release` times release binaries
/// (`cargo build --release -p weft-cni --bins`) instead of the test build.
#[test]
#[ignore = "benchmark"]
fn add_del_timing_vs_reference() {
    if !privileged_or_skip("add_del_timing_vs_reference", TOOLS) || !reference_available("dhcp") {
        return;
    }
    let mut lab = DhcpLab::new("wcb", "10.96.0", None);
    let state = lab.path("state").display().to_string();
    let host = lab.host_name();
    let dir = std::env::var_os("WEFT_DHCP_BENCH_DIR").map_or_else(common::ours_dir, PathBuf::from);
    println!("weft binaries: {}", dir.display());
    let daemons = [
        (
            "weft",
            Daemon::start(
                &dir.join("dhcp"),
                lab.dir.path(),
                "ours",
                &["-statedir", &state],
            ),
            Runtime::new(&[dir.as_path()]),
        ),
        (
            "reference",
            Daemon::start(
                &PathBuf::from(REFERENCE_DIR).join("dhcp"),
                lab.dir.path(),
                "ref",
                &[],
            ),
            Runtime::reference(),
        ),
    ];
    for (name, d, rt) in &daemons {
        let rt = rt.clone().in_netns(&host);
        let conf = ipam_conf("1.0.0", "dnet", &d.socket);
        let mut del = Vec::new();
        // Every ADD on a fresh pod whose eth0 is down, as after a main
        // plugin: the daemon brings it up.
        let (mut fresh_add, mut warm_add) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let pod = lab.plugged_pod();
            let att =
                Attachment::new(&format!("{name}{i}"), "eth0").with_netns(Some(&netns_path(&pod)));
            let a = rt.add(&conf, &att);
            assert!(a.ok(), "{}", a.stdout);
            let r = rt.del(&conf, &att, None);
            assert!(r.ok(), "{}", r.stdout);
            fresh_add.push(a.elapsed.as_secs_f64() * 1e3);
            del.push(r.elapsed.as_secs_f64() * 1e3);
            // Again on the same (now up) interface.
            let att =
                Attachment::new(&format!("{name}w{i}"), "eth0").with_netns(Some(&netns_path(&pod)));
            let a = rt.add(&conf, &att);
            assert!(a.ok(), "{}", a.stdout);
            assert!(rt.del(&conf, &att, None).ok());
            warm_add.push(a.elapsed.as_secs_f64() * 1e3);
        }
        println!(
            "dhcp {name}: ADD on an up link median {:.1} ms p90 {:.1} ms",
            percentile(&mut warm_add, 0.5),
            percentile(&mut warm_add, 0.9)
        );
        println!(
            "dhcp {name}: ADD on a down link median {:.1} ms p90 {:.1} ms; DEL median {:.1} ms p90 {:.1} ms (20 runs)",
            percentile(&mut fresh_add, 0.5),
            percentile(&mut fresh_add, 0.9),
            percentile(&mut del, 0.5),
            percentile(&mut del, 0.9)
        );
    }
}
