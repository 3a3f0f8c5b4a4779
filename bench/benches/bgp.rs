//! BGP micro-benchmarks: UPDATE decoding (ours beside netgauze-bgp-pkt as
//! the baseline) and the decision process over 100k prefixes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use weft_bgp::Prefix;
use weft_bgp::policy::{ImportPolicy, Loops};
use weft_bgp::rib::{PeerInfo, PeerKey, Rib};
use weft_bgp::wire::{
    self, AsPath, MpNextHop, Origin, PathAttrs, Segment, SegmentKind, SessionCaps, Update,
};

const N: u32 = 100_000;
const CAPS: SessionCaps = SessionCaps {
    four_octet_as: true,
};

fn prefixes() -> Vec<Prefix> {
    (0..N)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect()
}

fn attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath(vec![Segment {
            kind: SegmentKind::Sequence,
            asns: vec![65010, 65020, 4_200_000_000],
        }])),
        med: Some(10),
        local_pref: Some(100),
        communities: vec![0xfde8_0001, 0xfde8_0002],
        large_communities: vec![[65000, 1, 2]],
        ..PathAttrs::default()
    }
}

/// 100k /26 packed the way a peer sends them (≤ 4096-byte UPDATEs).
fn packed() -> Vec<Vec<u8>> {
    let nh = MpNextHop {
        global: IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)),
        link_local: None,
    };
    wire::pack_updates(&attrs(), nh, &prefixes(), &CAPS)
}

fn decode(c: &mut Criterion) {
    let msgs = packed();
    let mut g = c.benchmark_group("bgp_decode_100k_prefixes");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(20);
    g.bench_function("weft", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                if let Ok(wire::Message::Update(u)) = wire::decode(black_box(m), &CAPS) {
                    n += u.nlri.len();
                }
            }
            assert_eq!(n, N as usize);
        });
    });
    g.bench_function("netgauze_baseline", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                let mut ctx = BgpParsingContext::asn2_default();
                ctx.set_asn4(true);
                if let Ok(BgpMessage::Update(u)) =
                    BgpMessage::parse(&mut SliceReader::new(black_box(m)), &mut ctx)
                {
                    n += u.nlri().len();
                }
            }
            assert_eq!(n, N as usize);
        });
    });
    g.finish();
}

fn peer(k: u8) -> PeerInfo {
    PeerInfo {
        key: PeerKey(u32::from(k)),
        addr: IpAddr::V4(Ipv4Addr::new(10, 99, 0, k)),
        router_id: Ipv4Addr::new(10, 0, 0, k),
        asn: 64512,
        ebgp: false,
        rr_client: false,
    }
}

fn decision(c: &mut Criterion) {
    let updates: Vec<Update> = packed()
        .iter()
        .map(|m| match wire::decode(m, &CAPS).unwrap() {
            wire::Message::Update(u) => u,
            _ => unreachable!(),
        })
        .collect();
    let mut second = updates.clone();
    for u in &mut second {
        u.attrs.next_hop = Some(Ipv4Addr::new(10, 99, 0, 3));
    }
    let new_rib = || {
        Rib::new(
            ImportPolicy {
                allow: vec!["10.0.0.0/8".parse().unwrap()],
            },
            Loops {
                local_asn: 64512,
                router_id: Ipv4Addr::new(10, 0, 0, 1),
                cluster_id: Ipv4Addr::new(10, 0, 0, 1),
            },
        )
    };
    let mut g = c.benchmark_group("bgp_decision_100k_prefixes");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    g.bench_function("install_one_peer", |b| {
        b.iter(|| {
            let mut rib = new_rib();
            let mut n = 0;
            for u in &updates {
                n += rib.apply_update(&peer(2), u).len();
            }
            assert_eq!(n, N as usize);
        });
    });
    g.bench_function("second_peer_ecmp_then_peer_down", |b| {
        b.iter(|| {
            let mut rib = new_rib();
            for u in &updates {
                let _ = rib.apply_update(&peer(2), u);
            }
            let mut n = 0;
            for u in &second {
                n += weft_bgp::rib::events(&rib.apply_update(&peer(3), u)).len();
            }
            n += weft_bgp::rib::events(&rib.peer_down(PeerKey(2))).len();
            assert_eq!(n, 2 * N as usize);
        });
    });
    g.finish();
}

criterion_group!(benches, decode, decision);
criterion_main!(benches);
