//! Fuzz body: the egress plan and what the worker then does with it (a
//! TAP frame or an encapsulation) on an arbitrary packet, offload header
//! and path. Input: 1 flag byte (bit 0: offload header present, bit 1:
//! TAP open, bit 2: vxlan), 2 bytes of tunnel MTU, 10 bytes of
//! `virtio_net_hdr`, then the packet. Shared by the `egress_plan` fuzz
//! target and `encap/tests/fuzz_bodies.rs`.

use std::net::{IpAddr, Ipv4Addr};

use weft_encap::egress::{Egress, EgressDrop, EgressPath, PeerLookup, plan};
use weft_encap::format::Format;
use weft_encap::offload::OffloadHeader;
use weft_encap::{MAX_HEADROOM, MacAddr, inner, tunnel_frame, vxlan};

/// Peers by the destination's first byte: 4 peers, byte % 5 == 4 has none.
struct Peers;

impl PeerLookup for Peers {
    fn lookup(&self, dst: IpAddr) -> Option<usize> {
        let first = match dst {
            IpAddr::V4(a) => a.octets()[0],
            IpAddr::V6(a) => a.octets()[0],
        };
        let p = usize::from(first % 5);
        (p < 4).then_some(p)
    }
}

pub(crate) fn run(data: &[u8]) {
    let Some((head, packet)) = data.split_at_checked(13) else {
        return;
    };
    let flags = head[0];
    let path = EgressPath {
        max_inner: usize::from(u16::from_be_bytes([head[1], head[2]])),
        tap: flags & 2 != 0,
        vxlan: flags & 4 != 0,
    };
    let offload = (flags & 1 != 0).then(|| OffloadHeader::parse(&head[3..]).expect("10 bytes"));
    let vxlan_fmt = Format::Vxlan {
        vni: 1,
        local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
    };
    match plan(packet, offload, &Peers, &path) {
        Egress::Drop(EgressDrop::NoRoute) => {
            assert!(
                inner::destination(packet)
                    .and_then(|d| Peers.lookup(d))
                    .is_none()
            );
        }
        Egress::Drop(EgressDrop::BadOffload) => {
            let o = offload.expect("only with a header");
            assert!(o.with_transport_len(packet).is_none());
        }
        Egress::TooBig { mtu } => {
            assert_eq!(mtu, path.max_inner);
            assert!(packet.len() > mtu);
        }
        Egress::Socket { peer } => {
            assert!(peer < 4);
            assert!(packet.len() <= path.max_inner);
            for f in [Format::Udp, vxlan_fmt, Format::Ipip] {
                let mut buf = vec![0u8; MAX_HEADROOM + packet.len()];
                buf[MAX_HEADROOM..].copy_from_slice(packet);
                let end = buf.len();
                if let Ok(r) = f.encap(&mut buf, MAX_HEADROOM..end, MacAddr([2; 6])) {
                    assert_eq!(r.end, buf.len());
                    assert!(r.len() <= packet.len() + vxlan::HEADROOM);
                }
            }
        }
        Egress::Split { peer, offload: o } => {
            assert!(peer < 4 && o.is_gso());
            assert!(o.largest_segment(packet.len()) <= path.max_inner);
        }
        Egress::Tap {
            peer,
            offload: o,
            src_port,
        } => {
            assert!(path.tap && peer < 4);
            assert!(vxlan::DEFAULT_SRC_PORTS.contains(&src_port));
            assert!(o.largest_segment(packet.len()) <= path.max_inner);
            let at = tunnel_frame::HEADROOM;
            let mut buf = vec![0u8; at + packet.len()];
            buf[at..].copy_from_slice(packet);
            let outer = tunnel_frame::Outer {
                src: Ipv4Addr::new(172, 31, 0, 1),
                dst: Ipv4Addr::new(172, 31, 0, 2),
                src_port,
                dst_port: 8472,
                vxlan: path
                    .vxlan
                    .then(|| vxlan::Header::new(1, MacAddr([2; 6]), MacAddr([4; 6]))),
            };
            let end = buf.len();
            let frame = tunnel_frame::build(&mut buf, at..end, [9; 6], &outer, &o);
            // Only an IP packet gets a VXLAN ethertype; a route implies one.
            let frame = frame.expect("a planned TAP frame builds");
            assert_eq!(frame.end, buf.len());
            let f = &buf[frame.start + tunnel_frame::TUNNEL_HDR_LEN..];
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            assert_eq!(total, f.len() - 14, "outer IPv4 length covers the frame");
            let vh = OffloadHeader::parse(&buf[frame.start..]).expect("header");
            assert_eq!(vh.is_gso(), o.is_gso());
        }
    }
}
