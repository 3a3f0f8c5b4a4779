//! Route table tests: updates from every source in, resolved next hops out.

use super::*;

fn c(s: &str) -> Cidr {
    s.parse().unwrap()
}
fn up(cidr: &str, via: &str, source: RouteSource) -> RouteUpdate {
    RouteUpdate::Upsert {
        route: PeerRoute {
            pod_cidr: c(cidr),
            via: via.parse().unwrap(),
            vtep_mac: None,
        },
        source,
    }
}

#[test]
fn host_gw_resolves_to_gateway() {
    let mut t = RouteTable::new(Mode::HostGw, None);
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
    assert_eq!(
        t.next_hops(),
        vec![(
            c("10.244.2.0/24"),
            NextHop::HostGw("172.31.0.2".parse().unwrap())
        )]
    );
}

#[test]
fn overlay_derives_vtep_mac_unless_set() {
    let mut t = RouteTable::new(Mode::Vxlan, None);
    t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static));
    let mac = MacAddr([2, 0x57, 9, 9, 9, 9]);
    t.apply(RouteUpdate::Upsert {
        route: PeerRoute {
            pod_cidr: c("10.244.3.0/24"),
            via: "172.31.0.3".parse().unwrap(),
            vtep_mac: Some(mac),
        },
        source: RouteSource::Static,
    });
    let hops = t.next_hops();
    assert_eq!(
        hops[0].1,
        NextHop::Overlay(OverlayPeer {
            underlay: Ipv4Addr::new(172, 31, 0, 2),
            vtep_mac: MacAddr([2, 0x57, 172, 31, 0, 2]),
            mode: Mode::Vxlan
        })
    );
    assert!(matches!(hops[1].1, NextHop::Overlay(p) if p.vtep_mac == mac));
}

#[test]
fn direct_routing_uses_host_gw_on_the_same_subnet() {
    let mut t = RouteTable::new(Mode::Vxlan, Some(c("172.31.0.0/24")));
    t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static));
    t.apply(up("10.244.3.0/24", "172.31.9.3", RouteSource::Static));
    let hops = t.next_hops();
    assert!(matches!(hops[0].1, NextHop::HostGw(_)));
    assert!(matches!(hops[1].1, NextHop::Overlay(_)));
}

#[test]
fn static_wins_over_bgp_and_withdraw_falls_back() {
    let mut t = RouteTable::new(Mode::HostGw, None);
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
    // BGP changing its path is invisible while static wins.
    assert!(!t.apply(up("10.244.2.0/24", "172.31.0.8", RouteSource::Bgp)));
    assert_eq!(
        t.next_hops()[0].1,
        NextHop::HostGw("172.31.0.2".parse().unwrap())
    );
    assert!(t.apply(RouteUpdate::Withdraw {
        pod_cidr: c("10.244.2.0/24"),
        source: RouteSource::Static
    }));
    assert_eq!(
        t.next_hops()[0].1,
        NextHop::HostGw("172.31.0.8".parse().unwrap())
    );
    assert!(t.apply(RouteUpdate::Withdraw {
        pod_cidr: c("10.244.2.0/24"),
        source: RouteSource::Bgp
    }));
    assert!(t.is_empty());
    // Withdrawing something unknown changes nothing.
    assert!(!t.apply(RouteUpdate::Withdraw {
        pod_cidr: c("10.244.2.0/24"),
        source: RouteSource::Bgp
    }));
}

#[test]
fn leases_win_over_bgp_and_lose_to_static() {
    let mut t = RouteTable::new(Mode::HostGw, None);
    let hop = |t: &RouteTable| t.next_hop(&c("10.244.2.0/24"));
    let gw = |s: &str| Some(NextHop::HostGw(s.parse().unwrap()));
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.3", RouteSource::Etcd)));
    assert_eq!(hop(&t), gw("172.31.0.3"));
    assert_eq!(t.len(), 1);
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Static)));
    assert_eq!(hop(&t), gw("172.31.0.2"));
    assert_eq!(t.next_hops().len(), 1);
    assert_eq!(t.len(), 1);
    assert!(t.apply(RouteUpdate::Withdraw {
        pod_cidr: c("10.244.2.0/24"),
        source: RouteSource::Static
    }));
    assert_eq!(hop(&t), gw("172.31.0.3"));
    assert!(t.apply(RouteUpdate::Withdraw {
        pod_cidr: c("10.244.2.0/24"),
        source: RouteSource::Etcd
    }));
    assert_eq!(hop(&t), gw("172.31.0.9"));
    assert!(t.apply(up("10.244.3.0/24", "172.31.0.3", RouteSource::Etcd)));
    assert_eq!(t.len(), 2);
    assert_eq!(t.next_hops().len(), 2);
}

