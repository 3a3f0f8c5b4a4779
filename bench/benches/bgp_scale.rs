//! BGP scale: one injector (our own speaker, `weft_bgp`, in a namespace)
//! sends the same 100 000 IPv4 /26 prefixes to weftd (host-gw) and to BIRD 2
//! (kernel protocol exporting everything) at the same time. Measured: time
//! until every prefix is a kernel route, time until all are gone after the
//! withdrawal, and peak RSS (VmHWM) of weftd vs bird. Root only; not run
//! in CI. Needs the release weftd next to the bench (`cargo build --release
//! -p weft-router --bins`). `BGP_SCALE_N` overrides the prefix count;
//! `BGP_SCALE_WRAP` is a command prefix weftd runs under (e.g.
//! `env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
//! DUMP_HEAPTRACK_OUTPUT=/tmp/weftd.heaptrack.raw` to profile its heap).
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use netsim::bgp::Bird;
use netsim::netns::{Netns, privileged_or_skip, run_checked, unique_prefix};
use netsim::weftd::{DataplaneConfig, WeftdConfig, WeftdProcess, default_weftd_path};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, Speaker, SpeakerConfig};

const ASN: u32 = 64512;
const INJ_W: &str = "10.98.1.1";
const WEFTD: &str = "10.98.1.2";
const INJ_B: &str = "10.98.2.1";
const BIRD: &str = "10.98.2.2";
const TIMEOUT: Duration = Duration::from_secs(180);

fn link(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str) {
    run_checked(Command::new("ip").args([
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))
    .unwrap();
    for (ns, dev, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev])
            .unwrap();
        ns.ip(&["link", "set", dev, "up"]).unwrap();
        ns.ip(&["link", "set", "lo", "up"]).unwrap();
    }
}

/// Kernel IPv4 main-table routes in namespace `ns`, by a netlink dump
/// (`/proc/net/route` is quadratic in the table size: useless at 100k).
/// Takes ~0.2 s at 100k routes: used to check the end state only.
fn routes(ns: &str) -> usize {
    Command::new("ip")
        .args(["-n", ns, "-4", "route", "show", "table", "main"])
        .output()
        .map(|o| bytecount(&o.stdout))
        .unwrap_or(0)
}

/// The kernel's FIB trie statistics of namespace `ns`, opened from a
/// thread inside it: the open file keeps reading that namespace's table.
fn triestat(ns: &Netns) -> File {
    ns.run_in(|| File::open("/proc/thread-self/net/fib_triestat"))
        .unwrap()
        .unwrap()
}

