//! BGP scale: one injector (our own speaker, `weft_bgp`, in a namespace)
//! sends the same 100 000 IPv4 /26 prefixes to weftd (host-gw) and to BIRD 2
//! (kernel protocol exporting everything) at the same time. Measured: time
//! until every prefix is a kernel route, time until all are gone after the
//! withdrawal, and peak RSS (VmHWM) of weftd vs bird. Then, with BIRD
//! stopped, weftd alone in each of `BGP_SCALE_MODES` (default
//! `host-gw,vxlan`) for `BGP_SCALE_ROUNDS` rounds (default 3, the order of
//! the modes alternating): the same install and withdraw times, so an
//! overlay node (100k `dev weft0` routes plus 100k entries in the
//! dataplane's peer table) is compared with host-gw in the same run. A mode
//! written `MODE@PATH` runs the weftd binary at PATH (e.g. an older build
//! as the baseline).
//! `BGP_SCALE_BIRD=0` skips the BIRD comparison. Root only; not run
//! in CI. Needs the release weftd next to the bench (`cargo build --release
//! -p weft-router --bins`). `BGP_SCALE_N` overrides the prefix count;
//! `BGP_SCALE_WRAP` is a command prefix weftd runs under (e.g.
//! `env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
//! DUMP_HEAPTRACK_OUTPUT=/tmp/weftd.heaptrack.raw` to profile its heap).
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod route_scale;

use netsim::bgp::Bird;
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use netsim::weftd::{DataplaneConfig, WeftdConfig, WeftdProcess, default_weftd_path};
use route_scale::{fib_prefixes, link, peak_rss_mib, triestat};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, Speaker, SpeakerConfig};

const ASN: u32 = 64512;
const INJ_W: &str = "10.98.1.1";
const WEFTD: &str = "10.98.1.2";
const INJ_B: &str = "10.98.2.1";
const BIRD: &str = "10.98.2.2";
const TIMEOUT: Duration = Duration::from_secs(180);

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

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
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
    /// Report on the sender once the session with this peer is up
    /// (`true`) or no longer up (`false`).
    WaitUp(IpAddr, bool, std::sync::mpsc::Sender<()>),
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

/// The injector: a speaker peering with weftd (and BIRD), driven by
/// `cmds`.
fn injector(n: u32, with_bird: bool, mut cmds: mpsc::Receiver<Cmd>) {
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
            multipath: false,
            bfd: Default::default(),
            peers: if with_bird {
                vec![peer(WEFTD, INJ_W), peer(BIRD, INJ_B)]
            } else {
                vec![peer(WEFTD, INJ_W)]
            },
        };
        let (h, _events) =
            Speaker::spawn(SpeakerConfig::new(bgp, INJ_W.parse().unwrap(), vec![])).unwrap();
        let all = prefixes(n);
        while let Some(c) = cmds.recv().await {
            match c {
                Cmd::Announce => h.announce(all.clone()).await.unwrap(),
                Cmd::Withdraw => h.withdraw(all.clone()).await.unwrap(),
                Cmd::WaitUp(addr, up, done) => {
                    let end = Instant::now() + Duration::from_secs(30);
                    while Instant::now() < end {
                        let peers = h.peers().await.unwrap();
                        let established = peers
                            .iter()
                            .any(|p| p.address == addr && p.state == State::Established);
                        if established == up {
                            let _ = done.send(());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Cmd::Stop => break,
            }
        }
        h.shutdown(false).await.unwrap();
    });
}

/// Starts an injector in `inj` (peering with weftd, and BIRD if
/// `with_bird`); `Cmd::Stop` ends it, then join the thread.
fn spawn_injector(
    inj: &Arc<Netns>,
    n: u32,
    with_bird: bool,
) -> (mpsc::Sender<Cmd>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4);
    let inj = Arc::clone(inj);
    let t = std::thread::spawn(move || inj.run_in(move || injector(n, with_bird, rx)).unwrap());
    (tx, t)
}

