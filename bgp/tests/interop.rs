//! Our speaker against real BIRD 2, FRR and GoBGP, each in a namespace pair
//! the test creates: iBGP and eBGP sessions, routes both ways over IPv4 and
//! IPv6 (MP-BGP), withdrawal, hold timer expiry on a frozen (SIGSTOP) peer
//! and recovery, TCP MD5 matching and mismatching.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use netsim::netns::{Netns, privileged_or_skip};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle};

const OUR_ASN: u32 = 64512;
const OUR_ROUTE4: &str = "10.244.1.0/24";
const OUR_ROUTE6: &str = "fd00:244:0:1::/64";

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn our_config(peer_asn: u32, password: Option<&str>, v6_transport: bool) -> SpeakerConfig {
    let (peer, local) = if v6_transport {
        (PEER6, US6)
    } else {
        (PEER4, US4)
    };
    let bgp = BgpConfig {
        asn: OUR_ASN,
        router_id: None,
        listen_port: 179,
        listen_addresses: vec![],
        hold_time: 3,
        graceful_restart: true,
        restart_time: 30,
        connect_retry: 1,
        cluster_id: None,
        next_hop_v4: v6_transport.then(|| US4.parse().unwrap()),
        next_hop_v6: Some(US6.parse().unwrap()),
        communities: vec![],
        multipath: false,
        bfd: Default::default(),
        peers: vec![PeerConfig {
            password: password.map(str::to_owned),
            local_address: Some(ip(local)),
            ..PeerConfig::new(ip(peer), peer_asn)
        }],
    };
    let mut c = SpeakerConfig::new(
        bgp,
        US4.parse::<Ipv4Addr>().unwrap(),
        vec![p("10.244.0.0/16"), p("fd00:244::/48")],
    );
    c.max_backoff = Duration::from_secs(2);
    c
}

/// Our view of the routes, built from the events.
struct Routes {
    rx: mpsc::Receiver<Vec<RouteEvent>>,
    table: HashMap<Prefix, Vec<IpAddr>>,
}

impl Routes {
    async fn until(
        &mut self,
        within: Duration,
        what: &str,
        f: impl Fn(&HashMap<Prefix, Vec<IpAddr>>) -> bool,
    ) {
        let end = tokio::time::Instant::now() + within;
        while !f(&self.table) {
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(batch)) => {
                    for e in batch {
                        match e {
                            RouteEvent::Reachable { prefix, next_hops } => {
                                self.table.insert(prefix, next_hops);
                            }
                            RouteEvent::Unreachable { prefix } => {
                                self.table.remove(&prefix);
                            }
                            RouteEvent::EndOfRib { .. } => {}
                        }
                    }
                }
                _ => panic!("timed out waiting for {what}; table {:?}", self.table),
            }
        }
    }
}

fn has(t: &HashMap<Prefix, Vec<IpAddr>>, prefix: &str, nh: &str) -> bool {
    t.get(&p(prefix)).is_some_and(|n| n == &vec![ip(nh)])
}

async fn state(h: &SpeakerHandle) -> State {
    h.peers().await.unwrap()[0].state
}

async fn wait_state(h: &SpeakerHandle, within: Duration, f: impl Fn(State) -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f(state(h).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Polls a blocking daemon query without stalling the runtime.
async fn daemon_has<D: Daemon + Sync>(
    d: &Arc<D>,
    prefix: &'static str,
    nh: &'static str,
    within: Duration,
) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let d2 = d.clone();
        if tokio::task::spawn_blocking(move || d2.has_route(prefix, nh))
            .await
            .unwrap()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

struct Case {
    ebgp: bool,
    password: Option<&'static str>,
    ipv6_at_peer: bool,
    freeze: bool,
    v6_transport: bool,
}

fn run<D: Daemon + Sync>(test: &str, start: fn(&Netns, &PeerOpts) -> D, case: Case) {
    if !privileged_or_skip(test, &["bird", "birdc", "vtysh", "gobgpd", "gobgp"]) {
        return;
    }
    let topo = Topo::new();
    let peer_asn = if case.ebgp { 65010 } else { OUR_ASN };
    let opts = PeerOpts {
        asn: peer_asn,
        our_asn: OUR_ASN,
        password: case.password.map(str::to_owned),
        hold: 3,
        ipv6: case.ipv6_at_peer,
        v6_transport: case.v6_transport,
        graceful_restart: false,
    };
    let daemon = Arc::new(start(&topo.peer, &opts));
    let name = daemon.name();
    topo.us
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(scenario(daemon, name, peer_asn, case));
        })
        .unwrap();
}

