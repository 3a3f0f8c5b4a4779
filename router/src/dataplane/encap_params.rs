//! What every worker needs to build and check outer headers: the overlay
//! format, the peers' port, this node's underlay address, and the source
//! of ICMPv6 replies.

use std::net::{Ipv4Addr, Ipv6Addr};

use weft_encap::MacAddr;
use weft_encap::format::Format;

use crate::mode::Mode;

/// The encapsulation parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncapParams {
    pub(crate) format: Format,
    /// Destination port on peers (vxlan / udp).
    pub(crate) port: u16,
    pub(crate) local_ip: Ipv4Addr,
    /// Source for ICMPv6 replies (an address of this node's IPv6 pod range).
    pub(crate) icmp6_src: Ipv6Addr,
}

/// The overlay format of `mode`; None for host-gw, which has no dataplane,
/// and for wireguard, which encrypts instead.
pub(crate) fn format_of(mode: Mode, vni: u32, local_mac: MacAddr) -> Option<Format> {
    match mode {
        Mode::Vxlan => Some(Format::Vxlan { vni, local_mac }),
        Mode::Udp => Some(Format::Udp),
        Mode::Ipip => Some(Format::Ipip),
        // WireGuard has its own framing (boringtun's noise module).
        Mode::HostGw | Mode::Wireguard => None,
    }
}

impl EncapParams {
    /// Outer bytes added to an inner packet (outer IPv4 + UDP included).
    pub(crate) fn overhead(&self) -> usize {
        self.format.overhead()
    }

    /// VXLAN (its headers count against a TAP frame).
    pub(crate) fn is_vxlan(&self) -> bool {
        matches!(self.format, Format::Vxlan { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_overlay_mode_has_a_format_of_the_same_overhead() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        for mode in [Mode::Vxlan, Mode::Udp, Mode::Ipip] {
            let f = format_of(mode, 1, mac).unwrap();
            assert_eq!(f.overhead(), mode.overhead() as usize, "{mode}");
        }
        assert_eq!(format_of(Mode::HostGw, 1, mac), None);
    }
}
