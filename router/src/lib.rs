//! weftd: config, route sources, the pure router core (route table,
//! reconciliation), its driver and the netlink edge, the dataplane
//! (host-gw and TUN overlay), and the node service around them (CNI
//! config, masquerade, systemd notify, the control socket, metrics).
#![warn(missing_docs)]

pub mod bgp_feed;
pub mod cidr;
pub mod cni_conf;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod dataplane;
pub mod exporter;
pub mod feed;
pub mod masquerade;
pub mod mode;
pub mod netlink;
pub mod notify;
pub mod reconcile;
pub mod reload;
pub mod route_table;
pub mod service;
pub mod shutdown;
pub mod snapshot;
pub mod subnet;
pub mod vtep;
pub mod wg_key;

/// A fast keyed hash for the route and peer maps (randomly seeded per process).
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;
