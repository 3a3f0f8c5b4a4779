//! weft's CNI plugins (bridge, host-local, portmap): spec types, IPAM store,
//! and the netlink and nftables helpers they share.
#![forbid(unsafe_code)]

pub mod link;
pub mod nft;
pub mod ns;
pub mod plugin;
