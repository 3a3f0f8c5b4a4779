//! FSM unit tests: events in, `matches!` on the outputs.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::*;
use crate::wire::{DecodeError, MpUnreach, Update};

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

/// Drives a fresh session to Established over an outgoing connection.
fn up_with(cfg: SessionConfig, peer: Open) -> (Session, Instant) {
    let t = Instant::now();
    let mut s = Session::new(cfg);
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
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
fn new_session_is_idle_without_timers() {
    let s = Session::new(cfg());
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn start_connects_and_arms_connect_retry() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let out = s.handle(t, Input::Start);
    assert!(matches!(out.as_slice(), [Output::Connect]));
    assert_eq!(s.state(), State::Connect);
    assert_eq!(s.poll_timeout(), Some(t + secs(5)));
}

#[test]
fn passive_start_waits_in_active() {
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let out = s.handle(Instant::now(), Input::Start);
    assert!(out.is_empty());
    assert_eq!(s.state(), State::Active);
}

#[test]
fn connected_sends_open_with_our_capabilities() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let out = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let [
        Output::Send {
            conn: OUT,
            msg: Message::Open(o),
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!((o.asn, o.hold_time), (65000, 9));
    assert!(o.four_octet_as() && o.route_refresh() && o.extended_next_hop_v4());
    assert_eq!(o.families(), vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    let gr = o.graceful_restart().unwrap();
    assert!(!gr.restarting && gr.restart_time == 120);
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn open_sent_uses_a_large_hold_timer() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    assert_eq!(s.poll_timeout(), Some(t + secs(240)));
    let out = s.handle(t + secs(240), Input::Tick);
    assert_eq!(notif(&out, OUT), Some((4, 0)));
}

#[test]
fn valid_open_sends_keepalive_and_confirms() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let out = s.handle(t, rx(OUT, Message::Open(open(65000, 9, [10, 0, 0, 2]))));
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            conn: OUT,
            msg: Message::Keepalive
        }]
    ));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn keepalive_in_open_confirm_establishes() {
    let (s, _) = up();
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.established_conn(), Some(OUT));
    let n = s.negotiated().unwrap();
    assert!(n.ibgp && n.caps.four_octet_as && n.route_refresh);
}

#[test]
fn hold_time_is_the_smaller_of_both() {
    let (s, t) = up_with(cfg(), open(65000, 3, [10, 0, 0, 2]));
    assert_eq!(s.negotiated().unwrap().hold_time, 3);
    assert_eq!(s.poll_timeout(), Some(t + secs(1)));
}

#[test]
fn hold_time_of_one_or_two_is_refused_with_2_6() {
    for hold in [1, 2] {
        let t = Instant::now();
        let mut s = Session::new(cfg());
        let _ = s.handle(t, Input::Start);
        let _ = s.handle(
            t,
            Input::Connected {
                conn: OUT,
                outgoing: true,
            },
        );
        let out = s.handle(t, rx(OUT, Message::Open(open(65000, hold, [10, 0, 0, 2]))));
        assert_eq!(notif(&out, OUT), Some((2, 6)));
        assert!(out.iter().any(|o| matches!(o, Output::Close { conn: OUT })));
        assert_eq!(s.state(), State::Active);
    }
}

#[test]
fn hold_time_zero_means_no_timers() {
    let (s, _) = up_with(cfg(), open(65000, 0, [10, 0, 0, 2]));
    assert_eq!(s.negotiated().unwrap().hold_time, 0);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn wrong_peer_as_is_refused_with_2_2() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let out = s.handle(t, rx(OUT, Message::Open(open(65099, 9, [10, 0, 0, 2]))));
    assert_eq!(notif(&out, OUT), Some((2, 2)));
}

#[test]
fn our_own_router_id_is_refused_with_2_3() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let out = s.handle(t, rx(OUT, Message::Open(open(65000, 9, [10, 0, 0, 1]))));
    assert_eq!(notif(&out, OUT), Some((2, 3)));
}

