//! ICMP error replies the router sends about an inner packet it cannot
//! forward: IPv4 "fragmentation needed" (type 3 code 4, RFC 792 + RFC 1191
//! next-hop MTU), ICMPv6 "packet too big" (type 2, RFC 4443), and the time
//! exceeded messages for an expired TTL. Each writes a complete IP packet
//! (addressed back to the original source) into `out` and returns its length.
//!
//! Quoting: IPv4 errors carry as much of the original as keeps the reply
//! within 576 bytes (RFC 1812 §4.3.2.3; at least the header + 8 bytes of
//! RFC 792); ICMPv6 errors as much as keeps it within 1280 bytes (RFC 4443
//! §2.4 (c)). Replies are suppressed, as RFC 1122 §3.2.2 / RFC 1812
//! §4.3.2.7 / RFC 4443 §2.4 (e) demand, for ICMP errors, non-first
//! fragments, and non-unicast sources or (IPv4) destinations.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::inner::v4_at;

/// Longest IPv4 ICMP error datagram (RFC 1812 §4.3.2.3).
pub const MAX_V4_REPLY: usize = 576;
/// Longest ICMPv6 error datagram (the IPv6 minimum MTU).
pub const MAX_V6_REPLY: usize = 1280;
/// TTL / hop limit of the replies.
pub const REPLY_TTL: u8 = 64;

/// Why no ICMP reply was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IcmpError {
    /// The original is not a well-formed IPv4 (resp. IPv6) header.
    #[error("original packet is not a well-formed IP header of the right version")]
    Malformed,
    /// Fragmentation needed only applies to packets with DF set.
    #[error("original packet does not have DF set")]
    NoDontFragment,
    /// No errors about ICMP error messages.
    #[error("original packet is itself an ICMP error")]
    AboutIcmpError,
    /// No errors about non-first fragments.
    #[error("original packet is a non-first fragment")]
    NonFirstFragment,
    /// No errors to unspecified, multicast, broadcast or loopback sources,
    /// nor (IPv4) about packets sent to multicast or broadcast.
    #[error("original source or destination is not unicast")]
    NotUnicast,
    /// `out` is too small for the reply.
    #[error("output buffer too small: need {0} bytes")]
    BufferTooSmall(usize),
}

impl IcmpError {
    /// A stable label for counters.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NoDontFragment => "no_df",
            Self::AboutIcmpError => "about_icmp_error",
            Self::NonFirstFragment => "non_first_fragment",
            Self::NotUnicast => "not_unicast",
            Self::BufferTooSmall(_) => "buffer_too_small",
        }
    }
}

/// Builds an ICMP "fragmentation needed and DF set" (type 3, code 4) reply
/// to `orig`, announcing next-hop `mtu`, from `reply_src`.
///
/// # Errors
/// [`IcmpError::NoDontFragment`] when `orig` lacks DF, and the suppression
/// and buffer errors of the module.
pub fn frag_needed_v4(
    orig: &[u8],
    mtu: u16,
    reply_src: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    check_v4(orig)?;
    if orig[6] & 0x40 == 0 {
        return Err(IcmpError::NoDontFragment);
    }
    let mtu = mtu.to_be_bytes();
    error_v4(orig, 3, 4, [0, 0, mtu[0], mtu[1]], reply_src, out)
}

/// Builds an ICMP "time exceeded in transit" (type 11, code 0) reply.
///
/// # Errors
/// The suppression and buffer errors of the module.
pub fn time_exceeded_v4(
    orig: &[u8],
    reply_src: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    check_v4(orig)?;
    error_v4(orig, 11, 0, [0; 4], reply_src, out)
}

/// Builds an ICMPv6 "packet too big" (type 2, code 0) reply to `orig`,
/// announcing `mtu`, from `reply_src`.
///
/// # Errors
/// The suppression and buffer errors of the module.
pub fn packet_too_big_v6(
    orig: &[u8],
    mtu: u32,
    reply_src: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    // RFC 4443 §2.4 (e.3): packet too big may answer multicast destinations.
    check_v6(orig)?;
    error_v6(orig, 2, 0, mtu.to_be_bytes(), reply_src, out)
}

