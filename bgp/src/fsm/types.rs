//! The session's vocabulary: states, configuration, what was negotiated,
//! and the inputs and outputs of [`super::Session::handle`].

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Backoff;
use crate::wire::{
    DecodeError, Family, GracefulRestart, Message, Notification, SessionCaps, Update,
};

/// Identifies one TCP connection of a peer; the driver allocates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// RFC 4271 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Refusing connections.
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Waiting for the peer to connect.
    Active,
    /// OPEN sent, waiting for theirs.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Exchanging routes.
    Established,
}

/// Graceful restart settings (RFC 4724).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrConfig {
    /// Restart time we advertise, seconds (≤ 4095).
    pub restart_time: u16,
    /// We are restarting: set the R bit and the F bits on the first session.
    pub restarting: bool,
}

/// Static parameters of a peer session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Our AS.
    pub local_asn: u32,
    /// The peer's AS.
    pub peer_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose, seconds (0, or ≥ 3).
    pub hold_time: u16,
    /// Wait this long between outgoing connection attempts.
    pub connect_retry: Duration,
    /// Never connect out; only accept.
    pub passive: bool,
    /// Families we offer.
    pub families: Vec<Family>,
    /// Graceful restart, if enabled.
    pub graceful_restart: Option<GrConfig>,
    /// Accept IPv4 NLRI with IPv6 next hops (RFC 8950) and say so.
    pub extended_next_hop: bool,
    /// Backoff after failed sessions (jittered, exponential).
    pub backoff: Backoff,
    /// Seed of the jitter generator (the driver passes something random).
    pub seed: u64,
}

/// What was agreed with the peer when the session came up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    /// Hold time in seconds (0 = no keepalives).
    pub hold_time: u16,
    /// Codec parameters.
    pub caps: SessionCaps,
    /// Families both sides offered.
    pub families: Vec<Family>,
    /// Peer's AS.
    pub peer_asn: u32,
    /// Peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// Same AS on both sides.
    pub ibgp: bool,
    /// Peer accepts IPv4 NLRI with IPv6 next hops.
    pub extended_next_hop: bool,
    /// Peer's graceful restart capability.
    pub peer_gr: Option<GracefulRestart>,
    /// Peer supports ROUTE-REFRESH.
    pub route_refresh: bool,
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownReason {
    /// Manual stop.
    Stopped,
    /// The TCP connection closed or failed.
    ConnectionLost,
    /// The hold timer expired.
    HoldExpired,
    /// The peer sent a NOTIFICATION.
    PeerNotification(Notification),
    /// We sent a NOTIFICATION.
    LocalNotification(Notification),
}

/// Events into the session. Each names the RFC 4271 §8.1 event(s) it stands for.
#[allow(clippy::large_enum_variant)] // messages are moved once, not stored
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Event 1 ManualStart (Event 4 ManualStart_with_PassiveTcpEstablishment when passive).
    Start,
    /// Event 2 ManualStop.
    Stop,
    /// Event 16 Tcp_CR_Acked (`outgoing`) or Event 17 TcpConnectionConfirmed.
    Connected {
        /// The new connection.
        conn: ConnId,
        /// We initiated it.
        outgoing: bool,
    },
    /// Event 18 TcpConnectionFails for the pending outgoing attempt.
    ConnectFailed,
    /// Event 18 TcpConnectionFails on an open connection.
    Closed {
        /// Which connection.
        conn: ConnId,
    },
    /// Events 19 BGPOpen, 25 NotifMsg, 26 KeepAliveMsg, 27 UpdateMsg (and ROUTE-REFRESH).
    Received {
        /// On which connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// Events 21 BGPHeaderErr, 22 BGPOpenMsgErr, 28 UpdateMsgErr.
    Malformed {
        /// On which connection.
        conn: ConnId,
        /// What was wrong.
        error: DecodeError,
    },
    /// Events 9 ConnectRetryTimer_Expires, 10 HoldTimer_Expires,
    /// 11 KeepaliveTimer_Expires (the backoff after a failure is a jittered
    /// ConnectRetryTimer in Active), and the graceful-restart stale timer.
    Tick,
}

/// Actions for the driver and the RIB.
#[allow(clippy::large_enum_variant)] // messages are moved once, not stored
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Open an outgoing TCP connection (abandoning any earlier attempt).
    Connect,
    /// Abandon the pending outgoing attempt.
    CancelConnect,
    /// Send a message on a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Message.
        msg: Message,
    },
    /// Close a connection (after flushing what was sent).
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// The session is up on `conn`: advertise the table, then End-of-RIB.
    Established {
        /// Connection.
        conn: ConnId,
        /// What was agreed.
        negotiated: Negotiated,
    },
    /// Routes from the peer.
    Update(Update),
    /// The peer asks for our routes again.
    RouteRefresh(Family),
    /// The session is gone. With `graceful`, keep its routes as stale for
    /// the listed families; else withdraw them all.
    Down {
        /// Why.
        reason: DownReason,
        /// Families whose routes are kept stale (graceful restart helper).
        graceful: Vec<Family>,
    },
    /// Drop the peer's routes of `family` still marked stale (End-of-RIB
    /// received, forwarding state lost, or the restart timer expired).
    FlushStale(Family),
    /// The peer sent End-of-RIB for `family` (RFC 4724 §2): its initial
    /// table of that family is complete. Follows the marker's `Update`.
    EndOfRib(Family),
}
