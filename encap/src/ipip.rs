//! IP-in-IP (RFC 2003, IPv4 protocol 4): an outer IPv4 header (20 bytes, no
//! options) in front of an inner IPv4 packet.
//!
//! [`encap`] writes the outer header into the 20 bytes of headroom in front
//! of the inner packet: TOS and DF copied from the inner header (RFC 2003
//! §3.1), total length, the caller's ID and TTL, protocol 4 and the header
//! checksum. When sending through a raw `IPPROTO_IPIP` socket without
//! `IP_HDRINCL`, send only the inner packet and let the kernel build it.
//!
//! [`decap`] takes what a raw `IPPROTO_IPIP` socket receives (the kernel
//! hands the outer header up) and validates both headers.

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::checksum;
use crate::error::{DecapError, EncapError};
use crate::headroom_range;
use crate::inner::{self, InnerPacket, IpVersion};

/// IPv4 protocol number of IP-in-IP.
pub const PROTOCOL: u8 = 4;
/// Bytes written in front of the inner packet: the outer IPv4 header.
pub const HEADROOM: usize = 20;
/// Default outer TTL.
pub const DEFAULT_TTL: u8 = 64;

/// The caller-chosen fields of the outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Outer source (this node's underlay address).
    pub src: Ipv4Addr,
    /// Outer destination (the peer node's underlay address).
    pub dst: Ipv4Addr,
    /// Outer TTL.
    pub ttl: u8,
    /// IPv4 identification (must vary per packet when the inner packet
    /// lacks DF, since the outer packet may then be fragmented).
    pub id: u16,
}

/// A decapsulated IP-in-IP packet, borrowing the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipPacket<'a> {
    /// Outer source address: the sending node.
    pub outer_src: Ipv4Addr,
    /// Outer destination address.
    pub outer_dst: Ipv4Addr,
    /// Outer TTL as received.
    pub outer_ttl: u8,
    /// The validated inner IPv4 packet.
    pub inner: InnerPacket<'a>,
    /// Where `inner` lies in the received packet.
    pub inner_range: Range<usize>,
}

/// Writes the outer IPv4 header in front of `buf[inner]` and returns the
/// range of the finished packet (`inner.start - 20 .. inner.end`).
///
/// # Errors
/// [`EncapError::RangeOutOfBounds`], [`EncapError::NoHeadroom`],
/// [`EncapError::NotIp`], [`EncapError::NotIpv4`], [`EncapError::TooLong`].
// Always inlined: called out of line, the bench measured 40% more time
// (results and arguments round-trip through the stack).
#[inline(always)]
pub fn encap(
    buf: &mut [u8],
    inner: Range<usize>,
    outer: &Outer,
) -> Result<Range<usize>, EncapError> {
    let out = headroom_range(buf.len(), &inner, HEADROOM)?;
    match IpVersion::of(&buf[inner.clone()]) {
        Some(IpVersion::V4) => {}
        Some(IpVersion::V6) => return Err(EncapError::NotIpv4),
        None => return Err(EncapError::NotIp),
    }
    // The version nibble was read, so the inner packet has >= 1 byte; the
    // TOS and flags bytes may be missing on a runt packet: treat as zero.
    let tos = buf.get(inner.start + 1).copied().unwrap_or(0);
    let df = buf.get(inner.start + 6).copied().unwrap_or(0) & 0x40;
    // headroom_range checked out.len() <= 65535.
    let total = u16::try_from(out.len()).map_err(|_| EncapError::TooLong(out.len()))?;
    // Checksum from the field values and the header composed in registers,
    // then written with two wide stores: no byte-wise stack array read back
    // wide (a store-forwarding stall), see vxlan::encap.
    let src = u32::from(outer.src);
    let dst = u32::from(outer.dst);
    let w0 = 0x4500 | u16::from(tos);
    let w3 = u16::from(df) << 8;
    let w4 = (u16::from(outer.ttl) << 8) | u16::from(PROTOCOL);
    let sum = [w0, total, outer.id, w3, w4]
        .iter()
        .map(|&w| u64::from(w))
        .sum::<u64>()
        + u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff);
    let c = checksum::finish(sum);
    let word0 = (u128::from(w0) << 112)
        | (u128::from(total) << 96)
        | (u128::from(outer.id) << 80)
        | (u128::from(w3) << 64)
        | (u128::from(w4) << 48)
        | (u128::from(c) << 32)
        | u128::from(src);
    buf[out.start..out.start + 16].copy_from_slice(&word0.to_be_bytes());
    buf[out.start + 16..inner.start].copy_from_slice(&dst.to_be_bytes());
    Ok(out)
}

