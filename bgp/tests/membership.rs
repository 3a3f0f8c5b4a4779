//! Peers added to and removed from a running speaker (what a config
//! reload does), over real TCP on loopback: 127.0.0.1 (A) runs with peer
//! 127.0.0.2 (B) and gains, then loses, peer 127.0.0.3 (C); the A-B
//! session must not notice.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{collect_until, free_port};
use weft_bgp::fsm::State;
use weft_bgp::{
    BgpConfig, Error, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn peer(me: &str, addr: &str, port: u16) -> PeerConfig {
    PeerConfig {
        port,
        local_address: Some(ip(me)),
        ..PeerConfig::new(ip(addr), 64512)
    }
}

fn cfg(me: &str, peers: &[&str], port: u16) -> SpeakerConfig {
    let mut bgp = BgpConfig::new(64512, peers.iter().map(|a| peer(me, a, port)).collect());
    bgp.listen_port = port;
    bgp.listen_addresses = vec![ip(me)];
    bgp.hold_time = 9;
    bgp.connect_retry = 1;
    let IpAddr::V4(rid) = ip(me) else {
        panic!("IPv4 only")
    };
    let mut c = SpeakerConfig::new(bgp, rid, vec![p("10.0.0.0/8")]);
    c.max_backoff = Duration::from_secs(2);
    c
}

async fn state_of(h: &SpeakerHandle, addr: &str) -> Option<State> {
    let peers = h.peers().await.unwrap();
    peers
        .iter()
        .find(|s| s.address == ip(addr))
        .map(|s| s.state)
}

async fn wait_state(h: &SpeakerHandle, addr: &str, want: State, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if state_of(h, addr).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_peer_added_and_removed_at_runtime_leaves_the_others_alone() {
    let port = free_port();
    let (a, mut ra) = Speaker::spawn(cfg("127.0.0.1", &["127.0.0.2"], port)).unwrap();
    let (b, mut rb) = Speaker::spawn(cfg("127.0.0.2", &["127.0.0.1"], port)).unwrap();
    let (c, _rc) = Speaker::spawn(cfg("127.0.0.3", &["127.0.0.1"], port)).unwrap();
    a.announce(vec![p("10.244.1.0/24")]).await.unwrap();
    c.announce(vec![p("10.244.3.0/24")]).await.unwrap();
    let secs = Duration::from_secs(10);
    assert!(wait_state(&a, "127.0.0.2", State::Established, secs).await);
    let got = collect_until(&mut rb, secs, |e| !e.is_empty()).await;
    assert!(
        got.iter()
            .any(|e| matches!(e, RouteEvent::Reachable { .. }))
    );

    // C is refused until A knows it; then both ends establish.
    a.add_peer(peer("127.0.0.1", "127.0.0.3", port))
        .await
        .unwrap();
    assert!(wait_state(&a, "127.0.0.3", State::Established, secs).await);
    let got = collect_until(&mut ra, secs, |e| {
        e.iter().any(
            |e| matches!(e, RouteEvent::Reachable { prefix, .. } if *prefix == p("10.244.3.0/24")),
        )
    })
    .await;
    assert!(
        got.contains(&RouteEvent::Reachable {
            prefix: p("10.244.3.0/24"),
            next_hops: vec![ip("127.0.0.3")]
        }),
        "{got:?}"
    );
    assert!(matches!(
        a.add_peer(peer("127.0.0.1", "127.0.0.3", port)).await,
        Err(Error::PeerExists(_))
    ));

    // Removing C withdraws its route at A and ends its session.
    a.remove_peer(ip("127.0.0.3")).await.unwrap();
    let got = collect_until(&mut ra, secs, |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.3.0/24")
        }]
    );
    assert_eq!(state_of(&a, "127.0.0.3").await, None);
    assert!(matches!(
        a.remove_peer(ip("127.0.0.3")).await,
        Err(Error::NoSuchPeer(_))
    ));
    let end = Instant::now() + secs;
    while state_of(&c, "127.0.0.1").await == Some(State::Established) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(state_of(&c, "127.0.0.1").await, Some(State::Established));

    // B saw nothing of this: its session never dropped, no withdrawal.
    let st = b.peers().await.unwrap();
    assert_eq!(st[0].state, State::Established);
    assert_eq!(st[0].last_error, None, "{st:?}");
    let got = collect_until(&mut rb, Duration::from_millis(500), |_| false).await;
    assert!(got.is_empty(), "B saw {got:?}");
    for h in [a, b, c] {
        h.shutdown(false).await.unwrap();
    }
}
