//! loopback, tuning (chained, with prevResult) and static ADD and DEL, ours
//! against the reference plugins (/usr/lib/cni) in the same run, the same
//! way as `cni_chain`: wall-clock time of each plugin process as a runtime
//! execs it, medians and ratios printed, plus the max RSS of each plugin
//! process (wait4's rusage of a forked child).
//!
//! The exec floor (fork + exec + wait of `/bin/true` through the same
//! harness) is measured in the same run and printed with the ratio of the
//! time above it: on a small VM the floor is most of a short plugin's time.
//!
//! Ours and the reference alternate on the same pod namespaces, so drift in
//! the machine's load hits both. Bounded: `WEFT_BENCH_ITERS` rounds (default
//! 30). Needs root and the release binaries (`cargo build --release -p
//! weft-cni --bins`).
#![allow(clippy::unwrap_used, missing_docs)]

mod cni_exec;

use std::path::Path;

use std::time::Duration;

use cni_exec::{REFERENCE, exec_floor, exec_if, median, ours_dir};
use netsim::netns::{Netns, unique_prefix};
use serde_json::{Value, json};

const PLUGINS: &[&str] = &["loopback", "tuning", "static"];

/// Runs one plugin like a runtime does: (wall time, max RSS in KiB, CPU time).
fn exec(
    dir: &Path,
    plugin: &str,
    cmd: &str,
    ifname: &str,
    netns: &str,
    conf: &Value,
) -> (Duration, i64, Duration) {
    let r = exec_if(dir, plugin, cmd, "bench", ifname, netns, conf, None);
    (r.took, r.maxrss, r.cpu)
}

/// (plugin, ifname, config) for one pod.
fn confs(ns: &str, data: &Path) -> Vec<(&'static str, &'static str, Value)> {
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": ns}],
        "ips": [{"address": "10.210.0.5/16", "gateway": "10.210.0.1", "interface": 0}],
        "dns": {}});
    vec![
        (
            "loopback",
            "lo",
            json!({"cniVersion": "1.0.0", "name": "bench", "type": "loopback"}),
        ),
        (
            "tuning",
            "eth0",
            json!({"cniVersion": "1.0.0", "name": "bench", "type": "tuning", "dataDir": data,
                "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"},
                "mac": "02:00:00:00:10:01", "mtu": 1400, "promisc": true,
                "prevResult": prev}),
        ),
        (
            "static",
            "eth0",
            json!({"cniVersion": "1.0.0", "name": "bench", "type": "static",
                "ipam": {"type": "static",
                    "addresses": [{"address": "10.210.0.5/16", "gateway": "10.210.0.1"},
                                  {"address": "fd21::5/64"}],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                    "dns": {"nameservers": ["10.210.0.10"]}}}),
        ),
    ]
}

/// Times and max RSS, keyed "plugin COMMAND".
#[derive(Default)]
struct Samples {
    ms: std::collections::BTreeMap<String, Vec<f64>>,
    cpu: std::collections::BTreeMap<String, Vec<f64>>,
    rss: std::collections::BTreeMap<String, i64>,
}

impl Samples {
    fn note(&mut self, key: String, t: Duration, kb: i64, cpu: Duration) {
        let e = self.rss.entry(key.clone()).or_insert(0);
        *e = (*e).max(kb);
        self.cpu
            .entry(key.clone())
            .or_default()
            .push(cpu.as_secs_f64() * 1e3);
        self.ms.entry(key).or_default().push(t.as_secs_f64() * 1e3);
    }
}

fn round(dir: &Path, ns: &str, data: &Path, s: &mut Samples) {
    for (plugin, ifname, conf) in confs(ns, data) {
        for cmd in ["ADD", "DEL"] {
            let (t, kb, cpu) = exec(dir, plugin, cmd, ifname, ns, &conf);
            s.note(format!("{plugin} {cmd}"), t, kb, cpu);
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("cni_meta: needs root (network namespaces); skipped");
        return;
    }
    let ours = ours_dir();
    for p in PLUGINS {
        assert!(
            ours.join(p).is_file(),
            "{} missing: run `cargo build --release -p weft-cni --bins` first",
            ours.join(p).display()
        );
    }
    let have_ref = PLUGINS
        .iter()
        .all(|p| Path::new(REFERENCE).join(p).is_file());
    let iters = std::env::var("WEFT_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize);
    let pod = Netns::create(&format!("{}-m", unique_prefix("cm"))).unwrap();
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ])
    .unwrap();
    pod.ip(&["link", "set", "lo", "down"]).unwrap();
    let ns = format!("/run/netns/{}", pod.name());
    let data = tempfile::tempdir().unwrap();
    let (mut o, mut r) = (Samples::default(), Samples::default());
    let (mut floor, mut floor_cpu) = (Vec::new(), Vec::new());
    for i in 0..iters {
        let (w, c) = exec_floor(1);
        floor.push(w);
        floor_cpu.push(c);
        // Alternate who goes first.
        if i % 2 == 0 {
            round(&ours, &ns, &data.path().join("ours"), &mut o);
        }
        if have_ref {
            round(Path::new(REFERENCE), &ns, &data.path().join("ref"), &mut r);
        }
        if i % 2 == 1 {
            round(&ours, &ns, &data.path().join("ours"), &mut o);
        }
    }
    println!(
        "cni_meta: loopback, tuning (after a 1.0.0 prevResult), static; {iters} rounds each, same namespace"
    );
    let floor = median(&mut floor);
    let floor_cpu = median(&mut floor_cpu) * 1e3;
    println!(
        "  exec floor (/bin/true through the same harness): {floor:.2} ms wall, {floor_cpu:.0} us cpu; \
         wall = exec time as a runtime sees it, cpu = user+system time of the plugin process, \
         >floor = ratio of the cpu time above the floor"
    );
    println!(
        "  {:<13} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7} {:>8} {:>8}",
        "plugin cmd",
        "wall us",
        "ref",
        "ratio",
        "cpu us",
        "ref",
        "ratio",
        ">floor",
        "RSS KiB",
        "ref"
    );
    for (k, v) in &mut o.ms {
        let om = median(v) * 1e3;
        let rm = r.ms.get_mut(k).map_or(f64::NAN, |v| median(v)) * 1e3;
        let oc = o.cpu.get_mut(k).map_or(f64::NAN, |v| median(v)) * 1e3;
        let rc = r.cpu.get_mut(k).map_or(f64::NAN, |v| median(v)) * 1e3;
        let rk = r.rss.get(k).map_or("n/a".into(), ToString::to_string);
        // Within 50 us of the floor the ratio above it means nothing.
        let above = if oc - floor_cpu < 50.0 {
            "floor".to_string()
        } else {
            format!("{:.1}x", (rc - floor_cpu) / (oc - floor_cpu))
        };
        println!(
            "  {k:<13} {om:>8.0} {rm:>8.0} {:>5.1}x {oc:>8.0} {rc:>8.0} {:>5.1}x {above:>7} {:>8} {rk:>8}",
            rm / om,
            rc / oc,
            o.rss[k]
        );
    }
    if !have_ref {
        println!("  reference plugins not installed in {REFERENCE}: no ratio");
    }
}