/// Validates an outer IPv4 packet carrying IP-in-IP and returns a view of
/// the inner IPv4 packet. The outer header may carry options.
///
/// # Errors
/// [`DecapError::Truncated`], [`DecapError::OuterHeader`],
/// [`DecapError::OuterChecksum`], [`DecapError::OuterLength`],
/// [`DecapError::OuterProtocol`], [`DecapError::OuterFragment`],
/// [`DecapError::InnerNotIpv4`] and the errors of [`InnerPacket::parse`].
// Always inlined, as `encap`.
#[inline(always)]
pub fn decap(packet: &[u8]) -> Result<IpipPacket<'_>, DecapError> {
    let (hlen, total) = inner::outer_v4(packet)?;
    if !cfg!(fuzzing) && !checksum::header_ok(&packet[..hlen]) {
        return Err(DecapError::OuterChecksum);
    }
    if total != packet.len() || total < hlen {
        return Err(DecapError::OuterLength {
            claimed: total,
            available: packet.len(),
        });
    }
    if packet[9] != PROTOCOL {
        return Err(DecapError::OuterProtocol(packet[9]));
    }
    if u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
        return Err(DecapError::OuterFragment);
    }
    let rest = &packet[hlen..];
    if IpVersion::of(rest) != Some(IpVersion::V4) {
        return Err(DecapError::InnerNotIpv4);
    }
    let inner = InnerPacket::parse(rest)?;
    Ok(IpipPacket {
        outer_src: inner::v4_at(packet, 12),
        outer_dst: inner::v4_at(packet, 16),
        outer_ttl: packet[8],
        inner_range: hlen..packet.len(),
        inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{v4_udp, v6_udp, with_headroom};

    const OUTER: Outer = Outer {
        src: Ipv4Addr::new(192, 168, 0, 1),
        dst: Ipv4Addr::new(192, 168, 0, 2),
        ttl: 64,
        id: 0xbeef,
    };

    fn inner() -> Vec<u8> {
        v4_udp(
            [10, 244, 1, 2].into(),
            [10, 244, 2, 3].into(),
            12345,
            53,
            b"weft",
        )
    }

    /// Outer header for `inner()` (32 bytes, DF, TOS 0) under `OUTER`;
    /// checksum by hand: 0x4500+0x0034+0xbeef+0x4000+0x4004+0xc0a8+0x0001+
    /// 0xc0a8+0x0002 = 0x3_057a, folded 0x057d, complemented 0xfa82.
    const VECTOR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x34, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x04, 0xfa, 0x82, 192, 168, 0, 1,
        192, 168, 0, 2,
    ];

    #[test]
    fn encap_vector_and_decap() {
        let p = inner();
        let (mut buf, r) = with_headroom(&p, 24);
        let out = encap(&mut buf, r.clone(), &OUTER).unwrap();
        assert_eq!(out, 4..r.end);
        assert_eq!(&buf[4..24], &VECTOR);
        let d = decap(&buf[out]).unwrap();
        assert_eq!(d.outer_src, OUTER.src);
        assert_eq!(d.outer_dst, OUTER.dst);
        assert_eq!(d.outer_ttl, 64);
        assert_eq!(d.inner.bytes(), &p[..]);
        assert_eq!(d.inner_range, 20..52);
    }

    #[test]
    fn copies_tos_and_no_df() {
        let mut p = inner();
        p[1] = 0xb8;
        p[6] = 0;
        let c = checksum::checksum(&{
            let mut h = [0u8; 20];
            h.copy_from_slice(&p[..20]);
            h[10] = 0;
            h[11] = 0;
            h
        });
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let (mut buf, r) = with_headroom(&p, 20);
        encap(&mut buf, r, &OUTER).unwrap();
        assert_eq!(buf[1], 0xb8);
        assert_eq!(buf[6], 0);
        assert!(decap(&buf).is_ok());
    }

    #[test]
    fn encap_refuses() {
        let p6 = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"",
        );
        let (mut buf, r) = with_headroom(&p6, 20);
        assert_eq!(encap(&mut buf, r, &OUTER), Err(EncapError::NotIpv4));
        let (mut buf, r) = with_headroom(&inner(), 19);
        assert_eq!(
            encap(&mut buf, r, &OUTER),
            Err(EncapError::NoHeadroom {
                needed: 20,
                have: 19
            })
        );
        let mut big = vec![0u8; 70_000];
        big[20] = 0x45;
        assert_eq!(
            encap(&mut big, 20..65_536, &OUTER),
            Err(EncapError::TooLong(65_536))
        );
    }

    fn good() -> Vec<u8> {
        let (mut buf, r) = with_headroom(&inner(), 20);
        encap(&mut buf, r, &OUTER).unwrap();
        buf
    }

    /// Sets byte `i` to `v` and fixes the outer checksum.
    fn patched(i: usize, v: u8) -> Vec<u8> {
        let mut b = good();
        b[i] = v;
        b[10] = 0;
        b[11] = 0;
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn decap_accepts_outer_options() {
        let p = inner();
        // 24-byte outer header: four NOP options.
        let mut b = vec![
            0x46, 0, 0, 0, 0, 1, 0x40, 0, 9, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1,
        ];
        let total = u16::try_from(24 + p.len()).unwrap();
        b[2..4].copy_from_slice(&total.to_be_bytes());
        let c = checksum::checksum(&b);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&p);
        let d = decap(&b).unwrap();
        assert_eq!(d.inner_range, 24..b.len());
        assert_eq!(d.inner.bytes(), &p[..]);
        assert_eq!(d.outer_src, Ipv4Addr::new(1, 2, 3, 4));
        b[20] = 0; // corrupt an option byte: checksum no longer matches
        assert_eq!(decap(&b), Err(DecapError::OuterChecksum));
    }

    #[test]
    fn decap_rejects() {
        let g = good();
        assert_eq!(
            decap(&g[..19]),
            Err(DecapError::Truncated {
                len: 19,
                needed: 20
            })
        );
        assert_eq!(decap(&patched(0, 0x65)), Err(DecapError::OuterHeader));
        let mut bad = g.clone();
        bad[12] ^= 1;
        assert_eq!(decap(&bad), Err(DecapError::OuterChecksum));
        assert_eq!(decap(&patched(9, 41)), Err(DecapError::OuterProtocol(41)));
        assert_eq!(decap(&patched(6, 0x20)), Err(DecapError::OuterFragment));
        assert_eq!(decap(&patched(7, 1)), Err(DecapError::OuterFragment));
        assert_eq!(
            decap(&g[..51]),
            Err(DecapError::OuterLength {
                claimed: 52,
                available: 51
            })
        );
        assert!(matches!(
            decap(&patched(3, 0x33)),
            Err(DecapError::OuterLength { .. })
        ));
        assert_eq!(decap(&patched(20, 0x65)), Err(DecapError::InnerNotIpv4));
        assert_eq!(decap(&patched(30, 0)), Err(DecapError::InnerChecksum));
        // Header-only outer packet: no inner at all.
        let mut empty = patched(3, 20);
        empty.truncate(20);
        assert_eq!(decap(&empty), Err(DecapError::InnerNotIpv4));
    }
}
