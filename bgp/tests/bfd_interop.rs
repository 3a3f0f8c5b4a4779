//! Single-hop BFD against BIRD 2 (`protocol bfd`, `bfd on`) and FRR 8.4
//! (zebra, bfdd and bgpd with `neighbor X bfd`) at 300 ms × 3 with a 90 s
//! BGP hold time: the BFD session comes Up beside the BGP
//! session; then BIRD's packets are silently dropped (nftables in its
//! namespace, UDP 3784 and TCP 179 both ways, the link stays up) and the
//! time until the daemon's route is withdrawn is measured, ten times. It must be
//! far below the hold time: at most 1.5 s each, median at most 1.2 s.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use netsim::frr::Frr;
use netsim::netns::{Netns, privileged_or_skip};
use tokio::sync::mpsc;
use weft_bgp::bfd::BfdState;
use weft_bgp::fsm::State;
use weft_bgp::{
    BfdTimersConfig, BgpConfig, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig,
    SpeakerHandle,
};

const OUR_ASN: u32 = 64512;
const PEER_ASN: u32 = 65010;
/// Failover rounds per daemon: `BFD_ROUNDS` (at least 2), 4 by default so
/// the suite stays short; the README's figures are from `BFD_ROUNDS=10`.
fn rounds() -> usize {
    std::env::var("BFD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(2)
}

/// A daemon whose own view of its BFD session can be asked.
trait BfdDaemon: Send + Sync + 'static {
    /// Name for messages.
    fn name(&self) -> &'static str;
    /// True when the daemon says its BFD session with us is Up.
    fn bfd_up(&self) -> bool;
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn our_config() -> SpeakerConfig {
    let bgp = BgpConfig {
        hold_time: 90,
        graceful_restart: false,
        restart_time: 30,
        connect_retry: 1,
        bfd: BfdTimersConfig {
            interval_ms: 300,
            multiplier: 3,
        },
        ..BgpConfig::new(
            OUR_ASN,
            vec![PeerConfig {
                local_address: Some(ip(US4)),
                bfd: true,
                ..PeerConfig::new(ip(PEER4), PEER_ASN)
            }],
        )
    };
    let mut c = SpeakerConfig::new(
        bgp,
        US4.parse::<Ipv4Addr>().unwrap(),
        vec![p("10.244.0.0/16")],
    );
    c.max_backoff = Duration::from_secs(1);
    c
}

/// BIRD with BFD at 300 ms × 3 on the link and `bfd on` for the session.
struct BirdBfd(Bird);

impl BfdDaemon for BirdBfd {
    fn name(&self) -> &'static str {
        "BIRD"
    }
    fn bfd_up(&self) -> bool {
        self.0
            .birdc(&["show", "bfd", "sessions"])
            .lines()
            .any(|l| l.contains(US4) && l.contains("Up"))
    }
}

/// FRR: zebra (bgpd registers BFD sessions through it), bfdd and bgpd,
/// with `neighbor X bfd` and a bfdd profile of 300 ms × 3, through
/// netsim's FRR starter (zebra without `-n`, see `netsim::frr`).
struct FrrBfd {
    frr: Frr,
    _dir: TempDir,
}

impl FrrBfd {
    fn start(ns: &Netns) -> Self {
        let dir = TempDir::new("wbffrr");
        let bfdd = format!(
            "hostname b\nbfd\n peer {US4} interface bgp0\n  receive-interval 300\n  \
             transmit-interval 300\n  detect-multiplier 3\n exit\nexit\n"
        );
        let bgpd = format!(
            "frr defaults traditional\nhostname g\nrouter bgp {PEER_ASN}\n bgp router-id {PEER4}\n\
             no bgp ebgp-requires-policy\n no bgp network import-check\n\
             neighbor {US4} remote-as {OUR_ASN}\n neighbor {US4} timers 30 90\n\
             neighbor {US4} timers connect 1\n neighbor {US4} bfd\n\
             address-family ipv4 unicast\n  network {PEER_ROUTE4}\n exit-address-family\n"
        );
        let frr =
            Frr::start_daemons(ns, &dir.0, "peer", &[("bfdd", &bfdd), ("bgpd", &bgpd)]).unwrap();
        Self { frr, _dir: dir }
    }

    fn vtysh(&self, daemon: &str, cmd: &str) -> String {
        self.vtysh_all(daemon, &[cmd])
    }