/// Builds an ICMPv6 "hop limit exceeded in transit" (type 3, code 0) reply.
///
/// # Errors
/// The suppression and buffer errors of the module, and
/// [`IcmpError::NotUnicast`] for multicast destinations.
pub fn time_exceeded_v6(
    orig: &[u8],
    reply_src: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    check_v6(orig)?;
    if orig[24] == 0xff {
        return Err(IcmpError::NotUnicast);
    }
    error_v6(orig, 3, 0, [0; 4], reply_src, out)
}

/// True for the ICMPv4 types that are error messages.
const fn is_v4_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

fn check_v4(orig: &[u8]) -> Result<(), IcmpError> {
    if orig.len() < 20 || orig[0] >> 4 != 4 {
        return Err(IcmpError::Malformed);
    }
    let ihl = usize::from(orig[0] & 0x0f) * 4;
    if ihl < 20 || ihl > orig.len() {
        return Err(IcmpError::Malformed);
    }
    if u16::from_be_bytes([orig[6], orig[7]]) & 0x1fff != 0 {
        return Err(IcmpError::NonFirstFragment);
    }
    let (src, dst) = (v4_at(orig, 12), v4_at(orig, 16));
    let bad = |a: Ipv4Addr| a.is_unspecified() || a.is_multicast() || a.is_broadcast();
    if bad(src) || src.is_loopback() || bad(dst) {
        return Err(IcmpError::NotUnicast);
    }
    if orig[9] == 1 && orig.get(ihl).is_some_and(|&t| is_v4_error(t)) {
        return Err(IcmpError::AboutIcmpError);
    }
    Ok(())
}

