//! host-local ADD/DEL latency, ours vs the reference plugin, with 1 and
//! 2000 existing leases, each call a real exec with env + stdin exactly as a
//! runtime does it. Also our in-process path (what `bridge` uses when it
//! delegates to host-local). Prints medians and ratios.
//!
//! Run: `cargo build --release -p weft-cni --bins && cargo bench -p weft-bench --bench ipam`
//! (`WEFT_BENCH_QUICK=1` for fewer rounds).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_cni::skel::{Command as CniCommand, Invocation, Plugin};

const REFERENCE: &str = "/usr/lib/cni/host-local";

fn our_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WEFT_HOST_LOCAL_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/ipam-xxxx -> target/<profile>/host-local, else release.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    [
        profile_dir.join("host-local"),
        profile_dir.parent()?.join("release/host-local"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn conf(dir: &Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": "bench", "type": "host-local",
        "ipam": {"type": "host-local", "dataDir": dir, "ranges": [[{"subnet": "10.200.0.0/16"}]]}})
}

/// Writes `n` leases in the shared on-disk format (both plugins honour them).
fn prefill(dir: &Path, n: u32) {
    let net = dir.join("bench");
    std::fs::create_dir_all(&net).unwrap();
    let mut last = String::new();
    for i in 0..n {
        let ip = format!("10.200.{}.{}", 100 + i / 250, 1 + i % 250);
        std::fs::write(net.join(&ip), format!("pre{i}\r\neth0")).unwrap();
        last = ip;
    }
    if !last.is_empty() {
        std::fs::write(net.join("last_reserved_ip.0"), &last).unwrap();
    }
}

fn exec(bin: &Path, cmd: &str, cid: &str, conf: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {cmd}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn in_process(cmd: CniCommand, cid: &str, conf: &[u8]) -> Duration {
    let start = Instant::now();
    let mut inv = Invocation::new(cmd, conf.to_vec()).unwrap();
    inv.container_id = cid.to_owned();
    inv.ifname = "eth0".to_owned();
    let p = weft_cni::plugin::host_local::HostLocal;
    match cmd {
        CniCommand::Add => drop(p.add(&inv).unwrap()),
        _ => p.del(&inv).unwrap(),
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[derive(Clone, Copy)]
enum Who<'a> {
    Exec(&'a Path),
    InProcess,
}

/// Median ADD and DEL latency with `leases` existing leases.
fn measure(who: Who<'_>, leases: u32, rounds: usize) -> (Duration, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    prefill(tmp.path(), leases);
    let c = conf(tmp.path()).to_string().into_bytes();
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    // One warm-up pair (page cache; our index is built once after the prefill).
    for i in 0..=rounds {
        let cid = format!("b{i}");
        let (a, d) = match who {
            Who::Exec(bin) => (exec(bin, "ADD", &cid, &c), exec(bin, "DEL", &cid, &c)),
            Who::InProcess => (
                in_process(CniCommand::Add, &cid, &c),
                in_process(CniCommand::Del, &cid, &c),
            ),
        };
        if i > 0 {
            adds.push(a);
            dels.push(d);
        }
    }
    (median(adds), median(dels))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --benches` runs this with no real intent to measure.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let quick = std::env::var("WEFT_BENCH_QUICK").is_ok();
    let rounds = if quick { 5 } else { 25 };
    let Some(ours) = our_binary() else {
        eprintln!("ipam bench: build the plugin first: cargo build --release -p weft-cni --bins");
        return;
    };
    let have_ref = Path::new(REFERENCE).is_file();
    println!("host-local ADD/DEL median latency, {rounds} rounds, exec'd like a runtime does");
    println!(
        "{:<22} {:>8} {:>10} {:>10}",
        "plugin", "leases", "ADD ms", "DEL ms"
    );
    let mut rows = Vec::new();
    for leases in [1, 2000] {
        let o = measure(Who::Exec(&ours), leases, rounds);
        let i = measure(Who::InProcess, leases, rounds);
        let r = have_ref.then(|| measure(Who::Exec(Path::new(REFERENCE)), leases, rounds.min(15)));
        println!(
            "{:<22} {leases:>8} {:>10.3} {:>10.3}",
            "weft (exec)",
            ms(o.0),
            ms(o.1)
        );
        println!(
            "{:<22} {leases:>8} {:>10.3} {:>10.3}",
            "weft (in-process)",
            ms(i.0),
            ms(i.1)
        );
        if let Some(r) = r {
            println!(
                "{:<22} {leases:>8} {:>10.3} {:>10.3}",
                "reference (exec)",
                ms(r.0),
                ms(r.1)
            );
        }
        rows.push((leases, o, i, r));
    }
    println!();
    for (leases, o, _, r) in &rows {
        if let Some(r) = r {
            println!(
                "ratio reference/weft at {leases:>4} leases: ADD {:>6.1}x  DEL {:>6.1}x",
                ms(r.0) / ms(o.0),
                ms(r.1) / ms(o.1)
            );
        }
    }
    let (a, b) = (&rows[0], &rows[1]);
    println!(
        "growth 1 -> 2000 leases: weft exec ADD {:.2}x DEL {:.2}x; in-process ADD {:.2}x DEL {:.2}x",
        ms(b.1.0) / ms(a.1.0),
        ms(b.1.1) / ms(a.1.1),
        ms(b.2.0) / ms(a.2.0),
        ms(b.2.1) / ms(a.2.1)
    );
    if let (Some(ra), Some(rb)) = (a.3, b.3) {
        println!(
            "growth 1 -> 2000 leases: reference ADD {:.2}x DEL {:.2}x",
            ms(rb.0) / ms(ra.0),
            ms(rb.1) / ms(ra.1)
        );
    }
}
