//! The per-peer BGP series, set from the speaker's status at every scrape
//! (the speaker keeps the numbers; the exporter copies them).

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use weft_bgp::PeerStatus;
use weft_bgp::fsm::State;

use crate::control::status::kind_name;

/// Session state, as the BGP4-MIB numbers it (1 idle .. 6 established).
pub const SESSION_STATE: &str = "weft_bgp_session_state";
/// Seconds the session has been established (0 when it is not).
pub const ESTABLISHED_SECONDS: &str = "weft_bgp_session_established_seconds";
/// Prefixes the peer announces, before import policy.
pub const PREFIXES_RECEIVED: &str = "weft_bgp_prefixes_received";
/// Prefixes accepted from the peer.
pub const PREFIXES_ACCEPTED: &str = "weft_bgp_prefixes_accepted";
/// Prefixes advertised to the peer.
pub const PREFIXES_ADVERTISED: &str = "weft_bgp_prefixes_advertised";
/// UPDATE messages received.
pub const UPDATES_RECEIVED: &str = "weft_bgp_updates_received_total";
/// NOTIFICATIONs by direction and error code.
pub const NOTIFICATIONS: &str = "weft_bgp_notifications_total";
/// BFD session up (1) or not (0), for peers with BFD.
pub const BFD_UP: &str = "weft_bgp_bfd_up";

/// The BGP4-MIB number of a state.
pub fn state_number(s: State) -> f64 {
    f64::from(match s {
        State::Idle => 1u8,
        State::Connect => 2,
        State::Active => 3,
        State::OpenSent => 4,
        State::OpenConfirm => 5,
        State::Established => 6,
    })
}

/// Copies the speaker's per-peer numbers into the series.
pub fn record(peers: &[PeerStatus]) {
    for p in peers {
        let peer = p.address.to_string();
        gauge!(SESSION_STATE, "peer" => peer.clone(), "asn" => p.asn.to_string(),
            "type" => kind_name(p.kind))
        .set(state_number(p.state));
        let up = if p.state == State::Established {
            p.state_for.as_secs_f64()
        } else {
            0.0
        };
        gauge!(ESTABLISHED_SECONDS, "peer" => peer.clone()).set(up.floor());
        gauge!(PREFIXES_RECEIVED, "peer" => peer.clone()).set(p.prefixes_received as f64);
        gauge!(PREFIXES_ACCEPTED, "peer" => peer.clone()).set(p.routes_received as f64);
        gauge!(PREFIXES_ADVERTISED, "peer" => peer.clone()).set(p.routes_advertised as f64);
        counter!(UPDATES_RECEIVED, "peer" => peer.clone()).absolute(p.updates_received);
        for n in &p.notifications {
            counter!(NOTIFICATIONS, "peer" => peer.clone(),
                "direction" => n.direction.as_str(), "code" => n.code.to_string())
            .absolute(n.count);
        }
        if let Some(b) = p.bfd {
            let up = b == weft_bgp::bfd::BfdState::Up;
            gauge!(BFD_UP, "peer" => peer.clone()).set(if up { 1.0 } else { 0.0 });
        }
    }
}

/// HELP lines of the BGP series.
pub(super) fn describe() {
    describe_gauge!(
        SESSION_STATE,
        "BGP session state: 1 idle, 2 connect, 3 active, 4 opensent, 5 openconfirm, 6 established."
    );
    describe_gauge!(
        ESTABLISHED_SECONDS,
        Unit::Seconds,
        "How long the BGP session has been established (0 when it is not)."
    );
    describe_gauge!(
        PREFIXES_RECEIVED,
        "Prefixes the peer announces, before import policy."
    );
    describe_gauge!(PREFIXES_ACCEPTED, "Prefixes accepted from the peer.");
    describe_gauge!(PREFIXES_ADVERTISED, "Prefixes advertised to the peer.");
    describe_counter!(
        UPDATES_RECEIVED,
        "BGP UPDATE messages received from the peer."
    );
    describe_counter!(
        NOTIFICATIONS,
        "BGP NOTIFICATIONs sent to or received from the peer."
    );
    describe_gauge!(BFD_UP, "BFD session with the peer up (1) or not (0).");
}
