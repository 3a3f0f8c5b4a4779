//! Two of our speakers over real TCP on loopback (127.0.0.1 and 127.0.0.2).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{collect_until, free_port};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::wire::Family;
use weft_bgp::{BgpConfig, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn speaker_cfg(me: &str, peer: &str, port: u16, password: Option<&str>) -> SpeakerConfig {
    let bgp = BgpConfig {
        listen_port: port,
        listen_addresses: vec![ip(me)],
        hold_time: 9,
        restart_time: 30,
        connect_retry: 1,
        next_hop_v6: Some(format!("fd00::{}", &me[me.len() - 1..]).parse().unwrap()),
        communities: vec!["64512:7".into()],
        ..BgpConfig::new(
            64512,
            vec![PeerConfig {
                port,
                password: password.map(str::to_owned),
                local_address: Some(ip(me)),
                ..PeerConfig::new(ip(peer), 64512)
            }],
        )
    };
    let IpAddr::V4(rid) = ip(me) else { panic!() };
    let mut c = SpeakerConfig::new(bgp, rid, vec![p("10.0.0.0/8"), p("fd00:244::/48")]);
    c.max_backoff = Duration::from_secs(2);
    c
}

async fn wait_established(h: &SpeakerHandle, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if h.peers()
            .await
            .unwrap()
            .iter()
            .all(|s| s.state == State::Established)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Collects every event, markers included, until `f` says done or the
/// time runs out.
async fn collect_all_until(
    rx: &mut mpsc::Receiver<Vec<RouteEvent>>,
    within: Duration,
    mut f: impl FnMut(&[RouteEvent]) -> bool,
) -> Vec<RouteEvent> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while let Some(batch) = rx.recv().await {
            all.extend(batch);
            if f(&all) {
                return;
            }
        }
    })
    .await;
    all
}

fn pair(password_a: Option<&str>, password_b: Option<&str>) -> Pair {
    let port = free_port();
    let (a, ra) = Speaker::spawn(speaker_cfg("127.0.0.1", "127.0.0.2", port, password_a)).unwrap();
    let (b, rb) = Speaker::spawn(speaker_cfg("127.0.0.2", "127.0.0.1", port, password_b)).unwrap();
    Pair { a, ra, b, rb, port }
}

struct Pair {
    a: SpeakerHandle,
    #[allow(dead_code)]
    ra: mpsc::Receiver<Vec<RouteEvent>>,
    b: SpeakerHandle,
    rb: mpsc::Receiver<Vec<RouteEvent>>,
    port: u16,
}

