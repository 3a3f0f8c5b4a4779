use super::*;
use crate::mode::Mode;
use crate::route_table::OverlayPeer;
use crate::vtep::derived_mac;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn hop(u: &str) -> NextHop {
    let underlay: Ipv4Addr = u.parse().unwrap();
    NextHop::Overlay(OverlayPeer {
        underlay,
        vtep_mac: derived_mac(underlay),
        mode: Mode::Vxlan,
    })
}

fn table() -> PeerTable {
    PeerTable::new(
        &[
            (c("10.244.2.0/24"), hop("172.31.0.2")),
            (c("fd10:244:2::/64"), hop("172.31.0.2")),
            (c("10.244.0.0/16"), hop("172.31.0.9")),
            (c("10.244.3.0/24"), hop("172.31.0.3")),
            (c("10.244.4.0/24"), NextHop::HostGw(ip("172.31.0.4"))),
        ],
        &[c("10.244.1.0/24"), c("fd10:244:1::/64")],
    )
}

fn underlay_of(t: &PeerTable, i: Option<usize>) -> Option<Ipv4Addr> {
    i.map(|i| t.peers()[i].underlay)
}

#[test]
fn longest_prefix_wins_and_host_gw_is_ignored() {
    let t = table();
    assert_eq!(t.len(), 3);
    let p2 = t.lookup(ip("10.244.2.7")).unwrap();
    assert_eq!(t.peers()[p2].underlay, Ipv4Addr::new(172, 31, 0, 2));
    assert_eq!(t.lookup(ip("fd10:244:2::9")), Some(p2));
    let p9 = t.lookup(ip("10.244.77.1")).unwrap();
    assert_eq!(t.peers()[p9].underlay, Ipv4Addr::new(172, 31, 0, 9));
    // 10.244.4.0/24 is host-gw: the /16 overlay route covers it here.
    assert_eq!(t.lookup(ip("10.244.4.1")), Some(p9));
    assert_eq!(t.lookup(ip("192.168.1.1")), None);
    assert_eq!(t.lookup(ip("fd10:244:3::1")), None);
    assert_eq!(t.peers()[p2].ranges, 2);
}

#[test]
fn admit_checks_peer_source_and_destination() {
    let t = table();
    let p2 = t.peer_by_underlay(Ipv4Addr::new(172, 31, 0, 2)).unwrap();
    let peer2 = Ipv4Addr::new(172, 31, 0, 2);
    assert_eq!(t.admit(peer2, ip("10.244.2.5"), ip("10.244.1.5")), Ok(p2));
    assert_eq!(
        t.admit(peer2, ip("fd10:244:2::5"), ip("fd10:244:1::5")),
        Ok(p2)
    );
    assert_eq!(
        t.admit(
            Ipv4Addr::new(172, 31, 0, 66),
            ip("10.244.2.5"),
            ip("10.244.1.5")
        ),
        Err(Refusal::UnknownPeer)
    );
    assert_eq!(
        t.admit(peer2, ip("10.244.3.5"), ip("10.244.1.5")),
        Err(Refusal::SpoofedSource)
    );
    assert_eq!(
        t.admit(peer2, ip("10.244.2.5"), ip("10.244.3.5")),
        Err(Refusal::ForeignDestination)
    );
    // Strict reverse path: the /16's peer may not use a /24 routed to
    // another peer as its source.
    let peer9 = Ipv4Addr::new(172, 31, 0, 9);
    assert_eq!(
        t.admit(peer9, ip("10.244.2.5"), ip("10.244.1.5")),
        Err(Refusal::SpoofedSource)
    );
    assert!(t.admit(peer9, ip("10.244.9.5"), ip("10.244.1.5")).is_ok());
}

