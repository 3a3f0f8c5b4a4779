//! The dataplane mode: how packets reach other nodes' pods, and what each
//! encapsulation costs in bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Dataplane mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Plain kernel routes `pod_cidr via underlay_ip`.
    #[serde(rename = "host-gw")]
    HostGw,
    /// VXLAN over UDP from a TUN device.
    #[serde(rename = "vxlan")]
    Vxlan,
    /// flannel's udp backend format.
    #[serde(rename = "udp")]
    Udp,
    /// IP-in-IP through a raw socket.
    #[serde(rename = "ipip")]
    Ipip,
    /// WireGuard (Noise_IKpsk2 over UDP) from a TUN device.
    #[serde(rename = "wireguard")]
    Wireguard,
}

impl Mode {
    /// Bytes the encapsulation adds in front of the inner IP packet
    /// (outer IPv4 header included).
    pub fn overhead(self) -> u32 {
        match self {
            Self::HostGw => 0,
            Self::Vxlan => 20 + 8 + 8 + 14,
            Self::Udp => 20 + 8,
            Self::Ipip => 20,
            // An IPv6 outer header (40) + UDP (8) + WireGuard data header
            // (16) + tag (16), as wg-quick reserves: 1420 on 1500.
            Self::Wireguard => 40 + 8 + 16 + 16,
        }
    }

    /// True for the modes that use a TUN device.
    pub fn is_overlay(self) -> bool {
        !matches!(self, Self::HostGw)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
            Self::Udp => "udp",
            Self::Ipip => "ipip",
            Self::Wireguard => "wireguard",
        })
    }
}
