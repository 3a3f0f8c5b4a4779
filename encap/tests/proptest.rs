//! Property tests: every format round-trips, every decoder survives
//! arbitrary and mutated bytes, the helpers keep their invariants.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use weft_encap::checksum::checksum;
use weft_encap::{DecapError, InnerPacket, IpVersion, MacAddr, flow, icmp, ipip, ttl, udp, vxlan};

/// A generated inner packet and the fields it was built from.
#[derive(Debug, Clone)]
struct Pkt {
    bytes: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
}

fn v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    tos: u8,
    flags: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[1] = tos;
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    p[6] = flags;
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..].copy_from_slice(payload);
    p
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, hl: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload.len()];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    p[6] = nh;
    p[7] = hl;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..].copy_from_slice(payload);
    p
}

fn pkt_v4() -> impl Strategy<Value = Pkt> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![Just(0u8), Just(0x40u8)],
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..1480),
    )
        .prop_map(|(s, d, proto, tos, flags, ttl, payload)| Pkt {
            bytes: v4(s.into(), d.into(), proto, tos, flags, ttl, &payload),
            src: IpAddr::from(s),
            dst: IpAddr::from(d),
            proto,
        })
}

fn pkt_v6() -> impl Strategy<Value = Pkt> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..1460),
    )
        .prop_map(|(s, d, nh, hl, payload)| Pkt {
            bytes: v6(s.into(), d.into(), nh, hl, &payload),
            src: IpAddr::from(s),
            dst: IpAddr::from(d),
            proto: nh,
        })
}

fn pkt() -> impl Strategy<Value = Pkt> {
    prop_oneof![pkt_v4(), pkt_v6()]
}

fn placed(p: &[u8], headroom: usize, tail: usize) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut b = vec![0xeeu8; headroom];
    b.extend_from_slice(p);
    b.extend(std::iter::repeat_n(0xdd, tail));
    (b, headroom..headroom + p.len())
}

fn same_inner(i: &InnerPacket<'_>, p: &Pkt) {
    assert_eq!(i.bytes(), &p.bytes[..]);
    assert_eq!(i.src(), p.src);
    assert_eq!(i.dst(), p.dst);
    assert_eq!(i.protocol(), p.proto);
    assert_eq!(i.version() == IpVersion::V4, p.src.is_ipv4());
}

