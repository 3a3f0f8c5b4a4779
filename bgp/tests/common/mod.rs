//! Interop harness: two namespaces joined by a veth pair, and BIRD 2, FRR
//! bgpd and GoBGP run inside one of them through netsim's daemon wrappers
//! (`netsim::bgp::Bird`, `netsim::frr::Frr`, `netsim::gobgp::Gobgp`: private
//! config, socket and pid paths in a temp dir, killed on drop). This module
//! only writes their configs for a session with our speaker and reads their
//! tables back.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use netsim::netns::{Netns, unique_prefix};

/// Our side of the link.
pub const US4: &str = "10.99.0.1";
/// The daemon's side.
pub const PEER4: &str = "10.99.0.2";
/// IPv6 addresses on the link (next hops for IPv6 prefixes).
pub const US6: &str = "fd99::1";
/// The daemon's IPv6 address.
pub const PEER6: &str = "fd99::2";

/// Prefixes the daemon originates.
pub const PEER_ROUTE4: &str = "10.244.9.0/24";
/// IPv6 prefix the daemon originates.
pub const PEER_ROUTE6: &str = "fd00:244:0:9::/64";

/// Two namespaces: `us` (our speaker) and `peer` (the daemon).
pub struct Topo {
    pub us: Netns,
    pub peer: Netns,
}

impl Topo {
    pub fn new() -> Self {
        Self::with_tag("bg")
    }

    /// As [`Topo::new`], with namespace names from `unique_prefix(tag)`.
    pub fn with_tag(tag: &str) -> Self {
        let pfx = unique_prefix(tag);
        let us = Netns::create(&format!("{pfx}-u")).unwrap();
        let peer = Netns::create(&format!("{pfx}-p")).unwrap();
        us.veth_to("bgu0", &peer, "bgp0", None).unwrap();
        for (ns, dev, a4, a6) in [(&us, "bgu0", US4, US6), (&peer, "bgp0", PEER4, PEER6)] {
            ns.ip(&["addr", "add", &format!("{a4}/24"), "dev", dev])
                .unwrap();
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{a6}/64"),
                "dev",
                dev,
                "nodad",
            ])
            .unwrap();
            ns.ip(&["link", "set", dev, "up"]).unwrap();
        }
        Self { us, peer }
    }
}

/// A private directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("weft-{}", unique_prefix(tag)));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the daemon should peer with us.
#[derive(Clone, Debug)]
pub struct PeerOpts {
    /// The daemon's AS.
    pub asn: u32,
    /// Our AS.
    pub our_asn: u32,
    /// MD5 password on the daemon's side.
    pub password: Option<String>,
    /// Hold time the daemon proposes.
    pub hold: u16,
    /// Offer IPv6 unicast too.
    pub ipv6: bool,
    /// Run the session over IPv6 (BIRD only).
    pub v6_transport: bool,
    /// Advertise graceful restart (RFC 4724) for the session's families
    /// with the forwarding-state bit, so we act as its helper (BIRD, FRR).
    pub graceful_restart: bool,
}

/// A running routing daemon.
pub trait Daemon: Send + 'static {
    /// Human name for messages.
    fn name(&self) -> &'static str;
    /// True when the daemon's table has `prefix` with next hop `nh`.
    fn has_route(&self, prefix: &str, nh: &str) -> bool;
    /// Stops originating `prefix`.
    fn withdraw(&self, prefix: &str);
    /// The daemon's pid (for SIGSTOP/SIGCONT).
    fn pid(&self) -> u32;
}

/// Sends a signal by name to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Polls `f` every 100 ms until true or `within` elapses.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command's stdout (empty when it could not run).
pub fn output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

// ---- BIRD 2 ----------------------------------------------------------------

/// BIRD peering with us; stopped before its directory goes.
pub struct Bird {
    bird: netsim::bgp::Bird,
    _dir: TempDir,
}

impl Bird {
    pub fn start(ns: &Netns, o: &PeerOpts) -> Self {
        let pw = o
            .password
            .as_ref()
            .map(|p| format!("password \"{p}\";"))
            .unwrap_or_default();
        let v6 = if o.ipv6 {
            format!("ipv6 {{ import all; export all; next hop self; next hop address {PEER6}; }};")
        } else {
            String::new()
        };
        let (local, neighbor, nh4) = if o.v6_transport {
            (PEER6, US6, format!("next hop address {PEER4};"))
        } else {
            (PEER4, US4, String::new())
        };
        let conf = format!(
            r#"
router id {PEER4};
protocol device {{ }}
protocol static s4 {{ ipv4; route {PEER_ROUTE4} blackhole; }}
protocol static s6 {{ ipv6; route {PEER_ROUTE6} blackhole; }}
protocol bgp weft {{
  local {local} as {asn};
  neighbor {neighbor} as {our};
  direct;
  hold time {hold};
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 2;
  {gr}
  {pw}
  ipv4 {{ import all; export all; next hop self; {nh4} }};
  {v6}
}}
"#,
            asn = o.asn,
            our = o.our_asn,
            hold = o.hold,
            gr = if o.graceful_restart {
                "graceful restart on;"
            } else {
                ""
            },
        );
        Self::with_config(ns, "bgbird", &conf)
    }

