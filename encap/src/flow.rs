//! A flow hash over an inner packet's 5-tuple, for VXLAN source ports and
//! any per-flow spreading. Works on unvalidated bytes and never panics.
//!
//! Covered: source and destination address, protocol (IPv4) or first next
//! header (IPv6), and the TCP/UDP/SCTP/UDP-Lite ports when the packet is
//! not a fragment (a non-first fragment has no ports, so all fragments of
//! a datagram hash the same by leaving them out). Murmur3 mixing, seeded.

/// IP protocol numbers whose first 4 payload bytes are the two ports.
const PORTED: [u8; 4] = [6, 17, 132, 136];

#[inline]
fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline]
fn word(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// [`hash_with_seed`] with seed 0.
#[must_use]
pub fn hash(inner: &[u8]) -> u32 {
    hash_with_seed(inner, 0)
}

/// The flow hash of an IPv4/IPv6 packet under `seed` (use a per-node random
/// seed to keep remote hosts from steering flows). Returns 0 for bytes that
/// are not an IPv4/IPv6 header.
#[must_use]
pub fn hash_with_seed(inner: &[u8], seed: u32) -> u32 {
    match inner.first().map(|b| b >> 4) {
        Some(4) if inner.len() >= 20 => {
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            let proto = inner[9];
            // MF flag or a non-zero offset: a fragment, ports not reliable.
            let frag = u16::from_be_bytes([inner[6], inner[7]]) & 0x3fff != 0;
            let mut h = mix(seed, word(inner, 12));
            h = mix(h, word(inner, 16));
            h = mix(h, u32::from(proto));
            if !frag && ihl >= 20 && PORTED.contains(&proto) {
                h = mix(h, word(inner, ihl));
            }
            fmix(h ^ 4)
        }
        Some(6) if inner.len() >= 40 => {
            let nh = inner[6];
            let mut h = seed;
            for at in (8..40).step_by(4) {
                h = mix(h, word(inner, at));
            }
            h = mix(h, u32::from(nh));
            if PORTED.contains(&nh) {
                h = mix(h, word(inner, 40));
            }
            fmix(h ^ 6)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{v4_udp, v6_udp};

    #[test]
    fn same_flow_same_hash_payload_ignored() {
        let a = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1000, 53, b"a");
        let b = v4_udp(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            1000,
            53,
            b"bbbbbb",
        );
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), 0);
    }

    #[test]
    fn each_tuple_field_matters() {
        let base = hash(&v4_udp(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            1000,
            53,
            b"",
        ));
        for other in [
            v4_udp([10, 0, 0, 9].into(), [10, 0, 0, 2].into(), 1000, 53, b""),
            v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 9].into(), 1000, 53, b""),
            v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1001, 53, b""),
            v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1000, 54, b""),
        ] {
            assert_ne!(hash(&other), base);
        }
        let mut icmp = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1000, 53, b"");
        icmp[9] = 1;
        assert_ne!(hash(&icmp), base);
        assert_ne!(hash_with_seed(&icmp, 1), hash(&icmp));
    }

    #[test]
    fn fragments_ignore_ports() {
        let mut a = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1000, 53, b"");
        let mut b = v4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 2000, 99, b"");
        a[6] = 0x20; // MF
        b[6] = 0x00;
        b[7] = 0x10; // offset 16
        assert_eq!(hash(&a), hash(&b));
    }

    #[test]
    fn v6_and_garbage() {
        let a = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            2,
            b"",
        );
        let b = v6_udp(
            "fd::1".parse().unwrap(),
            "fd::2".parse().unwrap(),
            1,
            3,
            b"",
        );
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&[]), 0);
        assert_eq!(hash(&[0x45; 19]), 0);
        assert_eq!(hash(&[0x60; 39]), 0);
        // Options claiming to run past the end: no panic, still hashed.
        let mut c = [0u8; 20];
        c[0] = 0x4f;
        c[9] = 6;
        let _ = hash(&c);
    }
}