/// IPv4 main-table prefixes from a [`triestat`] file: a few milliseconds
/// at 100k routes and no process to start, so the polls below resolve
/// the install and withdraw times finely without stealing CPU from the
/// daemons (a dump takes ~0.2 s and would blur them by ~0.4 s).
fn fib_prefixes(f: &mut File) -> usize {
    let mut out = String::new();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_string(&mut out).is_err() {
        return 0;
    }
    out.split("\nMain:")
        .nth(1)
        .and_then(|main| {
            main.lines()
                .take_while(|l| l.is_empty() || l.starts_with(char::is_whitespace))
                .find_map(|l| l.trim().strip_prefix("Prefixes:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Peak resident set size of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Polls both route counts until `want_w(weftd)` and `want_b(bird)` hold;
/// returns the seconds each took from `t0`.
fn wait_both(
    t0: Instant,
    stats: &mut (File, File),
    want_w: impl Fn(usize) -> bool,
    want_b: impl Fn(usize) -> bool,
) -> (Option<f64>, Option<f64>) {
    let (mut w, mut b) = (None, None);
    while (w.is_none() || b.is_none()) && t0.elapsed() < TIMEOUT {
        if w.is_none() && want_w(fib_prefixes(&mut stats.0)) {
            w = Some(t0.elapsed().as_secs_f64());
        }
        if b.is_none() && want_b(fib_prefixes(&mut stats.1)) {
            b = Some(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (w, b)
}

enum Cmd {
    Announce,
    Withdraw,
    Stop,
}

fn prefixes(n: u32) -> Vec<Prefix> {
    let base = u32::from(Ipv4Addr::new(10, 129, 0, 0));
    (0..n)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(base + i * 64)), 26).unwrap())
        .collect()
}

fn peer(address: &str, local: &str) -> PeerConfig {
    PeerConfig {
        local_address: Some(local.parse().unwrap()),
        ..PeerConfig::new(address.parse().unwrap(), ASN)
    }
}

/// The injector: a speaker peering with weftd and BIRD, driven by `cmds`;
/// reports `()` on `ready` once both sessions are up.
fn injector(n: u32, mut cmds: mpsc::Receiver<Cmd>, ready: std::sync::mpsc::Sender<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bgp = BgpConfig {
            asn: ASN,
            router_id: None,
            listen_port: 0,
            listen_addresses: vec![],
            hold_time: 90,
            graceful_restart: false,
            restart_time: 120,
            connect_retry: 1,
            cluster_id: None,
            next_hop_v4: None,
            next_hop_v6: None,
            communities: vec![],
            bfd: Default::default(),
            peers: vec![peer(WEFTD, INJ_W), peer(BIRD, INJ_B)],
        };
        let (h, _events) =
            Speaker::spawn(SpeakerConfig::new(bgp, INJ_W.parse().unwrap(), vec![])).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let peers = h.peers().await.unwrap();
            if peers.iter().all(|p| p.state == State::Established) {
                break;
            }
            assert!(Instant::now() < end, "sessions not up: {peers:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready.send(()).unwrap();
        let all = prefixes(n);
        while let Some(c) = cmds.recv().await {
            match c {
                Cmd::Announce => h.announce(all.clone()).await.unwrap(),
                Cmd::Withdraw => h.withdraw(all.clone()).await.unwrap(),
                Cmd::Stop => break,
            }
        }
        h.shutdown(false).await.unwrap();
    });
}

fn main() {
    if !privileged_or_skip("bgp_scale", &["ip", "bird", "birdc"]) {
        return;
    }
    let n: u32 = std::env::var("BGP_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let weftd_bin = default_weftd_path();
    assert!(
        weftd_bin.exists(),
        "{} missing: cargo build --release -p weft-router --bins",
        weftd_bin.display()
    );
    let pfx = unique_prefix("wb");
    let inj = Netns::create(&format!("{pfx}-i")).unwrap();
    let wd = Netns::create(&format!("{pfx}-w")).unwrap();
    let bd = Netns::create(&format!("{pfx}-b")).unwrap();
    link(&inj, "wbi0", INJ_W, &wd, "wbw0", WEFTD);
    link(&inj, "wbj0", INJ_B, &bd, "wbb0", BIRD);
    let dir = std::env::temp_dir().join(format!("weft-{pfx}"));
    std::fs::create_dir_all(&dir).unwrap();

    let bird_conf = format!(
        "router id {BIRD};\nprotocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ export all; }}; }}\n\
         protocol bgp inj {{ local {BIRD} as {ASN}; neighbor {INJ_B} as {ASN}; direct; \
         ipv4 {{ import all; export none; }}; }}\n"
    );
    let bird = Bird::start(&bd, &bird_conf, &dir, "scale").unwrap();
    let bgp: toml::Table = toml::from_str(&format!(
        "asn = {ASN}\nconnect_retry = 1\n[[peers]]\naddress = \"{INJ_W}\"\nasn = {ASN}\n"
    ))
    .unwrap();
    let cfg = WeftdConfig {
        node_name: "scale".into(),
        underlay_ip: WEFTD.into(),
        pod_cidr: "10.128.0.0/24".into(),
        cluster_cidr: "10.128.0.0/9".into(),
        dataplane: DataplaneConfig {
            mode: "host-gw".into(),
            extra: toml::Table::new(),
        },
        static_routes: vec![],
        bgp: Some(bgp),
    };
    let weftd_bin = match std::env::var("BGP_SCALE_WRAP") {
        Ok(wrap) if !wrap.trim().is_empty() => {
            // A script that execs weftd under the wrapper, so the pid
            // stays weftd's.
            let script = dir.join("weftd-wrapped");
            std::fs::write(
                &script,
                format!("#!/bin/sh\nexec {wrap} {} \"$@\"\n", weftd_bin.display()),
            )
            .unwrap();
            Command::new("chmod")
                .arg("+x")
                .arg(&script)
                .status()
                .unwrap();
            script
        }
        _ => weftd_bin,
    };
    let weftd = WeftdProcess::start(&weftd_bin, &wd, &cfg, &dir).unwrap();
    let pids = (weftd.pid().unwrap(), bird.pid().unwrap());
    let names = (wd.name().to_owned(), bd.name().to_owned());
    let ns = (names.0.as_str(), names.1.as_str());
    let mut stats = (triestat(&wd), triestat(&bd));
    let base = (fib_prefixes(&mut stats.0), fib_prefixes(&mut stats.1));
    let base_routes = (routes(ns.0), routes(ns.1));

    let (tx, rx) = mpsc::channel(4);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let inj_thread = std::thread::spawn(move || {
        inj.run_in(move || injector(n, rx, ready_tx)).unwrap();
        inj
    });
    ready
        .recv_timeout(Duration::from_secs(40))
        .expect("injector sessions never came up");
    let n = n as usize;
    println!(
        "bgp_scale: {n} IPv4 /26 prefixes, injector -> weftd (host-gw) and BIRD 2 (kernel export)"
    );

    let t0 = Instant::now();
    tx.blocking_send(Cmd::Announce).unwrap();
    let install = wait_both(t0, &mut stats, |c| c >= base.0 + n, |c| c >= base.1 + n);
    // The end state, by a full dump (outside the timing).
    let all = (routes(ns.0), routes(ns.1));
    assert!(
        all.0 >= base_routes.0 + n && all.1 >= base_routes.1 + n,
        "routes after install: {all:?}, before {base_routes:?}"
    );
    let t1 = Instant::now();
    tx.blocking_send(Cmd::Withdraw).unwrap();
    let withdraw = wait_both(t1, &mut stats, |c| c <= base.0, |c| c <= base.1);
    let rss = (peak_rss_mib(pids.0), peak_rss_mib(pids.1));
    tx.blocking_send(Cmd::Stop).unwrap();
    let inj = inj_thread.join().unwrap();

    let show = |x: Option<f64>| x.map_or("timeout".to_owned(), |s| format!("{s:.2} s"));
    let ratio = |b: Option<f64>, w: Option<f64>| match (b, w) {
        (Some(b), Some(w)) if w > 0.0 => format!("{:.2}x", b / w),
        _ => "n/a".to_owned(),
    };
    println!(
        "install : weftd {:>9}  bird {:>9}  bird/weftd {}",
        show(install.0),
        show(install.1),
        ratio(install.1, install.0)
    );
    println!(
        "withdraw: weftd {:>9}  bird {:>9}  bird/weftd {}",
        show(withdraw.0),
        show(withdraw.1),
        ratio(withdraw.1, withdraw.0)
    );
    println!(
        "peak RSS: weftd {:.1} MiB  bird {:.1} MiB  weftd/bird {:.2}",
        rss.0,
        rss.1,
        rss.0 / rss.1.max(0.001)
    );
    weftd.stop().unwrap();
    drop(bird);
    drop((inj, wd, bd));
    let _ = std::fs::remove_dir_all(&dir);
}