#[test]
fn keepalives_go_out_every_third_of_hold() {
    let (mut s, t) = up();
    assert_eq!(s.poll_timeout(), Some(t + secs(3)));
    let out = s.handle(t + secs(3), Input::Tick);
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            conn: OUT,
            msg: Message::Keepalive
        }]
    ));
    assert_eq!(s.poll_timeout(), Some(t + secs(6)));
}

#[test]
fn hold_expiry_sends_4_0_and_goes_down() {
    let (mut s, t) = up_with(
        SessionConfig {
            graceful_restart: None,
            ..cfg()
        },
        open(65000, 9, [10, 0, 0, 2]),
    );
    let _ = s.handle(t + secs(3), Input::Tick);
    let _ = s.handle(t + secs(6), Input::Tick);
    let out = s.handle(t + secs(9), Input::Tick);
    assert_eq!(notif(&out, OUT), Some((4, 0)));
    assert!(out.iter().any(|o| matches!(o, Output::Down { reason: DownReason::HoldExpired, graceful } if graceful.is_empty())));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn backpressure_keeps_sending_keepalives_and_holds_our_hold_timer() {
    let (mut s, t) = up();
    assert_eq!(s.keepalive_deadline(), Some(t + secs(3)));
    // The driver waits on its consumer for 12 s, past the 9 s hold time,
    // waking at each keepalive deadline.
    for n in [3, 6, 9, 12] {
        let out = s.backpressured(t + secs(n));
        assert!(
            matches!(
                out.as_slice(),
                [Output::Send {
                    conn: OUT,
                    msg: Message::Keepalive
                }]
            ),
            "at {n} s: {out:?}"
        );
        assert_eq!(s.keepalive_deadline(), Some(t + secs(n + 3)));
    }
    // Back to normal: the hold timer runs from the last backpressured call.
    let out = s.handle(t + secs(13), Input::Tick);
    assert!(notif(&out, OUT).is_none(), "{out:?}");
    assert_eq!(s.state(), State::Established);
    let out = s.handle(t + secs(21), Input::Tick);
    assert_eq!(notif(&out, OUT), Some((4, 0)), "{out:?}");
}

#[test]
fn backpressure_before_a_keepalive_is_due_sends_nothing() {
    let (mut s, t) = up();
    assert!(s.backpressured(t + secs(1)).is_empty());
    assert_eq!(s.keepalive_deadline(), Some(t + secs(3)));
}

#[test]
fn keepalive_restarts_the_hold_timer() {
    let (mut s, t) = up();
    let _ = s.handle(t + secs(3), Input::Tick);
    let _ = s.handle(t + secs(6), Input::Tick);
    let _ = s.handle(t + secs(8), rx(OUT, Message::Keepalive));
    let out = s.handle(t + secs(9), Input::Tick);
    assert!(notif(&out, OUT).is_none());
    assert_eq!(s.state(), State::Established);
}

#[test]
fn update_restarts_hold_and_is_passed_on() {
    let (mut s, t) = up();
    let u = Update::eor(Family::Ipv4Unicast);
    let out = s.handle(t + secs(8), rx(OUT, Message::Update(u.clone())));
    assert!(matches!(
        out.as_slice(),
        [Output::Update(x), Output::EndOfRib(Family::Ipv4Unicast)] if *x == u
    ));
    // An ordinary UPDATE is no End-of-RIB.
    let mut routes = Update::eor(Family::Ipv4Unicast);
    routes.withdrawn = vec!["10.0.0.0/24".parse().unwrap()];
    let out = s.handle(t + secs(8), rx(OUT, Message::Update(routes)));
    assert!(matches!(out.as_slice(), [Output::Update(_)]), "{out:?}");
    let out = s.handle(t + secs(9), Input::Tick);
    assert!(notif(&out, OUT).is_none());
}

#[test]
fn peer_notification_takes_the_session_down() {
    let (mut s, t) = up();
    let out = s.handle(t, rx(OUT, Message::Notification(Notification::new(6, 2))));
    assert!(out.iter().any(|o| matches!(o, Output::Down { reason: DownReason::PeerNotification(n), graceful } if n.code == 6 && graceful.is_empty())));
    assert!(s.negotiated().is_none());
}

#[test]
fn tcp_loss_without_gr_withdraws_everything() {
    let (mut s, t) = up_with(
        SessionConfig {
            graceful_restart: None,
            ..cfg()
        },
        open(65000, 9, [10, 0, 0, 2]),
    );
    let out = s.handle(t, Input::Closed { conn: OUT });
    assert!(out.iter().any(|o| matches!(o, Output::Down { reason: DownReason::ConnectionLost, graceful } if graceful.is_empty())));
}

#[test]
fn manual_stop_sends_cease_2_and_stays_idle() {
    let (mut s, t) = up();
    let out = s.handle(t, Input::Stop);
    assert_eq!(notif(&out, OUT), Some((6, 2)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Down {
            reason: DownReason::Stopped,
            ..
        }
    )));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn stop_while_connecting_cancels_the_attempt() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let out = s.handle(t, Input::Stop);
    assert!(matches!(out.as_slice(), [Output::CancelConnect]));
}

