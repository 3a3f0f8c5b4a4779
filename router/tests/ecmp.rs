//! BGP multipath with BFD on a dual-homed node: weftd (host-gw,
//! `[bgp] multipath = true`, BFD 300 ms × 3, hold time 90 s) peers with two
//! top-of-rack routers (BIRD 2, then FRR 8.4), which both announce
//! 10.244.9.0/24, the range of a server namespace behind them.
//!
//! ```text
//!              ┌ tor1 (10.98.1.2 | 10.97.1.1) ┐
//!  node (weftd)┤                              ├ server: 10.244.9.1
//!  172.31.0.1  └ tor2 (10.98.2.2 | 10.97.2.1) ┘
//! ```
//!
//! The kernel route has both next hops. A 100 Hz ping (raw ICMP socket,
//! absolute deadlines) runs from the node to 10.244.9.1; the ToR that
//! carries it goes silent (nftables drops everything in its namespace, the
//! link stays up). Within the BFD target the route has one next hop,
//! replaced in place (`ip monitor` must never see it deleted), and the
//! pings lost are at most those sent into the dead path before that
//! (counted by nftables on the node and on the server). The ToR comes
//! back: multipath again, nothing lost. Without BFD (BIRD, hold time 3 s)
//! the same takes the hold time.
#![allow(clippy::unwrap_used)]

#[path = "../../bgp/tests/common/mod.rs"]
mod peers;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netsim::frr::Frr;
use netsim::netns::{Netns, privileged_or_skip, unique_prefix};
use netsim::weftd::{DataplaneConfig, WeftdConfig, WeftdProcess};
use peers::{Bird, TempDir, output};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const NODE: &str = "172.31.0.1";
const ASN: u32 = 64512;
const TOR_ASN: u32 = 65000;
const PREFIX: &str = "10.244.9.0/24";
const SERVER: &str = "10.244.9.1";
/// Pings per second.
const RATE: u64 = 100;

/// Node side of the link to ToR `i` (1 or 2).
fn node_addr(i: u8) -> String {
    format!("10.98.{i}.1")
}
/// ToR `i`'s side of the node link.
fn tor_addr(i: u8) -> String {
    format!("10.98.{i}.2")
}

struct Topo {
    /// Shared with the pinger's thread.
    node: Arc<Netns>,
    tors: [Netns; 2],
    server: Netns,
}

fn addr(ns: &Netns, dev: &str, cidr: &str) {
    ns.ip(&["addr", "add", cidr, "dev", dev]).unwrap();
    ns.ip(&["link", "set", dev, "up"]).unwrap();
}

impl Topo {
    fn new() -> Self {
        let pfx = unique_prefix("he");
        let ns = |s: &str| Netns::create(&format!("{pfx}-{s}")).unwrap();
        let t = Self {
            node: Arc::new(ns("n")),
            tors: [ns("t1"), ns("t2")],
            server: ns("s"),
        };
        t.node
            .ip(&["addr", "add", &format!("{NODE}/32"), "dev", "lo"])
            .unwrap();
        t.server
            .ip(&["addr", "add", &format!("{SERVER}/32"), "dev", "lo"])
            .unwrap();
        t.server
            .run("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"])
            .unwrap();
        for (k, tor) in t.tors.iter().enumerate() {
            let i = k as u8 + 1;
            t.node.veth_to(&format!("up{i}"), tor, "dn0", None).unwrap();
            addr(&t.node, &format!("up{i}"), &format!("{}/24", node_addr(i)));
            addr(tor, "dn0", &format!("{}/24", tor_addr(i)));
            tor.veth_to("srv0", &t.server, &format!("tor{i}"), None)
                .unwrap();
            addr(tor, "srv0", &format!("10.97.{i}.1/24"));
            addr(&t.server, &format!("tor{i}"), &format!("10.97.{i}.2/24"));
            tor.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
                .unwrap();
            tor.ip(&["route", "add", PREFIX, "via", &format!("10.97.{i}.2")])
                .unwrap();
            tor.ip(&["route", "add", &format!("{NODE}/32"), "via", &node_addr(i)])
                .unwrap();
        }
        // Replies are not counted; they return through ToR 2 either way.
        t.server
            .ip(&["route", "add", &format!("{NODE}/32"), "via", "10.97.2.1"])
            .unwrap();
        t
    }
}

fn nft(ns: &Netns, rules: &str) {
    let mut cmd = ns.command("nft");
    cmd.args(["-f", "-"]).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused:\n{rules}");
}

