//! FSM unit tests: events in, `matches!` on the outputs.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::*;
use crate::wire::Update;

mod collision;
mod errors;
mod established;
mod graceful_restart;
mod lifecycle;
mod open;
mod timers;

const OUT: ConnId = ConnId(1);
const IN: ConnId = ConnId(2);

fn cfg() -> SessionConfig {
    SessionConfig {
        local_asn: 65000,
        peer_asn: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        hold_time: 9,
        connect_retry: Duration::from_secs(5),
        passive: false,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        graceful_restart: Some(GrConfig {
            restart_time: 120,
            restarting: false,
        }),
        extended_next_hop: true,
        backoff: Backoff::default(),
        seed: 42,
    }
}

fn open(asn: u32, hold: u16, id: [u8; 4]) -> Open {
    Open {
        asn,
        hold_time: hold,
        router_id: Ipv4Addr::from(id),
        caps: vec![
            Capability::FourOctetAs(asn),
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
        ],
    }
}

fn gr_open(fwd: bool) -> Open {
    let mut o = open(65000, 9, [10, 0, 0, 2]);
    o.caps.push(Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: false,
        restart_time: 30,
        families: vec![(Family::Ipv4Unicast, fwd), (Family::Ipv6Unicast, fwd)],
    }));
    o
}

fn rx(conn: ConnId, msg: Message) -> Input {
    Input::Received { conn, msg }
}

fn sends(out: &[Output], conn: ConnId) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, msg } if *c == conn => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn notif(out: &[Output], conn: ConnId) -> Option<(u8, u8)> {
    sends(out, conn).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn connected(conn: ConnId, outgoing: bool) -> Input {
    Input::Connected { conn, outgoing }
}

/// A fresh session, started and connected over an outgoing connection
/// (OpenSent).
fn open_sent(cfg: SessionConfig) -> (Session, Instant) {
    let t = Instant::now();
    let mut s = Session::new(cfg);
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(t, connected(OUT, true));
    (s, t)
}

/// Drives a fresh session to Established over an outgoing connection.
fn up_with(cfg: SessionConfig, peer: Open) -> (Session, Instant) {
    let (mut s, t) = open_sent(cfg);
    let _ = s.handle(t, rx(OUT, Message::Open(peer)));
    let out = s.handle(t, rx(OUT, Message::Keepalive));
    assert!(
        matches!(out.as_slice(), [Output::Established { conn: OUT, .. }, ..]),
        "{out:?}"
    );
    (s, t)
}

fn up() -> (Session, Instant) {
    up_with(cfg(), open(65000, 9, [10, 0, 0, 2]))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn inputs_and_outputs_serialize_for_golden_files() {
    let i = Input::Received {
        conn: OUT,
        msg: Message::Keepalive,
    };
    let j = serde_json_like(&i);
    assert!(j.contains("Keepalive"));
}

fn serde_json_like<T: Serialize>(v: &T) -> String {
    // toml cannot encode enums at the top level; wrap in a table.
    #[derive(Serialize)]
    struct W<'a, T> {
        v: &'a T,
    }
    toml::to_string(&W { v }).unwrap()
}
