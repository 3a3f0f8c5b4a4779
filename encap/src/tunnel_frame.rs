//! Whole encapsulated frames for a TX TAP with UDP-tunnel GSO (Linux
//! 6.17+, `TUN_F_UDP_TUNNEL_GSO`): in front of an inner packet (or a whole
//! inner TSO burst) go the tunnel `virtio_net_hdr`, an outer Ethernet
//! header to the TAP's own MAC, outer IPv4 and UDP, and for VXLAN its header
//! and the inner Ethernet header. The kernel then forwards the burst and
//! segments it after encapsulation, as its own vxlan device does.

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::offload::{self, OffloadHeader};
use crate::{ETHERTYPE_IPV4, checksum, vxlan};

/// `virtio_net_hdr_v1_hash_tunnel`: the v1 header (12 bytes), hash fields
/// (8) and the outer transport / inner network header offsets (2 + 2).
pub const TUNNEL_HDR_LEN: usize = 24;
/// Outer Ethernet header.
const ETH_LEN: usize = 14;
/// Outer IPv4 + UDP.
const IP_UDP_LEN: usize = 28;
/// Outer TTL before forwarding (the kernel takes one off).
pub const OUTER_TTL: u8 = 65;
/// Source MAC of the outer Ethernet header (locally administered).
const SRC_MAC: [u8; 6] = [0x02, 0x57, 0, 0, 0, 0];

/// Room a frame needs in front of the inner packet: the tunnel
/// `virtio_net_hdr`, outer Ethernet, IPv4 and UDP, and VXLAN's headers.
pub const HEADROOM: usize = TUNNEL_HDR_LEN + ETH_LEN + IP_UDP_LEN + vxlan::HEADROOM;

/// Where one burst goes and how it is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// This node's underlay address.
    pub src: Ipv4Addr,
    /// The peer's underlay address.
    pub dst: Ipv4Addr,
    /// Outer UDP source port (per flow, see [`vxlan::source_port`]).
    pub src_port: u16,
    /// Outer UDP destination port.
    pub dst_port: u16,
    /// VXLAN header and inner MACs; None for flannel udp.
    pub vxlan: Option<vxlan::Header>,
}

/// Largest inner packet one frame can carry (the outer IPv4 total length
/// is 16 bits).
#[must_use]
pub fn max_inner(vxlan: bool) -> usize {
    usize::from(u16::MAX) - IP_UDP_LEN - if vxlan { vxlan::HEADROOM } else { 0 }
}

/// Whether a packet of `len` bytes with `offload` can go out as one frame
/// (not too long, and not UFO, which the kernel does not tunnel).
#[must_use]
pub fn fits(len: usize, offload: &OffloadHeader, vxlan: bool) -> bool {
    len <= max_inner(vxlan) && !offload.is_ufo()
}

