//! flannel's `udp` backend format: the UDP payload is the raw inner IPv4 or
//! IPv6 packet, nothing else. Encapsulation writes no header (headroom 0);
//! decapsulation validates that the payload is exactly one IP packet.

use std::ops::Range;

use crate::error::{DecapError, EncapError};
use crate::headroom_range;
use crate::inner::{InnerPacket, IpVersion};

/// Default UDP port of flannel's udp backend.
pub const DEFAULT_PORT: u16 = 8285;
/// Bytes written in front of the inner packet: none.
pub const HEADROOM: usize = 0;

/// Checks that `buf[inner]` is an IP packet and returns the range of the
/// UDP payload to send, which is `inner` itself.
///
/// # Errors
/// [`EncapError::RangeOutOfBounds`], [`EncapError::NotIp`].
#[inline]
pub fn encap(buf: &[u8], inner: Range<usize>) -> Result<Range<usize>, EncapError> {
    let out = headroom_range(buf.len(), &inner, HEADROOM)?;
    IpVersion::of(&buf[inner]).ok_or(EncapError::NotIp)?;
    Ok(out)
}

/// Validates a flannel-udp payload as exactly one IP packet.
///
/// # Errors
/// The inner-packet errors of [`InnerPacket::parse`].
#[inline]
pub fn decap(payload: &[u8]) -> Result<InnerPacket<'_>, DecapError> {
    InnerPacket::parse(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{v4_udp, v6_udp};

    #[test]
    fn round_trip_v4_v6() {
        let p = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"x");
        assert_eq!(encap(&p, 0..p.len()), Ok(0..p.len()));
        let i = decap(&p).unwrap();
        assert_eq!(i.bytes(), &p[..]);
        assert_eq!(i.dst(), std::net::IpAddr::from([10, 0, 0, 2]));
        let p6 = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"",
        );
        assert_eq!(decap(&p6).unwrap().version(), IpVersion::V6);
    }

    #[test]
    fn rejects() {
        let p = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"x");
        assert_eq!(encap(&[0u8; 4], 0..4), Err(EncapError::NotIp));
        assert!(matches!(
            encap(&p, 1..100),
            Err(EncapError::RangeOutOfBounds { .. })
        ));
        let mut trailing = p.clone();
        trailing.push(0);
        assert!(matches!(
            decap(&trailing),
            Err(DecapError::InnerLength { .. })
        ));
        assert_eq!(decap(&[]), Err(DecapError::InnerVersion(0)));
    }
}
