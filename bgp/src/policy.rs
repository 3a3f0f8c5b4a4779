//! Import and export policy, and route reflection (RFC 4456). Pure.
//!
//! Import: only prefixes inside the configured cluster CIDRs (nothing is
//! accepted unless configured, in the spirit of RFC 8212), after loop checks.
//! Export: our own prefixes to every peer; learned routes only when we act
//! as route reflector (client routes to everyone iBGP, non-client routes to
//! clients); never back to where they came from, never to eBGP peers.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::prefix::Prefix;
use crate::rib::{Path, PeerInfo};
use crate::wire::{AsPath, Origin, PathAttrs};

/// Which prefixes we accept from peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportPolicy {
    /// Accept prefixes inside (or equal to) one of these.
    pub allow: Vec<Prefix>,
}

impl ImportPolicy {
    /// True when `prefix` may enter the RIB.
    pub fn accepts(&self, prefix: &Prefix) -> bool {
        self.allow.iter().any(|a| a.contains(prefix))
    }
}

/// Loop detection on import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loops {
    /// Our AS (an eBGP path containing it looped).
    pub local_asn: u32,
    /// Our BGP identifier (a reflected path originated by us looped).
    pub router_id: Ipv4Addr,
    /// Our cluster id as a route reflector.
    pub cluster_id: Ipv4Addr,
}

impl Loops {
    /// True when the path must be ignored.
    pub fn rejects(&self, attrs: &PathAttrs, from: &PeerInfo) -> bool {
        let as_loop = from.ebgp
            && attrs
                .as_path
                .as_ref()
                .is_some_and(|p| p.contains(self.local_asn));
        let originator_loop = attrs.originator_id == Some(self.router_id);
        let cluster_loop = attrs.cluster_list.contains(&self.cluster_id);
        as_loop || originator_loop || cluster_loop
    }
}

/// How we advertise our own prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPolicy {
    /// COMMUNITIES attached to our own prefixes.
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY values attached to our own prefixes.
    pub large_communities: Vec<[u32; 3]>,
}

/// The attributes of one of our own prefixes for a peer (next hop apart).
pub fn originate(policy: &ExportPolicy, local_asn: u32, to: &PeerInfo) -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(if to.ebgp {
            AsPath::default().prepended(local_asn)
        } else {
            AsPath::default()
        }),
        local_pref: (!to.ebgp).then_some(100),
        communities: policy.communities.clone(),
        large_communities: policy.large_communities.clone(),
        ..PathAttrs::default()
    }
}

/// Where a learned path came from, for reflection decisions.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The peer that sent it.
    pub from: &'a PeerInfo,
    /// The path.
    pub path: &'a Path,
}