    /// BIRD in `ns` with the config `conf`, its files in a fresh
    /// directory named after `tag`; waits until it answers.
    pub fn with_config(ns: &Netns, tag: &str, conf: &str) -> Self {
        let dir = TempDir::new(tag);
        let bird = netsim::bgp::Bird::start(ns, conf, &dir.0, "peer")
            .unwrap_or_else(|e| panic!("BIRD did not start: {e}"));
        Self { bird, _dir: dir }
    }

    /// `birdc` against this BIRD; its stdout.
    pub fn birdc(&self, args: &[&str]) -> String {
        self.bird.birdc(args)
    }
}

impl Bird {
    /// How many IPv4 routes BIRD holds from us (protocol `weft`); `None`
    /// when BIRD did not answer.
    pub fn routes_from_us(&self) -> Option<usize> {
        // "100000 of 100000 routes for 100000 networks in table master4"
        let out = self.birdc(&["show", "route", "count", "protocol", "weft"]);
        out.lines()
            .filter(|l| l.contains(" routes for "))
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
    }
}

impl Daemon for Bird {
    fn name(&self) -> &'static str {
        "BIRD"
    }
    fn has_route(&self, prefix: &str, nh: &str) -> bool {
        let out = self.birdc(&["show", "route", "for", prefix, "protocol", "weft", "all"]);
        out.contains(prefix) && out.contains(&format!("via {nh} "))
    }
    fn withdraw(&self, prefix: &str) {
        let proto = if prefix.contains(':') { "s6" } else { "s4" };
        let out = self.birdc(&["disable", proto]);
        assert!(out.contains("disabled"), "{out}");
    }
    fn pid(&self) -> u32 {
        self.bird.pid().expect("BIRD runs")
    }
}

// ---- FRR bgpd ----------------------------------------------------------------

/// FRR's bgpd alone (no zebra) peering with us.
pub struct Frr {
    frr: netsim::frr::Frr,
    _dir: TempDir,
    asn: u32,
}

impl Frr {
    pub fn start(ns: &Netns, o: &PeerOpts) -> Self {
        let dir = TempDir::new("bgfrr");
        let pw = o
            .password
            .as_ref()
            .map(|p| format!(" neighbor {US4} password {p}\n"))
            .unwrap_or_default();
        let v6 = if o.ipv6 {
            format!(
                " address-family ipv6 unicast\n  network {PEER_ROUTE6}\n  neighbor {US4} activate\n  neighbor {US4} route-map NH6 out\n exit-address-family\n"
            )
        } else {
            String::new()
        };
        let conf = format!(
            "frr defaults traditional\nhostname frrpeer\ndomainname lab.example\n\
             route-map NH6 permit 10\n set ipv6 next-hop global {PEER6}\nexit\n\
             router bgp {asn}\n bgp router-id {PEER4}\n no bgp ebgp-requires-policy\n no bgp network import-check\n{gr}\
             neighbor {US4} remote-as {our}\n neighbor {US4} timers 1 {hold}\n neighbor {US4} timers connect 1\n\
             neighbor {US4} disable-connected-check\n{pw}\
             address-family ipv4 unicast\n  network {PEER_ROUTE4}\n exit-address-family\n{v6}",
            asn = o.asn,
            our = o.our_asn,
            hold = o.hold,
            gr = if o.graceful_restart {
                " bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n"
            } else {
                ""
            },
        );
        let frr = netsim::frr::Frr::start_bgpd_alone(ns, &conf, &dir.0, "peer")
            .unwrap_or_else(|e| panic!("bgpd did not start: {e}"));
        Self {
            frr,
            _dir: dir,
            asn: o.asn,
        }
    }

    fn vtysh(&self, cmds: &[&str]) -> String {
        self.frr.vtysh_daemon(Some("bgpd"), cmds)
    }
}

