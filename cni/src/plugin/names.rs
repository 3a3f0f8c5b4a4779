//! Deterministic names of what one attachment (network, container id,
//! ifname) creates, so DEL and a failed ADD find everything without
//! prevResult or on-disk state.

use crate::nft::{Owned, owner_id};

/// Name prefix of the per-pod ipMasq chains.
pub const MASQ_PREFIX: &str = "cn-m-";
/// Name prefix of the per-pod macspoofchk chains.
pub const SPOOF_PREFIX: &str = "cn-s-";

/// Deterministic names of everything one attachment creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Host-side veth (`veth` + 8 hex digits).
    pub host_veth: String,
    /// Per-pod ipMasq chain (owner of the masq map elements).
    pub masq_chain: String,
    /// Per-pod macspoofchk chain (bridge table).
    pub spoof_chain: String,
    /// The attachment, recorded in the owner chains for GC.
    pub owner: Owned,
}

impl Names {
    /// Names for (network, container id, ifname).
    pub fn new(net: &str, cid: &str, ifname: &str) -> Self {
        let id = owner_id(&[net, cid, ifname]);
        Self {
            host_veth: format!("veth{}", &id[..8]),
            masq_chain: format!("{MASQ_PREFIX}{id}"),
            spoof_chain: format!("{SPOOF_PREFIX}{id}"),
            owner: Owned::Attachment {
                network: net.to_string(),
                container_id: cid.to_string(),
                ifname: ifname.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_short() {
        let a = Names::new("net", "cid", "eth0");
        assert_eq!(a, Names::new("net", "cid", "eth0"));
        assert_ne!(a.host_veth, Names::new("net", "cid", "eth1").host_veth);
        assert!(a.host_veth.len() <= 15);
    }
}