/// Writes the frame headers in front of `buf[inner]` (one inner packet or
/// burst, TUN header `offload`, at least [`HEADROOM`] bytes free in front
/// of it) and returns the range of the whole frame. None when the packet
/// cannot be carried this way (see [`fits`]) or there is no room.
#[must_use]
pub fn build(
    buf: &mut [u8],
    inner: Range<usize>,
    tap_mac: [u8; 6],
    outer: &Outer,
    offload: &OffloadHeader,
) -> Option<Range<usize>> {
    if !fits(inner.len(), offload, outer.vxlan.is_some()) {
        return None;
    }
    let payload = match &outer.vxlan {
        Some(h) => vxlan::encap_with(buf, inner.clone(), h).ok()?.start,
        None => {
            (inner.start <= inner.end && inner.end <= buf.len()).then_some(())?;
            inner.start
        }
    };
    let start = payload.checked_sub(TUNNEL_HDR_LEN + ETH_LEN + IP_UDP_LEN)?;
    // From the outer Ethernet header to the inner IP header.
    let shift = u16::try_from(inner.start - start - TUNNEL_HDR_LEN).ok()?;
    let (flags, gso_type, hdr_len, csum_start) = if offload.is_gso() {
        (
            offload::F_NEEDS_CSUM,
            offload.gso_type | offload::GSO_UDP_TUNNEL_IPV4,
            offload.hdr_len.checked_add(shift)?,
            offload.csum_start.checked_add(shift)?,
        )
    } else if offload.flags & offload::F_NEEDS_CSUM != 0 {
        (
            offload::F_NEEDS_CSUM,
            0,
            0,
            offload.csum_start.checked_add(shift)?,
        )
    } else {
        (0, 0, 0, 0)
    };
    let total = u16::try_from(inner.end - payload + IP_UDP_LEN).ok()?;
    let f = &mut buf[start..payload];
    f.fill(0);
    // num_buffers and the hash fields stay zero.
    let mut vh = [0u8; offload::LEN];
    OffloadHeader {
        flags,
        gso_type,
        hdr_len,
        gso_size: offload.gso_size,
        csum_start,
        csum_offset: offload.csum_offset,
    }
    .emit(&mut vh);
    f[..offload::LEN].copy_from_slice(&vh);
    let outer_th = (ETH_LEN + 20) as u16;
    f[20..22].copy_from_slice(&outer_th.to_le_bytes());
    f[22..24].copy_from_slice(&shift.to_le_bytes());

    let f = &mut f[TUNNEL_HDR_LEN..];
    // Outer Ethernet: to the TAP itself, so the kernel takes it as ours.
    f[0..6].copy_from_slice(&tap_mac);
    f[6..12].copy_from_slice(&SRC_MAC);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_LEN..ETH_LEN + 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF: the underlay never fragments
    ip[8] = OUTER_TTL;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&outer.src.octets());
    ip[16..20].copy_from_slice(&outer.dst.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[ETH_LEN + 20..ETH_LEN + IP_UDP_LEN];
    udp[0..2].copy_from_slice(&outer.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&outer.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(total - 20).to_be_bytes());
    // Checksum zero (RFC 7348 §5 allows it for IPv4; kernel vxlan's default).
    Some(start..inner.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MacAddr;

    fn outer(vxlan: bool) -> Outer {
        Outer {
            src: Ipv4Addr::new(172, 31, 0, 1),
            dst: Ipv4Addr::new(172, 31, 0, 2),
            src_port: 40000,
            dst_port: if vxlan { 8472 } else { 8285 },
            vxlan: vxlan.then_some(vxlan::Header::new(
                1,
                MacAddr([2, 0x57, 1, 1, 1, 1]),
                MacAddr([2, 0x57, 2, 2, 2, 2]),
            )),
        }
    }

    /// A buffer with an inner packet of `len` bytes (IP version `v`) after
    /// the frame headroom.
    fn packet(len: usize, v: u8) -> (Vec<u8>, Range<usize>) {
        let mut buf = vec![0u8; HEADROOM + len];
        buf[HEADROOM] = v << 4 | 5;
        (buf, HEADROOM..HEADROOM + len)
    }

    fn tso(gso_size: u16) -> OffloadHeader {
        OffloadHeader {
            flags: 1,
            gso_type: 1, // TCPv4
            hdr_len: 52,
            gso_size,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn tso_header_shifts_offsets_and_marks_the_tunnel() {
        let (mut buf, inner) = packet(20_052, 4);
        let frame = build(&mut buf, inner.clone(), [9; 6], &outer(true), &tso(1398)).unwrap();
        assert_eq!(
            frame,
            0..inner.end,
            "24 + 14 + 20 + 8 + 8 + 14 bytes in front"
        );
        let out = &buf[frame];
        assert_eq!(out[0], 1, "NEEDS_CSUM");
        assert_eq!(out[1], 0x21, "TCPv4 in a UDP tunnel over IPv4");
        assert_eq!(u16::from_le_bytes([out[2], out[3]]), 52 + 64);
        assert_eq!(u16::from_le_bytes([out[4], out[5]]), 1398);
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 20 + 64);
        assert_eq!(u16::from_le_bytes([out[8], out[9]]), 16);
        assert_eq!(u16::from_le_bytes([out[20], out[21]]), 34, "outer UDP");
        assert_eq!(u16::from_le_bytes([out[22], out[23]]), 64, "inner IP");
        let f = &out[24..];
        assert_eq!(&f[0..6], &[9; 6], "to the TAP's MAC");
        let ip = &f[14..34];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 50 + 20_052);
        assert_eq!(checksum::checksum(ip), 0, "valid outer IPv4 checksum");
        assert_eq!(ip[8], OUTER_TTL);
        assert_eq!(&f[34..38], &[0x9c, 0x40, 0x21, 0x18], "ports 40000 -> 8472");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 30 + 20_052);
        assert_eq!(&f[40..42], &[0, 0], "no outer UDP checksum");
        assert_eq!(&f[42..50], &[8, 0, 0, 0, 0, 0, 1, 0], "VXLAN, VNI 1");
        assert_eq!(&f[50..56], &[2, 0x57, 2, 2, 2, 2], "inner dst MAC");
        assert_eq!(&f[62..64], &[8, 0]);
        assert_eq!(f[64], 0x45, "the inner packet follows");
    }

    #[test]
    fn single_packets_keep_a_partial_checksum_and_udp_mode_has_no_vxlan() {
        let vh = OffloadHeader {
            flags: 1,
            csum_start: 40,
            csum_offset: 16,
            ..OffloadHeader::default()
        };
        let (mut buf, inner) = packet(80, 6);
        let frame = build(&mut buf, inner, [9; 6], &outer(false), &vh).unwrap();
        assert_eq!(frame.len(), 24 + 14 + 20 + 8 + 80);
        let out = &buf[frame];
        assert_eq!(&out[0..4], &[1, 0, 0, 0], "NEEDS_CSUM, no GSO");
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 40 + 42);
        assert_eq!(u16::from_le_bytes([out[22], out[23]]), 42, "inner IP");
        let (mut buf, inner) = packet(80, 4);
        let frame = build(
            &mut buf,
            inner,
            [9; 6],
            &outer(false),
            &OffloadHeader::default(),
        );
        assert_eq!(&buf[frame.unwrap()][0..10], &[0; 10]);
    }

    #[test]
    fn oversized_ufo_and_cramped_packets_are_refused() {
        let (mut buf, inner) = packet(max_inner(true), 4);
        assert!(build(&mut buf, inner, [0; 6], &outer(true), &tso(1000)).is_some());
        let (mut buf, inner) = packet(max_inner(true) + 1, 4);
        assert!(build(&mut buf, inner, [0; 6], &outer(true), &tso(1000)).is_none());
        let ufo = OffloadHeader {
            gso_type: offload::GSO_UDP,
            ..tso(1000)
        };
        let (mut buf, inner) = packet(3000, 4);
        assert!(!fits(3000, &ufo, true));
        assert!(build(&mut buf, inner, [0; 6], &outer(true), &ufo).is_none());
        let (mut buf, inner) = packet(100, 4);
        let short = inner.start - 10..inner.end - 10;
        assert!(
            build(&mut buf, short, [0; 6], &outer(true), &tso(1000)).is_none(),
            "no room for the headers"
        );
        let (mut buf, _) = packet(100, 4);
        let past = HEADROOM..HEADROOM + 101;
        assert!(build(&mut buf, past, [0; 6], &outer(false), &tso(1000)).is_none());
    }
}
