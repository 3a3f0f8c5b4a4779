//! 100 000 IPv4 /26 prefixes announced by our speaker arrive at real BIRD 2
//! and FRR peers, and all of them leave again on withdrawal. Neither peer
//! negotiates extended messages (RFC 8654), so each would answer an UPDATE
//! over 4096 bytes with NOTIFICATION 1/2 and drop the session: the test also
//! checks that the one session stayed up from first to last prefix.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use netsim::netns::privileged_or_skip;
use weft_bgp::fsm::State;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, Speaker, SpeakerConfig, SpeakerHandle};

const ASN: u32 = 64512;
const N: u32 = 100_000;

fn config() -> SpeakerConfig {
    let bgp = BgpConfig {
        hold_time: 30,
        graceful_restart: false,
        restart_time: 30,
        connect_retry: 1,
        ..BgpConfig::new(
            ASN,
            vec![PeerConfig {
                local_address: Some(ip(US4)),
                ..PeerConfig::new(ip(PEER4), ASN)
            }],
        )
    };
    SpeakerConfig::new(
        bgp,
        US4.parse::<Ipv4Addr>().unwrap(),
        vec!["10.0.0.0/8".parse().unwrap()],
    )
}

fn prefixes() -> Vec<Prefix> {
    (0..N)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect()
}

async fn established(h: &SpeakerHandle, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if h.peers().await.unwrap()[0].state == State::Established {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Polls `count` (a blocking daemon query) until it returns `want`.
async fn until_count(
    count: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
    want: usize,
    within: Duration,
) -> (bool, Option<usize>) {
    let end = Instant::now() + within;
    let mut last = None;
    while Instant::now() < end {
        let c = count.clone();
        last = tokio::task::spawn_blocking(move || c()).await.unwrap();
        if last == Some(want) {
            return (true, last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (false, last)
}

async fn scenario(name: &str, count: Arc<dyn Fn() -> Option<usize> + Send + Sync>) {
    let (h, _rx) = Speaker::spawn(config()).unwrap();
    assert!(
        established(&h, Duration::from_secs(20)).await,
        "{name}: never Established: {:?}",
        h.peers().await
    );
    let t0 = Instant::now();
    h.announce(prefixes()).await.unwrap();
    let (ok, got) = until_count(count.clone(), N as usize, Duration::from_secs(90)).await;
    assert!(ok, "{name} holds {got:?} of {N} prefixes");
    eprintln!("{name}: {N} prefixes arrived in {:?}", t0.elapsed());
    let st = &h.peers().await.unwrap()[0];
    assert_eq!(st.state, State::Established, "{name}: {st:?}");
    assert!(st.last_error.is_none(), "{name}: session reset: {st:?}");
    assert_eq!(st.routes_advertised, N as usize, "{name}: {st:?}");

    let t0 = Instant::now();
    h.withdraw(prefixes()).await.unwrap();
    let (ok, got) = until_count(count, 0, Duration::from_secs(90)).await;
    assert!(
        ok,
        "{name} still holds {got:?} prefixes after the withdrawal"
    );
    eprintln!("{name}: {N} withdrawn in {:?}", t0.elapsed());
    let st = &h.peers().await.unwrap()[0];
    assert!(st.last_error.is_none(), "{name}: session reset: {st:?}");
    h.shutdown(false).await.unwrap();
}

fn opts() -> PeerOpts {
    PeerOpts {
        asn: ASN,
        our_asn: ASN,
        password: None,
        hold: 30,
        ipv6: false,
        v6_transport: false,
        graceful_restart: false,
    }
}

fn run(name: &'static str, topo: &Topo, count: Arc<dyn Fn() -> Option<usize> + Send + Sync>) {
    topo.us
        .run_in(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(scenario(name, count));
        })
        .unwrap();
}

#[test]
fn bird_receives_100k_prefixes_in_4096_byte_updates() {
    if !privileged_or_skip("bird_receives_100k_prefixes", &["bird", "birdc"]) {
        return;
    }
    let topo = Topo::with_tag("bs");
    let bird = Arc::new(Bird::start(&topo.peer, &opts()));
    let b = bird.clone();
    run("BIRD", &topo, Arc::new(move || b.routes_from_us()));
}

#[test]
fn frr_receives_100k_prefixes_in_4096_byte_updates() {
    if !privileged_or_skip("frr_receives_100k_prefixes", &["vtysh"]) {
        return;
    }
    let topo = Topo::with_tag("bs");
    let frr = Arc::new(Frr::start(&topo.peer, &opts()));
    let f = frr.clone();
    run("FRR", &topo, Arc::new(move || f.routes_from_us()));
}
