//! The route feed: the one channel every route source (the static config,
//! the BGP speaker, later etcd) sends into, and the daemon reads from. A
//! source's batch travels as one message and reaches the router core as
//! one event.
//!
//! ```text
//!  static routes ─┐
//!  BGP batches ───┼─► RouteFeed ─► daemon ─► RouterCore::handle(Event::Routes | Event::EndOfRib)
//!  End-of-RIB ────┘
//! ```

use std::net::IpAddr;

use tokio::sync::mpsc;

use crate::route_table::RouteUpdate;

/// One message on the route feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// A source's batch of route changes, applied as one.
    Routes(Vec<RouteUpdate>),
    /// A BGP peer finished sending its table (End-of-RIB for every family
    /// of its session, RFC 4724): sent after the routes before it.
    EndOfRib {
        /// The peer's address, as configured.
        peer: IpAddr,
    },
}

/// The sending side of the route feed; clone it for every source.
pub type RouteFeed = mpsc::Sender<FeedItem>;

/// The receiving side of the route feed (the daemon's).
pub type RouteUpdates = mpsc::Receiver<FeedItem>;

/// A route feed and its receiving end for the daemon. Bounded in batches,
/// not routes: a source with a whole table to send sends one message.
pub fn route_channel() -> (RouteFeed, RouteUpdates) {
    mpsc::channel(64)
}
