//! weftd: config, route table, dataplane (host-gw and TUN overlay),
//! control socket and metrics.
#![warn(missing_docs)]

pub mod bgp_feed;
pub mod cidr;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod mode;
pub mod netlink;
pub mod reconcile;
pub mod route_table;
pub mod shutdown;
pub mod subnet;
pub mod vtep;

/// A fast keyed hash for the route and peer maps (randomly seeded per process).
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;
