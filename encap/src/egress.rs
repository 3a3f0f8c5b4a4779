//! The egress decision for one packet read from the TUN, the same for the
//! TX TAP path (whole bursts with a `virtio_net_hdr`) and the socket path
//! (single packets): peer lookup, the MTU check and the outer source port
//! are decided here once, and the worker only carries the answer out.
//!
//! ```text
//!   packet ─► destination ─► peer? ─no─► Drop(NoRoute)
//!                              │ offload header consistent? ─no─► Drop(BadOffload)
//!                              │ largest segment > tunnel MTU? ─► TooBig
//!                              │ TAP open and the burst fits one frame ─► Tap
//!                              │ a GSO burst that does not ─► Split
//!                              └ otherwise ─► Socket
//! ```

use std::net::IpAddr;

use crate::offload::OffloadHeader;
use crate::{flow, inner, tunnel_frame, vxlan};

/// The peer table as the plan sees it: longest-prefix match from an inner
/// destination to a peer index.
pub trait PeerLookup {
    /// The peer `dst` is routed to.
    fn lookup(&self, dst: IpAddr) -> Option<usize>;
}

/// What the egress path looks like at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressPath {
    /// Largest inner packet (segment) the underlay carries after
    /// encapsulation.
    pub max_inner: usize,
    /// A TX TAP with UDP-tunnel GSO is open.
    pub tap: bool,
    /// The format is VXLAN (its headers count against a TAP frame's size).
    pub vxlan: bool,
}

/// Why a packet is dropped on egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressDrop {
    /// Not IPv4/IPv6, or no peer for its destination.
    NoRoute,
    /// The `virtio_net_hdr` does not match the packet.
    BadOffload,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Build one frame ([`tunnel_frame::build`]) and write it to the TAP.
    Tap {
        /// Peer index.
        peer: usize,
        /// The offload header, `hdr_len` taken from the packet.
        offload: OffloadHeader,
        /// Outer UDP source port of the flow.
        src_port: u16,
    },
    /// Encapsulate and send through the underlay socket.
    Socket {
        /// Peer index.
        peer: usize,
    },
    /// A burst no single frame carries: segment it, then plan each
    /// segment again for the socket.
    Split {
        /// Peer index.
        peer: usize,
        /// The offload header to segment by.
        offload: OffloadHeader,
    },
    /// Larger than the tunnel carries: drop it and answer with an ICMP
    /// too-big for `mtu`.
    TooBig {
        /// The tunnel MTU to report.
        mtu: usize,
    },
    /// Drop and count.
    Drop(EgressDrop),
}

