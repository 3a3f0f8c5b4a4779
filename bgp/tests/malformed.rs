//! A raw test client sends malformed messages to a running speaker over TCP:
//! each gets the RFC 4271 / RFC 7606 answer, and the speaker keeps serving
//! its other peer meanwhile.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use weft_bgp::fsm::State;
use weft_bgp::wire::{self, Capability, Message, Open, SessionCaps};
use weft_bgp::{BgpConfig, PeerConfig, Prefix, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle};

const CAPS: SessionCaps = SessionCaps {
    four_octet_as: true,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn peer(addr: &str, port: u16, passive: bool) -> PeerConfig {
    PeerConfig {
        port,
        passive,
        local_address: Some(ip("127.0.0.1")),
        ..PeerConfig::new(ip(addr), 64512)
    }
}

fn cfg(me: &str, port: u16, peers: Vec<PeerConfig>) -> SpeakerConfig {
    let bgp = BgpConfig {
        asn: 64512,
        router_id: None,
        listen_port: port,
        listen_addresses: vec![ip(me)],
        hold_time: 9,
        graceful_restart: false,
        restart_time: 0,
        connect_retry: 1,
        cluster_id: None,
        next_hop_v4: None,
        next_hop_v6: None,
        communities: vec![],
        multipath: false,
        bfd: Default::default(),
        peers,
    };
    let IpAddr::V4(id) = ip(me) else { panic!() };
    SpeakerConfig::new(bgp, id, vec![p("10.244.0.0/16")])
}

/// A hand-driven BGP peer.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(from: &str, to: SocketAddr) -> Self {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip(from), 0)).unwrap();
        let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
            .await
            .unwrap()
            .unwrap();
        Self { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    async fn send_msg(&mut self, m: &Message) {
        let mut b = Vec::new();
        wire::encode(m, &CAPS, &mut b);
        self.send(&b).await;
    }

    /// The next message, or `None` on close/timeout.
    async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Ok(Some(n)) = wire::frame_len(&self.buf) {
                let m = wire::decode(&self.buf[..n], &CAPS).unwrap();
                self.buf.drain(..n);
                return Some(m);
            }
            let mut tmp = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(3), self.s.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&tmp[..n]),
                _ => return None,
            }
        }
    }

    /// The next message that is not a KEEPALIVE or an UPDATE.
    async fn recv_notification(&mut self) -> Option<(u8, u8)> {
        loop {
            if let Message::Notification(n) = self.recv().await? {
                return Some((n.code, n.subcode));
            }
        }
    }

    async fn open(&mut self, hold: u16) {
        self.send_msg(&Message::Open(Open {
            asn: 64512,
            hold_time: hold,
            router_id: Ipv4Addr::new(127, 0, 0, 3),
            caps: vec![
                Capability::FourOctetAs(64512),
                Capability::Multiprotocol { afi: 1, safi: 1 },
            ],
        }))
        .await;
    }

    async fn establish(from: &str, to: SocketAddr) -> Self {
        let mut r = Self::connect(from, to).await;
        r.open(9).await;
        assert!(matches!(r.recv().await, Some(Message::Open(_))));
        assert!(matches!(r.recv().await, Some(Message::Keepalive)));
        r.send_msg(&Message::Keepalive).await;
        r
    }
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    frame(2, &b)
}

/// ORIGIN `origin`, empty AS_PATH, NEXT_HOP 127.0.0.3.
fn attrs(origin: u8) -> Vec<u8> {
    vec![0x40, 1, 1, origin, 0x40, 2, 0, 0x40, 3, 4, 127, 0, 0, 3]
}

const NLRI_5: &[u8] = &[24, 10, 244, 5];

/// The next batch of route events (End-of-RIB markers skipped).
async fn next_events(rx: &mut mpsc::Receiver<Vec<RouteEvent>>) -> Vec<RouteEvent> {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(mut e)) => {
                e.retain(|e| !matches!(e, RouteEvent::EndOfRib { .. }));
                if !e.is_empty() {
                    return e;
                }
            }
            _ => return Vec::new(),
        }
    }
}

