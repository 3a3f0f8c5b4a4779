//! [`Format`]: one overlay encapsulation chosen at start, with the
//! per-format encapsulation and decapsulation behind one match, so the
//! router's worker never matches on the mode per packet itself.

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::error::{DecapError, EncapError};
use crate::inner::{InnerPacket, IpVersion};
use crate::{MacAddr, ipip, udp, vxlan};

/// An overlay format and its fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// flannel's udp backend: the inner packet is the UDP payload.
    Udp,
    /// VXLAN with this VNI; inner source MAC is this node's VTEP MAC.
    Vxlan {
        /// The VNI.
        vni: u32,
        /// This node's VTEP MAC.
        local_mac: MacAddr,
    },
    /// IP-in-IP through a raw socket (the kernel writes the outer header).
    Ipip,
}

/// A decapsulated packet: the validated inner packet, where it lies in the
/// received bytes, and the outer source address when the format carries
/// it in the bytes (ipip; for UDP formats it is the datagram's sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// The inner packet.
    pub inner: InnerPacket<'a>,
    /// Where `inner` lies in the received bytes.
    pub range: Range<usize>,
    /// The outer IPv4 source read from the packet (ipip only).
    pub outer_src: Option<Ipv4Addr>,
}

impl Format {
    /// Bytes the format adds in front of the inner packet, outer IPv4
    /// header included.
    #[must_use]
    pub const fn overhead(self) -> usize {
        match self {
            Self::Udp => 20 + 8,
            Self::Vxlan { .. } => 20 + 8 + vxlan::HEADROOM,
            Self::Ipip => 20,
        }
    }

    /// Encapsulates `buf[inner]` in place for a peer with VTEP MAC
    /// `peer_mac` and returns the range to hand to the socket: the UDP
    /// payload (udp, vxlan) or the inner packet itself (ipip: the raw
    /// socket adds the outer header, IPv4 inner packets only).
    ///
    /// # Errors
    /// The format's [`EncapError`]s; [`EncapError::NotIpv4`] for an ipip
    /// packet that is not IPv4.
    pub fn encap(
        self,
        buf: &mut [u8],
        inner: Range<usize>,
        peer_mac: MacAddr,
    ) -> Result<Range<usize>, EncapError> {
        match self {
            Self::Vxlan { vni, local_mac } => vxlan::encap(buf, inner, vni, local_mac, peer_mac),
            Self::Udp => udp::encap(buf, inner),
            Self::Ipip => match buf.get(inner.clone()).map(IpVersion::of) {
                Some(Some(IpVersion::V4)) => Ok(inner),
                Some(_) => Err(EncapError::NotIpv4),
                None => Err(EncapError::RangeOutOfBounds {
                    start: inner.start,
                    end: inner.end,
                    len: buf.len(),
                }),
            },
        }
    }

    /// Validates one received datagram (udp, vxlan: the UDP payload; ipip:
    /// the whole outer packet).
    ///
    /// # Errors
    /// The format's [`DecapError`]s.
    #[inline]
    pub fn decap(self, bytes: &[u8]) -> Result<Decapsulated<'_>, DecapError> {
        match self {
            Self::Vxlan { vni, .. } => vxlan::decap(bytes, vni).map(|f| Decapsulated {
                inner: f.inner,
                range: f.inner_range,
                outer_src: None,
            }),
            Self::Udp => udp::decap(bytes).map(|inner| Decapsulated {
                range: 0..inner.len(),
                inner,
                outer_src: None,
            }),
            Self::Ipip => ipip::decap(bytes).map(|p| Decapsulated {
                inner: p.inner,
                range: p.inner_range,
                outer_src: Some(p.outer_src),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_HEADROOM;
    use crate::testutil::{v4_udp, v6_udp};

    const LOCAL: MacAddr = MacAddr([2, 0x57, 0, 0, 0, 1]);
    const PEER: MacAddr = MacAddr([2, 0x57, 0, 0, 0, 2]);

    fn roundtrip(f: Format, pkt: &[u8]) -> Result<(), EncapError> {
        let mut buf = vec![0u8; MAX_HEADROOM + pkt.len()];
        buf[MAX_HEADROOM..].copy_from_slice(pkt);
        let end = buf.len();
        let out = f.encap(&mut buf, MAX_HEADROOM..end, PEER)?;
        let d = f.decap(&buf[out.clone()]).expect("decodes");
        assert_eq!(d.inner.bytes(), pkt);
        assert_eq!(&buf[out][d.range], pkt);
        Ok(())
    }

    #[test]
    fn udp_and_vxlan_round_trip_both_families() {
        let v4 = v4_udp([10, 0, 0, 1].into(), [10, 0, 1, 2].into(), 1, 2, b"x");
        let v6 = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"x",
        );
        let vx = Format::Vxlan {
            vni: 7,
            local_mac: LOCAL,
        };
        for f in [Format::Udp, vx] {
            roundtrip(f, &v4).unwrap();
            roundtrip(f, &v6).unwrap();
        }
        assert_eq!(vx.overhead(), 50);
        assert_eq!(Format::Udp.overhead(), 28);
        assert_eq!(Format::Ipip.overhead(), 20);
    }

    #[test]
    fn ipip_passes_ipv4_only_and_decodes_the_outer_source() {
        let v4 = v4_udp([10, 0, 0, 1].into(), [10, 0, 1, 2].into(), 1, 2, b"x");
        let mut buf = v4.clone();
        let len = buf.len();
        assert_eq!(Format::Ipip.encap(&mut buf, 0..len, PEER), Ok(0..len));
        let v6 = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"x",
        );
        let mut buf = v6.clone();
        let len = buf.len();
        assert_eq!(
            Format::Ipip.encap(&mut buf, 0..len, PEER),
            Err(EncapError::NotIpv4)
        );
        assert!(Format::Ipip.encap(&mut buf, 0..len + 1, PEER).is_err());
        let mut outer = vec![0u8; 20 + v4.len()];
        outer[20..].copy_from_slice(&v4);
        let hdr = ipip::Outer {
            src: Ipv4Addr::new(172, 31, 0, 9),
            dst: Ipv4Addr::new(172, 31, 0, 1),
            ttl: 64,
            id: 1,
        };
        let out = ipip::encap(&mut outer, 20..20 + v4.len(), &hdr).unwrap();
        let d = Format::Ipip.decap(&outer[out]).unwrap();
        assert_eq!(d.outer_src, Some(Ipv4Addr::new(172, 31, 0, 9)));
        assert_eq!(d.range, 20..outer.len());
        assert_eq!(d.inner.bytes(), &v4[..]);
    }
}
