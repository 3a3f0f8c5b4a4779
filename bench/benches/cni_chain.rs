//! The containerd default chain — bridge (isGateway, ipMasq) + host-local
//! (v4 /16 + v6 /64) + portmap (2 mappings) — ADD and DEL, ours against the
//! reference plugins (/usr/lib/cni) in the same run. Plain wall-clock timing
//! of each plugin process as a runtime execs it, medians and ratios printed,
//! plus our max RSS and the child processes each chain ADD forks.
//!
//! Bounded: `WEFT_BENCH_ITERS` pods per implementation (default 20),
//! `WEFT_BENCH_SCALE` pods for our flatness run (default 100). Needs root
//! and the release binaries (`cargo build --release -p weft-cni --bins`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use netsim::netns::{Netns, unique_prefix};
use serde_json::{Value, json};

mod cni_exec;

use cni_exec::{REFERENCE, Rss, env_usize, exec, median, note_rss, ours_dir, run_runner};

fn confs(data_dir: &str, i: usize) -> (Value, Value) {
    let bridge = json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0",
        "isGateway": true, "ipMasq": true, "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": data_dir,
                 "ranges": [[{"subnet": "10.200.0.0/16"}], [{"subnet": "fd20::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}});
    let base = 10000 + 2 * u16::try_from(i).unwrap();
    let portmap = json!({"cniVersion": "1.0.0", "name": "bench", "type": "portmap", "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": base, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": base + 1, "containerPort": 443, "protocol": "tcp"}]}});
    (bridge, portmap)
}

/// Runner mode: in the host netns, ADD then DEL the chain for each pod;
/// prints {"add":[ms..],"del":[ms..],"maxrss_kb":..} as one JSON line.
fn runner() {
    let dir = PathBuf::from(std::env::var("WEFT_BENCH_PLUGINS").unwrap());
    let host = std::env::var("WEFT_BENCH_HOST").unwrap();
    let pods: Vec<String> = std::env::var("WEFT_BENCH_PODS")
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let data = std::env::var("WEFT_BENCH_DATA").unwrap();
    let f = std::fs::File::open(format!("/run/netns/{host}")).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let (mut add, mut del, mut add_br, mut del_br) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut results = Vec::new();
    let mut rss = Rss::new();
    for (i, p) in pods.iter().enumerate() {
        let (br, mut pm) = confs(&data, i);
        let ns = format!("/run/netns/{p}");
        let cid = format!("bench{i}");
        let (t1, r, m1) = exec(&dir, "bridge", "ADD", &cid, &ns, &br, None);
        pm["prevResult"] = r.clone();
        let (t2, _, m2) = exec(&dir, "portmap", "ADD", &cid, &ns, &pm, None);
        note_rss(&mut rss, "bridge", "ADD", m1);
        note_rss(&mut rss, "portmap", "ADD", m2);
        add.push((t1 + t2).as_secs_f64() * 1e3);
        add_br.push(t1.as_secs_f64() * 1e3);
        results.push(r);
    }
    for (i, p) in pods.iter().enumerate() {
        let (mut br, mut pm) = confs(&data, i);
        br["prevResult"] = results[i].clone();
        pm["prevResult"] = results[i].clone();
        let ns = format!("/run/netns/{p}");
        let cid = format!("bench{i}");
        let (t2, _, m2) = exec(&dir, "portmap", "DEL", &cid, &ns, &pm, None);
        let (t1, _, m1) = exec(&dir, "bridge", "DEL", &cid, &ns, &br, None);
        note_rss(&mut rss, "bridge", "DEL", m1);
        note_rss(&mut rss, "portmap", "DEL", m2);
        del.push((t1 + t2).as_secs_f64() * 1e3);
        del_br.push(t1.as_secs_f64() * 1e3);
    }
    // host-local on its own (our bridge runs it in-process; the reference
    // execs it), a few leases in a fresh network.
    let ipam = json!({"cniVersion": "1.0.0", "name": "bench-ipam", "type": "none",
        "ipam": {"type": "host-local", "dataDir": data,
                 "ranges": [[{"subnet": "10.201.0.0/16"}], [{"subnet": "fd21::/64"}]]}});
    let ns0 = format!("/run/netns/{}", pods[0]);
    for i in 0..pods.len().min(5) {
        let cid = format!("ipam{i}");
        for cmd in ["ADD", "DEL"] {
            let (_, _, m) = exec(&dir, "host-local", cmd, &cid, &ns0, &ipam, None);
            note_rss(&mut rss, "host-local", cmd, m);
        }
    }
    println!(
        "{}",
        json!({"add": add, "del": del, "add_bridge": add_br, "del_bridge": del_br, "rss": rss})
    );
}

/// Child processes one chain ADD forks (execve count minus the plugins).
fn children_per_add(dir: &Path, host: &str, pod: &str, data: &str) -> Option<usize> {
    if !Command::new("sh")
        .args(["-c", "command -v strace"])
        .output()
        .ok()?
        .status
        .success()
    {
        return None;
    }
    let f = std::fs::File::open(format!("/run/netns/{host}")).ok()?;
    let (dir, pod, data) = (dir.to_path_buf(), pod.to_string(), data.to_string());
    std::thread::spawn(move || {
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let tmp = tempfile::tempdir().ok()?;
        let (br, mut pm) = confs(&data, 999);
        let ns = format!("/run/netns/{pod}");
        let mut execs = 0;
        let (o1, o2) = (tmp.path().join("br"), tmp.path().join("pm"));
        let (_, r, _) = exec(&dir, "bridge", "ADD", "strace", &ns, &br, Some(&o1));
        pm["prevResult"] = r.clone();
        exec(&dir, "portmap", "ADD", "strace", &ns, &pm, Some(&o2));
        for o in [&o1, &o2] {
            execs += std::fs::read_to_string(o)
                .ok()?
                .lines()
                .filter(|l| l.contains("execve(") && !l.contains("= -1"))
                .count();
        }
        let (mut brd, mut pmd) = confs(&data, 999);
        brd["prevResult"] = r.clone();
        pmd["prevResult"] = r;
        exec(&dir, "portmap", "DEL", "strace", &ns, &pmd, None);
        exec(&dir, "bridge", "DEL", "strace", &ns, &brd, None);
        Some(execs.saturating_sub(2))
    })
    .join()
    .ok()?
}

struct Run {
    add: Vec<f64>,
    del: Vec<f64>,
    add_bridge: Vec<f64>,
    del_bridge: Vec<f64>,
    rss: Rss,
    children: Option<usize>,
}

fn run(dir: &Path, n: usize, tag: &str) -> Run {
    let prefix = unique_prefix(tag);
    let host = Netns::create(&format!("{prefix}-h")).unwrap();
    let pods: Vec<Netns> = (0..n)
        .map(|i| Netns::create(&format!("{prefix}-{i}")).unwrap())
        .collect();
    let data = tempfile::tempdir().unwrap();
    let v = run_runner(dir, &host, &pods, data.path());
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect()
    };
    let children = children_per_add(
        dir,
        host.name(),
        pods[0].name(),
        &data.path().display().to_string(),
    );
    Run {
        add: nums("add"),
        del: nums("del"),
        add_bridge: nums("add_bridge"),
        del_bridge: nums("del_bridge"),
        rss: serde_json::from_value(v["rss"].clone()).unwrap(),
        children,
    }
}

/// The kernel's own cost of deleting one veth pair (the DEL floor).
fn veth_delete_floor(n: usize) -> f64 {
    let ns = Netns::create(&format!("{}-f", unique_prefix("cb"))).unwrap();
    let mut t = Vec::new();
    for i in 0..n {
        let name = format!("fl{i}");
        ns.ip(&[
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("fp{i}"),
        ])
        .unwrap();
        let f = std::fs::File::open(format!("/run/netns/{}", ns.name())).unwrap();
        let took = std::thread::spawn(move || {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = weft_cni::link::runtime().unwrap();
            rt.block_on(async {
                let nl = weft_cni::link::Netlink::connect().unwrap();
                let l = nl.link_by_name(&name).await.unwrap().unwrap();
                let s = Instant::now();
                nl.del_link(l.index).await.unwrap();
                s.elapsed()
            })
        })
        .join()
        .unwrap();
        t.push(took.as_secs_f64() * 1e3);
    }
    median(&mut t)
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
        eprintln!("cni_chain: needs root (network namespaces); skipped");
        return;
    }
    let ours = ours_dir();
    for b in ["bridge", "host-local", "portmap"] {
        assert!(
            ours.join(b).is_file(),
            "{} missing: run `cargo build --release -p weft-cni --bins` first",
            ours.join(b).display()
        );
    }
    let iters = env_usize("WEFT_BENCH_ITERS", 20);
    let mut o = run(&ours, iters, "cb");
    let have_ref = Path::new(REFERENCE).join("bridge").is_file();
    let mut r = if have_ref {
        Some(run(Path::new(REFERENCE), iters, "cr"))
    } else {
        None
    };
    let floor = veth_delete_floor(5);
    println!(
        "cni_chain: containerd default chain (bridge isGateway+ipMasq, host-local v4/16+v6/64, portmap 2 mappings), {iters} pods each"
    );
    let (oa, od) = (median(&mut o.add), median(&mut o.del));
    println!(
        "  ours      ADD median {oa:8.2} ms  DEL median {od:8.2} ms  (bridge alone: ADD {:.2} ms, DEL {:.2} ms)",
        median(&mut o.add_bridge),
        median(&mut o.del_bridge)
    );
    println!(
        "  ours      child processes per chain ADD: {}",
        o.children
            .map_or("n/a (no strace)".into(), |c| c.to_string())
    );
    println!(
        "  kernel    veth pair delete floor {floor:.2} ms; ours DEL / floor = {:.2}",
        od / floor
    );
    if let Some(r) = r.as_mut() {
        let (ra, rd) = (median(&mut r.add), median(&mut r.del));
        println!(
            "  reference ADD median {ra:8.2} ms  DEL median {rd:8.2} ms  child processes per chain ADD: {}",
            r.children.map_or("n/a".into(), |c| c.to_string())
        );
        println!(
            "  ratio     ADD {:.1}x faster (target >= 10x), DEL {:.1}x faster (target >= 6x)",
            ra / oa,
            rd / od
        );
    } else {
        println!("  reference plugins not installed in {REFERENCE}: no ratio");
    }
    println!(
        "  max RSS per exec (wait4 ru_maxrss of the plugin's process tree; target <= 4096 KiB):"
    );
    for (k, kb) in &o.rss {
        let reference = r
            .as_ref()
            .and_then(|r| r.rss.get(k))
            .map_or("n/a".into(), |v| format!("{v} KiB"));
        let verdict = if *kb <= 4096 { "ok" } else { "OVER" };
        println!("    {k:<16} ours {kb:>5} KiB ({verdict})  reference {reference}");
    }
    let scale = env_usize("WEFT_BENCH_SCALE", 100);
    if scale > 0 {
        let mut s = run(&ours, scale, "cs");
        let k = (scale / 10).max(1);
        let mut first: Vec<f64> = s.add[..k].to_vec();
        let mut last: Vec<f64> = s.add[scale - k..].to_vec();
        let mut dfirst: Vec<f64> = s.del[..k].to_vec();
        let mut dlast: Vec<f64> = s.del[scale - k..].to_vec();
        println!(
            "  flatness  ours ADD median first {k} pods {:.2} ms, pods {}..{scale} {:.2} ms; DEL {:.2} ms vs {:.2} ms",
            median(&mut first),
            scale - k + 1,
            median(&mut last),
            median(&mut dfirst),
            median(&mut dlast)
        );
        let _ = median(&mut s.add);
    }
}
