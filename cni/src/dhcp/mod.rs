//! The `dhcp` IPAM plugin and its daemon: the plugin forwards ADD/DEL/CHECK
//! over a unix socket ([`protocol`]) to the daemon ([`daemon`]), which
//! acquires, renews, rebinds and releases DHCPv4 leases from inside each
//! pod's network namespace ([`client`], [`keeper`]) and keeps them on disk
//! ([`store`]) so a restarted daemon resumes them.
//!
//! - [`wire`]: the validating DHCPv4 codec.
//! - [`lease`]: pure lease logic (packets to send, replies to accept, timers, result).
//! - [`config`]: the `ipam` keys.

pub mod client;
pub mod config;
pub mod daemon;
pub mod flags;
pub mod keeper;
pub mod lease;
pub mod protocol;
pub mod store;
pub mod wire;
