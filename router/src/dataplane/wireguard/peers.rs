//! Who the WireGuard peers are, purely: one peer per remote public key
//! (several static routes naming the same key are one peer with several
//! ranges and vias), the message classifier that picks a datagram's peer
//! before any crypto, and the allowed-source check for decrypted packets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::FastMap;
use crate::config::StaticRoute;
use crate::dataplane::peer_table::{PeerTable, Refusal};
use crate::dataplane::wireguard::key_book::LearnedKey;
use crate::wg_key::PublicKey;
pub use weft_encap::wireguard::Message;

/// A remote node's WireGuard identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Its public key.
    pub public: PublicKey,
    /// Where its WireGuard listens (until it roams).
    pub endpoint: SocketAddrV4,
    /// The underlay addresses its pod ranges are routed via.
    pub vias: Vec<Ipv4Addr>,
}

/// One peer per distinct key among `routes`, in order of first mention;
/// routes without a key (or with a non-IPv4 via) name no peer. The
/// endpoint is the first `wireguard_endpoint` given for the key, else
/// `via:port` of its first route.
pub fn specs_from_routes(routes: &[StaticRoute], port: u16) -> Vec<PeerSpec> {
    let mut specs: Vec<PeerSpec> = Vec::new();
    let mut explicit: Vec<bool> = Vec::new();
    for r in routes {
        let (Some(text), IpAddr::V4(via)) = (&r.wireguard_public_key, r.via) else {
            continue;
        };
        let Ok(public) = PublicKey::parse(text) else {
            continue;
        };
        let endpoint = match r.wireguard_endpoint {
            Some(SocketAddr::V4(e)) => Some(e),
            _ => None,
        };
        match specs.iter().position(|s| s.public.ct_eq(&public)) {
            Some(i) => {
                if !specs[i].vias.contains(&via) {
                    specs[i].vias.push(via);
                }
                if let (Some(e), false) = (endpoint, explicit[i]) {
                    specs[i].endpoint = e;
                    explicit[i] = true;
                }
            }
            None => {
                specs.push(PeerSpec {
                    public,
                    endpoint: endpoint.unwrap_or(SocketAddrV4::new(via, port)),
                    vias: vec![via],
                });
                explicit.push(endpoint.is_some());
            }
        }
    }
    specs
}

/// The peer list after a change of keys: every peer in `known` keeps its
/// index (its session lives on), static specs name their vias first,
/// learned keys add the vias no static route claims, and a key new to the
/// list is appended. A known peer no source names any more keeps its slot
/// with no vias: nothing is sent to it and nothing it sends is admitted.
pub fn merge(known: &[PublicKey], statics: &[PeerSpec], learned: &[LearnedKey]) -> Vec<PeerSpec> {
    let mut specs: Vec<PeerSpec> = known
        .iter()
        .map(|k| PeerSpec {
            public: *k,
            endpoint: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            vias: Vec::new(),
        })
        .collect();
    let add = |specs: &mut Vec<PeerSpec>, public: PublicKey, endpoint, via| match specs
        .iter()
        .position(|s| s.public.ct_eq(&public))
    {
        Some(i) => {
            if !specs[i].vias.contains(&via) {
                specs[i].vias.push(via);
            }
            if specs[i].endpoint.port() == 0 {
                specs[i].endpoint = endpoint;
            }
        }
        None => specs.push(PeerSpec {
            public,
            endpoint,
            vias: vec![via],
        }),
    };
    for s in statics {
        for via in &s.vias {
            add(&mut specs, s.public, s.endpoint, *via);
        }
    }
    for l in learned {
        if !statics.iter().any(|s| s.vias.contains(&l.via)) {
            add(
                &mut specs,
                l.public,
                SocketAddrV4::new(l.via, l.port),
                l.via,
            );
        }
    }
    specs
}

/// The peers' keys and the via → peer map.
#[derive(Debug, Clone, Default)]
pub struct PeerIndex {
    keys: Vec<PublicKey>,
    by_via: FastMap<Ipv4Addr, usize>,
}

