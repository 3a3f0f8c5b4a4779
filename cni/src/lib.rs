//! weft's CNI plugins (bridge, ptp, host-device, host-local, dhcp, static,
//! portmap, loopback, tuning and the weft/flannel meta-plugin): spec types, IPAM store, the DHCP client
//! and daemon, and the netlink and nftables helpers they share.
//!
//! - [`skel`]: environment + stdin dispatch to a [`skel::Plugin`].
//! - [`spec`]: config keys, results and their version conversion.
//! - [`error`]: [`CniError`] and its mapping to spec error codes.
//! - [`delegate`]: running an IPAM plugin from a main plugin.
//! - [`ipam`]: host-local's allocator and on-disk lease store.
//! - [`dhcp`]: the dhcp plugin's codec, client, daemon and lease records.
//! - [`plugin`]: the plugins.
//! - [`link`], [`ns`], [`nft`]: netlink, namespace and nftables edges of the plugins.
#![forbid(unsafe_code)]

pub mod delegate;
pub mod dhcp;
pub mod error;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod ns;
pub mod plugin;
pub mod skel;
pub mod spec;

pub use error::CniError;
