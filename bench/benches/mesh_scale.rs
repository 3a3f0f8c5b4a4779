//! Full-mesh scale: N real weftd nodes (host-gw, own netsim namespaces)
//! in an iBGP full mesh, every weftd peering with every other, as calico
//! runs without route reflectors. Per N, measured:
//! - convergence: from starting all N weftds at once to every node having
//!   every other node's pod CIDR in its kernel;
//! - join: from an (N+1)th node's weftd start to its pod CIDR routed on
//!   all N others (its address is in every peer list from the start, as
//!   once a mesh has learnt of a new node);
//! - established BGP sessions per node after the join (N expected);
//! - each weftd's peak RSS (VmHWM), and the CPU the mesh's keepalives cost
//!   a weftd in steady state.
//!
//! `MESH_SCALE_N` (default `10,25,50`) lists the node counts;
//! `MESH_SCALE_HOLD=<s>` leaves a mesh that did not converge up that long
//! for a look (`weft --socket … peers`). Root only;
//! not run in CI. Run with the release weftd next to the bench:
//! `cargo build --release -p weft-router --bin weftd && flock
//! /tmp/weft-bench.lock cargo bench -p weft-bench --bench mesh_scale`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

mod route_scale;

use netsim::netns::privileged_or_skip;
use netsim::weftd::{WeftdProcess, default_weftd_path};
use netsim::{Cluster, Routing, Topology, WeftMode};
use route_scale::{fib_prefixes, peak_rss_mib, triestat};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the mesh may take to settle after the join before counting.
const SETTLE: Duration = Duration::from_secs(10);
/// Steady-state window for the keepalive CPU figure.
const STEADY: Duration = Duration::from_secs(5);

struct Figures {
    /// Or (routes missing, routes wanted) after [`TIMEOUT`].
    converge: Result<Duration, (usize, usize)>,
    /// Or the number of nodes still without the new node's route.
    join: Result<Duration, usize>,
    sessions_min: usize,
    sessions_max: usize,
    rss_max: f64,
    rss_mean: f64,
    steady_cpu_pct: f64,
}

/// Starts weftd on each of `nodes` at once (one thread each).
fn start_all(c: &Cluster, weftd: &Path, nodes: &[usize]) -> Vec<WeftdProcess> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|&i| {
                let cfg = c.weftd_config(i, WeftMode::HostGw).unwrap();
                s.spawn(move || WeftdProcess::start(weftd, c.node(i).ns(), &cfg, c.run_dir()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    })
}

