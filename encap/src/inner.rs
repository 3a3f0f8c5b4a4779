//! [`InnerPacket`]: the validated view of an encapsulated IP packet. This is
//! the only module that names `etherparse`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use crate::checksum;
use crate::error::DecapError;

/// IP version of an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// The Ethernet type that carries this version.
    #[must_use]
    pub const fn ethertype(self) -> u16 {
        match self {
            Self::V4 => crate::ETHERTYPE_IPV4,
            Self::V6 => crate::ETHERTYPE_IPV6,
        }
    }

    /// Reads the version nibble of the first byte of `packet`.
    #[must_use]
    pub fn of(packet: &[u8]) -> Option<Self> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Some(Self::V4),
            Some(6) => Some(Self::V6),
            _ => None,
        }
    }
}

/// A borrowed, validated inner IP packet: its header parsed well-formed, its
/// length field equal to the bytes present and (IPv4) its header checksum
/// correct. Two words big; the accessors read the validated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerPacket<'a> {
    /// Invariant: a full fixed IPv4 (>= 20 bytes) or IPv6 (>= 40 bytes)
    /// header of `version`, so the accessors' indexing cannot fail.
    bytes: &'a [u8],
    version: IpVersion,
}

impl<'a> InnerPacket<'a> {
    /// Validates `bytes` as exactly one IPv4 or IPv6 packet.
    ///
    /// # Errors
    /// [`DecapError::InnerVersion`], [`DecapError::InnerHeader`],
    /// [`DecapError::InnerChecksum`] or [`DecapError::InnerLength`].
    // Always inlined: returned through memory, the Result's fields are
    // stored piecewise and re-read wide, a store-forwarding stall that
    // doubled decap time in the bench.
    #[inline(always)]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecapError> {
        Self::parse_prefix(bytes).and_then(|p| {
            if p.bytes.len() == bytes.len() {
                Ok(p)
            } else {
                Err(DecapError::InnerLength {
                    claimed: p.bytes.len(),
                    available: bytes.len(),
                })
            }
        })
    }

    /// Validates the IP packet at the start of `bytes` and returns it
    /// trimmed to its own length (trailing bytes, e.g. Ethernet padding, are
    /// left out). Errors as [`parse`](Self::parse), except trailing bytes.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    #[inline(always)]
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<Self, DecapError> {
        match IpVersion::of(bytes) {
            Some(IpVersion::V4) => Self::parse_v4(bytes),
            Some(IpVersion::V6) => Self::parse_v6(bytes),
            None => Err(DecapError::InnerVersion(
                bytes.first().map_or(0, |b| b >> 4),
            )),
        }
    }

    #[inline(always)]
    fn parse_v4(bytes: &'a [u8]) -> Result<Self, DecapError> {
        let h = Ipv4HeaderSlice::from_slice(bytes).map_err(|_| DecapError::InnerHeader)?;
        let hlen = h.slice().len();
        let total = usize::from(h.total_len());
        if total < hlen || total > bytes.len() {
            return Err(DecapError::InnerLength {
                claimed: total,
                available: bytes.len(),
            });
        }
        if !cfg!(fuzzing) && !checksum::header_ok(h.slice()) {
            return Err(DecapError::InnerChecksum);
        }
        Ok(Self {
            bytes: &bytes[..total],
            version: IpVersion::V4,
        })
    }

    #[inline(always)]
    fn parse_v6(bytes: &'a [u8]) -> Result<Self, DecapError> {
        let h = Ipv6HeaderSlice::from_slice(bytes).map_err(|_| DecapError::InnerHeader)?;
        // A zero payload length means a jumbogram (RFC 2675) only when a
        // hop-by-hop option says so; such packets never fit a tunnel MTU.
        let total = usize::from(h.payload_length()) + h.slice().len();
        if total > bytes.len() {
            return Err(DecapError::InnerLength {
                claimed: total,
                available: bytes.len(),
            });
        }
        Ok(Self {
            bytes: &bytes[..total],
            version: IpVersion::V6,
        })
    }

    /// The whole inner packet, header included.
    #[must_use]
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the inner packet in bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid packet has at least a header.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// IPv4 or IPv6.
    #[must_use]
    pub const fn version(&self) -> IpVersion {
        self.version
    }

    /// Source address.
    #[must_use]
    pub fn src(&self) -> IpAddr {
        match self.version {
            IpVersion::V4 => IpAddr::V4(v4_at(self.bytes, 12)),
            IpVersion::V6 => IpAddr::V6(v6_at(self.bytes, 8)),
        }
    }

    /// Destination address.
    #[must_use]
    pub fn dst(&self) -> IpAddr {
        match self.version {
            IpVersion::V4 => IpAddr::V4(v4_at(self.bytes, 16)),
            IpVersion::V6 => IpAddr::V6(v6_at(self.bytes, 24)),
        }
    }

    /// IPv4 protocol or IPv6 next header (the first one, possibly an
    /// extension header).
    #[must_use]
    pub fn protocol(&self) -> u8 {
        match self.version {
            IpVersion::V4 => self.bytes[9],
            IpVersion::V6 => self.bytes[6],
        }
    }
}