#[test]
fn incremental_changes_match_a_rebuild() {
    let mut t = table();
    // Move 10.244.3.0/24 from .3 to .2: .3 loses its last range.
    t.apply(c("10.244.3.0/24"), Some(&hop("172.31.0.2")));
    assert_eq!(
        underlay_of(&t, t.lookup(ip("10.244.3.1"))),
        Some(Ipv4Addr::new(172, 31, 0, 2))
    );
    assert_eq!(t.peer_by_underlay(Ipv4Addr::new(172, 31, 0, 3)), None);
    assert_eq!(t.len(), 2);
    // Withdraw the /24s: the /16 takes over.
    t.apply(c("10.244.3.0/24"), None);
    t.apply(c("10.244.2.0/24"), None);
    assert_eq!(
        underlay_of(&t, t.lookup(ip("10.244.2.1"))),
        Some(Ipv4Addr::new(172, 31, 0, 9))
    );
    // .2 still has its IPv6 range.
    let p2 = t.peer_by_underlay(Ipv4Addr::new(172, 31, 0, 2)).unwrap();
    assert_eq!(t.peers()[p2].ranges, 1);
    // A host-gw hop removes an overlay route.
    t.apply(
        c("fd10:244:2::/64"),
        Some(&NextHop::HostGw(ip("172.31.0.2"))),
    );
    assert_eq!(t.lookup(ip("fd10:244:2::1")), None);
    assert_eq!(t.peer_by_underlay(Ipv4Addr::new(172, 31, 0, 2)), None);
    // A new peer reuses a free slot.
    let slots = t.peers().len();
    t.apply(c("10.244.7.0/24"), Some(&hop("172.31.0.7")));
    assert_eq!(t.peers().len(), slots);
    assert_eq!(
        underlay_of(&t, t.lookup(ip("10.244.7.1"))),
        Some(Ipv4Addr::new(172, 31, 0, 7))
    );
    // Same answers as a table built from scratch.
    let rebuilt = PeerTable::new(
        &[
            (c("10.244.0.0/16"), hop("172.31.0.9")),
            (c("10.244.7.0/24"), hop("172.31.0.7")),
        ],
        &[c("10.244.1.0/24")],
    );
    for a in [
        "10.244.7.9",
        "10.244.2.1",
        "10.244.3.1",
        "10.245.0.1",
        "fd10:244:2::1",
    ] {
        assert_eq!(
            underlay_of(&t, t.lookup(ip(a))),
            underlay_of(&rebuilt, rebuilt.lookup(ip(a))),
            "{a}"
        );
    }
}

#[test]
fn host_routes_and_default_route() {
    let t = PeerTable::new(
        &[
            (c("0.0.0.0/0"), hop("172.31.0.1")),
            (c("10.244.2.9/32"), hop("172.31.0.2")),
            (c("::/0"), hop("172.31.0.1")),
            (c("fd10::1/128"), hop("172.31.0.2")),
        ],
        &[],
    );
    let u = |a: &str| underlay_of(&t, t.lookup(ip(a)));
    assert_eq!(u("10.244.2.9"), Some(Ipv4Addr::new(172, 31, 0, 2)));
    assert_eq!(u("10.244.2.8"), Some(Ipv4Addr::new(172, 31, 0, 1)));
    assert_eq!(u("fd10::1"), Some(Ipv4Addr::new(172, 31, 0, 2)));
    assert_eq!(u("fd10::2"), Some(Ipv4Addr::new(172, 31, 0, 1)));
}

#[test]
fn ten_thousand_peers() {
    let hops: Vec<(Cidr, NextHop)> = (0..10_000u32)
        .map(|i| {
            let net = Ipv4Addr::from(0x0a00_0000 | (i << 8));
            let under = Ipv4Addr::from(0xac10_0000 | i);
            (
                Cidr::new(IpAddr::V4(net), 24).unwrap(),
                hop(&under.to_string()),
            )
        })
        .collect();
    let t = PeerTable::new(&hops, &[]);
    assert_eq!(t.len(), 10_000);
    for i in [0u32, 1, 4_999, 9_999] {
        let dst = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i << 8) | 7));
        assert_eq!(
            underlay_of(&t, t.lookup(dst)),
            Some(Ipv4Addr::from(0xac10_0000 | i))
        );
    }
}