/// The weftd config for `mode`, peering with the injector.
fn weftd_config(mode: &str, graceful_restart: bool) -> WeftdConfig {
    let bgp: toml::Table = toml::from_str(&format!(
        "asn = {ASN}\nconnect_retry = 1\ngraceful_restart = {graceful_restart}\n\
         [[peers]]\naddress = \"{INJ_W}\"\nasn = {ASN}\n"
    ))
    .unwrap();
    WeftdConfig {
        node_name: "scale".into(),
        ip_masq: None,
        underlay_ip: WEFTD.into(),
        pod_cidr: "10.128.0.0/24".into(),
        cluster_cidr: "10.128.0.0/9".into(),
        dataplane: DataplaneConfig {
            mode: mode.into(),
            extra: toml::Table::new(),
        },
        static_routes: vec![],
        bgp: Some(bgp),
        fake_routes: 0,
        cni_attach: None,
    }
}

/// The weftd binary, under `BGP_SCALE_WRAP` if set.
fn weftd_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let weftd_bin = default_weftd_path();
    assert!(
        weftd_bin.exists(),
        "{} missing: cargo build --release -p weft-router --bins",
        weftd_bin.display()
    );
    match std::env::var("BGP_SCALE_WRAP") {
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
    }
}

/// Waits until the injector's session with `addr` is up (or down).
fn wait_session(tx: &mpsc::Sender<Cmd>, addr: &str, up: bool) {
    let (done, reached) = std::sync::mpsc::channel();
    tx.blocking_send(Cmd::WaitUp(addr.parse().unwrap(), up, done))
        .unwrap();
    reached
        .recv_timeout(Duration::from_secs(40))
        .unwrap_or_else(|_| panic!("session with {addr} never went up={up}"));
}

fn wait_up(tx: &mpsc::Sender<Cmd>, addr: &str) {
    wait_session(tx, addr, true);
}

fn show(x: Option<f64>) -> String {
    x.map_or("timeout".to_owned(), |s| format!("{s:.2} s"))
}

fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

/// weftd (host-gw) against BIRD, both fed at the same time.
fn bird_phase(
    n: usize,
    inj: &Arc<Netns>,
    wd: &Netns,
    bd: &Netns,
    weftd_bin: &std::path::Path,
    dir: &std::path::Path,
) {
    let bird_conf = format!(
        "router id {BIRD};\nprotocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ export all; }}; }}\n\
         protocol bgp inj {{ local {BIRD} as {ASN}; neighbor {INJ_B} as {ASN}; direct; \
         ipv4 {{ import all; export none; }}; }}\n"
    );
    let bird = Bird::start(bd, &bird_conf, dir, "scale").unwrap();
    let weftd = WeftdProcess::start(weftd_bin, wd, &weftd_config("host-gw", true), dir).unwrap();
    let pids = (weftd.pid().unwrap(), bird.pid().unwrap());
    let ns = (wd.name(), bd.name());
    let mut stats = (triestat(wd), triestat(bd));
    let base = (fib_prefixes(&mut stats.0), fib_prefixes(&mut stats.1));
    let base_routes = (routes(ns.0), routes(ns.1));
    let (inj_tx, inj_thread) = spawn_injector(inj, u32::try_from(n).unwrap(), true);
    let tx = &inj_tx;
    wait_up(tx, WEFTD);
    wait_up(tx, BIRD);
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
    inj_thread.join().unwrap();

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
}

