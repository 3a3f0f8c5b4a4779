//! FSM errors and malformed input answered with a NOTIFICATION.

use super::*;
use crate::wire::DecodeError;

#[test]
fn update_in_open_sent_is_fsm_error_5_1() {
    let (mut s, t) = open_sent(cfg());
    let out = s.handle(t, rx(OUT, Message::Update(Update::default())));
    assert_eq!(notif(&out, OUT), Some((5, 1)));
}

#[test]
fn update_in_open_confirm_is_fsm_error_5_2() {
    let (mut s, t) = open_sent(cfg());
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
    let (mut s, t) = open_sent(cfg());
    let out = s.handle(
        t,
        Input::Malformed {
            conn: OUT,
            error: DecodeError::BadLength(5000),
        },
    );
    assert_eq!(notif(&out, OUT), Some((1, 2)));
}