    fn vtysh_all(&self, daemon: &str, cmds: &[&str]) -> String {
        self.frr.vtysh_daemon(Some(daemon), cmds)
    }
}

impl BfdDaemon for FrrBfd {
    fn name(&self) -> &'static str {
        "FRR"
    }
    fn bfd_up(&self) -> bool {
        let out = self.vtysh("bfdd", "show bfd peers");
        out.contains(&format!("peer {US4}")) && out.contains("Status: up")
    }
}

impl BirdBfd {
    fn start(ns: &Netns) -> Self {
        let conf = format!(
            r#"
router id {PEER4};
protocol device {{ }}
protocol static s4 {{ ipv4; route {PEER_ROUTE4} blackhole; }}
protocol bfd {{
  interface "*" {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }};
}}
protocol bgp weft {{
  local {PEER4} as {PEER_ASN};
  neighbor {US4} as {OUR_ASN};
  direct;
  hold time 90;
  connect retry time 1;
  error wait time 1, 2;
  bfd on;
  ipv4 {{ import all; export all; next hop self; }};
}}
"#
        );
        Self(Bird::with_config(ns, "wbfbird", &conf))
    }
}

/// Drops BIRD's BFD and BGP packets in both directions, or lets them pass.
fn blackhole(ns: &Netns, on: bool) {
    if on {
        let rules = "table inet wbf {\n\
            chain in { type filter hook input priority 0; policy accept;\n\
              udp dport 3784 drop; tcp dport 179 drop; tcp sport 179 drop; }\n\
            chain out { type filter hook output priority 0; policy accept;\n\
              udp dport 3784 drop; tcp dport 179 drop; tcp sport 179 drop; }\n\
            }\n";
        let mut cmd = ns.command("nft");
        cmd.args(["-f", "-"]).stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft rules refused");
    } else {
        ns.run("nft", &["delete", "table", "inet", "wbf"]).unwrap();
    }
}

async fn peer_state(h: &SpeakerHandle) -> (State, Option<BfdState>) {
    let st = h.peers().await.unwrap();
    (st[0].state, st[0].bfd)
}