async fn scenario<D: Daemon + Sync>(daemon: Arc<D>, name: &str, peer_asn: u32, case: Case) {
    let (h, rx) = Speaker::spawn(our_config(peer_asn, case.password, case.v6_transport)).unwrap();
    let mut routes = Routes {
        rx,
        table: HashMap::new(),
    };
    h.announce(vec![p(OUR_ROUTE4), p(OUR_ROUTE6)])
        .await
        .unwrap();
    assert!(
        wait_state(&h, Duration::from_secs(20), |s| s == State::Established).await,
        "{name}: never Established: {:?}",
        h.peers().await
    );
    // The peer's routes arrive as events, with the peer's next hops.
    routes
        .until(Duration::from_secs(15), "the peer's IPv4 route", |t| {
            has(t, PEER_ROUTE4, PEER4)
        })
        .await;
    if case.ipv6_at_peer {
        routes
            .until(Duration::from_secs(15), "the peer's IPv6 route", |t| {
                has(t, PEER_ROUTE6, PEER6)
            })
            .await;
    }
    // Ours are in the peer's table with our next hops.
    assert!(
        daemon_has(&daemon, OUR_ROUTE4, US4, Duration::from_secs(15)).await,
        "{name}: our IPv4 route missing"
    );
    if case.ipv6_at_peer {
        assert!(
            daemon_has(&daemon, OUR_ROUTE6, US6, Duration::from_secs(15)).await,
            "{name}: our IPv6 route missing"
        );
    }
    // The peer withdraws: the route goes.
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.withdraw(PEER_ROUTE4))
        .await
        .unwrap();
    routes
        .until(Duration::from_secs(15), "the withdrawal", |t| {
            !t.contains_key(&p(PEER_ROUTE4))
        })
        .await;

    if case.freeze {
        // SIGSTOP: the hold timer (3 s) tears the session down and the
        // peer's remaining routes go with it.
        let frozen = Instant::now();
        signal(daemon.pid(), "STOP");
        routes
            .until(Duration::from_secs(8), "hold-timer teardown", |t| {
                !t.contains_key(&p(PEER_ROUTE6))
            })
            .await;
        let took = frozen.elapsed();
        assert!(
            state(&h).await != State::Established,
            "{name}: still Established after {took:?}"
        );
        assert!(
            took >= Duration::from_secs(2) && took <= Duration::from_secs(6),
            "{name}: teardown took {took:?}"
        );
        let st = h.peers().await.unwrap();
        assert!(
            st[0]
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("HoldExpired"),
            "{st:?}"
        );
        // Thawed, the peer comes back and so do its routes.
        signal(daemon.pid(), "CONT");
        assert!(
            wait_state(&h, Duration::from_secs(30), |s| s == State::Established).await,
            "{name}: no recovery after SIGCONT"
        );
        routes
            .until(Duration::from_secs(15), "routes after recovery", |t| {
                has(t, PEER_ROUTE6, PEER6)
            })
            .await;
    }
    h.shutdown(false).await.unwrap();
}

