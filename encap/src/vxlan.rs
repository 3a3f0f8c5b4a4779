//! VXLAN (RFC 7348): the UDP payload is an 8-byte VXLAN header (flags with
//! the I bit, 24-bit VNI) followed by an inner Ethernet frame carrying IP.
//!
//! ```text
//!  0               1               2               3
//! |R|R|R|R|I|R|R|R|            Reserved (24 bits)                 |
//! |            VXLAN Network Identifier (VNI)     |   Reserved    |
//! | inner dst MAC (6) | inner src MAC (6) | ethertype (2) | inner IP ...
//! ```
//!
//! Encapsulation writes these 22 bytes ([`HEADROOM`]) in front of the inner
//! packet inside the caller's buffer. Decapsulation validates strictly, as
//! Linux does: I flag set, every reserved bit zero, VNI as configured,
//! ethertype IPv4/IPv6 and equal to the inner IP version, inner IP header
//! well formed and its length consistent with the frame.

use std::ops::{Range, RangeInclusive};

use crate::error::{DecapError, EncapError};
use crate::inner::{InnerPacket, IpVersion};
use crate::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, MacAddr, headroom_range};

/// Default UDP destination port (Linux and flannel; IANA's is 4789).
pub const DEFAULT_PORT: u16 = 8472;
/// Default VNI (flannel's).
pub const DEFAULT_VNI: u32 = 1;
/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Length of the inner Ethernet header (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// Bytes written in front of the inner IP packet: VXLAN + Ethernet header.
pub const HEADROOM: usize = HEADER_LEN + ETH_LEN;
/// Largest valid VNI.
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Source-port range Linux uses when a vxlan device has no `srcport`
/// setting: the namespace's `ip_local_port_range`, by default 32768..=60999.
pub const DEFAULT_SRC_PORTS: RangeInclusive<u16> = 32768..=60999;
/// Shortest Ethernet frame without FCS; shorter frames are padded, so a
/// frame up to this length may carry bytes after the inner IP packet.
const MIN_ETH_FRAME: usize = 60;

const FLAG_I: u8 = 0x08;

/// A VXLAN endpoint's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
}

impl Default for Vxlan {
    fn default() -> Self {
        Self {
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
        }
    }
}

impl Vxlan {
    /// [`encap`] with this configuration's VNI.
    ///
    /// # Errors
    /// As [`encap`].
    pub fn encap(
        &self,
        buf: &mut [u8],
        inner: Range<usize>,
        src_mac: MacAddr,
        dst_mac: MacAddr,
    ) -> Result<Range<usize>, EncapError> {
        encap(buf, inner, self.vni, src_mac, dst_mac)
    }

    /// [`decap`] expecting this configuration's VNI.
    ///
    /// # Errors
    /// As [`decap`].
    pub fn decap<'a>(&self, datagram: &'a [u8]) -> Result<VxlanFrame<'a>, DecapError> {
        decap(datagram, self.vni)
    }
}

/// A decapsulated VXLAN datagram, borrowing the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanFrame<'a> {
    /// VNI of the datagram (equal to the expected one).
    pub vni: u32,
    /// Inner Ethernet source MAC.
    pub src_mac: MacAddr,
    /// Inner Ethernet destination MAC.
    pub dst_mac: MacAddr,
    /// The validated inner IP packet (Ethernet padding trimmed).
    pub inner: InnerPacket<'a>,
    /// Where `inner` lies in the datagram, for in-place edits (e.g. TTL).
    pub inner_range: Range<usize>,
}

/// A VXLAN header plus inner Ethernet addresses, composed once per
/// (VNI, MACs) triple, e.g. per peer in the router's peer table, so the hot
/// path only adds the ethertype and stores two words ([`encap_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes 0..16: flags, VNI, destination MAC, first two source MAC bytes.
    word0: u128,
    /// Bytes 14..22: source MAC, ethertype left zero.
    word1: u64,
}