impl Frr {
    /// How many IPv4 prefixes FRR has received from us; `None` when FRR
    /// did not answer.
    pub fn routes_from_us(&self) -> Option<usize> {
        let out = self.vtysh(&["show bgp ipv4 unicast summary json"]);
        let v = serde_json::from_str::<serde_json::Value>(&out).ok()?;
        let peers = if v["peers"].is_object() {
            &v["peers"]
        } else {
            &v["ipv4Unicast"]["peers"]
        };
        peers[US4]["pfxRcd"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
    }
}

impl Daemon for Frr {
    fn name(&self) -> &'static str {
        "FRR"
    }
    fn has_route(&self, prefix: &str, nh: &str) -> bool {
        let af = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let out = self.vtysh(&[&format!("show bgp {af} unicast {prefix} json")]);
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
            return false;
        };
        v["paths"].as_array().is_some_and(|paths| {
            paths.iter().any(|p| {
                p["nexthops"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|h| h["ip"].as_str() == Some(nh)))
                    && p["peer"]["peerId"].as_str() == Some(US4)
            })
        })
    }
    fn withdraw(&self, prefix: &str) {
        let af = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.vtysh(&[
            "configure terminal",
            &format!("router bgp {}", self.asn),
            &format!("address-family {af} unicast"),
            &format!("no network {prefix}"),
        ]);
    }
    fn pid(&self) -> u32 {
        self.frr.pid("bgpd").expect("bgpd runs")
    }
}

// ---- GoBGP ----------------------------------------------------------------

/// GoBGP peering with us.
pub struct Gobgp {
    gobgp: netsim::gobgp::Gobgp,
    _dir: TempDir,
}

impl Gobgp {
    pub fn start(ns: &Netns, o: &PeerOpts) -> Self {
        assert!(
            !o.graceful_restart,
            "the GoBGP harness does not configure graceful restart"
        );
        let dir = TempDir::new("bggo");
        let pw = o
            .password
            .as_ref()
            .map(|p| format!("    auth-password = \"{p}\"\n"))
            .unwrap_or_default();
        let mut afis = String::from(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n",
        );
        if o.ipv6 {
            afis.push_str("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n");
        }
        let conf = format!(
            "[global.config]\n  as = {asn}\n  router-id = \"{PEER4}\"\n  port = 179\n\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{US4}\"\n    peer-as = {our}\n{pw}\
             \x20 [neighbors.timers.config]\n    hold-time = {hold}\n    keepalive-interval = 1\n    connect-retry = 1\n{afis}",
            asn = o.asn,
            our = o.our_asn,
            hold = o.hold,
        );
        let gobgp =
            netsim::gobgp::Gobgp::start(ns, &conf, &dir.0, "peer", netsim::gobgp::DEFAULT_API)
                .unwrap_or_else(|e| panic!("{e}"));
        let g = Self { gobgp, _dir: dir };
        g.cli(&[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            PEER_ROUTE4,
            "nexthop",
            PEER4,
        ]);
        if o.ipv6 {
            g.cli(&[
                "global",
                "rib",
                "add",
                "-a",
                "ipv6",
                PEER_ROUTE6,
                "nexthop",
                PEER6,
            ]);
        }
        g
    }

    fn cli(&self, args: &[&str]) -> String {
        self.gobgp.cli(args)
    }
}

impl Daemon for Gobgp {
    fn name(&self) -> &'static str {
        "GoBGP"
    }
    fn has_route(&self, prefix: &str, nh: &str) -> bool {
        let af = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let out = self.cli(&["neighbor", US4, "adj-in", "-a", af, prefix]);
        out.lines()
            .any(|l| l.contains(prefix) && l.split_whitespace().any(|w| w == nh))
    }
    fn withdraw(&self, prefix: &str) {
        let af = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let nh = if af == "ipv6" { PEER6 } else { PEER4 };
        self.cli(&["global", "rib", "del", "-a", af, prefix, "nexthop", nh]);
    }
    fn pid(&self) -> u32 {
        self.gobgp.pid().expect("gobgpd runs")
    }
}

/// Parses an address (test helper).
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Collects route events (End-of-RIB markers left out) until `f` says
/// done or the time runs out.
pub async fn collect_until(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<weft_bgp::RouteEvent>>,
    within: Duration,
    mut f: impl FnMut(&[weft_bgp::RouteEvent]) -> bool,
) -> Vec<weft_bgp::RouteEvent> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while let Some(batch) = rx.recv().await {
            all.extend(
                batch
                    .into_iter()
                    .filter(|e| !matches!(e, weft_bgp::RouteEvent::EndOfRib { .. })),
            );
            if f(&all) {
                return;
            }
        }
    })
    .await;
    all
}
