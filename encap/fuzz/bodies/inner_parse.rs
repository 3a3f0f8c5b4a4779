//! Fuzz body: the router-side parsers of packets from pods and peers on
//! arbitrary bytes: inner destination, `virtio_net_hdr` and its transport
//! header length, and decapsulation in every format (the inner range must
//! hold exactly the inner packet). Shared by the `inner_parse` fuzz target
//! and `encap/tests/fuzz_bodies.rs`.

use weft_encap::format::Format;
use weft_encap::offload::{self, OffloadHeader};
use weft_encap::{InnerPacket, MacAddr, inner};

pub(crate) fn run(data: &[u8]) {
    let dst = inner::destination(data);
    if let Ok(p) = InnerPacket::parse_prefix(data) {
        assert_eq!(Some(p.dst()), dst, "validated and quick destination agree");
    }
    if let Some(o) = OffloadHeader::parse(data) {
        let mut b = [0u8; offload::LEN];
        o.emit(&mut b);
        assert_eq!(&b[..], &data[..offload::LEN]);
        let packet = &data[offload::LEN..];
        if let Some(t) = o.with_transport_len(packet) {
            if t.is_gso() {
                assert!(usize::from(t.hdr_len) <= packet.len());
                assert!(t.gso_size > 0);
            }
            let segs = t.segments(packet.len());
            assert!(segs >= 1);
            assert!(t.largest_segment(packet.len()) <= packet.len());
            assert!(t.segmented_len(packet.len()) >= packet.len());
        }
    }
    let vni = data
        .get(4..7)
        .map_or(1, |v| u32::from_be_bytes([0, v[0], v[1], v[2]]));
    for f in [
        Format::Udp,
        Format::Ipip,
        Format::Vxlan {
            vni,
            local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        },
    ] {
        if let Ok(d) = f.decap(data) {
            assert_eq!(&data[d.range.clone()], d.inner.bytes());
            assert_eq!(d.outer_src.is_some(), f == Format::Ipip);
        }
    }
}
