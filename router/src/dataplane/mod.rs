//! The overlay dataplane: a TUN device, underlay sockets and worker
//! threads that move packets between them in batches.

use crate::cidr::Cidr;
use crate::config::Config;
use crate::netlink::UnderlayLink;
use crate::route_table::NextHop;

/// Errors starting the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Not available yet.
    #[error("overlay mode {0} is not available in this build")]
    Unsupported(String),
}

/// A running overlay dataplane; dropping it stops forwarding.
#[derive(Debug)]
pub struct Dataplane {}

impl Dataplane {
    /// Creates the TUN and sockets and starts the workers.
    pub fn start(cfg: &Config, _underlay: &UnderlayLink) -> Result<Self, DataplaneError> {
        Err(DataplaneError::Unsupported(cfg.dataplane.mode.to_string()))
    }

    /// Stops forwarding and removes the TUN.
    pub fn stop(self) {}

    /// Hands the workers a new set of routes.
    pub fn set_routes(&self, _hops: &[(Cidr, NextHop)]) {}
}
