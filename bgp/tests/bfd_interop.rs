//! Single-hop BFD against BIRD 2 (`protocol bfd`, `bfd on`) at 300 ms × 3
//! with a 90 s BGP hold time: the BFD session comes Up beside the BGP
//! session; then BIRD's packets are silently dropped (nftables in its
//! namespace, UDP 3784 and TCP 179 both ways, the link stays up) and the
//! time until BIRD's route is withdrawn is measured, ten times. It must be
//! far below the hold time: at most 1.5 s each, median at most 1.2 s.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
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
const ROUNDS: usize = 10;

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn our_config() -> SpeakerConfig {
    let bgp = BgpConfig {
        asn: OUR_ASN,
        router_id: None,
        listen_port: 179,
        listen_addresses: vec![],
        hold_time: 90,
        graceful_restart: false,
        restart_time: 30,
        connect_retry: 1,
        cluster_id: None,
        next_hop_v4: None,
        next_hop_v6: None,
        communities: vec![],
        bfd: BfdTimersConfig {
            interval_ms: 300,
            multiplier: 3,
        },
        peers: vec![PeerConfig {
            local_address: Some(ip(US4)),
            bfd: true,
            ..PeerConfig::new(ip(PEER4), PEER_ASN)
        }],
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
struct BirdBfd {
    dir: TempDir,
    _proc: Proc,
}

impl BirdBfd {
    fn start(ns: &Netns) -> Self {
        let dir = TempDir::new("wbfbird");
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
        std::fs::write(dir.path("bird.conf"), conf).unwrap();
        let mut cmd = ns.command("bird");
        cmd.arg("-c")
            .arg(dir.path("bird.conf"))
            .arg("-s")
            .arg(dir.path("bird.ctl"))
            .arg("-P")
            .arg(dir.path("bird.pid"))
            .arg("-f");
        let proc = Proc::spawn(cmd);
        wait_for_file(&dir.path("bird.ctl"));
        let b = Self { dir, _proc: proc };
        assert!(
            eventually(Duration::from_secs(10), || b
                .birdc(&["show", "status"])
                .contains("Daemon is up")),
            "BIRD did not start (config error?)"
        );
        b
    }

    fn birdc(&self, args: &[&str]) -> String {
        output(
            std::process::Command::new("birdc")
                .arg("-s")
                .arg(self.dir.path("bird.ctl"))
                .args(args),
        )
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
    let topo = Topo::with_tag("wbf");
    let bird = Arc::new(BirdBfd::start(&topo.peer));
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
    let median = (sorted[ROUNDS / 2 - 1] + sorted[ROUNDS / 2]) / 2;
    let worst = sorted[ROUNDS - 1];
    eprintln!(
        "BFD failover with BIRD over {ROUNDS} rounds: median {median:?}, worst {worst:?}, all {times:?}"
    );
    assert!(worst <= Duration::from_millis(1500), "worst {worst:?}");
    assert!(median <= Duration::from_millis(1200), "median {median:?}");
    drop(bird);
}

async fn scenario(bird: Arc<BirdBfd>, peer_ns: Arc<Netns>) -> Vec<Duration> {
    let (h, mut rx) = Speaker::spawn(our_config()).unwrap();
    let mut table = HashMap::new();
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        assert!(
            wait_up(&h, Duration::from_secs(30)).await,
            "round {round}: BGP and BFD never both up: {:?}",
            h.peers().await
        );
        assert!(
            until(&mut rx, &mut table, Duration::from_secs(15), |t| t
                .contains_key(&p(PEER_ROUTE4)))
            .await,
            "round {round}: BIRD's route never arrived"
        );
        if round == 0 {
            let b = bird.clone();
            let sessions =
                tokio::task::spawn_blocking(move || b.birdc(&["show", "bfd", "sessions"]))
                    .await
                    .unwrap();
            assert!(
                sessions.contains(US4) && sessions.contains("Up"),
                "BIRD's BFD session is not Up: {sessions}"
            );
        }
        // BIRD goes silent; the link stays up.
        let ns = peer_ns.clone();
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || blackhole(&ns, true))
            .await
            .unwrap();
        assert!(
            until(&mut rx, &mut table, Duration::from_secs(10), |t| !t
                .contains_key(&p(PEER_ROUTE4)))
            .await,
            "round {round}: BIRD's route still there 10 s after it went silent"
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
