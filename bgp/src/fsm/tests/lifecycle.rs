//! Starting, stopping, connecting, retrying and backing off.

use super::*;

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
    let out = s.handle(Instant::now(), connected(IN, false));
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
    let out = s.handle(t, connected(IN, false));
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
fn a_peer_rejecting_our_open_sees_jittered_exponential_backoff() {
    let mut t = Instant::now();
    let mut s = Session::new(SessionConfig {
        connect_retry: secs(1),
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let mut delays = Vec::new();
    for i in 0..8u64 {
        let _ = s.handle(t, connected(ConnId(10 + i), true));
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
    let (mut s, t) = open_sent(cfg());
    let _ = s.handle(t, Input::Closed { conn: OUT });
    assert_eq!(s.failures(), 1);
    let _ = s.handle(t + secs(2), Input::Tick);
    let _ = s.handle(t + secs(2), connected(IN, true));
    let _ = s.handle(
        t + secs(2),
        rx(IN, Message::Open(open(65000, 9, [10, 0, 0, 2]))),
    );
    let _ = s.handle(t + secs(2), rx(IN, Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.failures(), 0);
}

#[test]
fn incoming_connection_is_accepted_while_backing_off() {
    let (mut s, t) = open_sent(cfg());
    let _ = s.handle(t, rx(OUT, Message::Notification(Notification::new(6, 5))));
    assert_eq!(s.state(), State::Active);
    let out = s.handle(t, connected(IN, false));
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            conn: IN,
            msg: Message::Open(_)
        }]
    ));
}

#[test]
fn passive_peer_returns_to_active_after_a_failure() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg()
    });
    let _ = s.handle(t, Input::Start);
    let _ = s.handle(t, connected(IN, false));
    let out = s.handle(t, Input::Closed { conn: IN });
    assert!(matches!(out.as_slice(), [Output::Close { conn: IN }]));
    assert_eq!(s.state(), State::Active);
    assert!(s.poll_timeout().is_none());
}