#[test]
fn bgp_gateways_are_shared_and_released() {
    let mut t = RouteTable::new(Mode::HostGw, None);
    t.apply(up("10.244.2.0/24", "172.31.0.2", RouteSource::Bgp));
    t.apply(up("10.244.3.0/24", "172.31.0.2", RouteSource::Bgp));
    t.apply(up("fd10:244:3::/64", "fd00::3", RouteSource::Bgp));
    assert_eq!(t.gateways(), 2);
    // A changed next hop releases the old gateway once unused.
    assert!(t.apply(up("10.244.3.0/24", "172.31.0.9", RouteSource::Bgp)));
    assert_eq!(t.gateways(), 3);
    assert!(t.apply(up("10.244.2.0/24", "172.31.0.9", RouteSource::Bgp)));
    assert_eq!(t.gateways(), 2);
    assert_eq!(t.len(), 3);
    assert_eq!(
        t.next_hops(),
        vec![
            (
                c("10.244.2.0/24"),
                NextHop::HostGw("172.31.0.9".parse().unwrap())
            ),
            (
                c("10.244.3.0/24"),
                NextHop::HostGw("172.31.0.9".parse().unwrap())
            ),
            (
                c("fd10:244:3::/64"),
                NextHop::HostGw("fd00::3".parse().unwrap())
            ),
        ]
    );
    for cidr in ["10.244.2.0/24", "10.244.3.0/24", "fd10:244:3::/64"] {
        assert!(t.apply(RouteUpdate::Withdraw {
            pod_cidr: c(cidr),
            source: RouteSource::Bgp
        }));
    }
    assert!(t.is_empty());
    assert_eq!(t.gateways(), 0);
    // Freed slots are reused, not appended.
    t.apply(up("10.244.2.0/24", "172.31.0.7", RouteSource::Bgp));
    assert_eq!(t.gateways.slots(), 3);
}

fn multi(cidr: &str, via: &[&str]) -> RouteUpdate {
    RouteUpdate::UpsertMultipath {
        pod_cidr: c(cidr),
        via: via.iter().map(|v| v.parse().unwrap()).collect(),
        source: RouteSource::Bgp,
    }
}

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn host_gw_multipath_is_one_route_over_every_gateway() {
    let mut t = RouteTable::new(Mode::HostGw, None);
    let hop = |t: &RouteTable| t.next_hop(&c("10.244.9.0/24"));
    // Unsorted and duplicated in, sorted and unique out.
    let before = t.apply_change(multi(
        "10.244.9.0/24",
        &["10.0.2.1", "10.0.1.1", "10.0.2.1"],
    ));
    assert_eq!(before, Some(None));
    assert_eq!(
        hop(&t),
        Some(NextHop::Multipath(ips(&["10.0.1.1", "10.0.2.1"])))
    );
    // The same set again changes nothing.
    assert_eq!(
        t.apply_change(multi("10.244.9.0/24", &["10.0.2.1", "10.0.1.1"])),
        None
    );
    // One path gone: a single gateway, reported as a change from the set.
    assert_eq!(
        t.apply_change(up("10.244.9.0/24", "10.0.2.1", RouteSource::Bgp)),
        Some(Some(NextHop::Multipath(ips(&["10.0.1.1", "10.0.2.1"]))))
    );
    assert_eq!(hop(&t), Some(NextHop::HostGw("10.0.2.1".parse().unwrap())));
    // A set of one is a plain route.
    t.apply(multi("10.244.9.0/24", &["10.0.1.1"]));
    assert_eq!(hop(&t), Some(NextHop::HostGw("10.0.1.1".parse().unwrap())));
    // Many ranges share one interned set.
    t.apply(multi("10.244.9.0/24", &["10.0.1.1", "10.0.2.1"]));
    t.apply(multi("10.244.10.0/24", &["10.0.2.1", "10.0.1.1"]));
    assert_eq!(t.gateways(), 1);
    // A static route still wins.
    t.apply(up("10.244.9.0/24", "10.0.3.1", RouteSource::Static));
    assert_eq!(hop(&t), Some(NextHop::HostGw("10.0.3.1".parse().unwrap())));
    // Static multipath updates are ignored (a static route names one node).
    assert!(!t.apply(RouteUpdate::UpsertMultipath {
        pod_cidr: c("10.244.11.0/24"),
        via: ips(&["10.0.1.1", "10.0.2.1"]),
        source: RouteSource::Static,
    }));
    // An empty set withdraws.
    t.apply(multi("10.244.10.0/24", &[]));
    assert_eq!(t.next_hop(&c("10.244.10.0/24")), None);
}

#[test]
fn overlay_keeps_one_owner_unless_every_gateway_is_direct() {
    let mut t = RouteTable::new(Mode::Vxlan, Some(c("172.31.0.0/24")));
    t.apply(multi("10.244.9.0/24", &["172.31.0.3", "172.31.0.2"]));
    assert_eq!(
        t.next_hop(&c("10.244.9.0/24")),
        Some(NextHop::Multipath(ips(&["172.31.0.2", "172.31.0.3"])))
    );
    t.apply(multi("10.244.9.0/24", &["172.31.9.3", "172.31.0.2"]));
    // One next hop needs the overlay: the lowest owns the range.
    assert_eq!(
        t.next_hop(&c("10.244.9.0/24")),
        Some(NextHop::HostGw("172.31.0.2".parse().unwrap()))
    );
    let mut t = RouteTable::new(Mode::Vxlan, None);
    t.apply(multi("10.244.9.0/24", &["172.31.0.3", "172.31.0.2"]));
    assert!(matches!(
        t.next_hop(&c("10.244.9.0/24")),
        Some(NextHop::Overlay(p)) if p.underlay == Ipv4Addr::new(172, 31, 0, 2)
    ));
    assert_eq!(t.next_hops().len(), 1);
}