impl PeerIndex {
    /// Indexes `specs`; peer `i` is `specs[i]`. A via claimed by two keys
    /// stays with the first.
    pub fn new(specs: &[PeerSpec]) -> Self {
        let mut by_via = FastMap::default();
        for (i, s) in specs.iter().enumerate() {
            for v in &s.vias {
                by_via.entry(*v).or_insert(i);
            }
        }
        Self {
            keys: specs.iter().map(|s| s.public).collect(),
            by_via,
        }
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True without peers.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Peer `i`'s public key.
    pub fn key(&self, i: usize) -> Option<PublicKey> {
        self.keys.get(i).copied()
    }

    /// The peer whose pod ranges are routed via `underlay`.
    #[inline]
    pub fn by_via(&self, underlay: Ipv4Addr) -> Option<usize> {
        self.by_via.get(&underlay).copied()
    }

    /// The peer with this public key. Compares with every key in
    /// constant time (handshakes only, never per data packet).
    pub fn by_key(&self, key: &[u8; 32]) -> Option<usize> {
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if crate::wg_key::ct_eq(&k.0, key) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// Allowed sources for a packet WireGuard peer `peer` decrypted: its
    /// inner source must be routed (longest prefix) via one of that peer's
    /// vias, and its destination must be one of this node's pods. Returns
    /// the route table's peer index of the source (for the counters).
    pub fn admit(
        &self,
        table: &PeerTable,
        peer: usize,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<usize, Refusal> {
        let routed = table.lookup(src).ok_or(Refusal::SpoofedSource)?;
        let via = table.peers()[routed].underlay;
        if self.by_via(via) != Some(peer) {
            return Err(Refusal::SpoofedSource);
        }
        if !table.owns(dst) {
            return Err(Refusal::ForeignDestination);
        }
        Ok(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Cidr;
    use crate::mode::Mode;
    use crate::route_table::{NextHop, OverlayPeer};
    use crate::vtep::derived_mac;

    fn key(b: u8) -> String {
        PublicKey([b; 32]).to_string()
    }

    fn route(cidr: &str, via: &str, k: Option<u8>, ep: Option<&str>) -> StaticRoute {
        StaticRoute {
            pod_cidr: cidr.parse().unwrap(),
            via: via.parse().unwrap(),
            vtep_mac: None,
            wireguard_public_key: k.map(key),
            wireguard_endpoint: ep.map(|e| e.parse().unwrap()),
        }
    }

    #[test]
    fn one_peer_per_key() {
        let routes = [
            route("10.244.2.0/24", "172.31.0.2", Some(2), None),
            route(
                "10.244.3.0/24",
                "172.31.0.3",
                Some(3),
                Some("192.0.2.3:4000"),
            ),
            route("10.244.4.0/24", "172.31.0.2", Some(2), None),
            route(
                "10.244.5.0/24",
                "172.31.0.5",
                Some(2),
                Some("192.0.2.5:5000"),
            ),
            route("10.244.6.0/24", "172.31.0.6", None, None),
        ];
        let specs = specs_from_routes(&routes, 51820);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].public, PublicKey([2; 32]));
        assert_eq!(
            specs[0].vias,
            vec![
                "172.31.0.2".parse::<Ipv4Addr>().unwrap(),
                "172.31.0.5".parse().unwrap()
            ]
        );
        assert_eq!(specs[0].endpoint, "192.0.2.5:5000".parse().unwrap());
        assert_eq!(specs[1].endpoint, "192.0.2.3:4000".parse().unwrap());
        let idx = PeerIndex::new(&specs);
        assert_eq!(idx.by_via("172.31.0.5".parse().unwrap()), Some(0));
        assert_eq!(idx.by_via("172.31.0.6".parse().unwrap()), None);
        assert_eq!(idx.by_key(&[3; 32]), Some(1));
        assert_eq!(idx.by_key(&[4; 32]), None);
    }

    #[test]
    fn merging_keeps_sessions_and_lets_static_keys_win() {
        let statics = specs_from_routes(
            &[route("10.244.2.0/24", "172.31.0.2", Some(2), None)],
            51820,
        );
        let via = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let learned = [
            // Claims a via a static route names: ignored.
            LearnedKey {
                via: via("172.31.0.2"),
                public: PublicKey([9; 32]),
                port: 1,
            },
            LearnedKey {
                via: via("172.31.0.3"),
                public: PublicKey([3; 32]),
                port: 4000,
            },
        ];
        let m = merge(&[], &statics, &learned);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].public, PublicKey([2; 32]));
        assert_eq!(m[1].endpoint, "172.31.0.3:4000".parse().unwrap());
        // Node 3's lease goes, node 4 comes: node 3 keeps its slot, no via.
        let keys: Vec<PublicKey> = m.iter().map(|s| s.public).collect();
        let learned = [LearnedKey {
            via: via("172.31.0.4"),
            public: PublicKey([4; 32]),
            port: 51820,
        }];
        let m = merge(&keys, &statics, &learned);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].vias, vec![via("172.31.0.2")]);
        assert!(m[1].vias.is_empty());
        assert_eq!(m[2].vias, vec![via("172.31.0.4")]);
        let idx = PeerIndex::new(&m);
        assert_eq!(idx.by_via(via("172.31.0.3")), None);
        assert_eq!(idx.by_via(via("172.31.0.4")), Some(2));
    }

    #[test]
    fn default_endpoint_is_via_and_port() {
        let specs = specs_from_routes(&[route("10.244.2.0/24", "172.31.0.2", Some(2), None)], 7);
        assert_eq!(specs[0].endpoint, "172.31.0.2:7".parse().unwrap());
    }

    #[test]
    fn allowed_sources_are_the_peers_own_ranges() {
        let specs = specs_from_routes(
            &[
                route("10.244.2.0/24", "172.31.0.2", Some(2), None),
                route("10.244.3.0/24", "172.31.0.3", Some(3), None),
            ],
            51820,
        );
        let idx = PeerIndex::new(&specs);
        let hop = |via: &str| {
            let underlay: Ipv4Addr = via.parse().unwrap();
            NextHop::Overlay(OverlayPeer {
                underlay,
                vtep_mac: derived_mac(underlay),
                mode: Mode::Wireguard,
            })
        };
        let c = |s: &str| -> Cidr { s.parse().unwrap() };
        let table = PeerTable::new(
            &[
                (c("10.244.2.0/24"), hop("172.31.0.2")),
                (c("10.244.3.0/24"), hop("172.31.0.3")),
            ],
            &[c("10.244.1.0/24")],
        );
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let me = ip("10.244.1.5");
        assert!(idx.admit(&table, 0, ip("10.244.2.9"), me).is_ok());
        // Another node's range, this node's own range, anything else.
        for src in ["10.244.3.9", "10.244.1.7", "8.8.8.8"] {
            assert_eq!(
                idx.admit(&table, 0, ip(src), me),
                Err(Refusal::SpoofedSource),
                "{src}"
            );
        }
        assert_eq!(
            idx.admit(&table, 0, ip("10.244.2.9"), ip("10.244.3.1")),
            Err(Refusal::ForeignDestination)
        );
    }
}