/// The destination address of an unvalidated packet read from a TUN: the
/// version nibble and the destination field only, so an egress lookup
/// costs two loads. None when the bytes are too short or not IPv4/IPv6.
#[must_use]
#[inline]
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match IpVersion::of(packet)? {
        IpVersion::V4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        IpVersion::V6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

/// Reads an IPv6 address at `at` (caller guarantees 16 bytes are there).
fn v6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Reads an IPv4 address at `at` (caller guarantees 4 bytes are there).
pub(crate) fn v4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Validates an outer IPv4 header for the ipip decoder. Returns the header
/// length and total length.
pub(crate) fn outer_v4(bytes: &[u8]) -> Result<(usize, usize), DecapError> {
    let h = Ipv4HeaderSlice::from_slice(bytes).map_err(|e| match e {
        etherparse::err::ipv4::HeaderSliceError::Len(_) => DecapError::Truncated {
            len: bytes.len(),
            needed: 20,
        },
        etherparse::err::ipv4::HeaderSliceError::Content(_) => DecapError::OuterHeader,
    })?;
    Ok((h.slice().len(), usize::from(h.total_len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const V4_UDP: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 244, 1, 2, 10,
        244, 2, 3, 0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'w', b'e', b'f', b't',
    ];

    fn v4_udp() -> [u8; 32] {
        let mut p = V4_UDP;
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parses_v4() {
        let p = v4_udp();
        let i = InnerPacket::parse(&p).unwrap();
        assert_eq!(i.version(), IpVersion::V4);
        assert_eq!(i.src(), IpAddr::from([10, 244, 1, 2]));
        assert_eq!(i.dst(), IpAddr::from([10, 244, 2, 3]));
        assert_eq!(i.protocol(), 17);
        assert_eq!(i.len(), 32);
    }

    #[test]
    fn rejects_bad_v4() {
        let p = v4_udp();
        let mut bad = p;
        bad[10] ^= 1;
        assert_eq!(InnerPacket::parse(&bad), Err(DecapError::InnerChecksum));
        assert_eq!(
            InnerPacket::parse(&p[..31]),
            Err(DecapError::InnerLength {
                claimed: 32,
                available: 31
            })
        );
        let mut long = [0u8; 33];
        long[..32].copy_from_slice(&p);
        assert!(matches!(
            InnerPacket::parse(&long),
            Err(DecapError::InnerLength { .. })
        ));
        assert_eq!(InnerPacket::parse_prefix(&long).unwrap().len(), 32);
        let mut ihl = p;
        ihl[0] = 0x44;
        assert_eq!(InnerPacket::parse(&ihl), Err(DecapError::InnerHeader));
        assert_eq!(InnerPacket::parse(&[]), Err(DecapError::InnerVersion(0)));
        assert_eq!(
            InnerPacket::parse(&[0x50]),
            Err(DecapError::InnerVersion(5))
        );
        assert_eq!(InnerPacket::parse(&p[..10]), Err(DecapError::InnerHeader));
    }

    #[test]
    fn destination_reads_both_families_and_rejects_runts() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 244, 2, 5]);
        assert_eq!(destination(&v4), Some(IpAddr::from([10, 244, 2, 5])));
        assert_eq!(destination(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24] = 0xfd;
        assert_eq!(destination(&v6), "fd00::".parse().ok());
        assert_eq!(destination(&v6[..39]), None);
        assert_eq!(destination(&[0x10; 40]), None);
        assert_eq!(destination(&[]), None);
    }

    #[test]
    fn parses_v6() {
        let mut p = [0u8; 48];
        p[0] = 0x60;
        p[5] = 8;
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        let i = InnerPacket::parse(&p).unwrap();
        assert_eq!(i.version(), IpVersion::V6);
        assert_eq!(i.src(), "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(i.dst(), "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(i.protocol(), 17);
        assert!(InnerPacket::parse(&p[..47]).is_err());
        assert_eq!(InnerPacket::parse(&p[..39]), Err(DecapError::InnerHeader));
    }
}
