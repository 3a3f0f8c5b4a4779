//! What the router's driver tells status queries: a copy of the router
//! core's state (readiness, the route table with each range's source, the
//! underlay MTU, the offloads in use), taken on request by the task that
//! owns the core. Queries are messages with a reply channel; nothing
//! shares the core.

use tokio::sync::{mpsc, oneshot};

use crate::cidr::Cidr;
use crate::core::Readiness;
use crate::dataplane::Offloads;
use crate::route_table::{NextHop, RouteSource};

/// The router's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSnapshot {
    /// The core's readiness.
    pub readiness: Readiness,
    /// The underlay link's MTU now.
    pub underlay_mtu: u32,
    /// Offloads the overlay dataplane uses (None in host-gw).
    pub offloads: Option<Offloads>,
    /// Every routed pod range, its next hop and source, in prefix order.
    pub routes: Vec<(Cidr, NextHop, RouteSource)>,
}

/// A status query to the driver: the reply channel.
pub type RouterQuery = oneshot::Sender<RouterSnapshot>;

/// Sends [`RouterQuery`]s to the driver.
#[derive(Debug, Clone)]
pub struct RouterQueries(mpsc::Sender<RouterQuery>);

impl RouterQueries {
    /// A query channel: the sender for status sources, the receiver for
    /// `RunOptions::queries`.
    pub fn channel() -> (Self, mpsc::Receiver<RouterQuery>) {
        let (tx, rx) = mpsc::channel(8);
        (Self(tx), rx)
    }

    /// The router's state, or None when the router is not running.
    pub async fn snapshot(&self) -> Option<RouterSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.ok()?;
        rx.await.ok()
    }
}
