//! The plugins, each a [`crate::skel::Plugin`].

pub mod bridge;
pub mod dhcp;
pub mod host_local;
pub mod portmap;
