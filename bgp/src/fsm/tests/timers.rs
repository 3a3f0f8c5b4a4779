//! Keepalive and hold timers, backpressure, and the next wake-up.

use super::*;

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
fn poll_timeout_is_the_earliest_timer() {
    let (mut s, t) = up_with(cfg(), gr_open(true));
    let _ = s.handle(t, Input::Closed { conn: OUT });
    // Idle hold (≤ 1 s backoff) comes before the 30 s stale timer.
    assert!(s.poll_timeout().unwrap() <= t + secs(1));
}
