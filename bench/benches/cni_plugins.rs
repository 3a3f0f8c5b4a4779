//! ptp and host-device ADD and DEL, ours against the reference plugins
//! (/usr/lib/cni) in the same run, the way cni_chain measures the bridge
//! chain: each plugin process timed as a runtime execs it, medians and
//! ratios printed, plus max RSS per exec (wait4).
//!
//! - ptp: ipMasq, mtu, host-local v4 /16 + v6 /64 with default routes (the
//!   reference waits for IPv6 DAD on the pod address, ~2 s; ours adds it
//!   without DAD), and again v4 only, where neither waits.
//! - host-device: a veth end (addressed, up) moved into the pod by name and
//!   back, without IPAM (the plugin's own work).
//!
//! Bounded: `WEFT_BENCH_ITERS` pods per implementation (default 20). Needs
//! root and the release binaries (`cargo build --release -p weft-cni --bins`).
#![allow(clippy::unwrap_used, missing_docs)]

mod cni_exec;

use std::path::Path;

use cni_exec::{
    REFERENCE, Rss, env_usize, exec, exec_floor, median, note_rss, ours_dir, run_runner,
};
use netsim::netns::{Netns, unique_prefix};
use serde_json::{Value, json};

fn ptp_conf(data_dir: &str, v6: bool) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "ipMasq": true, "mtu": 1400,
        "ipam": {"type": "host-local", "dataDir": data_dir,
                 "ranges": [[{"subnet": "10.202.0.0/16"}], [{"subnet": "fd22::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}});
    if !v6 {
        c["name"] = json!("bench-ptp4");
        c["ipam"]["ranges"] = json!([[{"subnet": "10.205.0.0/16"}]]);
        c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    }
    c
}

fn hd_conf(i: usize, state_dir: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": "bench-hd", "type": "host-device",
        "device": format!("bhd{i}"), "dataDir": state_dir})
}

/// Runner mode (inside the host netns): ADD then DEL each plugin for every
/// pod; prints one JSON line of times (ms) and max RSS.
fn runner() {
    let dir = std::path::PathBuf::from(std::env::var("WEFT_BENCH_PLUGINS").unwrap());
    let host = std::env::var("WEFT_BENCH_HOST").unwrap();
    let pods: Vec<String> = std::env::var("WEFT_BENCH_PODS")
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let data = std::env::var("WEFT_BENCH_DATA").unwrap();
    let f = std::fs::File::open(format!("/run/netns/{host}")).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let mut rss = Rss::new();
    let mut t: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for (v6, tag) in [(true, "ptp"), (false, "ptp4")] {
        let ptp = ptp_conf(&data, v6);
        let mut results = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            let cid = format!("{tag}-{i}");
            let (d, r, m) = exec(
                &dir,
                "ptp",
                "ADD",
                &cid,
                &format!("/run/netns/{p}"),
                &ptp,
                None,
            );
            note_rss(&mut rss, "ptp", "ADD", m);
            t.entry(if v6 { "ptp_add" } else { "ptp4_add" })
                .or_default()
                .push(ms(d));
            results.push(r);
        }
        for (i, p) in pods.iter().enumerate() {
            let mut c = ptp.clone();
            c["prevResult"] = results[i].clone();
            let cid = format!("{tag}-{i}");
            let (d, _, m) = exec(
                &dir,
                "ptp",
                "DEL",
                &cid,
                &format!("/run/netns/{p}"),
                &c,
                None,
            );
            note_rss(&mut rss, "ptp", "DEL", m);
            t.entry(if v6 { "ptp_del" } else { "ptp4_del" })
                .or_default()
                .push(ms(d));
        }
    }
    let state = format!("{data}/hd-state");
    for (i, p) in pods.iter().enumerate() {
        let c = hd_conf(i, &state);
        let (d, _, m) = exec(
            &dir,
            "host-device",
            "ADD",
            &format!("h{i}"),
            &format!("/run/netns/{p}"),
            &c,
            None,
        );
        note_rss(&mut rss, "host-device", "ADD", m);
        t.entry("hd_add").or_default().push(ms(d));
    }
    for (i, p) in pods.iter().enumerate() {
        let c = hd_conf(i, &state);
        let (d, _, m) = exec(
            &dir,
            "host-device",
            "DEL",
            &format!("h{i}"),
            &format!("/run/netns/{p}"),
            &c,
            None,
        );
        note_rss(&mut rss, "host-device", "DEL", m);
        t.entry("hd_del").or_default().push(ms(d));
    }
    println!("{}", json!({"t": t, "rss": rss}));
}

struct Run {
    t: std::collections::BTreeMap<String, Vec<f64>>,
    rss: Rss,
}

fn run(dir: &Path, n: usize, tag: &str) -> Run {
    let prefix = unique_prefix(tag);
    let host = Netns::create(&format!("{prefix}-h")).unwrap();
    for i in 0..n {
        let (d, p) = (format!("bhd{i}"), format!("bhp{i}"));
        host.ip(&["link", "add", &d, "type", "veth", "peer", "name", &p])
            .unwrap();
        host.ip(&["addr", "add", &format!("10.203.{i}.1/24"), "dev", &d])
            .unwrap();
        host.ip(&["link", "set", &d, "up"]).unwrap();
    }
    let pods: Vec<Netns> = (0..n)
        .map(|i| Netns::create(&format!("{prefix}-{i}")).unwrap())
        .collect();
    let data = tempfile::tempdir().unwrap();
    let v = run_runner(dir, &host, &pods, data.path());
    Run {
        t: serde_json::from_value(v["t"].clone()).unwrap(),
        rss: serde_json::from_value(v["rss"].clone()).unwrap(),
    }
}