fn mismatch<D: Daemon + Sync>(test: &str, start: fn(&Netns, &PeerOpts) -> D) {
    if !privileged_or_skip(test, &["bird", "birdc", "vtysh", "gobgpd", "gobgp"]) {
        return;
    }
    let topo = Topo::new();
    let opts = PeerOpts {
        asn: OUR_ASN,
        our_asn: OUR_ASN,
        password: Some("right-key".into()),
        hold: 3,
        ipv6: false,
        v6_transport: false,
        graceful_restart: false,
    };
    let daemon = start(&topo.peer, &opts);
    let name = daemon.name();
    topo.us
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (h, _rx) =
                    Speaker::spawn(our_config(OUR_ASN, Some("wrong-key"), false)).unwrap();
                let ever = wait_state(&h, Duration::from_secs(6), |s| s >= State::OpenSent).await;
                assert!(
                    !ever,
                    "{name}: a session with mismatched MD5 keys got to OpenSent"
                );
                h.shutdown(false).await.unwrap();
            });
            drop(daemon);
        })
        .unwrap();
}

// ---- BIRD 2 ----

#[test]
fn bird_ibgp_routes_withdraw_hold_timer_and_recovery() {
    let case = Case {
        ebgp: false,
        password: None,
        ipv6_at_peer: true,
        freeze: true,
        v6_transport: false,
    };
    run("bird_ibgp", Bird::start, case);
}

#[test]
fn bird_ebgp_with_md5() {
    let case = Case {
        ebgp: true,
        password: Some("s3cret"),
        ipv6_at_peer: true,
        freeze: false,
        v6_transport: false,
    };
    run("bird_ebgp_md5", Bird::start, case);
}

/// The session itself over IPv6 (with MD5 on the IPv6 listener), carrying
/// IPv4 and IPv6 routes.
#[test]
fn bird_ibgp_over_ipv6_transport_with_md5() {
    let case = Case {
        ebgp: false,
        password: Some("s3cret6"),
        ipv6_at_peer: true,
        freeze: false,
        v6_transport: true,
    };
    run("bird_ibgp_v6_transport", Bird::start, case);
}

#[test]
fn bird_md5_mismatch_never_establishes() {
    mismatch("bird_md5_mismatch", Bird::start);
}

// ---- FRR ----

#[test]
fn frr_ibgp_routes_withdraw_hold_timer_and_recovery() {
    let case = Case {
        ebgp: false,
        password: None,
        ipv6_at_peer: true,
        freeze: true,
        v6_transport: false,
    };
    run("frr_ibgp", Frr::start, case);
}

#[test]
fn frr_ebgp_with_md5() {
    let case = Case {
        ebgp: true,
        password: Some("s3cret"),
        ipv6_at_peer: true,
        freeze: false,
        v6_transport: false,
    };
    run("frr_ebgp_md5", Frr::start, case);
}

#[test]
fn frr_md5_mismatch_never_establishes() {
    mismatch("frr_md5_mismatch", Frr::start);
}

// ---- GoBGP ----

#[test]
fn gobgp_ibgp_routes_withdraw_hold_timer_and_recovery() {
    let case = Case {
        ebgp: false,
        password: None,
        ipv6_at_peer: true,
        freeze: true,
        v6_transport: false,
    };
    run("gobgp_ibgp", Gobgp::start, case);
}

/// GoBGP negotiates IPv4 only while we advertise GR for IPv4 and IPv6: the
/// first advertisement must not stall waiting for an IPv6 End-of-RIB.
#[test]
fn gobgp_ebgp_md5_ipv4_only_peer_gets_our_routes() {
    let case = Case {
        ebgp: true,
        password: Some("s3cret"),
        ipv6_at_peer: false,
        freeze: false,
        v6_transport: false,
    };
    run("gobgp_ebgp_md5_v4only", Gobgp::start, case);
}

#[test]
fn gobgp_md5_mismatch_never_establishes() {
    mismatch("gobgp_md5_mismatch", Gobgp::start);
}
