//! Graceful restart (RFC 4724): helping a restarting peer, and restarting ourselves.

use super::*;
use crate::wire::MpUnreach;

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
    let _ = s.handle(t2, connected(IN, true));
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
    let _ = s.handle(t2, connected(IN, true));
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
    let out = s.handle(t2, connected(IN, true));
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
    let out = s.handle(t, connected(OUT, true));
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
fn a_gr_peer_reconnecting_replaces_the_old_session() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t, connected(IN, false));
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