/// The kernel's own cost of moving an addressed, up link into a namespace
/// and back (one netlink request each, in-process, no process start):
/// host-device's floor, as cni_chain's veth delete floor is bridge DEL's.
fn move_floor(n: usize) -> (f64, f64) {
    let p = unique_prefix("cpf");
    let host = Netns::create(&format!("{p}-h")).unwrap();
    let pod = Netns::create(&format!("{p}-p")).unwrap();
    host.ip(&["link", "add", "fl0", "type", "veth", "peer", "name", "flp0"])
        .unwrap();
    host.ip(&["link", "set", "fl0", "up"]).unwrap();
    let (hn, pn) = (host.name().to_string(), pod.name().to_string());
    let (mut tin, mut tout) = (Vec::new(), Vec::new());
    std::thread::spawn(move || {
        let hf = std::fs::File::open(format!("/run/netns/{hn}")).unwrap();
        nix::sched::setns(&hf, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = weft_cni::link::runtime().unwrap();
        rt.block_on(async {
            use weft_cni::ns::NetNs;
            let pod_ns = NetNs::open(Path::new(&format!("/run/netns/{pn}"))).unwrap();
            let host_ns = NetNs::open(Path::new(&format!("/run/netns/{hn}"))).unwrap();
            let h = weft_cni::link::Netlink::connect().unwrap();
            let c = weft_cni::link::Netlink::connect_in(&pod_ns).unwrap();
            let l = h.link_by_name("fl0").await.unwrap().unwrap();
            h.add_addr(l.index, [10, 204, 0, 1].into(), 24, true)
                .await
                .unwrap();
            for _ in 0..n {
                let l = h.link_by_name("fl0").await.unwrap().unwrap();
                let s = std::time::Instant::now();
                h.move_to(l.index, &pod_ns, "net1", Some("fl0"), true)
                    .await
                    .unwrap();
                tin.push(s.elapsed().as_secs_f64() * 1e3);
                let l = c.link_by_name("net1").await.unwrap().unwrap();
                let s = std::time::Instant::now();
                c.move_to(l.index, &host_ns, "fl0", None, true)
                    .await
                    .unwrap();
                tout.push(s.elapsed().as_secs_f64() * 1e3);
            }
        });
        (median(&mut tin), median(&mut tout))
    })
    .join()
    .unwrap()
}

fn main() {
    if std::env::var("WEFT_BENCH_RUNNER").is_ok() {
        runner();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("cni_plugins: needs root (network namespaces); skipped");
        return;
    }
    let ours = ours_dir();
    for b in ["ptp", "host-device", "host-local"] {
        assert!(
            ours.join(b).is_file(),
            "{} missing: run `cargo build --release -p weft-cni --bins` first",
            ours.join(b).display()
        );
    }
    let iters = env_usize("WEFT_BENCH_ITERS", 20);
    let mut o = run(&ours, iters, "cpo");
    let have_ref = ["ptp", "host-device"]
        .iter()
        .all(|p| Path::new(REFERENCE).join(p).is_file());
    let mut r = have_ref.then(|| run(Path::new(REFERENCE), iters, "cpr"));
    println!(
        "cni_plugins: ptp (ipMasq, host-local v4/16+v6/64, and v4 only) and host-device (veth end, no IPAM), {iters} pods each"
    );
    println!(
        "  {:<16} {:>12} {:>12} {:>8}",
        "row", "ours ms", "reference ms", "ratio"
    );
    for (row, key) in [
        ("ptp ADD", "ptp_add"),
        ("ptp DEL", "ptp_del"),
        ("ptp v4 ADD", "ptp4_add"),
        ("ptp v4 DEL", "ptp4_del"),
        ("host-device ADD", "hd_add"),
        ("host-device DEL", "hd_del"),
    ] {
        let om = median(o.t.get_mut(key).unwrap());
        match r.as_mut() {
            Some(r) => {
                let rm = median(r.t.get_mut(key).unwrap());
                println!("  {row:<16} {om:>12.2} {rm:>12.2} {:>7.1}x", rm / om);
            }
            None => println!("  {row:<16} {om:>12.2} {:>12} {:>8}", "n/a", "n/a"),
        }
    }
    println!(
        "  exec floor (/bin/true, fork + exec + wait4 as above): {:.2} ms",
        exec_floor(iters).0
    );
    let (fin, fout) = move_floor(9);
    let (oa, od) = (
        median(o.t.get_mut("hd_add").unwrap()),
        median(o.t.get_mut("hd_del").unwrap()),
    );
    println!(
        "  kernel    netns move floor: in {fin:.2} ms, out {fout:.2} ms; host-device ADD / floor = {:.2}, DEL / floor = {:.2}",
        oa / fin,
        od / fout
    );
    println!("  max RSS per exec (wait4 ru_maxrss of the plugin's process tree):");
    for (k, kb) in &o.rss {
        let reference = r
            .as_ref()
            .and_then(|r| r.rss.get(k))
            .map_or("n/a".into(), |v| format!("{v} KiB"));
        println!("    {k:<16} ours {kb:>5} KiB  reference {reference}");
    }
}