impl Header {
    /// Composes the header for `vni` (masked to 24 bits) and the inner MACs.
    /// A `const fn`, so fixed headers can be constants.
    #[must_use]
    // `as` because `From` is not const; every cast widens.
    #[allow(clippy::cast_lossless)]
    pub const fn new(vni: u32, src_mac: MacAddr, dst_mac: MacAddr) -> Self {
        let (d, m) = (dst_mac.0, src_mac.0);
        Self {
            word0: ((FLAG_I as u128) << 120)
                | (((vni & MAX_VNI) as u128) << 72)
                | (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], m[0], m[1]]) as u128),
            word1: u64::from_be_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]),
        }
    }
}

/// Writes the VXLAN header and the inner Ethernet header into the
/// [`HEADROOM`] bytes in front of `buf[inner]` and returns the range of the
/// finished UDP payload (`inner.start - HEADROOM .. inner.end`). The
/// ethertype follows the inner packet's IP version. `vni` is masked to 24
/// bits. Nothing is allocated and the inner packet is not moved. Same as
/// [`encap_with`] on `Header::new(vni, src_mac, dst_mac)`.
///
/// # Errors
/// [`EncapError::RangeOutOfBounds`], [`EncapError::NoHeadroom`],
/// [`EncapError::NotIp`].
#[inline]
pub fn encap(
    buf: &mut [u8],
    inner: Range<usize>,
    vni: u32,
    src_mac: MacAddr,
    dst_mac: MacAddr,
) -> Result<Range<usize>, EncapError> {
    encap_with(buf, inner, &Header::new(vni, src_mac, dst_mac))
}

/// [`encap`] with a precomputed [`Header`]: the cheapest hot path.
///
/// # Errors
/// As [`encap`].
#[inline]
pub fn encap_with(
    buf: &mut [u8],
    inner: Range<usize>,
    header: &Header,
) -> Result<Range<usize>, EncapError> {
    let out = headroom_range(buf.len(), &inner, HEADROOM)?;
    let version = IpVersion::of(&buf[inner]).ok_or(EncapError::NotIp)?;
    // Two wide stores, so that a decoder reading the header right after
    // (same core) gets store-to-load forwarding instead of stalling on
    // byte-wise stores.
    let word1 = header.word1 | u64::from(version.ethertype());
    let h = &mut buf[out.start..out.start + HEADROOM];
    h[..16].copy_from_slice(&header.word0.to_be_bytes());
    h[14..].copy_from_slice(&word1.to_be_bytes());
    Ok(out)
}

/// Validates a VXLAN UDP payload and returns a view of its inner packet.
///
/// # Errors
/// [`DecapError::Truncated`], [`DecapError::VxlanNoIFlag`],
/// [`DecapError::VxlanReservedBits`], [`DecapError::VniMismatch`],
/// [`DecapError::EtherType`], [`DecapError::EtherTypeMismatch`] and the
/// inner-packet errors of [`InnerPacket::parse`].
#[inline]
pub fn decap(datagram: &[u8], expected_vni: u32) -> Result<VxlanFrame<'_>, DecapError> {
    let Some((h, frame_rest)) = datagram.split_first_chunk::<HEADROOM>() else {
        return Err(DecapError::Truncated {
            len: datagram.len(),
            needed: HEADROOM,
        });
    };
    // Fast path: the whole first word compared at once (flags exactly I,
    // reserved bytes zero, VNI as expected); the cold path says why not.
    let w0 = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    if w0 != (u64::from(FLAG_I) << 56) | (u64::from(expected_vni) << 8) {
        return Err(header_error(w0, expected_vni));
    }
    let ethertype = u16::from_be_bytes([h[20], h[21]]);
    let nibble = frame_rest.first().map_or(0, |b| b >> 4);
    if !matches!(
        (ethertype, nibble),
        (ETHERTYPE_IPV4, 4) | (ETHERTYPE_IPV6, 6)
    ) {
        return Err(ether_error(ethertype, nibble));
    }
    let vni = expected_vni;
    // Ethernet pads frames to 60 bytes: only then may bytes follow the packet.
    let inner = if HEADROOM - HEADER_LEN + frame_rest.len() <= MIN_ETH_FRAME {
        InnerPacket::parse_prefix(frame_rest)?
    } else {
        InnerPacket::parse(frame_rest)?
    };
    Ok(VxlanFrame {
        vni,
        src_mac: MacAddr([h[14], h[15], h[16], h[17], h[18], h[19]]),
        dst_mac: MacAddr([h[8], h[9], h[10], h[11], h[12], h[13]]),
        inner_range: HEADROOM..HEADROOM + inner.len(),
        inner,
    })
}

