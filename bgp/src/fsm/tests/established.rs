//! Messages passed on in Established, and the session going down.

use super::*;

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
fn events_for_unknown_connections_are_ignored() {
    let (mut s, t) = up();
    assert!(s.handle(t, rx(ConnId(99), Message::Keepalive)).is_empty());
    assert!(s.handle(t, Input::Closed { conn: ConnId(99) }).is_empty());
    assert_eq!(s.state(), State::Established);
}