#[test]
fn connect_failure_goes_active_then_retries() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let out = s.handle(t, Input::ConnectFailed);
    assert!(out.is_empty());
    assert_eq!(s.state(), State::Active);
    let when = s.poll_timeout().unwrap();
    assert!(when >= t + secs(3) && when <= t + secs(5), "{:?}", when - t);
    assert!(
        s.handle(when - Duration::from_millis(1), Input::Tick)
            .is_empty()
    );
    let out = s.handle(when, Input::Tick);
    assert!(matches!(out.as_slice(), [Output::Connect]));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn connect_retry_expiry_reconnects() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let out = s.handle(t + secs(5), Input::Tick);
    assert!(matches!(out.as_slice(), [Output::Connect]));
}

#[test]
fn idle_refuses_incoming_connections() {
    let mut s = Session::new(cfg());
    let out = s.handle(
        Instant::now(),
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    assert!(matches!(out.as_slice(), [Output::Close { conn: IN }]));
}

#[test]
fn incoming_connection_in_active_gets_our_open() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let out = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            conn: IN,
            msg: Message::Open(_)
        }]
    ));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn update_in_open_sent_is_fsm_error_5_1() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let out = s.handle(t, rx(OUT, Message::Update(Update::default())));
    assert_eq!(notif(&out, OUT), Some((5, 1)));
}

#[test]
fn update_in_open_confirm_is_fsm_error_5_2() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let _ = s.handle(t, rx(OUT, Message::Open(open(65000, 9, [10, 0, 0, 2]))));
    let out = s.handle(t, rx(OUT, Message::Update(Update::default())));
    assert_eq!(notif(&out, OUT), Some((5, 2)));
}

#[test]
fn open_in_established_is_fsm_error_5_3() {
    let (mut s, t) = up();
    let out = s.handle(t, rx(OUT, Message::Open(open(65000, 9, [10, 0, 0, 2]))));
    assert_eq!(notif(&out, OUT), Some((5, 3)));
    assert!(out.iter().any(|o| matches!(o, Output::Down { .. })));
}

#[test]
fn malformed_update_sends_its_notification() {
    let (mut s, t) = up();
    let out = s.handle(
        t,
        Input::Malformed {
            conn: OUT,
            error: DecodeError::MalformedAttributeList,
        },
    );
    assert_eq!(notif(&out, OUT), Some((3, 1)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Down {
            reason: DownReason::LocalNotification(_),
            ..
        }
    )));
}

#[test]
fn malformed_header_sends_1_2() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let out = s.handle(
        t,
        Input::Malformed {
            conn: OUT,
            error: DecodeError::BadLength(5000),
        },
    );
    assert_eq!(notif(&out, OUT), Some((1, 2)));
}