/// Waits until node `i` routes every CIDR in `cidrs` or `deadline`
/// passes: polls the FIB's prefix count (cheap) until it could hold them,
/// then checks each. Returns how many are missing (0: all there).
fn wait_routes(
    c: &Cluster,
    i: usize,
    f: &mut std::fs::File,
    base: usize,
    cidrs: &[String],
    deadline: Instant,
) -> usize {
    loop {
        if fib_prefixes(f) >= base + cidrs.len() && c.has_routes(i, cidrs) {
            return 0;
        }
        if Instant::now() > deadline {
            return cidrs
                .iter()
                .filter(|x| !c.has_routes(i, std::slice::from_ref(x)))
                .count();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Permanent neighbour entries for every other node on each node. The
/// kernel's ARP table limit (`gc_thresh3`, 1024 by default) is one for
/// all namespaces of the machine, and a mesh of N nodes on one machine
/// needs N·(N-1) entries (2450 at 50): past it, ARP fails and SYNs go
/// nowhere. Permanent entries do not count against it; real nodes each
/// have their own table.
fn static_neighbours(c: &Cluster) {
    let macs: Vec<String> = c
        .nodes()
        .iter()
        .map(|n| {
            let out = n.ns().ip(&["-o", "link", "show", "eth0"]).unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split("link/ether ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap()
                .to_owned()
        })
        .collect();
    for (i, n) in c.nodes().iter().enumerate() {
        let batch: String = c
            .nodes()
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, m)| {
                format!(
                    "neigh replace {} lladdr {} dev eth0 nud permanent\n",
                    m.underlay_ip(),
                    macs[j]
                )
            })
            .collect();
        let path = c.run_dir().join(format!("neigh-{i}.batch"));
        std::fs::write(&path, batch).unwrap();
        n.ns().ip(&["-batch", &path.display().to_string()]).unwrap();
    }
}

/// Established TCP sessions on port 179 in node `i`.
fn bgp_sessions(c: &Cluster, i: usize) -> usize {
    let out = c
        .node(i)
        .ns()
        .run(
            "ss",
            &[
                "-Htn",
                "state",
                "established",
                "( sport = :179 or dport = :179 )",
            ],
        )
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn run(n: usize, weftd: &Path) -> Figures {
    let c = Topology::builder()
        .nodes(n + 1)
        .pods_per_node(0)
        .prefix_tag("sc")
        .weftd(weftd)
        .routing(Routing::Mesh)
        .build()
        .unwrap();
    static_neighbours(&c);
    let cidr = |i: usize| c.node(i).pod_cidr().to_string();
    let mut fibs: Vec<_> = (0..=n).map(|i| triestat(c.node(i).ns())).collect();
    let base: Vec<usize> = fibs.iter_mut().map(fib_prefixes).collect();

    let first: Vec<usize> = (0..n).collect();
    let others = |i: usize, of: &[usize]| -> Vec<String> {
        of.iter().filter(|&&j| j != i).map(|&j| cidr(j)).collect()
    };
    let t0 = Instant::now();
    let mut weftds = start_all(&c, weftd, &first);
    let missing: Vec<usize> = first
        .iter()
        .map(|&i| {
            wait_routes(
                &c,
                i,
                &mut fibs[i],
                base[i],
                &others(i, &first),
                t0 + TIMEOUT,
            )
        })
        .collect();
    let missing_all: usize = missing.iter().sum();
    let converge = if missing_all == 0 {
        Ok(t0.elapsed())
    } else {
        Err((missing_all, n * (n - 1)))
    };

    let t1 = Instant::now();
    weftds.extend(start_all(&c, weftd, &[n]));
    let new = [cidr(n)];
    let mut lacking = 0;
    for &i in &first {
        let have = base[i] + n - 1 - missing[i];
        let m = wait_routes(&c, i, &mut fibs[i], have, &new, t1 + TIMEOUT);
        lacking += usize::from(m > 0);
    }
    let join = if lacking == 0 {
        Ok(t1.elapsed())
    } else {
        Err(lacking)
    };

    // Settle (the new node's own routes, collisions resolved), then count.
    let all: Vec<usize> = (0..=n).collect();
    let t2 = Instant::now();
    for &i in &all {
        wait_routes(&c, i, &mut fibs[i], base[i], &others(i, &all), t2 + SETTLE);
    }
    if converge.is_err() || join.is_err() {
        if let Some(secs) = std::env::var("MESH_SCALE_HOLD")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            // Leave the stuck mesh up for a look (`weft --socket … peers`).
            eprintln!("mesh_scale: holding {} for {secs} s", c.prefix());
            std::thread::sleep(Duration::from_secs(secs));
        }
        let keep = std::env::temp_dir().join("mesh_scale-logs");
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::process::Command::new("cp")
            .arg("-a")
            .arg(c.run_dir())
            .arg(&keep)
            .status();
        eprintln!(
            "mesh_scale: {n} nodes: logs and configs in {}",
            keep.display()
        );
    }
    let cpu0: f64 = weftds.iter().filter_map(WeftdProcess::cpu_seconds).sum();
    std::thread::sleep(STEADY);
    let cpu1: f64 = weftds.iter().filter_map(WeftdProcess::cpu_seconds).sum();
    let sessions: Vec<usize> = all.iter().map(|&i| bgp_sessions(&c, i)).collect();
    let rss: Vec<f64> = weftds
        .iter()
        .filter_map(WeftdProcess::pid)
        .map(peak_rss_mib)
        .collect();
    drop(weftds);
    Figures {
        converge,
        join,
        sessions_min: sessions.iter().copied().min().unwrap_or(0),
        sessions_max: sessions.iter().copied().max().unwrap_or(0),
        rss_max: rss.iter().copied().fold(0.0, f64::max),
        rss_mean: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
        steady_cpu_pct: (cpu1 - cpu0) / STEADY.as_secs_f64() / (n + 1) as f64 * 100.0,
    }
}

fn main() {
    if !privileged_or_skip("mesh_scale", &["ip", "ss"]) {
        return;
    }
    let weftd = default_weftd_path();
    assert!(weftd.exists(), "{} missing", weftd.display());
    let ns: Vec<usize> = std::env::var("MESH_SCALE_N")
        .unwrap_or_else(|_| "10,25,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("mesh_scale: N weftd nodes (host-gw) in an iBGP full mesh + 1 joining\n");
    println!(
        "| nodes | all routes everywhere | new node's route on all others | BGP sessions per node | weftd peak RSS max / mean | steady CPU per weftd |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &n in &ns {
        let f = run(n, &weftd);
        let sessions = if f.sessions_min == f.sessions_max {
            f.sessions_min.to_string()
        } else {
            format!("{}–{}", f.sessions_min, f.sessions_max)
        };
        let converge = match f.converge {
            Ok(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            Err((m, w)) => format!("not in {TIMEOUT:?}: {m} of {w} routes missing"),
        };
        let join = match f.join {
            Ok(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            Err(k) => format!("not in {TIMEOUT:?} on {k} nodes"),
        };
        println!(
            "| {n} + 1 | {converge} | {join} | {sessions} | {:.1} / {:.1} MiB | {:.2} % |",
            f.rss_max, f.rss_mean, f.steady_cpu_pct
        );
    }
}
