//! UPDATE packing: at most 4096 bytes per message, IPv6 through MP_REACH.

use super::*;

#[test]
fn probe_encoder_packs_updates_at_most_4096_bytes() {
    let prefixes: Vec<Prefix> = (0..20_000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath(vec![])),
        local_pref: Some(100),
        ..PathAttrs::default()
    };
    let nh = MpNextHop {
        global: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        link_local: None,
    };
    let msgs = pack_updates(&attrs, nh, &prefixes, &FOUR);
    let mut got = Vec::new();
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN, "{}", m.len());
        let u = decode_update(m, &FOUR).unwrap();
        assert_eq!(u.verdict, Verdict::Clean);
        got.extend(u.announced().into_iter().map(|(p, _)| p));
    }
    assert_eq!(got, prefixes);
    // ~800 /26 per message: the message count is close to the byte bound.
    assert!(msgs.len() <= 20_000 / 800 + 1, "{} messages", msgs.len());
    let w = pack_withdraws(&prefixes, &FOUR);
    assert!(w.iter().all(|m| m.len() <= MAX_MESSAGE_LEN));
    let back: usize = w
        .iter()
        .map(|m| decode_update(m, &FOUR).unwrap().withdrawn.len())
        .sum();
    assert_eq!(back, 20_000);
}

#[test]
fn ipv6_packing_uses_mp_reach_and_stays_under_limit() {
    let prefixes: Vec<Prefix> = (0..3000u128)
        .map(|i| {
            Prefix::new(
                IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | (i << 64))),
                64,
            )
            .unwrap()
        })
        .collect();
    let nh = MpNextHop {
        global: IpAddr::V6("fd00::1".parse().unwrap()),
        link_local: Some("fe80::1".parse().unwrap()),
    };
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        ..PathAttrs::default()
    };
    let msgs = pack_updates(&attrs, nh, &prefixes, &FOUR);
    let mut n = 0;
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        let u = decode_update(m, &FOUR).unwrap();
        assert_eq!(u.verdict, Verdict::Clean);
        assert_eq!(u.mp_reach.as_ref().unwrap().next_hop, nh);
        n += u.announced().len();
    }
    assert_eq!(n, 3000);
    let w = pack_withdraws(&prefixes, &FOUR);
    let back: usize = w
        .iter()
        .map(|m| decode_update(m, &FOUR).unwrap().withdrawn_all().len())
        .sum();
    assert_eq!(back, 3000);
}

#[test]
fn ipv6_announcement_with_ibgp_attributes_round_trips() {
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        communities: vec![0xfc00_0007],
        ..PathAttrs::default()
    };
    let nh = MpNextHop {
        global: IpAddr::V6("fd00::1".parse().unwrap()),
        link_local: None,
    };
    let msgs = pack_updates(&attrs, nh, &[p("fd00:244:1::/64")], &FOUR);
    let u = decode_update(&msgs[0], &FOUR).unwrap();
    assert_eq!(u.verdict, Verdict::Clean, "{u:?}");
    assert_eq!(u.announced(), vec![(p("fd00:244:1::/64"), nh)]);
}
