//! The plugins, each a [`crate::skel::Plugin`], and what the main plugins
//! share: attachment [`names`], the [`veth`] pair, [`masq`], the
//! container [`netns`] and the CHECK of a pod interface ([`verify`]).

pub mod bridge;
pub mod dhcp;
pub mod host_device;
pub mod host_local;
pub mod loopback;
pub mod masq;
pub mod names;
pub mod netns;
pub mod portmap;
pub mod private_file;
pub mod ptp;
pub mod static_ipam;
pub mod tuning;
pub mod verify;
pub mod veth;
pub mod weft;
