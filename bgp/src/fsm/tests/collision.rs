//! Connection collisions (RFC 4271 §6.8) and extra connections.

use super::*;

fn collide(local_id: [u8; 4], peer_id: [u8; 4]) -> (Session, Vec<Output>) {
    let (mut s, t) = open_sent(SessionConfig {
        router_id: Ipv4Addr::from(local_id),
        ..cfg()
    });
    let _ = s.handle(t, connected(IN, false));
    let _ = s.handle(t, rx(OUT, Message::Open(open(65000, 9, peer_id))));
    let out = s.handle(t, rx(IN, Message::Open(open(65000, 9, peer_id))));
    (s, out)
}

#[test]
fn collision_with_higher_local_id_keeps_our_connection() {
    let (mut s, out) = collide([10, 0, 0, 9], [10, 0, 0, 2]);
    assert_eq!(notif(&out, IN), Some((6, 7)));
    assert!(out.iter().any(|o| matches!(o, Output::Close { conn: IN })));
    let out = s.handle(Instant::now(), rx(OUT, Message::Keepalive));
    assert!(matches!(
        out.as_slice(),
        [Output::Established { conn: OUT, .. }]
    ));
}

#[test]
fn collision_with_lower_local_id_keeps_their_connection() {
    let (mut s, out) = collide([10, 0, 0, 1], [10, 0, 0, 2]);
    assert_eq!(notif(&out, OUT), Some((6, 7)));
    assert!(out.iter().any(|o| matches!(o, Output::Close { conn: OUT })));
    assert!(sends(&out, IN).contains(&Message::Keepalive));
    let out = s.handle(Instant::now(), rx(IN, Message::Keepalive));
    assert!(matches!(
        out.as_slice(),
        [Output::Established { conn: IN, .. }]
    ));
}

#[test]
fn collision_with_an_established_session_closes_the_newcomer() {
    let (mut s, t) = up_with(
        SessionConfig {
            graceful_restart: None,
            ..cfg()
        },
        open(65000, 9, [10, 0, 0, 2]),
    );
    let _ = s.handle(t, connected(IN, false));
    let out = s.handle(t, rx(IN, Message::Open(open(65000, 9, [10, 0, 0, 2]))));
    assert_eq!(notif(&out, IN), Some((6, 7)));
    assert_eq!(s.established_conn(), Some(OUT));
}

#[test]
fn a_third_connection_is_refused() {
    let (mut s, t) = open_sent(cfg());
    let _ = s.handle(t, connected(IN, false));
    let out = s.handle(t, connected(ConnId(3), false));
    assert!(matches!(
        out.as_slice(),
        [Output::Close { conn: ConnId(3) }]
    ));
}