/// Counts echo requests to the server leaving the node (`output`) or
/// arriving at the server (`input`).
fn count_pings(ns: &Netns, hook: &str) {
    nft(
        ns,
        &format!(
            "table ip hecount {{ chain c {{ type filter hook {hook} priority 0; policy accept;\n\
             ip daddr {SERVER} icmp type echo-request counter\n}}\n}}\n"
        ),
    );
}

fn pings(ns: &Netns) -> u64 {
    let out = output(ns.command("nft").args(["list", "table", "ip", "hecount"]));
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {out}"))
}

/// The ToR drops everything (silent, the link stays up), or recovers.
fn silence(tor: &Netns, on: bool) {
    if on {
        nft(
            tor,
            "table inet hedrop {\n\
             chain i { type filter hook input priority -10; policy drop; }\n\
             chain f { type filter hook forward priority -10; policy drop; }\n\
             chain o { type filter hook output priority -10; policy drop; }\n}\n",
        );
    } else {
        tor.run("nft", &["delete", "table", "inet", "hedrop"])
            .unwrap();
    }
}

/// The next hops of weftd's route to the prefix, sorted (empty: none).
fn next_hops(node: &Netns) -> Vec<String> {
    let out = node
        .ip(&["-4", "route", "show", PREFIX, "proto", "87"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<String> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect();
    v.sort();
    v
}

fn both() -> Vec<String> {
    vec![tor_addr(1), tor_addr(2)]
}

/// Polls the route every 5 ms until it has `want` next hops.
fn wait_hops(node: &Netns, want: &[String], within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if next_hops(node) == want {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// ICMP echo requests from the node to the server, `RATE` a second on
/// absolute deadlines (so the rate holds on a busy machine, which iputils
/// `ping -i 0.01` does not: it manages about 60 a second here), from a raw
/// socket bound to the node's address; stopped and joined on drop.
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pinger {
    fn start(node: Arc<Netns>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || node.run_in(move || ping(&st)).unwrap());
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ping(stop: &AtomicBool) {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    sock.bind(&SocketAddr::new(NODE.parse().unwrap(), 0).into())
        .unwrap();
    let to: SockAddr = SocketAddr::new(SERVER.parse().unwrap(), 0).into();
    let period = Duration::from_micros(1_000_000 / RATE);
    let mut next = Instant::now();
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        let [hi, lo] = seq.to_be_bytes();
        // Echo request, id 0x5745, then a checksum over the 8 bytes.
        let mut p = [8, 0, 0, 0, 0x57, 0x45, hi, lo];
        let sum: u32 = p
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        p[2..4].copy_from_slice(&(!(folded as u16)).to_be_bytes());
        // A failed send is a lost ping too (never expected: the route stays).
        let _ = sock.send_to(&p, &to);
        seq = seq.wrapping_add(1);
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(d) => std::thread::sleep(d),
            // Late (the machine is busy): no burst to catch up.
            None => next = Instant::now(),
        }
    }
}

/// A child killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hold time without BFD (with BFD: 90 s, so BFD does the work).
const HOLD_WITHOUT_BFD: u16 = 3;

fn weftd_config(bfd: bool) -> WeftdConfig {
    let hold = if bfd { 90 } else { HOLD_WITHOUT_BFD };
    let mut bgp = format!(
        "asn = {ASN}\nhold_time = {hold}\nconnect_retry = 1\ngraceful_restart = false\n\
         multipath = true\n[bfd]\ninterval_ms = 300\nmultiplier = 3\n"
    );
    for i in 1..=2 {
        bgp.push_str(&format!(
            "[[peers]]\naddress = \"{}\"\nasn = {TOR_ASN}\nbfd = {bfd}\n",
            tor_addr(i)
        ));
    }
    WeftdConfig {
        node_name: "he-node".into(),
        underlay_ip: NODE.into(),
        pod_cidr: "10.244.1.0/24".into(),
        cluster_cidr: "10.244.0.0/16".into(),
        dataplane: DataplaneConfig {
            mode: "host-gw".into(),
            extra: toml::Table::new(),
        },
        static_routes: vec![],
        bgp: Some(toml::from_str(&bgp).unwrap()),
        fake_routes: 0,
        cni_attach: None,
        ip_masq: None,
    }
}

/// A ToR router: some daemon that runs until dropped.
type Tor = Box<dyn std::any::Any>;

fn bird_tor(ns: &Netns, i: u8, bfd: bool) -> Tor {
    let (hold, bfd_on) = if bfd {
        (90, "bfd on;")
    } else {
        (HOLD_WITHOUT_BFD, "")
    };
    let conf = format!(
        r#"
router id {tor};
protocol device {{ }}
protocol static s4 {{ ipv4; route {PREFIX} blackhole; }}
protocol bfd {{
  interface "dn0" {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }};
}}
protocol bgp node {{
  local {tor} as {TOR_ASN};
  neighbor {node} as {ASN};
  direct;
  hold time {hold};
  connect retry time 1;
  error wait time 1, 2;
  {bfd_on}
  ipv4 {{ import none; export all; next hop self; }};
}}
"#,
        tor = tor_addr(i),
        node = node_addr(i),
    );
    Box::new(Bird::with_config(ns, &format!("hebird{i}"), &conf))
}

/// FRR: zebra, bfdd (the single-hop peer at 300 ms × 3) and bgpd with
/// `neighbor X bfd`, through netsim's FRR starter (zebra without `-n`,
/// see `netsim::frr`).
fn frr_tor(ns: &Netns, i: u8) -> Tor {
    let dir = TempDir::new(&format!("hefrr{i}"));
    let (tor, node) = (tor_addr(i), node_addr(i));
    // The single-hop peer with its timers; bgpd's `neighbor X bfd` uses it.
    let bfdd = format!(
        "hostname b\nbfd\n peer {node} local-address {tor} interface dn0\n  \
         receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n \
         exit\nexit\n"
    );
    let bgpd = format!(
        "frr defaults traditional\nhostname g\nrouter bgp {TOR_ASN}\n bgp router-id {tor}\n\
         no bgp ebgp-requires-policy\n no bgp network import-check\n\
         neighbor {node} remote-as {ASN}\n neighbor {node} timers 30 90\n\
         neighbor {node} timers connect 1\n neighbor {node} bfd\n\
         address-family ipv4 unicast\n  network {PREFIX}\n exit-address-family\n"
    );
    let frr = Frr::start_daemons(ns, &dir.0, "tor", &[("bfdd", &bfdd), ("bgpd", &bgpd)]).unwrap();
    // Dropped in order: the daemons stop before their directory goes.
    Box::new((frr, dir))
}

const FRR_TOOLS: &[&str] = &[
    "nft",
    "/usr/lib/frr/zebra",
    "/usr/lib/frr/bfdd",
    "/usr/lib/frr/bgpd",
];

#[test]
fn ecmp_failover_with_bird_tors() {
    if !privileged_or_skip("ecmp_failover_with_bird_tors", &["bird", "birdc", "nft"]) {
        return;
    }
    failover("BIRD", true, &|ns, i| bird_tor(ns, i, true));
}

#[test]
fn ecmp_failover_with_frr_tors() {
    if !privileged_or_skip("ecmp_failover_with_frr_tors", FRR_TOOLS) {
        return;
    }
    failover("FRR", true, &frr_tor);
}

/// Without BFD the failover is the hold time (3 s here, the least BGP
/// allows), every ping on the dead path meanwhile lost.
#[test]
fn ecmp_failover_without_bfd_takes_the_hold_time() {
    if !privileged_or_skip(
        "ecmp_failover_without_bfd_takes_the_hold_time",
        &["bird", "birdc", "nft"],
    ) {
        return;
    }
    failover("BIRD", false, &|ns, i| bird_tor(ns, i, false));
}

fn failover(name: &str, bfd: bool, start: &dyn Fn(&Netns, u8) -> Tor) {
    let t = Topo::new();
    let _tors: Vec<Tor> = (1..=2)
        .map(|i| start(&t.tors[usize::from(i) - 1], i))
        .collect();
    let dir = TempDir::new("hewd");
    let weftd = WeftdProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_weftd")),
        &t.node,
        &weftd_config(bfd),
        &dir.0,
    )
    .unwrap();
    let log = || weftd.log_tail();
    assert!(
        wait_hops(&t.node, &both(), Duration::from_secs(30)).is_some(),
        "{name}: no multipath route: {:?}\n{}",
        next_hops(&t.node),
        log()
    );
    // BFD must be Up on both sessions before the failure (its detection,
    // not the 90 s hold time, is what is measured).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(next_hops(&t.node), both(), "{name}: not stable\n{}", log());

    count_pings(&t.node, "output");
    count_pings(&t.server, "input");
    let monitor = Bg(t
        .node
        .command("ip")
        .args(["-o", "-4", "monitor", "route"])
        .stdout(std::fs::File::create(dir.path("monitor")).unwrap())
        .spawn()
        .unwrap());
    let ping = Pinger::start(t.node.clone());
    std::thread::sleep(Duration::from_secs(1));
    let lost = |from: (u64, u64)| {
        let sent = pings(&t.node) - from.0;
        sent.saturating_sub(pings(&t.server) - from.1)
    };
    // The counters live in two namespaces and are read one after the
    // other (a few ms apart): a snapshot reads the server first, a
    // measurement the node first, so a packet in between is never counted
    // as lost (the figures are a lower bound, off by a packet at most).
    let at = || {
        let server = pings(&t.server);
        (pings(&t.node), server)
    };
    let steady = at();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lost(steady), 0, "{name}: pings lost before any failure");

    // The ToR that carries the ping flow goes silent.
    let route = output(
        t.node
            .command("ip")
            .args(["route", "get", SERVER, "from", NODE]),
    );
    let dead: u8 = if route.contains(&format!("via {}", tor_addr(1))) {
        1
    } else {
        2
    };
    let alive = 3 - dead;
    assert!(
        route.contains(&format!("via {}", tor_addr(dead))),
        "{route}"
    );
    let before = at();
    silence(&t.tors[usize::from(dead) - 1], true);
    let failover =
        wait_hops(&t.node, &[tor_addr(alive)], Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "{name}: still {:?} 10 s after ToR {dead} went silent\n{}",
                next_hops(&t.node),
                log()
            )
        });
    // Every ping sent from the drop until the route changed went (or may
    // have gone) to the dead ToR: the most that may be lost.
    let in_flight = pings(&t.node) - before.0;
    std::thread::sleep(Duration::from_secs(1));
    let lost_failover = lost(before);
    let after = at();
    std::thread::sleep(Duration::from_secs(1));
    let lost_after = lost(after);

    // The ToR comes back.
    let restore = at();
    silence(&t.tors[usize::from(dead) - 1], false);
    let back = wait_hops(&t.node, &both(), Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "{name}: no multipath 30 s after ToR {dead} came back: {:?}\n{}",
            next_hops(&t.node),
            log()
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let lost_restore = lost(restore);
    drop(ping);
    std::thread::sleep(Duration::from_millis(200));
    drop(monitor);
    let events = std::fs::read_to_string(dir.path("monitor")).unwrap_or_default();
    let (how, limit) = if bfd {
        ("BFD 300 ms x 3".to_owned(), Duration::from_millis(1500))
    } else {
        (
            format!("no BFD, hold time {HOLD_WITHOUT_BFD} s"),
            Duration::from_secs(u64::from(HOLD_WITHOUT_BFD)) + Duration::from_millis(1500),
        )
    };
    eprintln!(
        "ECMP with {name} ToRs: failover to one next hop {failover:?} ({how}); \
         pings at {RATE} Hz lost: {lost_failover} during failover (of {in_flight} sent until the route changed), \
         {lost_after} after it, {lost_restore} while ToR {dead} came back \
         (multipath again after {back:?})"
    );
    assert!(failover <= limit, "{name}: failover {failover:?}");
    assert!(
        lost_failover <= in_flight + 1,
        "{name}: lost {lost_failover} > {in_flight} in flight"
    );
    assert_eq!(lost_after, 0, "{name}: pings lost after the failover");
    assert_eq!(lost_restore, 0, "{name}: pings lost when the ToR came back");
    let gone: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted") && l.contains(PREFIX))
        .collect();
    assert!(
        gone.is_empty(),
        "{name}: the route was deleted: {gone:?}\n{events}"
    );
    assert!(
        events.contains(PREFIX),
        "{name}: ip monitor saw nothing:\n{events}"
    );
    // Someone else deletes the multipath route: weftd sees it go (the
    // watcher parses RTA_MULTIPATH), dumps and puts it back.
    t.node.ip(&["route", "del", PREFIX, "proto", "87"]).unwrap();
    assert!(
        wait_hops(&t.node, &both(), Duration::from_secs(5)).is_some(),
        "{name}: the deleted multipath route was not repaired: {:?}\n{}",
        next_hops(&t.node),
        log()
    );
    // SIGTERM removes it (a delete with both next hops).
    weftd.stop().unwrap();
    assert!(
        next_hops(&t.node).is_empty(),
        "{name}: route left after stop"
    );
}
