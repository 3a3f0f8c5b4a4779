//! Decode tests on messages captured from BIRD 2.0.12, FRR 8.4.4 and GoBGP
//! 3.10.0 (see tests/vectors/README.md), checked field by field, against
//! netgauze-bgp-pkt, and through an encode/decode round trip.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use weft_bgp::Prefix;
use weft_bgp::wire::{self, Capability, Family, Message, Open, SessionCaps, Update, Verdict};

const CAPS: SessionCaps = SessionCaps {
    four_octet_as: true,
};

fn load(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// Decodes every message; checks netgauze agrees on kind and NLRI, and that
/// our encoding of what we decoded decodes to the same.
fn decode_all(name: &str) -> Vec<Message> {
    load(name)
        .iter()
        .map(|b| {
            let m = wire::decode(b, &CAPS).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut ctx = BgpParsingContext::asn2_default();
            ctx.set_asn4(true);
            let theirs = BgpMessage::parse(&mut SliceReader::new(b), &mut ctx).unwrap();
            match (&m, &theirs) {
                (Message::Update(u), BgpMessage::Update(t)) => {
                    assert_eq!(u.nlri.len(), t.nlri().len(), "{name}");
                    assert_eq!(u.withdrawn.len(), t.withdraw_routes().len(), "{name}");
                    assert_eq!(u.verdict, Verdict::Clean, "{name}");
                }
                (Message::Open(o), BgpMessage::Open(t)) => {
                    assert_eq!(o.asn, t.my_asn4());
                    assert_eq!(o.hold_time, t.hold_time());
                }
                (Message::Notification(_), BgpMessage::Notification(_))
                | (Message::Keepalive, BgpMessage::KeepAlive) => {}
                (a, b) => panic!("{name}: ours {a:?}, netgauze {b:?}"),
            }
            let mut again = Vec::new();
            wire::encode(&m, &CAPS, &mut again);
            assert_eq!(
                wire::decode(&again, &CAPS).unwrap(),
                m,
                "{name}: round trip"
            );
            m
        })
        .collect()
}

fn open(m: &Message) -> &Open {
    match m {
        Message::Open(o) => o,
        m => panic!("not an OPEN: {m:?}"),
    }
}

fn update(m: &Message) -> &Update {
    match m {
        Message::Update(u) => u,
        m => panic!("not an UPDATE: {m:?}"),
    }
}

fn check_tagged_v4(u: &Update) {
    assert_eq!(u.nlri.first(), Some(&p("10.244.9.0/24")));
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 99, 0, 2)));
    assert_eq!(u.attrs.as_path.as_ref().unwrap().first_as(), Some(65010));
    assert_eq!(u.attrs.med, Some(5));
    assert_eq!(u.attrs.communities, vec![(65010 << 16) | 7]);
    assert_eq!(u.attrs.large_communities, vec![[65010, 1, 2]]);
}

fn check_v6(u: &Update) {
    let ann = u.announced();
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].0, p("fd00:244:0:9::/64"));
    assert_eq!(ann[0].1.global, "fd99::2".parse::<IpAddr>().unwrap());
}

#[test]
fn bird_2_0_12() {
    let m = decode_all("bird-2.0.12.hex");
    let o = open(&m[0]);
    assert_eq!(
        (o.asn, o.hold_time, o.router_id),
        (65010, 240, Ipv4Addr::new(10, 99, 0, 2))
    );
    assert_eq!(o.families(), vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    assert!(o.four_octet_as() && o.route_refresh() && o.graceful_restart().is_some());
    assert_eq!(m[1], Message::Keepalive);
    let u = update(&m[2]);
    check_tagged_v4(u);
    assert_eq!(u.nlri, vec![p("10.244.9.0/24"), p("10.244.10.0/26")]);
    assert_eq!(update(&m[3]).end_of_rib(), Some(Family::Ipv4Unicast));
    let u6 = update(&m[4]);
    check_v6(u6);
    // BIRD sends a 32-byte next hop: global plus link-local.
    assert!(u6.mp_reach.as_ref().unwrap().next_hop.link_local.is_some());
    assert_eq!(update(&m[5]).end_of_rib(), Some(Family::Ipv6Unicast));
    assert!(matches!(&m[6], Message::Notification(n) if (n.code, n.subcode) == (6, 2)));
}

#[test]
fn frr_8_4_4() {
    let m = decode_all("frr-8.4.4.hex");
    let o = open(&m[0]);
    assert_eq!((o.asn, o.hold_time), (65010, 180));
    assert!(o.caps.contains(&Capability::Fqdn {
        hostname: "frrpeer".into(),
        domain: "lab.example".into()
    }));
    assert_eq!(o.families(), vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    let gr = o.graceful_restart().unwrap();
    assert_eq!(gr.restart_time, 120);
    check_tagged_v4(update(&m[2]));
    check_v6(update(&m[3]));
    assert_eq!(update(&m[4]).nlri, vec![p("10.244.10.0/26")]);
    assert_eq!(update(&m[5]).end_of_rib(), Some(Family::Ipv6Unicast));
    assert_eq!(update(&m[6]).end_of_rib(), Some(Family::Ipv4Unicast));
}

#[test]
fn gobgp_3_10_0() {
    let m = decode_all("gobgp-3.10.0.hex");
    let o = open(&m[0]);
    assert_eq!((o.asn, o.hold_time), (65010, 90));
    assert!(o.caps.contains(&Capability::Fqdn {
        hostname: "vm".into(),
        domain: String::new()
    }));
    assert!(o.extended_next_hop_v4());
    let u = update(&m[2]);
    check_tagged_v4(u);
    // GoBGP's ORIGIN for `rib add` is INCOMPLETE.
    assert_eq!(u.attrs.origin, Some(wire::Origin::Incomplete));
    assert_eq!(update(&m[3]).nlri, vec![p("10.244.10.0/26")]);
    check_v6(update(&m[4]));
    assert!(matches!(&m[5], Message::Notification(n) if (n.code, n.subcode) == (6, 3)));
}
