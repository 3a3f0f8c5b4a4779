//! TTL / hop-limit decrement for forwarding, with the IPv4 header checksum
//! updated incrementally (RFC 1624) instead of recomputed.

use crate::checksum;

/// Why a packet cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// TTL / hop limit is 0 or 1: the packet must not be forwarded (the
    /// router may answer with ICMP time exceeded). The packet is unchanged.
    #[error("ttl expired")]
    Expired,
    /// Not an IPv4 (>= 20 bytes) or IPv6 (>= 40 bytes) header.
    #[error("not an IP header")]
    NotIp,
}

impl TtlError {
    /// A stable label for counters.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Expired => "ttl_expired",
            Self::NotIp => "not_ip",
        }
    }
}

/// Decrements the IPv4 TTL (fixing the header checksum per RFC 1624) or
/// the IPv6 hop limit in place and returns the new value.
///
/// # Errors
/// [`TtlError::Expired`] when the value is 0 or 1 (nothing is changed),
/// [`TtlError::NotIp`] on bytes that are not an IP header.
pub fn decrement(packet: &mut [u8]) -> Result<u8, TtlError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let ttl = packet[8];
            if ttl <= 1 {
                return Err(TtlError::Expired);
            }
            let old = u16::from_be_bytes([ttl, packet[9]]);
            let new = old - 0x0100;
            let hc = u16::from_be_bytes([packet[10], packet[11]]);
            packet[8] = ttl - 1;
            packet[10..12].copy_from_slice(&checksum::update(hc, old, new).to_be_bytes());
            Ok(ttl - 1)
        }
        Some(6) if packet.len() >= 40 => {
            let hl = packet[7];
            if hl <= 1 {
                return Err(TtlError::Expired);
            }
            packet[7] = hl - 1;
            Ok(hl - 1)
        }
        _ => Err(TtlError::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{v4_udp, v6_udp};

    #[test]
    fn v4_down_to_one_keeps_checksum_valid() {
        let mut p = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"abc");
        let before = p.clone();
        for want in (1..64).rev() {
            assert_eq!(decrement(&mut p), Ok(want));
            assert_eq!(checksum::checksum(&p[..20]), 0);
        }
        assert_eq!(p[8], 1);
        let at_one = p.clone();
        assert_eq!(decrement(&mut p), Err(TtlError::Expired));
        assert_eq!(p, at_one);
        assert_eq!(p[20..], before[20..]);
    }

    #[test]
    fn v4_vector() {
        // Wikipedia's example header, TTL 0x40 -> 0x3f: checksum 0xb861 -> 0xb961.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(decrement(&mut h), Ok(0x3f));
        assert_eq!(&h[8..12], &[0x3f, 0x11, 0xb9, 0x61]);
    }

    #[test]
    fn v6_and_errors() {
        let mut p = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"",
        );
        assert_eq!(decrement(&mut p), Ok(63));
        assert_eq!(p[7], 63);
        p[7] = 1;
        assert_eq!(decrement(&mut p), Err(TtlError::Expired));
        assert_eq!(decrement(&mut [0x45; 19]), Err(TtlError::NotIp));
        assert_eq!(decrement(&mut []), Err(TtlError::NotIp));
        let mut zero = [0u8; 20];
        zero[0] = 0x45;
        assert_eq!(decrement(&mut zero), Err(TtlError::Expired));
    }
}