/// Decides what happens to `packet`. `offload` is the TUN's header when
/// the packet was read with one (TAP path), None for a single packet.
#[must_use]
#[inline]
pub fn plan(
    packet: &[u8],
    offload: Option<OffloadHeader>,
    peers: &impl PeerLookup,
    path: &EgressPath,
) -> Egress {
    let Some(peer) = inner::destination(packet).and_then(|d| peers.lookup(d)) else {
        return Egress::Drop(EgressDrop::NoRoute);
    };
    let offload = match offload.map(|o| o.with_transport_len(packet)) {
        None => None,
        Some(Some(o)) => Some(o),
        Some(None) => return Egress::Drop(EgressDrop::BadOffload),
    };
    let largest = offload.map_or(packet.len(), |o| o.largest_segment(packet.len()));
    // The largest inner packet the burst becomes must fit the underlay (the
    // kernel would otherwise drop it silently when forwarding).
    if largest > path.max_inner {
        return Egress::TooBig {
            mtu: path.max_inner,
        };
    }
    match offload {
        Some(o) if path.tap && tunnel_frame::fits(packet.len(), &o, path.vxlan) => Egress::Tap {
            peer,
            offload: o,
            // Per flow, in Linux's ephemeral range: spreads flows over the
            // peer's SO_REUSEPORT sockets, as the kernel's vxlan does.
            src_port: vxlan::source_port(flow::hash(packet), vxlan::DEFAULT_SRC_PORTS),
        },
        Some(o) if o.is_gso() => Egress::Split { peer, offload: o },
        _ => Egress::Socket { peer },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload;
    use crate::testutil::{v4_udp, v6_udp};

    /// 10.0.1.0/24 -> peer 1, everything else in 10/8 -> peer 0; fd::/16 -> 2.
    struct Peers;
    impl PeerLookup for Peers {
        fn lookup(&self, dst: IpAddr) -> Option<usize> {
            match dst {
                IpAddr::V4(a) if a.octets()[..3] == [10, 0, 1] => Some(1),
                IpAddr::V4(a) if a.octets()[0] == 10 => Some(0),
                IpAddr::V6(a) if a.segments()[0] == 0xfd => Some(2),
                _ => None,
            }
        }
    }

    const SOCKET: EgressPath = EgressPath {
        max_inner: 1450,
        tap: false,
        vxlan: true,
    };
    const TAP: EgressPath = EgressPath {
        tap: true,
        ..SOCKET
    };

    fn pkt(dst: [u8; 4], len: usize) -> Vec<u8> {
        v4_udp(
            [10, 0, 0, 1].into(),
            dst.into(),
            1000,
            53,
            &vec![0; len - 28],
        )
    }

    fn tso(packet: &mut [u8], gso_size: u16) -> OffloadHeader {
        packet[9] = 6;
        packet[20 + 12] = 5 << 4;
        OffloadHeader {
            flags: offload::F_NEEDS_CSUM,
            gso_type: offload::GSO_TCPV4,
            hdr_len: 9999,
            gso_size,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn single_packets_go_to_their_peer_or_are_dropped() {
        let p = pkt([10, 0, 1, 7], 100);
        assert_eq!(plan(&p, None, &Peers, &SOCKET), Egress::Socket { peer: 1 });
        assert_eq!(plan(&p, None, &Peers, &TAP), Egress::Socket { peer: 1 });
        let other = pkt([192, 168, 0, 1], 100);
        assert_eq!(
            plan(&other, None, &Peers, &SOCKET),
            Egress::Drop(EgressDrop::NoRoute)
        );
        assert_eq!(
            plan(&[0x45, 0, 0], None, &Peers, &SOCKET),
            Egress::Drop(EgressDrop::NoRoute)
        );
        let v6 = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"",
        );
        assert_eq!(plan(&v6, None, &Peers, &SOCKET), Egress::Socket { peer: 2 });
    }

    #[test]
    fn the_mtu_check_is_per_segment() {
        let big = pkt([10, 0, 1, 7], 1451);
        assert_eq!(
            plan(&big, None, &Peers, &SOCKET),
            Egress::TooBig { mtu: 1450 }
        );
        assert_eq!(
            plan(&pkt([10, 0, 1, 7], 1450), None, &Peers, &SOCKET),
            Egress::Socket { peer: 1 }
        );
        // A 9000-byte burst of 1398-byte segments fits; of 1411 it does not.
        let mut burst = pkt([10, 0, 1, 7], 9000);
        let o = tso(&mut burst, 1398);
        assert!(matches!(
            plan(&burst, Some(o), &Peers, &TAP),
            Egress::Tap { peer: 1, .. }
        ));
        let o = tso(&mut burst, 1411);
        assert_eq!(
            plan(&burst, Some(o), &Peers, &TAP),
            Egress::TooBig { mtu: 1450 }
        );
    }

    #[test]
    fn tap_frames_carry_the_packets_transport_length_and_a_flow_port() {
        let mut burst = pkt([10, 0, 1, 7], 9000);
        let o = tso(&mut burst, 1398);
        let Egress::Tap {
            offload, src_port, ..
        } = plan(&burst, Some(o), &Peers, &TAP)
        else {
            panic!("expected Tap");
        };
        assert_eq!(offload.hdr_len, 40, "from the TCP header, not the kernel's");
        assert!(vxlan::DEFAULT_SRC_PORTS.contains(&src_port));
        let again = plan(&burst, Some(o), &Peers, &TAP);
        assert!(matches!(again, Egress::Tap { src_port: p, .. } if p == src_port));
    }

    #[test]
    fn bursts_without_a_tap_or_too_long_for_a_frame_are_split() {
        let mut burst = pkt([10, 0, 1, 7], 9000);
        let o = tso(&mut burst, 1398);
        assert!(matches!(
            plan(&burst, Some(o), &Peers, &SOCKET),
            Egress::Split { peer: 1, .. }
        ));
        let ufo = OffloadHeader {
            gso_type: offload::GSO_UDP,
            csum_offset: 6,
            ..o
        };
        assert!(matches!(
            plan(&burst, Some(ufo), &Peers, &TAP),
            Egress::Split { .. }
        ));
        let mut huge = vec![0u8; tunnel_frame::max_inner(true) + 1];
        huge[..40].copy_from_slice(&burst[..40]);
        let o = tso(&mut huge, 1398);
        assert!(matches!(
            plan(&huge, Some(o), &Peers, &TAP),
            Egress::Split { .. }
        ));
        // A single packet with a plain header goes to the TAP as one frame.
        let single = pkt([10, 0, 0, 9], 600);
        assert!(matches!(
            plan(&single, Some(OffloadHeader::default()), &Peers, &TAP),
            Egress::Tap { peer: 0, .. }
        ));
    }

    #[test]
    fn inconsistent_offload_headers_are_dropped() {
        let mut burst = pkt([10, 0, 1, 7], 3000);
        let o = tso(&mut burst, 1398);
        let bad = OffloadHeader {
            csum_offset: 3,
            ..o
        };
        assert_eq!(
            plan(&burst, Some(bad), &Peers, &TAP),
            Egress::Drop(EgressDrop::BadOffload)
        );
    }
}
