//! RIB table tests: UPDATEs in, changes and consumer events out.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::policy::{ImportPolicy, Loops};
use crate::wire::{AsPath, MpNextHop, MpReach, Origin, Segment, SegmentKind, Verdict};

fn rib() -> Rib {
    Rib::new(
        ImportPolicy {
            allow: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:244::/48".parse().unwrap(),
            ],
        },
        Loops {
            local_asn: 65000,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: Ipv4Addr::new(10, 0, 0, 1),
        },
    )
}

fn peer(k: u8) -> PeerInfo {
    PeerInfo {
        key: PeerKey(u32::from(k)),
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, k)),
        router_id: Ipv4Addr::new(10, 0, 0, k),
        asn: 65000,
        ebgp: false,
        rr_client: false,
    }
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn announce(prefixes: &[&str], nh: [u8; 4], f: impl FnOnce(&mut PathAttrs)) -> Update {
    let mut attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        next_hop: Some(Ipv4Addr::from(nh)),
        local_pref: Some(100),
        ..PathAttrs::default()
    };
    f(&mut attrs);
    Update {
        attrs,
        nlri: prefixes.iter().map(|s| p(s)).collect(),
        ..Update::default()
    }
}

fn withdraw(prefixes: &[&str]) -> Update {
    Update {
        withdrawn: prefixes.iter().map(|s| p(s)).collect(),
        ..Update::default()
    }
}

#[test]
fn announce_change_withdraw() {
    let mut r = rib();
    let a = peer(2);
    let ev = events(&r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {})));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.2")]
        }]
    );
    // Same again: nothing.
    assert!(
        r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {}))
            .is_empty()
    );
    // New attributes, same next hop: a change but no consumer event.
    let ch = r.apply_update(
        &a,
        &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |x| x.med = Some(5)),
    );
    assert_eq!(ch.len(), 1);
    assert!(events(&ch).is_empty());
    // Next hop moves: an event.
    let ev = events(&r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 9], |_| {})));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.9")]
        }]
    );
    let ev = events(&r.apply_update(&a, &withdraw(&["10.244.1.0/24"])));
    assert_eq!(
        ev,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.1.0/24")
        }]
    );
    assert!(r.loc().is_empty());
    // Withdrawing what is not there: nothing.
    assert!(r.apply_update(&a, &withdraw(&["10.244.1.0/24"])).is_empty());
}

#[test]
fn ecmp_across_peers_and_best_path_takeover() {
    let mut r = rib();
    let (a, b, c) = (peer(2), peer(3), peer(4));
    let _ = r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {}));
    let ev = events(&r.apply_update(&b, &announce(&["10.244.1.0/24"], [192, 0, 2, 3], |_| {})));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.2"), ip("192.0.2.3")]
        }]
    );
    // C wins outright on LOCAL_PREF: the set collapses to C.
    let ev = events(&r.apply_update(
        &c,
        &announce(&["10.244.1.0/24"], [192, 0, 2, 4], |x| {
            x.local_pref = Some(200);
        }),
    ));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.4")]
        }]
    );
    // C goes away: back to the A+B ECMP pair.
    let ev = events(&r.peer_down(c.key));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.2"), ip("192.0.2.3")]
        }]
    );
    let ev = events(&r.apply_update(&a, &withdraw(&["10.244.1.0/24"])));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.3")]
        }]
    );
}

#[test]
fn without_multipath_only_the_best_next_hop() {
    let mut r = Rib::with_max_paths(rib().import, rib().loops, 1);
    let (a, b) = (peer(3), peer(2));
    let _ = r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 3], |_| {}));
    // B ties and has the lower router id: it wins alone.
    let ev = events(&r.apply_update(&b, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {})));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.2")]
        }]
    );
    let ev = events(&r.peer_down(b.key));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("10.244.1.0/24"),
            next_hops: vec![ip("192.0.2.3")]
        }]
    );
}

#[test]
fn import_policy_and_loops_filter() {
    let mut r = rib();
    let a = peer(2);
    let ch = r.apply_update(
        &a,
        &announce(
            &["10.244.1.0/24", "192.168.0.0/16", "0.0.0.0/0"],
            [192, 0, 2, 2],
            |_| {},
        ),
    );
    assert_eq!(events(&ch).len(), 1);
    assert!(r.adj_in(a.key, &p("192.168.0.0/16")).is_none());
    assert_eq!(r.received(a.key), 1);
    // A reflected route we originated is ignored, and replaces the old one.
    let ch = r.apply_update(
        &a,
        &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |x| {
            x.originator_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        }),
    );
    assert_eq!(
        events(&ch),
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.1.0/24")
        }]
    );
    // eBGP path through our AS.
    let e = PeerInfo {
        ebgp: true,
        asn: 65100,
        ..peer(5)
    };
    let looped = announce(&["10.244.2.0/24"], [192, 0, 2, 5], |x| {
        x.as_path = Some(AsPath(vec![Segment {
            kind: SegmentKind::Sequence,
            asns: vec![65100, 65000],
        }]));
    });
    assert!(r.apply_update(&e, &looped).is_empty());
}

#[test]
fn treat_as_withdraw_removes_routes() {
    let mut r = rib();
    let a = peer(2);
    let _ = r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {}));
    let mut bad = announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {});
    bad.verdict = Verdict::TreatAsWithdraw;
    assert_eq!(
        events(&r.apply_update(&a, &bad)),
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.1.0/24")
        }]
    );
}

