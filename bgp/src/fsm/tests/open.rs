//! The OPEN exchange and what the session negotiates from it.

use super::*;

#[test]
fn connected_sends_open_with_our_capabilities() {
    let t = Instant::now();
    let mut s = Session::new(cfg());
    let _ = s.handle(t, Input::Start);
    let out = s.handle(t, connected(OUT, true));
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
    let (mut s, t) = open_sent(cfg());
    assert_eq!(s.poll_timeout(), Some(t + secs(240)));
    let out = s.handle(t + secs(240), Input::Tick);
    assert_eq!(notif(&out, OUT), Some((4, 0)));
}

#[test]
fn valid_open_sends_keepalive_and_confirms() {
    let (mut s, t) = open_sent(cfg());
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
        let (mut s, t) = open_sent(cfg());
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
    let (mut s, t) = open_sent(cfg());
    let out = s.handle(t, rx(OUT, Message::Open(open(65099, 9, [10, 0, 0, 2]))));
    assert_eq!(notif(&out, OUT), Some((2, 2)));
}

#[test]
fn our_own_router_id_is_refused_with_2_3() {
    let (mut s, t) = open_sent(cfg());
    let out = s.handle(t, rx(OUT, Message::Open(open(65000, 9, [10, 0, 0, 1]))));
    assert_eq!(notif(&out, OUT), Some((2, 3)));
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