fn collide(local_id: [u8; 4], peer_id: [u8; 4]) -> (Session, Vec<Output>) {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig {
        router_id: Ipv4Addr::from(local_id),
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let _ = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
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
    let _ = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    let out = s.handle(t, rx(IN, Message::Open(open(65000, 9, [10, 0, 0, 2]))));
    assert_eq!(notif(&out, IN), Some((6, 7)));
    assert_eq!(s.established_conn(), Some(OUT));
}

#[test]
fn a_third_connection_is_refused() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let _ = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    let out = s.handle(
        t,
        Input::Connected {
            conn: ConnId(3),
            outgoing: false,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [Output::Close { conn: ConnId(3) }]
    ));
}

#[test]
fn a_peer_rejecting_our_open_sees_jittered_exponential_backoff() {
    let mut t = Instant::now();
    let mut s = Session::new(SessionConfig {
        connect_retry: secs(1),
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let mut delays = Vec::new();
    for i in 0..8u64 {
        let _ = s.handle(
            t,
            Input::Connected {
                conn: ConnId(10 + i),
                outgoing: true,
            },
        );
        let out = s.handle(
            t,
            rx(
                ConnId(10 + i),
                Message::Notification(Notification::new(2, 2)),
            ),
        );
        assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
        assert_eq!(s.state(), State::Active);
        let next = s.poll_timeout().unwrap();
        delays.push(next - t);
        // Nothing happens before the deadline: no hot loop.
        assert!(
            s.handle(next - Duration::from_millis(1), Input::Tick)
                .is_empty()
        );
        let out = s.handle(next, Input::Tick);
        assert!(matches!(out.as_slice(), [Output::Connect]));
        t = next;
    }
    // 1, 2, 4, 8, 16, 32, 60, 60 seconds, each scaled into [75 %, 100 %].
    let expect = [1, 2, 4, 8, 16, 32, 60, 60];
    for (d, e) in delays.iter().zip(expect) {
        assert!(*d >= secs(e) * 3 / 4 && *d <= secs(e), "{delays:?}");
    }
    assert!(
        delays.windows(2).any(|w| w[0] * 2 != w[1]),
        "jitter missing: {delays:?}"
    );
}

#[test]
fn backoff_resets_once_established() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let _ = s.handle(t, Input::Closed { conn: OUT });
    assert_eq!(s.failures(), 1);
    let _ = s.handle(t + secs(2), Input::Tick);
    let _ = s.handle(
        t + secs(2),
        Input::Connected {
            conn: IN,
            outgoing: true,
        },
    );
    let _ = s.handle(
        t + secs(2),
        rx(IN, Message::Open(open(65000, 9, [10, 0, 0, 2]))),
    );
    let _ = s.handle(t + secs(2), rx(IN, Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.failures(), 0);
}

#[test]
fn families_are_the_intersection() {
    let mut o = open(65000, 9, [10, 0, 0, 2]);
    o.caps
        .retain(|c| !matches!(c, Capability::Multiprotocol { afi: 2, .. }));
    let (s, _) = up_with(cfg(), o);
    assert_eq!(s.negotiated().unwrap().families, vec![Family::Ipv4Unicast]);
}

#[test]
fn a_peer_without_mp_capabilities_speaks_ipv4() {
    let o = Open {
        asn: 65000,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        caps: vec![],
    };
    let (s, _) = up_with(cfg(), o);
    let n = s.negotiated().unwrap();
    assert_eq!(n.families, vec![Family::Ipv4Unicast]);
    assert!(
        !n.caps.four_octet_as && !n.extended_next_hop && !n.route_refresh && n.peer_gr.is_none()
    );
}

#[test]
fn ebgp_is_detected() {
    let (s, _) = up_with(
        SessionConfig {
            peer_asn: 65010,
            ..cfg()
        },
        open(65010, 9, [10, 0, 0, 2]),
    );
    assert!(!s.negotiated().unwrap().ibgp);
}

#[test]
fn extended_next_hop_needs_both_sides() {
    let mut o = open(65000, 9, [10, 0, 0, 2]);
    o.caps.push(Capability::ExtendedNextHop(vec![(1, 1, 2)]));
    let (s, _) = up_with(cfg(), o.clone());
    assert!(s.negotiated().unwrap().extended_next_hop);
    let (s, _) = up_with(
        SessionConfig {
            extended_next_hop: false,
            ..cfg()
        },
        o,
    );
    assert!(!s.negotiated().unwrap().extended_next_hop);
}

#[test]
fn gr_helper_keeps_routes_stale_on_tcp_loss() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let out = s.handle(t, Input::Closed { conn: OUT });
    assert!(out.iter().any(|o| matches!(o, Output::Down { graceful, .. } if graceful == &[Family::Ipv4Unicast, Family::Ipv6Unicast])));
}

#[test]
fn gr_helper_flushes_each_family_on_its_end_of_rib() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t, Input::Closed { conn: OUT });
    let t2 = s.poll_timeout().unwrap();
    let _ = s.handle(t2, Input::Tick);
    let _ = s.handle(
        t2,
        Input::Connected {
            conn: IN,
            outgoing: true,
        },
    );
    let _ = s.handle(t2, rx(IN, Message::Open(gr_open(true))));
    let out = s.handle(t2, rx(IN, Message::Keepalive));
    assert!(
        !out.iter().any(|o| matches!(o, Output::FlushStale(_))),
        "{out:?}"
    );
    let out = s.handle(
        t2,
        rx(IN, Message::Update(Update::eor(Family::Ipv4Unicast))),
    );
    assert!(matches!(
        out.as_slice(),
        [
            Output::FlushStale(Family::Ipv4Unicast),
            Output::Update(_),
            Output::EndOfRib(Family::Ipv4Unicast)
        ]
    ));
    let eor6 = Update {
        mp_unreach: Some(MpUnreach {
            family: Family::Ipv6Unicast,
            withdrawn: vec![],
        }),
        ..Update::default()
    };
    let out = s.handle(t2, rx(IN, Message::Update(eor6)));
    assert!(matches!(
        out.as_slice(),
        [
            Output::FlushStale(Family::Ipv6Unicast),
            Output::Update(_),
            Output::EndOfRib(Family::Ipv6Unicast)
        ]
    ));
}