/// Polls weftd's FIB until `want` holds; seconds from `t0`.
fn wait_one(t0: Instant, stat: &mut File, want: impl Fn(usize) -> bool) -> Option<f64> {
    while t0.elapsed() < TIMEOUT {
        if want(fib_prefixes(stat)) {
            return Some(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// weftd alone in each mode, rounds interleaved: install and withdraw
/// times per mode, and each mode's median against the first mode's.
fn mode_rounds(
    n: usize,
    inj: &Arc<Netns>,
    wd: &Netns,
    weftd_bin: &std::path::Path,
    dir: &std::path::Path,
) {
    let modes: Vec<String> = std::env::var("BGP_SCALE_MODES")
        .unwrap_or_else(|_| "host-gw,vxlan".into())
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    if modes.is_empty() {
        return;
    }
    let rounds: usize = std::env::var("BGP_SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!();
    println!("bgp_scale modes: {n} IPv4 /26 prefixes, injector -> weftd alone, {rounds} rounds");
    let mut times: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        vec![(vec![], vec![], vec![]); modes.len()];
    let mut stat = triestat(wd);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..modes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &m in &order {
            let (mode, bin) = match modes[m].split_once('@') {
                Some((mode, path)) => (mode, std::path::PathBuf::from(path)),
                None => (modes[m].as_str(), weftd_bin.to_path_buf()),
            };
            let cfg = weftd_config(mode, false);
            let weftd = WeftdProcess::start(&bin, wd, &cfg, dir).unwrap();
            // A fresh injector per run: no session state carries over.
            let (inj_tx, inj_thread) = spawn_injector(inj, u32::try_from(n).unwrap(), false);
            let tx = &inj_tx;
            wait_up(tx, WEFTD);
            let base = fib_prefixes(&mut stat);
            let t0 = Instant::now();
            tx.blocking_send(Cmd::Announce).unwrap();
            let install = wait_one(t0, &mut stat, |c| c >= base + n);
            let t1 = Instant::now();
            tx.blocking_send(Cmd::Withdraw).unwrap();
            let withdraw = wait_one(t1, &mut stat, |c| c <= base);
            let rss = weftd.pid().map_or(0.0, peak_rss_mib);
            println!(
                "round {round} {:8} install {:>9}  withdraw {:>9}  peak RSS {rss:.1} MiB",
                modes[m],
                show(install),
                show(withdraw)
            );
            tx.blocking_send(Cmd::Stop).unwrap();
            inj_thread.join().unwrap();
            weftd.stop().unwrap();
            let (Some(i), Some(w)) = (install, withdraw) else {
                panic!("{} timed out", modes[m]);
            };
            times[m].0.push(i);
            times[m].1.push(w);
            times[m].2.push(rss);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "| mode | install (median) | × {} | withdraw (median) | × {} | peak RSS (median) |",
        modes[0], modes[0]
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let (i0, w0) = (med(&times[0].0), med(&times[0].1));
    for (m, (i, w, r)) in modes.iter().zip(&times) {
        println!(
            "| {m} | {:.2} s | {:.2} | {:.2} s | {:.2} | {:.1} MiB |",
            med(i),
            med(i) / i0,
            med(w),
            med(w) / w0,
            med(r)
        );
    }
}

fn main() {
    let with_bird = std::env::var("BGP_SCALE_BIRD").map_or(true, |v| v != "0");
    let tools: &[&str] = if with_bird {
        &["ip", "bird", "birdc"]
    } else {
        &["ip"]
    };
    if !privileged_or_skip("bgp_scale", tools) {
        return;
    }
    let n: u32 = std::env::var("BGP_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pfx = unique_prefix("wb");
    let inj = Arc::new(Netns::create(&format!("{pfx}-i")).unwrap());
    let wd = Netns::create(&format!("{pfx}-w")).unwrap();
    let bd = Netns::create(&format!("{pfx}-b")).unwrap();
    link(&inj, "wbi0", INJ_W, &wd, "wbw0", WEFTD, 24);
    link(&inj, "wbj0", INJ_B, &bd, "wbb0", BIRD, 24);
    let dir = std::env::temp_dir().join(format!("weft-{pfx}"));
    std::fs::create_dir_all(&dir).unwrap();
    let weftd_bin = weftd_binary(&dir);

    let n = n as usize;
    if with_bird {
        bird_phase(n, &inj, &wd, &bd, &weftd_bin, &dir);
    }
    mode_rounds(n, &inj, &wd, &weftd_bin, &dir);
    drop((inj, wd, bd));
    let _ = std::fs::remove_dir_all(&dir);
}
