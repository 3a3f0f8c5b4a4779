//! Packet builders for unit and property tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;

/// An IPv4 UDP packet with `payload`, valid header checksum, DF set.
pub(crate) fn v4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// An IPv6 UDP packet with `payload` (UDP checksum left 0).
pub(crate) fn v6_udp(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 48 + payload.len()];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&sport.to_be_bytes());
    p[42..44].copy_from_slice(&dport.to_be_bytes());
    p[44..46].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    p[48..].copy_from_slice(payload);
    p
}

/// `packet` copied behind `headroom` zero bytes; returns buffer and inner range.
pub(crate) fn with_headroom(packet: &[u8], headroom: usize) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut b = vec![0u8; headroom];
    b.extend_from_slice(packet);
    (b, headroom..headroom + packet.len())
}