/// Why the first VXLAN word was refused.
#[cold]
fn header_error(w0: u64, expected: u32) -> DecapError {
    let [flags, r1, r2, r3, v0, v1, v2, r4] = w0.to_be_bytes();
    if flags & FLAG_I == 0 {
        DecapError::VxlanNoIFlag
    } else if flags & !FLAG_I != 0 || r1 != 0 || r2 != 0 || r3 != 0 || r4 != 0 {
        DecapError::VxlanReservedBits
    } else {
        DecapError::VniMismatch {
            got: u32::from_be_bytes([0, v0, v1, v2]),
            expected,
        }
    }
}

/// Why the ethertype / inner version pair was refused.
#[cold]
fn ether_error(ethertype: u16, nibble: u8) -> DecapError {
    match (ethertype, nibble) {
        (ETHERTYPE_IPV4 | ETHERTYPE_IPV6, 4 | 6) => DecapError::EtherTypeMismatch {
            ethertype,
            version: nibble,
        },
        (ETHERTYPE_IPV4 | ETHERTYPE_IPV6, _) => DecapError::InnerVersion(nibble),
        _ => DecapError::EtherType(ethertype),
    }
}

/// Linux's `udp_flow_src_port`: maps a flow hash onto `ports` (inclusive)
/// so that every flow keeps one source port and flows spread evenly
/// (`hash ^= hash << 16; port = ((hash * span) >> 32) + lo`). An empty or
/// single-port range returns its start.
#[must_use]
pub fn source_port(hash: u32, ports: RangeInclusive<u16>) -> u16 {
    let (lo, hi) = (*ports.start(), *ports.end());
    if hi <= lo {
        return lo;
    }
    let h = hash ^ (hash << 16);
    let span = u64::from(hi - lo) + 1;
    // (h * span) >> 32 < span <= 65536 - lo, so the sum fits in u16.
    let off = (u64::from(h) * span) >> 32;
    lo + u16::try_from(off).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{v4_udp, v6_udp, with_headroom};

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const DST: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn v4() -> Vec<u8> {
        v4_udp(
            [10, 244, 1, 2].into(),
            [10, 244, 2, 3].into(),
            12345,
            53,
            b"weft",
        )
    }

    /// Test vector: VNI 1, MACs 02::01 -> 02::02, IPv4.
    const HEADER_V4: [u8; 22] = [
        0x08, 0, 0, 0, 0, 0, 0x01, 0, 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
    ];

    #[test]
    fn encap_writes_vector_and_decap_reads_it() {
        let p = v4();
        let (mut buf, r) = with_headroom(&p, 30);
        let out = encap(&mut buf, r.clone(), 1, SRC, DST).unwrap();
        assert_eq!(out, 8..r.end);
        assert_eq!(&buf[out.start..r.start], &HEADER_V4);
        assert_eq!(&buf[r.clone()], &p[..]);
        let f = decap(&buf[out.clone()], 1).unwrap();
        assert_eq!(f.vni, 1);
        assert_eq!(f.src_mac, SRC);
        assert_eq!(f.dst_mac, DST);
        assert_eq!(f.inner.bytes(), &p[..]);
        assert_eq!(&buf[out][f.inner_range], &p[..]);
    }

    #[test]
    fn big_vni_and_v6() {
        let p = v6_udp(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            1,
            2,
            &[7; 100],
        );
        let (mut buf, r) = with_headroom(&p, HEADROOM);
        let out = encap(&mut buf, r, 0xabcdef, SRC, DST).unwrap();
        assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(&buf[20..22], &[0x86, 0xdd]);
        let f = decap(&buf[out], 0xabcdef).unwrap();
        assert_eq!(f.inner.version(), IpVersion::V6);
    }

    #[test]
    fn precomputed_header_matches() {
        let p = v4();
        let (mut a, r) = with_headroom(&p, HEADROOM);
        let mut b = a.clone();
        let h = Header::new(0x12_3456, SRC, DST);
        assert_eq!(
            encap_with(&mut a, r.clone(), &h),
            encap(&mut b, r, 0x12_3456, SRC, DST)
        );
        assert_eq!(a, b);
        assert_eq!(Header::new(0x0100_0001, SRC, DST), Header::new(1, SRC, DST));
    }

    #[test]
    fn encap_errors() {
        let p = v4();
        let (mut buf, r) = with_headroom(&p, HEADROOM - 1);
        assert_eq!(
            encap(&mut buf, r.clone(), 1, SRC, DST),
            Err(EncapError::NoHeadroom {
                needed: 22,
                have: 21
            })
        );
        assert!(matches!(
            encap(&mut buf, r.start..r.end + 1, 1, SRC, DST),
            Err(EncapError::RangeOutOfBounds { .. })
        ));
        let mut junk = [0u8; 40];
        assert_eq!(
            encap(&mut junk, 22..40, 1, SRC, DST),
            Err(EncapError::NotIp)
        );
    }

    fn good() -> Vec<u8> {
        let p = v4();
        let (mut buf, r) = with_headroom(&p, HEADROOM);
        encap(&mut buf, r, 1, SRC, DST).unwrap();
        buf
    }

    #[test]
    fn decap_rejects_each_header_fault() {
        let g = good();
        let with = |i: usize, v: u8| {
            let mut b = g.clone();
            b[i] = v;
            b
        };
        assert_eq!(
            decap(&g[..21], 1),
            Err(DecapError::Truncated {
                len: 21,
                needed: 22
            })
        );
        assert_eq!(decap(&with(0, 0), 1), Err(DecapError::VxlanNoIFlag));
        assert_eq!(decap(&with(0, 0x0c), 1), Err(DecapError::VxlanReservedBits));
        assert_eq!(decap(&with(2, 1), 1), Err(DecapError::VxlanReservedBits));
        assert_eq!(decap(&with(7, 1), 1), Err(DecapError::VxlanReservedBits));
        assert_eq!(
            decap(&g, 2),
            Err(DecapError::VniMismatch {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            decap(&with(21, 0x06), 1),
            Err(DecapError::EtherType(0x0806))
        );
        let mut six = g.clone();
        six[20..22].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            decap(&six, 1),
            Err(DecapError::EtherTypeMismatch {
                ethertype: 0x86dd,
                version: 4
            })
        );
        assert_eq!(decap(&with(22, 0x55), 1), Err(DecapError::InnerVersion(5)));
        assert_eq!(decap(&with(32, 0), 1), Err(DecapError::InnerChecksum));
        assert_eq!(decap(&g[..22], 1), Err(DecapError::InnerVersion(0)));
    }

    #[test]
    fn padding_only_for_short_frames() {
        // 14 + 32 = 46 bytes of frame: padded to 60 by Ethernet.
        let mut g = good();
        g.resize(HEADER_LEN + 60, 0);
        assert_eq!(decap(&g, 1).unwrap().inner.len(), 32);
        g.push(0);
        assert!(matches!(decap(&g, 1), Err(DecapError::InnerLength { .. })));
    }

    #[test]
    fn source_port_spreads_over_range() {
        assert_eq!(source_port(0, DEFAULT_SRC_PORTS), 32768);
        // h ^= h << 16 turns 0xffff into u32::MAX: the top of the range.
        assert_eq!(source_port(0xffff, DEFAULT_SRC_PORTS), 60999);
        assert_eq!(
            source_port(0x8000_0000, DEFAULT_SRC_PORTS),
            32768 + 28232 / 2
        );
        assert_eq!(source_port(5, 100..=100), 100);
        let (lo, hi) = (100, 99);
        assert_eq!(source_port(5, lo..=hi), 100);
        assert_eq!(source_port(0xffff, 0..=65535), 65535);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let p = source_port(i.wrapping_mul(0x9e37_79b9), DEFAULT_SRC_PORTS);
            assert!(DEFAULT_SRC_PORTS.contains(&p));
            seen.insert(p);
        }
        assert!(seen.len() > 950, "{}", seen.len());
    }
}