#[tokio::test]
async fn announce_and_withdraw_between_two_speakers() {
    let mut t = pair(None, None);
    assert!(wait_established(&t.a, Duration::from_secs(10)).await);
    assert!(wait_established(&t.b, Duration::from_secs(10)).await);
    t.a.announce(vec![
        p("10.244.1.0/24"),
        p("fd00:244:0:1::/64"),
        p("192.168.0.0/24"),
    ])
    .await
    .unwrap();
    let got = collect_until(&mut t.rb, Duration::from_secs(5), |e| e.len() >= 2).await;
    assert!(got.contains(&RouteEvent::Reachable {
        prefix: p("10.244.1.0/24"),
        next_hops: vec![ip("127.0.0.1")]
    }));
    assert!(got.contains(&RouteEvent::Reachable {
        prefix: p("fd00:244:0:1::/64"),
        next_hops: vec![ip("fd00::1")]
    }));
    // 192.168.0.0/24 is outside the import list: never an event.
    let st = t.b.peers().await.unwrap();
    assert_eq!(st[0].routes_received, 2);
    assert_eq!(t.a.peers().await.unwrap()[0].routes_advertised, 3);
    t.a.withdraw(vec![p("10.244.1.0/24")]).await.unwrap();
    let got = collect_until(&mut t.rb, Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.1.0/24")
        }]
    );
    // A hard shutdown withdraws the rest at once.
    t.a.shutdown(false).await.unwrap();
    let got = collect_until(&mut t.rb, Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Unreachable {
            prefix: p("fd00:244:0:1::/64")
        }]
    );
    let st = t.b.peers().await.unwrap();
    assert_ne!(st[0].state, State::Established);
    assert!(
        st[0].last_error.as_deref().unwrap().contains("6/2"),
        "{st:?}"
    );
    t.b.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn graceful_restart_keeps_routes_and_end_of_rib_flushes_the_stale_ones() {
    let mut t = pair(None, None);
    assert!(wait_established(&t.b, Duration::from_secs(10)).await);
    t.a.announce(vec![p("10.244.1.0/24"), p("10.244.2.0/24")])
        .await
        .unwrap();
    let got = collect_until(&mut t.rb, Duration::from_secs(5), |e| e.len() >= 2).await;
    assert_eq!(got.len(), 2);
    // A goes away gracefully: B keeps both routes.
    t.a.shutdown(true).await.unwrap();
    let got = collect_until(&mut t.rb, Duration::from_secs(1), |_| true).await;
    assert!(got.is_empty(), "{got:?}");
    // A comes back restarting and only announces one of them. B reports
    // the flush of the other, then End-of-RIB per family, the last one
    // completing A's table.
    let mut cfg = speaker_cfg("127.0.0.1", "127.0.0.2", t.port, None);
    cfg.restarting = true;
    let (a2, _ra2) = Speaker::spawn(cfg).unwrap();
    a2.announce(vec![p("10.244.1.0/24")]).await.unwrap();
    let done = |e: &[RouteEvent]| {
        e.iter()
            .any(|e| matches!(e, RouteEvent::EndOfRib { complete: true, .. }))
    };
    let got = collect_all_until(&mut t.rb, Duration::from_secs(10), done).await;
    let a = ip("127.0.0.1");
    assert_eq!(
        got,
        vec![
            RouteEvent::Unreachable {
                prefix: p("10.244.2.0/24")
            },
            RouteEvent::EndOfRib {
                peer: a,
                family: Family::Ipv4Unicast,
                complete: false
            },
            RouteEvent::EndOfRib {
                peer: a,
                family: Family::Ipv6Unicast,
                complete: true
            },
        ]
    );
    a2.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn md5_matching_establishes_and_mismatch_never_does() {
    let t = pair(Some("s3cret"), Some("s3cret"));
    assert!(wait_established(&t.a, Duration::from_secs(10)).await);
    t.a.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();

    let t = pair(Some("s3cret"), Some("other"));
    assert!(!wait_established(&t.a, Duration::from_secs(4)).await);
    let st = t.b.peers().await.unwrap();
    assert_ne!(st[0].state, State::Established);
    t.a.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();

    let t = pair(Some("s3cret"), None);
    assert!(!wait_established(&t.a, Duration::from_secs(3)).await);
    t.a.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn a_hundred_thousand_prefixes_arrive_in_batches() {
    let mut t = pair(None, None);
    assert!(wait_established(&t.b, Duration::from_secs(10)).await);
    let prefixes: Vec<Prefix> = (0..100_000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect();
    let rss_before = rss_kib();
    let start = Instant::now();
    t.a.announce(prefixes.clone()).await.unwrap();
    let mut n = 0;
    let mut batches = 0;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(b) = t.rb.recv().await {
            n += b
                .iter()
                .filter(|e| matches!(e, RouteEvent::Reachable { .. }))
                .count();
            batches += 1;
            if n >= 100_000 {
                return;
            }
        }
    })
    .await;
    let took = start.elapsed();
    assert_eq!(n, 100_000);
    assert!(batches < 2_000, "{batches} batches: not batched");
    eprintln!(
        "100k prefixes speaker->speaker: {took:?} in {batches} batches; RSS grew {} KiB (both speakers, one process)",
        rss_kib().saturating_sub(rss_before)
    );
    let start = Instant::now();
    t.a.withdraw(prefixes).await.unwrap();
    let mut gone = 0;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(b) = t.rb.recv().await {
            gone += b
                .iter()
                .filter(|e| matches!(e, RouteEvent::Unreachable { .. }))
                .count();
            if gone >= 100_000 {
                return;
            }
        }
    })
    .await;
    assert_eq!(gone, 100_000);
    eprintln!("100k withdrawals: {:?}", start.elapsed());
    t.a.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn route_reflector_reflects_between_clients_with_next_hop_preserved() {
    let port = free_port();
    // R (127.0.0.1) reflects for clients A (127.0.0.2) and B (127.0.0.3).
    let mut r_cfg = speaker_cfg("127.0.0.1", "127.0.0.2", port, None);
    r_cfg.bgp.peers[0].route_reflector_client = true;
    let mut b_peer = r_cfg.bgp.peers[0].clone();
    b_peer.address = ip("127.0.0.3");
    r_cfg.bgp.peers.push(b_peer);
    let (r, _rr) = Speaker::spawn(r_cfg).unwrap();
    let (a, mut ra) = Speaker::spawn(speaker_cfg("127.0.0.2", "127.0.0.1", port, None)).unwrap();
    let (b, mut rb) = Speaker::spawn(speaker_cfg("127.0.0.3", "127.0.0.1", port, None)).unwrap();
    assert!(wait_established(&r, Duration::from_secs(10)).await);
    a.announce(vec![p("10.244.2.0/24")]).await.unwrap();
    b.announce(vec![p("10.244.3.0/24")]).await.unwrap();
    let got = collect_until(&mut rb, Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.2.0/24"),
            next_hops: vec![ip("127.0.0.2")]
        }]
    );
    let got = collect_until(&mut ra, Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.3.0/24"),
            next_hops: vec![ip("127.0.0.3")]
        }]
    );
    a.withdraw(vec![p("10.244.2.0/24")]).await.unwrap();
    let got = collect_until(&mut rb, Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(
        got,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.2.0/24")
        }]
    );
    // Nothing was reflected back to its originator.
    assert_eq!(a.peers().await.unwrap()[0].routes_received, 1);
    for h in [a, b, r] {
        h.shutdown(false).await.unwrap();
    }
}

/// A consumer that stops reading (a slow kernel, a busy control loop) holds
/// back the routes, never the sessions: while B's consumer sleeps past the
/// hold time (9 s) with 100k prefixes queued behind it, B keeps sending
/// KEEPALIVEs and does not time A out for the messages it left unread.
#[tokio::test]
async fn a_stalled_consumer_does_not_drop_the_session() {
    let mut t = pair(None, None);
    assert!(wait_established(&t.a, Duration::from_secs(10)).await);
    assert!(wait_established(&t.b, Duration::from_secs(10)).await);
    let prefixes: Vec<Prefix> = (0..100_000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect();
    t.a.announce(prefixes).await.unwrap();
    // Nobody reads B's events for longer than the hold time.
    tokio::time::sleep(Duration::from_secs(12)).await;
    for h in [&t.a, &t.b] {
        let st = &h.peers().await.unwrap()[0];
        assert_eq!(st.state, State::Established, "{st:?}");
        assert!(st.last_error.is_none(), "session was reset: {st:?}");
    }
    let mut n = 0;
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(b) = t.rb.recv().await {
            n += b
                .iter()
                .filter(|e| matches!(e, RouteEvent::Reachable { .. }))
                .count();
            if n >= 100_000 {
                return;
            }
        }
    })
    .await;
    assert_eq!(n, 100_000);
    t.a.shutdown(false).await.unwrap();
    t.b.shutdown(false).await.unwrap();
}
