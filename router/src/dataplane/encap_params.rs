//! What every worker needs to build and check outer headers: mode, VNI,
//! port, this node's underlay address and VTEP MAC.

use std::net::{Ipv4Addr, Ipv6Addr};

use weft_encap::MacAddr;

use crate::mode::Mode;

/// The encapsulation parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncapParams {
    pub(crate) mode: Mode,
    pub(crate) vni: u32,
    /// Destination port on peers (vxlan / udp).
    pub(crate) port: u16,
    pub(crate) local_ip: Ipv4Addr,
    pub(crate) local_mac: MacAddr,
    /// Source for ICMPv6 replies (an address of this node's IPv6 pod range).
    pub(crate) icmp6_src: Ipv6Addr,
}

impl EncapParams {
    /// Outer bytes added to an inner packet (outer IPv4 + UDP included).
    pub(crate) fn overhead(&self) -> usize {
        self.mode.overhead() as usize
    }
}