#[test]
fn gr_helper_flushes_when_the_restart_time_runs_out() {
    let (mut s, t) = up_with(
        SessionConfig {
            passive: true,
            ..cfg()
        },
        gr_open(true),
    );
    let _ = s.handle(t, Input::Closed { conn: OUT });
    assert_eq!(s.poll_timeout(), Some(t + secs(30)));
    let out = s.handle(t + secs(30), Input::Tick);
    assert!(matches!(
        out.as_slice(),
        [
            Output::FlushStale(Family::Ipv4Unicast),
            Output::FlushStale(Family::Ipv6Unicast)
        ]
    ));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn gr_helper_flushes_at_once_when_forwarding_was_not_kept() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t, Input::Closed { conn: OUT });
    let t2 = s.poll_timeout().unwrap();
    let _ = s.handle(t2, Input::Tick);
    let _ = s.handle(
        t2,
        Input::Connected {
            conn: IN,
            outgoing: true,
        },
    );
    let _ = s.handle(t2, rx(IN, Message::Open(gr_open(false))));
    let out = s.handle(t2, rx(IN, Message::Keepalive));
    assert!(matches!(
        out.as_slice(),
        [
            Output::Established { .. },
            Output::FlushStale(Family::Ipv4Unicast),
            Output::FlushStale(Family::Ipv6Unicast)
        ]
    ));
}

#[test]
fn hold_expiry_withdraws_even_with_gr() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t + secs(3), Input::Tick);
    let _ = s.handle(t + secs(6), Input::Tick);
    let out = s.handle(t + secs(9), Input::Tick);
    assert!(out.iter().any(|o| matches!(o, Output::Down { reason: DownReason::HoldExpired, graceful } if graceful.is_empty())));
}

#[test]
fn no_gr_helping_unless_we_advertised_gr() {
    let (mut s, t) = up_with(
        SessionConfig {
            graceful_restart: None,
            ..cfg()
        },
        gr_open(true),
    );
    let out = s.handle(t, Input::Closed { conn: OUT });
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down { graceful, .. } if graceful.is_empty()))
    );
}

