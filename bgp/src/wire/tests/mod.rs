//! Codec tests: the inputs zettabgp 0.6 failed on, as regressions (`probes`),
//! RFC 7606 verdicts (`verdicts`), 4096-byte packing (`packing`), proptest
//! round trips (`round_trip`) and a differential test against netgauze
//! (`differential`). This module holds their shared helpers and strategies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

mod differential;
mod packing;
mod probes;
mod round_trip;
mod verdicts;

const FOUR: SessionCaps = SessionCaps {
    four_octet_as: true,
};
const TWO: SessionCaps = SessionCaps {
    four_octet_as: false,
};

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    frame(2, &b)
}

/// ORIGIN IGP, AS_PATH [65001] (4-byte), NEXT_HOP 192.0.2.1.
const BASE_ATTRS: &[u8] = &[
    0x40, 1, 1, 0, //
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, //
    0x40, 3, 4, 192, 0, 2, 1,
];

fn with(extra: &[u8]) -> Vec<u8> {
    let mut a = BASE_ATTRS.to_vec();
    a.extend_from_slice(extra);
    a
}

fn decode_update(bytes: &[u8], caps: &SessionCaps) -> Result<Update, DecodeError> {
    match decode(bytes, caps)? {
        Message::Update(u) => Ok(u),
        m => panic!("not an update: {m:?}"),
    }
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn code_of(e: &DecodeError) -> (u8, u8) {
    let n = e.notification().unwrap();
    (n.code, n.subcode)
}

// ---- proptest strategies (round_trip and differential) ----------------

fn prefix4() -> impl Strategy<Value = Prefix> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l).unwrap())
}

fn prefix6() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V6(Ipv6Addr::from(a)), l).unwrap())
}

fn as_path(four: bool) -> impl Strategy<Value = AsPath> {
    let asn = if four {
        any::<u32>().boxed()
    } else {
        (0u32..=0xffff).boxed()
    };
    let kind = prop_oneof![
        Just(SegmentKind::Set),
        Just(SegmentKind::Sequence),
        Just(SegmentKind::ConfedSequence),
        Just(SegmentKind::ConfedSet)
    ];
    prop::collection::vec((kind, prop::collection::vec(asn, 1..6)), 0..4).prop_map(|v| {
        AsPath(
            v.into_iter()
                .map(|(kind, asns)| Segment { kind, asns })
                .collect(),
        )
    })
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    let v6nh = (any::<u128>(), prop::option::of(any::<u128>())).prop_map(|(g, l)| MpNextHop {
        global: IpAddr::V6(Ipv6Addr::from(g)),
        link_local: l.map(Ipv6Addr::from),
    });
    prop_oneof![
        (v6nh.clone(), prop::collection::vec(prefix6(), 0..8)).prop_map(|(next_hop, nlri)| {
            MpReach {
                family: Family::Ipv6Unicast,
                next_hop,
                nlri,
            }
        }),
        (v6nh, prop::collection::vec(prefix4(), 0..8)).prop_map(|(next_hop, nlri)| MpReach {
            family: Family::Ipv4Unicast,
            next_hop,
            nlri
        }),
    ]
}

fn attrs(four: bool) -> impl Strategy<Value = PathAttrs> {
    let agg_as = if four {
        any::<u32>().boxed()
    } else {
        (0u32..=0xffff).boxed()
    };
    (
        (
            prop::option::of(prop_oneof![
                Just(Origin::Igp),
                Just(Origin::Egp),
                Just(Origin::Incomplete)
            ]),
            prop::option::of(as_path(four)),
            prop::option::of(v4().prop_filter("valid next hop", |a| {
                !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast()
            })),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            any::<bool>(),
            prop::option::of((agg_as, v4())),
        ),
        (
            prop::collection::vec(any::<u32>(), 0..5),
            prop::option::of(v4()),
            prop::collection::vec(v4(), 0..4),
            prop::collection::vec(any::<[u32; 3]>(), 0..3),
            prop::collection::vec(
                (100u8..=200, prop::collection::vec(any::<u8>(), 0..300)),
                0..2,
            ),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator),
                (c, oid, cl, lc, other),
            )| {
                PathAttrs {
                    origin,
                    as_path,
                    next_hop,
                    med,
                    local_pref,
                    atomic_aggregate,
                    aggregator,
                    communities: c,
                    originator_id: oid,
                    cluster_list: cl,
                    large_communities: lc,
                    other: {
                        let mut o: Vec<RawAttr> = other
                            .into_iter()
                            .map(|(code, data)| RawAttr {
                                flags: 0xe0,
                                code,
                                data,
                            })
                            .collect();
                        o.dedup_by_key(|a| a.code);
                        o.sort_by_key(|a| a.code);
                        o.dedup_by_key(|a| a.code);
                        o
                    },
                }
            },
        )
}

fn update_strategy(four: bool) -> impl Strategy<Value = Update> {
    (
        prop::collection::vec(prefix4(), 0..10),
        attrs(four),
        prop::option::of(mp_reach()),
        prop::option::of(prop_oneof![
            prop::collection::vec(prefix4(), 0..8).prop_map(|withdrawn| MpUnreach {
                family: Family::Ipv4Unicast,
                withdrawn
            }),
            prop::collection::vec(prefix6(), 0..8).prop_map(|withdrawn| MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn
            }),
        ]),
        prop::collection::vec(prefix4(), 0..10),
    )
        .prop_map(|(withdrawn, mut attrs, mp_reach, mp_unreach, nlri)| {
            // Announcements carry the mandatory attributes (else the decoder
            // rightly says treat-as-withdraw).
            let announces =
                !nlri.is_empty() || mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
            if announces {
                attrs.origin.get_or_insert(Origin::Igp);
                attrs.as_path.get_or_insert_with(AsPath::default);
            }
            if !nlri.is_empty() {
                attrs.next_hop.get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
            }
            Update {
                withdrawn,
                attrs,
                mp_reach,
                mp_unreach,
                nlri,
                verdict: Verdict::Clean,
            }
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    let fam = prop_oneof![Just(Family::Ipv4Unicast), Just(Family::Ipv6Unicast)];
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Capability::Multiprotocol { afi, safi }),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        prop::collection::vec(any::<(u16, u16, u16)>(), 0..3).prop_map(Capability::ExtendedNextHop),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            prop::collection::vec((fam, any::<bool>()), 0..3)
        )
            .prop_map(|(restarting, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families,
                })
            }),
        ("[a-z0-9.-]{0,20}", "[a-z0-9.-]{0,20}")
            .prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (
            prop::sample::select(vec![3u8, 66, 71, 128, 200]),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(code, data)| Capability::Unknown { code, data }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u16>(),
            any::<u32>().prop_filter("nonzero", |x| *x != 0),
            prop::collection::vec(capability(), 0..8)
        )
            .prop_map(|(asn, hold_time, id, mut caps)| {
                caps.insert(0, Capability::FourOctetAs(asn));
                Message::Open(Open {
                    asn,
                    hold_time,
                    router_id: Ipv4Addr::from(id),
                    caps,
                })
            }),
        update_strategy(true).prop_map(Message::Update),
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(code, subcode, data)| Message::Notification(Notification {
                code,
                subcode,
                data
            })),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, subtype, safi)| {
            Message::RouteRefresh(RouteRefresh { afi, subtype, safi })
        }),
    ]
}
