//! The tokio edge: sockets, timers and tasks around the pure [`Session`].
//!
//! ```text
//!  SpeakerHandle ──Command──► speaker task (owns Rib, Adj-RIB-Out, own prefixes)
//!                                 │ PeerCmd (Incoming, Send UPDATE bytes, Stop)
//!          PeerEvent (Updates,    ▼
//!          Established, Down) ◄── peer task, one per peer (owns its Session)
//!                                 ▲ ConnEvent (Frames, Closed, Malformed, Connected)
//!     listener task ──Incoming──┘ │
//!        (accepts, MD5 keys)      ├── reader task per connection  (socket → frames)
//!                                 ├── writer task per connection  (bytes → socket)
//!                                 └── connect task                 (outgoing attempt)
//! ```
//! Only the peer task touches its `Session`; the others send it messages.
//! Child task handles abort on drop ([`Task`]).
//!
//! [`Session`]: crate::fsm::Session

pub(crate) mod listener;
pub(crate) mod md5;
pub(crate) mod minttl;
pub(crate) mod session;

use std::net::IpAddr;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::fsm::{DownReason, Negotiated, State};
use crate::rib::PeerKey;
use crate::wire::{Family, Update};

/// A spawned task that is aborted when the handle is dropped.
#[derive(Debug)]
pub(crate) struct Task(pub(crate) JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Speaker → peer task.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// A connection the listener accepted from this peer's address.
    Incoming(TcpStream),
    /// Encoded UPDATEs for the established session.
    Send(Vec<Vec<u8>>),
    /// BFD detected a failure: drop the session now (its routes are
    /// withdrawn) and start again.
    BfdDown,
    /// Stop the session: with `graceful`, close the TCP connection without
    /// a NOTIFICATION so that GR helpers keep our routes.
    Stop {
        /// Skip the Cease NOTIFICATION.
        graceful: bool,
    },
}

/// Peer task → speaker.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    /// The session state changed.
    State(PeerKey, State),
    /// The session is up; `local` is our end's address.
    Established {
        /// Peer.
        key: PeerKey,
        /// What was agreed.
        negotiated: Negotiated,
        /// Our address on the connection.
        local: IpAddr,
    },
    /// UPDATEs received (in order), batched per read.
    Updates(PeerKey, Vec<Update>),
    /// The session went down.
    Down {
        /// Peer.
        key: PeerKey,
        /// Why.
        reason: DownReason,
        /// Families kept as stale (GR helper).
        graceful: Vec<Family>,
    },
    /// Stale routes of a family to drop.
    FlushStale(PeerKey, Family),
    /// The peer's End-of-RIB for a family.
    EndOfRib(PeerKey, Family),
    /// The peer asked for our routes again.
    RouteRefresh(PeerKey, Family),
}