#[test]
fn incoming_connection_is_accepted_while_backing_off() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let _ = s.handle(t, rx(OUT, Message::Notification(Notification::new(6, 5))));
    assert_eq!(s.state(), State::Active);
    let out = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            conn: IN,
            msg: Message::Open(_)
        }]
    ));
}

#[test]
fn notification_ends_gr_without_stale_routes() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let out = s.handle(t, rx(OUT, Message::Notification(Notification::new(6, 4))));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down { graceful, .. } if graceful.is_empty()))
    );
}

#[test]
fn restarting_speaker_sets_r_and_f_bits_on_the_first_session_only() {
    let gr = Some(GrConfig {
        restart_time: 60,
        restarting: true,
    });
    let (mut s, t) = up_with(
        SessionConfig {
            graceful_restart: gr,
            ..cfg()
        },
        open(65000, 9, [10, 0, 0, 2]),
    );
    let _ = s.handle(t, Input::Closed { conn: OUT });
    let t2 = s.poll_timeout().unwrap();
    let _ = s.handle(t2, Input::Tick);
    let out = s.handle(
        t2,
        Input::Connected {
            conn: IN,
            outgoing: true,
        },
    );
    let [
        Output::Send {
            msg: Message::Open(o),
            ..
        },
    ] = out.as_slice()
    else {
        panic!()
    };
    assert!(!o.graceful_restart().unwrap().restarting);

    let mut s = Session::new(SessionConfig {
        graceful_restart: gr,
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let out = s.handle(
        t,
        Input::Connected {
            conn: OUT,
            outgoing: true,
        },
    );
    let [
        Output::Send {
            msg: Message::Open(o),
            ..
        },
    ] = out.as_slice()
    else {
        panic!()
    };
    let g = o.graceful_restart().unwrap();
    assert!(g.restarting && g.families.iter().all(|(_, f)| *f));
}

#[test]
fn route_refresh_requests_are_passed_on() {
    let (mut s, t) = up();
    let out = s.handle(
        t,
        rx(
            OUT,
            Message::RouteRefresh(RouteRefresh {
                afi: 2,
                subtype: 0,
                safi: 1,
            }),
        ),
    );
    assert!(matches!(
        out.as_slice(),
        [Output::RouteRefresh(Family::Ipv6Unicast)]
    ));
    let out = s.handle(
        t,
        rx(
            OUT,
            Message::RouteRefresh(RouteRefresh {
                afi: 25,
                subtype: 0,
                safi: 70,
            }),
        ),
    );
    assert!(out.is_empty());
}

#[test]
fn a_gr_peer_reconnecting_replaces_the_old_session() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    let out = s.handle(t, rx(IN, Message::Open(gr_open(true))));
    assert!(out.iter().any(|o| matches!(o, Output::Close { conn: OUT })));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down { graceful, .. } if graceful.len() == 2))
    );
    assert!(sends(&out, IN).contains(&Message::Keepalive));
    let out = s.handle(t, rx(IN, Message::Keepalive));
    assert!(matches!(
        out.first(),
        Some(Output::Established { conn: IN, .. })
    ));
}

#[test]
fn poll_timeout_is_the_earliest_timer() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t, Input::Closed { conn: OUT });
    // Idle hold (≤ 1 s backoff) comes before the 30 s stale timer.
    assert!(s.poll_timeout().unwrap() <= t + secs(1));
}

#[test]
fn passive_peer_returns_to_active_after_a_failure() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(
        t,
        Input::Connected {
            conn: IN,
            outgoing: false,
        },
    );
    let out = s.handle(t, Input::Closed { conn: IN });
    assert!(matches!(out.as_slice(), [Output::Close { conn: IN }]));
    assert_eq!(s.state(), State::Active);
    assert!(s.poll_timeout().is_none());
}

#[test]
fn events_for_unknown_connections_are_ignored() {
    let (mut s, t) = up();
    assert!(s.handle(t, rx(ConnId(99), Message::Keepalive)).is_empty());
    assert!(s.handle(t, Input::Closed { conn: ConnId(99) }).is_empty());
    assert_eq!(s.state(), State::Established);
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
