//! CNI spec types: versions, the network configuration's common keys and
//! the result with its conversion between spec versions.

mod netconf;
mod result;
mod version;

pub use netconf::{NetConf, valid_attachments};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{
    LATEST, SUPPORTED_VERSIONS, Version, effective_version, is_supported, version_info,
};