async fn wait_up(h: &SpeakerHandle, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if peer_state(h).await == (State::Established, Some(BfdState::Up)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Applies events until `f` holds on the table of prefixes; false on timeout.
async fn until(
    rx: &mut mpsc::Receiver<Vec<RouteEvent>>,
    table: &mut HashMap<Prefix, usize>,
    within: Duration,
    f: impl Fn(&HashMap<Prefix, usize>) -> bool,
) -> bool {
    let end = tokio::time::Instant::now() + within;
    while !f(table) {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(batch)) => {
                for e in batch {
                    match e {
                        RouteEvent::Reachable { prefix, next_hops } => {
                            table.insert(prefix, next_hops.len());
                        }
                        RouteEvent::Unreachable { prefix } => {
                            table.remove(&prefix);
                        }
                        RouteEvent::EndOfRib { .. } => {}
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

#[test]
fn bird_bfd_failover_is_sub_second() {
    if !privileged_or_skip("bird_bfd_failover_is_sub_second", &["bird", "birdc", "nft"]) {
        return;
    }
    failover(BirdBfd::start);
}

#[test]
fn frr_bfd_failover_is_sub_second() {
    if !privileged_or_skip(
        "frr_bfd_failover_is_sub_second",
        &[
            "/usr/lib/frr/zebra",
            "/usr/lib/frr/bfdd",
            "/usr/lib/frr/bgpd",
            "vtysh",
            "nft",
        ],
    ) {
        return;
    }
    failover(FrrBfd::start);
}

fn failover<D: BfdDaemon>(start: fn(&Netns) -> D) {
    let topo = Topo::with_tag("wbf");
    let bird = Arc::new(start(&topo.peer));
    let name = bird.name();
    let peer_ns = Arc::new(topo.peer);
    let b2 = bird.clone();
    let times = topo
        .us
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(scenario(b2, peer_ns))
        })
        .unwrap();
    let mut sorted = times.clone();
    sorted.sort();
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2;
    let worst = sorted[n - 1];
    eprintln!(
        "BFD failover with {name} over {n} rounds: median {median:?}, worst {worst:?}, all {times:?}"
    );
    assert!(
        worst <= Duration::from_millis(1500),
        "{name}: worst {worst:?}"
    );
    assert!(
        median <= Duration::from_millis(1200),
        "{name}: median {median:?}"
    );
    drop(bird);
}

async fn scenario<D: BfdDaemon>(bird: Arc<D>, peer_ns: Arc<Netns>) -> Vec<Duration> {
    let name = bird.name();
    let (h, mut rx) = Speaker::spawn(our_config()).unwrap();
    let mut table = HashMap::new();
    let mut times = Vec::new();
    for round in 0..rounds() {
        assert!(
            wait_up(&h, Duration::from_secs(30)).await,
            "{name} round {round}: BGP and BFD never both up: {:?}",
            h.peers().await
        );
        assert!(
            until(&mut rx, &mut table, Duration::from_secs(15), |t| t
                .contains_key(&p(PEER_ROUTE4)))
            .await,
            "{name} round {round}: the route never arrived"
        );
        if round == 0 {
            let b = bird.clone();
            let up = tokio::task::spawn_blocking(move || {
                eventually(Duration::from_secs(5), || b.bfd_up())
            })
            .await
            .unwrap();
            assert!(up, "{name}'s BFD session is not Up");
        }
        // Stable for a while (no flap after coming up) before the failure.
        until(&mut rx, &mut table, Duration::from_millis(1500), |_| false).await;
        assert!(
            table.contains_key(&p(PEER_ROUTE4)),
            "{name} round {round}: the route left while nothing failed: {:?}",
            h.peers().await
        );
        assert_eq!(
            peer_state(&h).await,
            (State::Established, Some(BfdState::Up)),
            "{name} round {round}: not stable"
        );
        // The daemon goes silent; the link stays up.
        let ns = peer_ns.clone();
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || blackhole(&ns, true))
            .await
            .unwrap();
        assert!(
            until(&mut rx, &mut table, Duration::from_secs(10), |t| !t
                .contains_key(&p(PEER_ROUTE4)))
            .await,
            "{name} round {round}: the route still there 10 s after it went silent"
        );
        times.push(t0.elapsed());
        let st = h.peers().await.unwrap();
        assert_ne!(st[0].state, State::Established, "{st:?}");
        assert!(
            st[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("BFD down"),
            "{st:?}"
        );
        let ns = peer_ns.clone();
        tokio::task::spawn_blocking(move || blackhole(&ns, false))
            .await
            .unwrap();
    }
    h.shutdown(false).await.unwrap();
    times
}

/// The peer takes BFD down administratively (FRR `shutdown` on the bfdd
/// peer): our BFD session leaves Up, but that is maintenance, not a
/// failure, so the BGP session and its routes stay.
#[test]
fn frr_bfd_admin_down_keeps_bgp() {
    if !privileged_or_skip(
        "frr_bfd_admin_down_keeps_bgp",
        &[
            "/usr/lib/frr/zebra",
            "/usr/lib/frr/bfdd",
            "/usr/lib/frr/bgpd",
            "vtysh",
        ],
    ) {
        return;
    }
    let topo = Topo::with_tag("wbf");
    let frr = Arc::new(FrrBfd::start(&topo.peer));
    topo.us
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (h, mut rx) = Speaker::spawn(our_config()).unwrap();
                let mut table = HashMap::new();
                assert!(
                    wait_up(&h, Duration::from_secs(30)).await,
                    "never up: {:?}",
                    h.peers().await
                );
                assert!(
                    until(&mut rx, &mut table, Duration::from_secs(15), |t| t
                        .contains_key(&p(PEER_ROUTE4)))
                    .await
                );
                let f = frr.clone();
                tokio::task::spawn_blocking(move || {
                    f.vtysh_all(
                        "bfdd",
                        &[
                            "configure terminal",
                            "bfd",
                            &format!("peer {US4} interface bgp0"),
                            "shutdown",
                        ],
                    )
                })
                .await
                .unwrap();
                let end = Instant::now() + Duration::from_secs(5);
                while peer_state(&h).await.1 == Some(BfdState::Up) {
                    assert!(
                        Instant::now() < end,
                        "BFD still Up after the peer's shutdown"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Three detection times later, BGP and the route are still there.
                until(&mut rx, &mut table, Duration::from_secs(3), |_| false).await;
                let st = h.peers().await.unwrap();
                assert_eq!(st[0].state, State::Established, "{st:?}");
                assert_eq!(st[0].bfd, Some(BfdState::Down), "{st:?}");
                assert!(table.contains_key(&p(PEER_ROUTE4)), "{table:?}");
                h.shutdown(false).await.unwrap();
            });
        })
        .unwrap();
}