async fn established(h: &SpeakerHandle, i: usize) -> bool {
    h.peers().await.unwrap()[i].state == State::Established
}

#[tokio::test]
async fn malformed_messages_get_the_rfc_answer_and_other_peers_keep_working() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let me = SocketAddr::new(ip("127.0.0.1"), port);
    // The speaker under test peers with a good speaker (127.0.0.2) and
    // waits for the raw client (127.0.0.3).
    let (s, mut rx) = Speaker::spawn(cfg(
        "127.0.0.1",
        port,
        vec![
            peer("127.0.0.2", port, false),
            peer("127.0.0.3", port, true),
        ],
    ))
    .unwrap();
    let mut good_peer = peer("127.0.0.1", port, false);
    good_peer.local_address = Some(ip("127.0.0.2"));
    let (good, _grx) = Speaker::spawn(cfg("127.0.0.2", port, vec![good_peer])).unwrap();
    good.announce(vec![p("10.244.2.0/24")]).await.unwrap();
    let ev = next_events(&mut rx).await;
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.2.0/24"),
            next_hops: vec![ip("127.0.0.2")]
        }]
    );

    // A valid route from the raw client, then a bad ORIGIN for it:
    // treat-as-withdraw, the session stays up.
    let mut c = Raw::establish("127.0.0.3", me).await;
    c.send(&update(&attrs(0), NLRI_5)).await;
    let ev = next_events(&mut rx).await;
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.5.0/24"),
            next_hops: vec![ip("127.0.0.3")]
        }]
    );
    c.send(&update(&attrs(7), NLRI_5)).await;
    assert_eq!(
        next_events(&mut rx).await,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.5.0/24")
        }]
    );
    // COMMUNITIES of a bad length: treat-as-withdraw too, nothing installed.
    let mut bad_len = attrs(0);
    bad_len.extend_from_slice(&[0xc0, 8, 5, 0, 0, 0, 1, 2]);
    c.send(&update(&bad_len, NLRI_5)).await;
    // The session is still up: a valid UPDATE after it is accepted.
    c.send(&update(&attrs(0), &[24, 10, 244, 6])).await;
    let ev = next_events(&mut rx).await;
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.6.0/24"),
            next_hops: vec![ip("127.0.0.3")]
        }]
    );
    assert!(established(&s, 1).await);

    // Truncated NLRI: 3/10 and the session ends, its routes withdrawn.
    c.send(&update(&attrs(0), &[24, 10, 244])).await;
    assert_eq!(c.recv_notification().await, Some((3, 10)));
    assert_eq!(
        next_events(&mut rx).await,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.6.0/24")
        }]
    );

    // An unknown well-known attribute: 3/2.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Raw::establish("127.0.0.3", me).await;
    let mut unknown = attrs(0);
    unknown.extend_from_slice(&[0x40, 99, 1, 0]);
    c.send(&update(&unknown, NLRI_5)).await;
    assert_eq!(c.recv_notification().await, Some((3, 2)));

    // Attribute block length beyond the message: 3/1.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Raw::establish("127.0.0.3", me).await;
    c.send(&frame(2, &[0, 0, 0, 200, 0x40, 1, 1, 0])).await;
    assert_eq!(c.recv_notification().await, Some((3, 1)));

    // A header length under 19: 1/2.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Raw::establish("127.0.0.3", me).await;
    let mut short = vec![0xff; 16];
    short.extend_from_slice(&[0, 18, 4]);
    c.send(&short).await;
    assert_eq!(c.recv_notification().await, Some((1, 2)));

    // A hold time of 2 in the OPEN: 2/6.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Raw::connect("127.0.0.3", me).await;
    c.open(2).await;
    assert_eq!(c.recv_notification().await, Some((2, 6)));

    // Through all of it the good peer stayed up with its route.
    assert!(established(&s, 0).await);
    let st = s.peers().await.unwrap();
    assert_eq!(st[0].routes_received, 1);
    assert!(st[0].last_error.is_none(), "{st:?}");
    s.shutdown(false).await.unwrap();
    good.shutdown(false).await.unwrap();
}