#[test]
fn ipv6_over_mp_reach() {
    let mut r = rib();
    let a = peer(2);
    let u = Update {
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            ..PathAttrs::default()
        },
        mp_reach: Some(MpReach {
            family: Family::Ipv6Unicast,
            next_hop: MpNextHop {
                global: ip("fd00::2"),
                link_local: None,
            },
            nlri: vec![p("fd00:244:0:1::/64")],
        }),
        ..Update::default()
    };
    let ev = events(&r.apply_update(&a, &u));
    assert_eq!(
        ev,
        vec![RouteEvent::Reachable {
            prefix: p("fd00:244:0:1::/64"),
            next_hops: vec![ip("fd00::2")]
        }]
    );
}

#[test]
fn graceful_restart_keeps_then_flushes_stale_routes() {
    let mut r = rib();
    let a = peer(2);
    let _ = r.apply_update(
        &a,
        &announce(&["10.244.1.0/24", "10.244.2.0/24"], [192, 0, 2, 2], |_| {}),
    );
    let ch = r.peer_restarting(a.key, &[Family::Ipv4Unicast]);
    assert!(events(&ch).is_empty(), "stale routes keep forwarding");
    assert_eq!(r.loc().len(), 2);
    // The restarted peer refreshes one route, then End-of-RIB flushes the other.
    let _ = r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {}));
    let ev = events(&r.flush_stale(a.key, Family::Ipv4Unicast));
    assert_eq!(
        ev,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.2.0/24")
        }]
    );
    assert_eq!(r.loc().len(), 1);
    assert!(!r.adj_in(a.key, &p("10.244.1.0/24")).unwrap().stale);
    assert_eq!(r.received(a.key), 1);
}

#[test]
fn restart_without_the_family_drops_it() {
    let mut r = rib();
    let a = peer(2);
    let _ = r.apply_update(&a, &announce(&["10.244.1.0/24"], [192, 0, 2, 2], |_| {}));
    let ev = events(&r.peer_restarting(a.key, &[Family::Ipv6Unicast]));
    assert_eq!(
        ev,
        vec![RouteEvent::Unreachable {
            prefix: p("10.244.1.0/24")
        }]
    );
}

#[test]
fn a_hundred_thousand_prefixes_in_and_out() {
    let mut r = Rib::new(
        ImportPolicy {
            allow: vec![p("10.0.0.0/8")],
        },
        Loops {
            local_asn: 1,
            router_id: Ipv4Addr::new(1, 1, 1, 1),
            cluster_id: Ipv4Addr::new(1, 1, 1, 1),
        },
    );
    let a = peer(2);
    let prefixes: Vec<Prefix> = (0..100_000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 6))), 26).unwrap())
        .collect();
    let mut u = announce(&[], [192, 0, 2, 2], |_| {});
    u.nlri = prefixes.clone();
    assert_eq!(events(&r.apply_update(&a, &u)).len(), 100_000);
    assert_eq!(events(&r.peer_down(a.key)).len(), 100_000);
    assert!(r.loc().is_empty());
}

#[test]
fn one_store_per_prefix_counts_candidates_and_shares_stale_twins() {
    let mut r = rib();
    let (a, b) = (peer(2), peer(3));
    let _ = r.apply_update(
        &a,
        &announce(&["10.244.1.0/24", "10.244.2.0/24"], [192, 0, 2, 2], |_| {}),
    );
    // The same UPDATE's prefixes share one route.
    let (x, y) = (
        r.adj_in(a.key, &p("10.244.1.0/24")).unwrap().clone(),
        r.adj_in(a.key, &p("10.244.2.0/24")).unwrap().clone(),
    );
    assert!(Arc::ptr_eq(&x.route, &y.route));
    // A second peer for one prefix, then it leaves: counts follow.
    let _ = r.apply_update(&b, &announce(&["10.244.1.0/24"], [192, 0, 2, 3], |_| {}));
    assert_eq!((r.received(a.key), r.received(b.key)), (2, 1));
    assert_eq!(r.loc().len(), 2);
    let _ = r.peer_down(b.key);
    assert_eq!((r.received(a.key), r.received(b.key)), (2, 0));
    assert_eq!(r.loc().get(&p("10.244.1.0/24")).unwrap().best, x);
    // A restart gives the shared route one stale twin, shared again.
    let ch = r.peer_restarting(a.key, &[Family::Ipv4Unicast]);
    assert!(events(&ch).is_empty());
    let (x2, y2) = (
        r.adj_in(a.key, &p("10.244.1.0/24")).unwrap().clone(),
        r.adj_in(a.key, &p("10.244.2.0/24")).unwrap().clone(),
    );
    assert!(x2.stale && Arc::ptr_eq(&x2.route, &y2.route));
    assert!(!x.stale, "the fresh route itself is untouched");
    // Re-marking is a no-op, and a flush removes both.
    assert!(r.peer_restarting(a.key, &[Family::Ipv4Unicast]).is_empty());
    assert_eq!(events(&r.flush_stale(a.key, Family::Ipv4Unicast)).len(), 2);
    assert_eq!(r.received(a.key), 0);
    assert!(r.loc().is_empty());
}