fn check_v6(orig: &[u8]) -> Result<(), IcmpError> {
    if orig.len() < 40 || orig[0] >> 4 != 6 {
        return Err(IcmpError::Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&orig[8..24]);
    let src = Ipv6Addr::from(src);
    if src.is_unspecified() || src.is_multicast() || src.is_loopback() {
        return Err(IcmpError::NotUnicast);
    }
    // ICMPv6 errors have types below 128. Only a directly following
    // ICMPv6 header is recognised; extension chains are not walked.
    if orig[6] == 58 && orig.get(40).is_some_and(|&t| t < 128) {
        return Err(IcmpError::AboutIcmpError);
    }
    // Non-first fragment: a fragment header right after the fixed header.
    if orig[6] == 44
        && orig
            .get(42..44)
            .is_some_and(|o| u16::from_be_bytes([o[0], o[1]]) & 0xfff8 != 0)
    {
        return Err(IcmpError::NonFirstFragment);
    }
    Ok(())
}

/// Length of the original as its header claims, capped by the bytes present.
fn claimed_len(orig: &[u8]) -> usize {
    let claimed = if orig[0] >> 4 == 4 {
        usize::from(u16::from_be_bytes([orig[2], orig[3]]))
    } else {
        40 + usize::from(u16::from_be_bytes([orig[4], orig[5]]))
    };
    claimed.min(orig.len())
}

fn error_v4(
    orig: &[u8],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    reply_src: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let ihl = usize::from(orig[0] & 0x0f) * 4;
    // At least the header + 8 bytes (RFC 792) when present, at most 576 total.
    let quote = claimed_len(orig).max(ihl).min(MAX_V4_REPLY - 28);
    let total = 28 + quote;
    let Some(p) = out.get_mut(..total) else {
        return Err(IcmpError::BufferTooSmall(total));
    };
    // total <= 576 fits u16.
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    p[0] = 0x45;
    p[1] = 0xc0; // precedence "internetwork control", as Linux sends errors
    p[2..4].copy_from_slice(&total16.to_be_bytes());
    p[4..8].copy_from_slice(&[0; 4]);
    p[8] = REPLY_TTL;
    p[9] = 1;
    p[10..12].copy_from_slice(&[0, 0]);
    p[12..16].copy_from_slice(&reply_src.octets());
    p[16..20].copy_from_slice(&orig[12..16]);
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = ty;
    p[21] = code;
    p[22..24].copy_from_slice(&[0, 0]);
    p[24..28].copy_from_slice(&rest);
    p[28..].copy_from_slice(&orig[..quote]);
    let c = checksum::checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

fn error_v6(
    orig: &[u8],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    reply_src: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let quote = claimed_len(orig).clamp(40, MAX_V6_REPLY - 48);
    let total = 48 + quote;
    let Some(p) = out.get_mut(..total) else {
        return Err(IcmpError::BufferTooSmall(total));
    };
    let icmp_len = 8 + quote;
    // icmp_len <= 1240 fits u16.
    let icmp_len16 = u16::try_from(icmp_len).unwrap_or(u16::MAX);
    p[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    p[4..6].copy_from_slice(&icmp_len16.to_be_bytes());
    p[6] = 58;
    p[7] = REPLY_TTL;
    p[8..24].copy_from_slice(&reply_src.octets());
    p[24..40].copy_from_slice(&orig[8..24]);
    p[40] = ty;
    p[41] = code;
    p[42..44].copy_from_slice(&[0, 0]);
    p[44..48].copy_from_slice(&rest);
    p[48..].copy_from_slice(&orig[..quote]);
    // Pseudo-header: src, dst, upper-layer length (32 bits), next header.
    let mut acc = checksum::sum(0, &p[8..40]);
    acc += icmp_len as u64 + 58;
    acc = checksum::sum(acc, &p[40..]);
    let c = checksum::finish(acc);
    p[42..44].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inner::InnerPacket;
    use crate::testutil::{v4_udp, v6_udp};

    const ME4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

    fn orig4(payload: usize) -> Vec<u8> {
        v4_udp(
            [10, 244, 1, 2].into(),
            [10, 244, 2, 3].into(),
            1000,
            2000,
            &vec![0xaa; payload],
        )
    }

    #[test]
    fn frag_needed_small_quotes_whole_packet() {
        let o = orig4(12);
        let mut out = [0u8; 600];
        let n = frag_needed_v4(&o, 1450, ME4, &mut out).unwrap();
        assert_eq!(n, 28 + o.len());
        let r = &out[..n];
        let ip = InnerPacket::parse(r).unwrap();
        assert_eq!(ip.src(), std::net::IpAddr::V4(ME4));
        assert_eq!(ip.dst(), std::net::IpAddr::from([10, 244, 1, 2]));
        assert_eq!(ip.protocol(), 1);
        assert_eq!(&r[20..24], &[3, 4, r[22], r[23]]);
        assert_eq!(checksum::checksum(&r[20..]), 0);
        assert_eq!(&r[24..28], &[0, 0, 0x05, 0xaa]);
        assert_eq!(&r[28..], &o[..]);
    }

    #[test]
    fn frag_needed_big_is_capped_at_576() {
        let o = orig4(1472);
        let mut out = [0u8; 2000];
        let n = frag_needed_v4(&o, 1400, ME4, &mut out).unwrap();
        assert_eq!(n, 576);
        assert_eq!(&out[28..576], &o[..548]);
        assert_eq!(checksum::checksum(&out[20..n]), 0);
        assert_eq!(
            frag_needed_v4(&o, 1400, ME4, &mut out[..575]),
            Err(IcmpError::BufferTooSmall(576))
        );
    }

    #[test]
    fn v4_suppression() {
        let mut out = [0u8; 600];
        let mut nodf = orig4(0);
        nodf[6] = 0;
        assert_eq!(
            frag_needed_v4(&nodf, 1400, ME4, &mut out),
            Err(IcmpError::NoDontFragment)
        );
        assert!(time_exceeded_v4(&nodf, ME4, &mut out).is_ok());
        let mut frag = orig4(0);
        frag[7] = 1;
        assert_eq!(
            frag_needed_v4(&frag, 1400, ME4, &mut out),
            Err(IcmpError::NonFirstFragment)
        );
        let bcast = v4_udp([10, 0, 0, 1].into(), Ipv4Addr::BROADCAST, 1, 2, b"");
        assert_eq!(
            frag_needed_v4(&bcast, 1400, ME4, &mut out),
            Err(IcmpError::NotUnicast)
        );
        let mcast_src = v4_udp([224, 0, 0, 1].into(), [10, 0, 0, 1].into(), 1, 2, b"");
        assert_eq!(
            frag_needed_v4(&mcast_src, 1400, ME4, &mut out),
            Err(IcmpError::NotUnicast)
        );
        // An ICMP error (dest unreachable) is never answered; an echo is.
        let mut icmp = orig4(0);
        icmp[9] = 1;
        icmp[20] = 3;
        assert_eq!(
            frag_needed_v4(&icmp, 1400, ME4, &mut out),
            Err(IcmpError::AboutIcmpError)
        );
        icmp[20] = 8;
        assert!(frag_needed_v4(&icmp, 1400, ME4, &mut out).is_ok());
        assert_eq!(
            frag_needed_v4(&[0x45; 19], 1400, ME4, &mut out),
            Err(IcmpError::Malformed)
        );
        assert_eq!(
            frag_needed_v4(&[0x60; 40], 1400, ME4, &mut out),
            Err(IcmpError::Malformed)
        );
    }

    #[test]
    fn time_exceeded_v4_vector() {
        let o = orig4(0);
        let mut out = [0u8; 100];
        let n = time_exceeded_v4(&o, ME4, &mut out).unwrap();
        assert_eq!(&out[20..28], &[11, 0, out[22], out[23], 0, 0, 0, 0]);
        assert_eq!(checksum::checksum(&out[20..n]), 0);
    }

    fn v6(payload: usize) -> Vec<u8> {
        v6_udp(
            "fd00::2".parse().unwrap(),
            "fd00:1::3".parse().unwrap(),
            1,
            2,
            &vec![0x55; payload],
        )
    }

    fn v6_checksum_ok(p: &[u8]) -> bool {
        let len = p.len() - 40;
        let mut acc = checksum::sum(0, &p[8..40]);
        acc += len as u64 + 58;
        checksum::finish(checksum::sum(acc, &p[40..])) == 0
    }

    #[test]
    fn packet_too_big_v6_caps_at_1280() {
        let me: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut out = [0u8; 1500];
        let small = v6(10);
        let n = packet_too_big_v6(&small, 1400, me, &mut out).unwrap();
        assert_eq!(n, 48 + small.len());
        let r = &out[..n];
        let ip = InnerPacket::parse(r).unwrap();
        assert_eq!(ip.dst(), "fd00::2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(ip.protocol(), 58);
        assert_eq!(&r[40..42], &[2, 0]);
        assert_eq!(&r[44..48], &1400u32.to_be_bytes());
        assert!(v6_checksum_ok(r));
        assert_eq!(&r[48..], &small[..]);
        let big = v6(1452);
        let n = packet_too_big_v6(&big, 1400, me, &mut out).unwrap();
        assert_eq!(n, 1280);
        assert!(v6_checksum_ok(&out[..n]));
        assert_eq!(&out[48..1280], &big[..1232]);
    }

    #[test]
    fn v6_suppression_and_time_exceeded() {
        let me: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut out = [0u8; 1500];
        let mut err = v6(8);
        err[6] = 58;
        err[40] = 1;
        assert_eq!(
            packet_too_big_v6(&err, 1400, me, &mut out),
            Err(IcmpError::AboutIcmpError)
        );
        err[40] = 128;
        assert!(packet_too_big_v6(&err, 1400, me, &mut out).is_ok());
        let mc_dst = v6_udp(
            "fd00::2".parse().unwrap(),
            "ff02::1".parse().unwrap(),
            1,
            2,
            b"",
        );
        assert!(packet_too_big_v6(&mc_dst, 1400, me, &mut out).is_ok());
        assert_eq!(
            time_exceeded_v6(&mc_dst, me, &mut out),
            Err(IcmpError::NotUnicast)
        );
        let unspec = v6_udp(Ipv6Addr::UNSPECIFIED, "fd00::2".parse().unwrap(), 1, 2, b"");
        assert_eq!(
            packet_too_big_v6(&unspec, 1400, me, &mut out),
            Err(IcmpError::NotUnicast)
        );
        let mut frag = v6(8);
        frag[6] = 44;
        frag[42..44].copy_from_slice(&0x0008u16.to_be_bytes());
        assert_eq!(
            packet_too_big_v6(&frag, 1400, me, &mut out),
            Err(IcmpError::NonFirstFragment)
        );
        let n = time_exceeded_v6(&v6(0), me, &mut out).unwrap();
        assert_eq!(&out[40..42], &[3, 0]);
        assert!(v6_checksum_ok(&out[..n]));
        assert_eq!(
            packet_too_big_v6(&[0x45; 40], 1400, me, &mut out),
            Err(IcmpError::Malformed)
        );
    }
}
