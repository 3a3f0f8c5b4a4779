//! The plugins, each a [`crate::skel::Plugin`].

pub mod bridge;
pub mod host_local;
pub mod loopback;
pub mod portmap;
pub mod static_ipam;
pub mod tuning;