proptest! {
    #[test]
    fn vxlan_round_trip(p in pkt(), vni in 0..=vxlan::MAX_VNI, s in any::<[u8; 6]>(), d in any::<[u8; 6]>(),
                        extra in 0usize..64, tail in 0usize..16) {
        let (mut buf, r) = placed(&p.bytes, vxlan::HEADROOM + extra, tail);
        let out = vxlan::encap(&mut buf, r.clone(), vni, MacAddr(s), MacAddr(d)).unwrap();
        prop_assert_eq!(out.clone(), extra..r.end);
        let f = vxlan::decap(&buf[out.clone()], vni).unwrap();
        prop_assert_eq!(f.vni, vni);
        prop_assert_eq!(f.src_mac, MacAddr(s));
        prop_assert_eq!(f.dst_mac, MacAddr(d));
        same_inner(&f.inner, &p);
        prop_assert_eq!(&buf[out][f.inner_range], &p.bytes[..]);
        let wrong = (vni + 1) & vxlan::MAX_VNI;
        let rejected = matches!(vxlan::decap(&buf[extra..r.end], wrong), Err(DecapError::VniMismatch { .. }));
        prop_assert!(rejected);
    }

    #[test]
    fn udp_round_trip(p in pkt(), extra in 0usize..8) {
        let (buf, r) = placed(&p.bytes, extra, 3);
        let out = udp::encap(&buf, r.clone()).unwrap();
        prop_assert_eq!(out.clone(), r);
        same_inner(&udp::decap(&buf[out]).unwrap(), &p);
    }

    #[test]
    fn ipip_round_trip(p in pkt_v4(), s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), ttl in any::<u8>(),
                       id in any::<u16>(), extra in 0usize..32) {
        let (mut buf, r) = placed(&p.bytes, ipip::HEADROOM + extra, 5);
        let outer = ipip::Outer { src: s.into(), dst: d.into(), ttl, id };
        let out = ipip::encap(&mut buf, r.clone(), &outer).unwrap();
        let got = ipip::decap(&buf[out.clone()]).unwrap();
        prop_assert_eq!(got.outer_src, outer.src);
        prop_assert_eq!(got.outer_dst, outer.dst);
        prop_assert_eq!(got.outer_ttl, ttl);
        same_inner(&got.inner, &p);
        // TOS and DF follow the inner header.
        prop_assert_eq!(buf[out.start + 1], p.bytes[1]);
        prop_assert_eq!(buf[out.start + 6], p.bytes[6] & 0x40);
    }

    #[test]
    fn ipip_refuses_v6(p in pkt_v6()) {
        let (mut buf, r) = placed(&p.bytes, ipip::HEADROOM, 0);
        let outer = ipip::Outer { src: Ipv4Addr::LOCALHOST, dst: Ipv4Addr::LOCALHOST, ttl: 1, id: 0 };
        prop_assert!(ipip::encap(&mut buf, r, &outer).is_err());
    }

    #[test]
    fn ttl_decrement_keeps_checksum(mut p in pkt()) {
        let before = p.bytes.clone();
        let is_v4 = p.src.is_ipv4();
        let at = if is_v4 { 8 } else { 7 };
        match ttl::decrement(&mut p.bytes) {
            Ok(n) => {
                prop_assert_eq!(n, before[at] - 1);
                prop_assert_eq!(p.bytes[at], n);
                if is_v4 {
                    prop_assert_eq!(checksum(&p.bytes[..20]), 0);
                }
                let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != p.bytes[i]).collect();
                prop_assert!(changed.iter().all(|&i| i == at || (is_v4 && (i == 10 || i == 11))));
            }
            Err(ttl::TtlError::Expired) => {
                prop_assert!(before[at] <= 1);
                prop_assert_eq!(&p.bytes, &before);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn icmp_replies_are_valid_and_bounded(p in pkt(), mtu in 1280u16..9000) {
        let mut out = [0u8; 1500];
        if p.src.is_ipv4() {
            let me = Ipv4Addr::new(10, 0, 0, 1);
            if let Ok(n) = icmp::frag_needed_v4(&p.bytes, mtu, me, &mut out) {
                prop_assert!(n <= icmp::MAX_V4_REPLY);
                let r = InnerPacket::parse(&out[..n]).unwrap();
                prop_assert_eq!(r.dst(), p.src);
                prop_assert_eq!(r.protocol(), 1);
                prop_assert_eq!(checksum(&out[20..n]), 0);
                prop_assert_eq!(&out[20..22], &[3, 4]);
                prop_assert_eq!(&out[26..28], &mtu.to_be_bytes());
                prop_assert!(n - 28 >= (p.bytes.len()).min(28));
                prop_assert_eq!(&out[28..n], &p.bytes[..n - 28]);
            }
        } else {
            let me: Ipv6Addr = "fd00::1".parse().unwrap();
            if let Ok(n) = icmp::packet_too_big_v6(&p.bytes, u32::from(mtu), me, &mut out) {
                prop_assert!(n <= icmp::MAX_V6_REPLY);
                prop_assert_eq!(n, (48 + p.bytes.len()).min(1280));
                let r = InnerPacket::parse(&out[..n]).unwrap();
                prop_assert_eq!(r.dst(), p.src);
                prop_assert_eq!(&out[48..n], &p.bytes[..n - 48]);
            }
        }
    }

    #[test]
    fn flow_hash_ignores_payload_and_ttl(p in pkt_v4(), extra in proptest::collection::vec(any::<u8>(), 1..64)) {
        let mut q = p.bytes.clone();
        // Same header fields (ports are the first 4 payload bytes), longer payload, other TTL.
        if q.len() >= 24 {
            q.extend_from_slice(&extra);
            q[8] = q[8].wrapping_add(1);
            prop_assert_eq!(flow::hash(&q), flow::hash(&p.bytes));
        }
    }

    #[test]
    fn header_checksum_fast_path_agrees(h in proptest::collection::vec(any::<u8>(), 20..=60)) {
        prop_assert_eq!(weft_encap::checksum::header_ok(&h), checksum(&h) == 0);
        let mut fixed = h.clone();
        fixed[10] = 0;
        fixed[11] = 0;
        let c = checksum(&fixed);
        fixed[10..12].copy_from_slice(&c.to_be_bytes());
        prop_assert!(weft_encap::checksum::header_ok(&fixed));
    }

    #[test]
    fn incremental_update_matches_recompute(mut h in proptest::collection::vec(any::<u8>(), 20..=20),
                                            at in 0usize..10, new in any::<u16>()) {
        h[10] = 0;
        h[11] = 0;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let i = if at == 5 { 0 } else { at * 2 }; // never the checksum word itself
        let old = u16::from_be_bytes([h[i], h[i + 1]]);
        h[i..i + 2].copy_from_slice(&new.to_be_bytes());
        let hc = weft_encap::checksum::update(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&hc.to_be_bytes());
        prop_assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn source_port_in_range(h in any::<u32>(), lo in any::<u16>(), span in any::<u16>()) {
        let hi = lo.saturating_add(span);
        let port = vxlan::source_port(h, lo..=hi);
        prop_assert!((lo..=hi).contains(&port));
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1600), vni in any::<u32>()) {
        let _ = vxlan::decap(&b, vni);
        let _ = udp::decap(&b);
        let _ = ipip::decap(&b);
        let _ = InnerPacket::parse(&b);
        let _ = flow::hash(&b);
        let mut m = b.clone();
        let _ = ttl::decrement(&mut m);
        let mut out = [0u8; 1400];
        let _ = icmp::frag_needed_v4(&b, 1400, Ipv4Addr::LOCALHOST, &mut out);
        let _ = icmp::time_exceeded_v4(&b, Ipv4Addr::LOCALHOST, &mut out);
        let _ = icmp::packet_too_big_v6(&b, 1400, Ipv6Addr::LOCALHOST, &mut out);
        let _ = icmp::time_exceeded_v6(&b, Ipv6Addr::LOCALHOST, &mut out);
        let _ = icmp::frag_needed_v4(&b, 1400, Ipv4Addr::LOCALHOST, &mut out[..30]);
    }

    #[test]
    fn mutated_datagrams_never_panic(p in pkt(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                                     cut in any::<usize>()) {
        let (mut buf, r) = placed(&p.bytes, vxlan::HEADROOM, 0);
        let out = vxlan::encap(&mut buf, r, 1, MacAddr([2; 6]), MacAddr([4; 6])).unwrap();
        let mut d = buf[out].to_vec();
        for (i, x) in &flips {
            let n = d.len();
            d[i % n] ^= x;
        }
        d.truncate(cut % (d.len() + 1));
        if let Ok(f) = vxlan::decap(&d, 1) {
            prop_assert_eq!(&d[f.inner_range.clone()], f.inner.bytes());
        }
        if let Ok(i) = udp::decap(&d[vxlan::HEADROOM.min(d.len())..]) {
            prop_assert!(!i.is_empty());
        }
        if p.src.is_ipv4() {
            let (mut buf, r) = placed(&p.bytes, ipip::HEADROOM, 0);
            let o = ipip::Outer { src: [1, 2, 3, 4].into(), dst: [5, 6, 7, 8].into(), ttl: 9, id: 10 };
            let out = ipip::encap(&mut buf, r, &o).unwrap();
            let mut d = buf[out].to_vec();
            for (i, x) in &flips {
                let n = d.len();
                d[i % n] ^= x;
            }
            d.truncate(cut % (d.len() + 1));
            if let Ok(g) = ipip::decap(&d) {
                prop_assert_eq!(&d[g.inner_range.clone()], g.inner.bytes());
            }
        }
    }
}

#[test]
fn every_reason_is_listed_once() {
    let mut r = DecapError::REASONS.to_vec();
    r.sort_unstable();
    r.dedup();
    assert_eq!(r.len(), DecapError::REASONS.len());
    for e in [
        DecapError::Truncated { len: 0, needed: 1 },
        DecapError::VxlanNoIFlag,
        DecapError::VxlanReservedBits,
        DecapError::VniMismatch {
            got: 0,
            expected: 1,
        },
        DecapError::EtherType(0),
        DecapError::EtherTypeMismatch {
            ethertype: 0,
            version: 0,
        },
        DecapError::InnerVersion(0),
        DecapError::InnerNotIpv4,
        DecapError::InnerHeader,
        DecapError::InnerChecksum,
        DecapError::InnerLength {
            claimed: 0,
            available: 0,
        },
        DecapError::OuterHeader,
        DecapError::OuterChecksum,
        DecapError::OuterProtocol(0),
        DecapError::OuterFragment,
        DecapError::OuterLength {
            claimed: 0,
            available: 0,
        },
    ] {
        assert!(DecapError::REASONS.contains(&e.reason()), "{e:?}");
    }
}