/// The attributes and next hop to reflect a learned best path to `to`, or
/// `None` when it must not go there.
pub fn reflect(
    src: Source<'_>,
    to: &PeerInfo,
    cluster_id: Ipv4Addr,
) -> Option<(PathAttrs, IpAddr)> {
    let from = src.from;
    if from.key == to.key || from.ebgp || to.ebgp {
        return None;
    }
    // RFC 4456 §6: client routes go to all iBGP peers; non-client routes
    // go to clients only.
    if !from.rr_client && !to.rr_client {
        return None;
    }
    let mut attrs = src.path.attrs.clone();
    if attrs.originator_id.is_none() {
        attrs.originator_id = Some(from.router_id);
    }
    // Do not hand a route back to the router that originated it.
    if attrs.originator_id == Some(to.router_id) {
        return None;
    }
    attrs.cluster_list.insert(0, cluster_id);
    attrs.local_pref.get_or_insert(100);
    Some((attrs, src.path.next_hop))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rib::{PeerKey, Route};

    fn peer(k: u32, ebgp: bool, rr_client: bool) -> PeerInfo {
        PeerInfo {
            key: PeerKey(k),
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, k as u8)),
            router_id: Ipv4Addr::new(10, 0, 0, k as u8),
            asn: if ebgp { 65100 } else { 65000 },
            ebgp,
            rr_client,
        }
    }

    fn path_from(p: &PeerInfo) -> Path {
        Path::new(Arc::new(Route {
            peer: p.key,
            attrs: PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                ..PathAttrs::default()
            },
            next_hop: p.addr,
            ebgp: p.ebgp,
            peer_router_id: p.router_id,
            stale: false,
            peer_addr: p.addr,
        }))
    }

    #[test]
    fn import_accepts_only_inside_cluster_cidrs() {
        let pol = ImportPolicy {
            allow: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00:244::/48".parse().unwrap(),
            ],
        };
        for (p, ok) in [
            ("10.244.1.0/24", true),
            ("10.244.0.0/16", true),
            ("10.244.0.0/15", false),
            ("10.245.0.0/24", false),
            ("0.0.0.0/0", false),
            ("fd00:244:0:1::/64", true),
            ("fd00:245::/64", false),
        ] {
            assert_eq!(pol.accepts(&p.parse().unwrap()), ok, "{p}");
        }
        assert!(!ImportPolicy::default().accepts(&"10.0.0.0/8".parse().unwrap()));
    }

    #[test]
    fn loop_checks() {
        let l = Loops {
            local_asn: 65000,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: Ipv4Addr::new(10, 0, 0, 1),
        };
        let e = peer(2, true, false);
        let i = peer(3, false, false);
        let with_us = PathAttrs {
            as_path: Some(AsPath::default().prepended(65000).prepended(65100)),
            ..PathAttrs::default()
        };
        assert!(l.rejects(&with_us, &e));
        assert!(!l.rejects(&with_us, &i));
        let mine = PathAttrs {
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..PathAttrs::default()
        };
        assert!(l.rejects(&mine, &i));
        let cl = PathAttrs {
            cluster_list: vec![Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(10, 0, 0, 1)],
            ..PathAttrs::default()
        };
        assert!(l.rejects(&cl, &i));
        assert!(!l.rejects(&PathAttrs::default(), &e));
    }

    #[test]
    fn originate_for_ibgp_and_ebgp() {
        let pol = ExportPolicy {
            communities: vec![0xfde8_0001],
            large_communities: vec![],
        };
        let a = originate(&pol, 65000, &peer(2, false, false));
        assert_eq!(a.as_path, Some(AsPath::default()));
        assert_eq!(a.local_pref, Some(100));
        assert_eq!(a.communities, vec![0xfde8_0001]);
        let b = originate(&pol, 65000, &peer(2, true, false));
        assert_eq!(b.as_path.unwrap().first_as(), Some(65000));
        assert_eq!(b.local_pref, None);
    }

    /// (from client?, to client?, reflected?)
    #[test]
    fn reflection_table() {
        let cluster = Ipv4Addr::new(10, 0, 0, 1);
        for (from_client, to_client, ok) in [
            (true, true, true),
            (true, false, true),
            (false, true, true),
            (false, false, false),
        ] {
            let from = peer(2, false, from_client);
            let to = peer(3, false, to_client);
            let path = path_from(&from);
            let r = reflect(
                Source {
                    from: &from,
                    path: &path,
                },
                &to,
                cluster,
            );
            assert_eq!(r.is_some(), ok, "{from_client} {to_client}");
            if let Some((a, nh)) = r {
                assert_eq!(a.originator_id, Some(from.router_id));
                assert_eq!(a.cluster_list, vec![cluster]);
                assert_eq!(nh, from.addr, "next hop preserved");
            }
        }
        let c = peer(2, false, true);
        let path = path_from(&c);
        assert!(
            reflect(
                Source {
                    from: &c,
                    path: &path
                },
                &c,
                cluster
            )
            .is_none(),
            "not back to the sender"
        );
        assert!(
            reflect(
                Source {
                    from: &c,
                    path: &path
                },
                &peer(4, true, false),
                cluster
            )
            .is_none(),
            "not to eBGP"
        );
        let e = peer(5, true, false);
        let path = path_from(&e);
        assert!(
            reflect(
                Source {
                    from: &e,
                    path: &path
                },
                &c,
                cluster
            )
            .is_none(),
            "eBGP routes are not re-exported"
        );
    }
}
