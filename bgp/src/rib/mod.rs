//! The routing information bases: Adj-RIB-In per peer, the Loc-RIB with
//! the decision process, and the changes they produce. Pure.

pub mod adj_in;
pub mod decision;
pub mod loc_rib;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use adj_in::AdjRibIn;
pub use loc_rib::{Change, LocRib, Selected};

use crate::policy::{ImportPolicy, Loops};
use crate::prefix::Prefix;
use crate::wire::{Family, PathAttrs, Update};

/// Index of a peer inside one speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerKey(pub u32);

/// What the RIB needs to know about the peer a route came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Key.
    pub key: PeerKey,
    /// Peer transport address.
    pub addr: IpAddr,
    /// Peer BGP identifier.
    pub router_id: Ipv4Addr,
    /// Peer AS.
    pub asn: u32,
    /// External peer.
    pub ebgp: bool,
    /// We reflect routes to and from this peer as its route reflector.
    pub rr_client: bool,
}

/// What every prefix of one UPDATE from one peer shares: attributes, next
/// hop and the facts about the peer that the decision process needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where it came from.
    pub peer: PeerKey,
    /// Path attributes.
    pub attrs: PathAttrs,
    /// BGP next hop.
    pub next_hop: IpAddr,
    /// Learned over eBGP.
    pub ebgp: bool,
    /// The sending peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// The sending peer's address.
    pub peer_addr: IpAddr,
}

/// One candidate path for a prefix: a shared [`Route`] (16 bytes per
/// prefix, whatever the attributes) plus the graceful-restart stale mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The shared part.
    pub route: Arc<Route>,
    /// Kept across a peer's graceful restart, not yet refreshed.
    pub stale: bool,
}

impl Path {
    /// A fresh (not stale) path.
    pub fn new(route: Arc<Route>) -> Self {
        Self {
            route,
            stale: false,
        }
    }
}

impl std::ops::Deref for Path {
    type Target = Route;
    fn deref(&self) -> &Route {
        &self.route
    }
}

/// A route change for the consumer (the router's route table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteEvent {
    /// The prefix is reachable (new, or its next hops changed) via these
    /// next hops: the ECMP set of the best path, sorted.
    Reachable {
        /// Prefix.
        prefix: Prefix,
        /// Next hops.
        next_hops: Vec<IpAddr>,
    },
    /// The prefix is gone.
    Unreachable {
        /// Prefix.
        prefix: Prefix,
    },
}

/// Turns Loc-RIB changes into consumer events (only next-hop changes count).
pub fn events(changes: &[Change]) -> Vec<RouteEvent> {
    changes
        .iter()
        .filter_map(|c| match (&c.old, &c.new) {
            (_, Some(n)) if c.old.as_ref().is_none_or(|o| !o.same_next_hops(n)) => {
                Some(RouteEvent::Reachable {
                    prefix: c.prefix,
                    next_hops: n.next_hops(),
                })
            }
            (Some(_), None) => Some(RouteEvent::Unreachable { prefix: c.prefix }),
            _ => None,
        })
        .collect()
}

/// Adj-RIBs-In of every peer plus the Loc-RIB.
#[derive(Debug)]
pub struct Rib {
    import: ImportPolicy,
    loops: Loops,
    peers: HashMap<PeerKey, AdjRibIn>,
    loc: LocRib,
}

impl Rib {
    /// An empty RIB.
    pub fn new(import: ImportPolicy, loops: Loops) -> Self {
        Self {
            import,
            loops,
            peers: HashMap::new(),
            loc: LocRib::default(),
        }
    }

    /// The Loc-RIB.
    pub fn loc(&self) -> &LocRib {
        &self.loc
    }

    /// A peer's Adj-RIB-In.
    pub fn adj_in(&self, peer: PeerKey) -> Option<&AdjRibIn> {
        self.peers.get(&peer)
    }

    fn set(&mut self, peer: PeerKey, prefix: Prefix, path: Option<Path>, out: &mut Vec<Change>) {
        let adj = self.peers.entry(peer).or_default();
        let changed = match &path {
            Some(p) => adj.insert(prefix, p.clone()),
            None => adj.remove(&prefix),
        };
        if changed {
            out.extend(self.loc.set(prefix, peer, path));
        }
    }

    /// Applies an UPDATE from `peer` (withdrawals first, then announcements
    /// that pass import policy and loop checks).
    pub fn apply_update(&mut self, peer: &PeerInfo, update: &Update) -> Vec<Change> {
        let mut out = Vec::new();
        for p in update.withdrawn_all() {
            self.set(peer.key, p, None, &mut out);
        }
        let announced = update.announced();
        if announced.is_empty() {
            return out;
        }

        let looped = self.loops.rejects(&update.attrs, peer);
        // One shared Route per next hop (an UPDATE has at most two).
        let mut shared: Vec<Arc<Route>> = Vec::with_capacity(2);
        for (prefix, nh) in announced {
            let path = (!looped && self.import.accepts(&prefix)).then(|| {
                let route = match shared.iter().find(|r| r.next_hop == nh.global) {
                    Some(r) => r.clone(),
                    None => {
                        let r = Arc::new(Route {
                            peer: peer.key,
                            attrs: update.attrs.clone(),
                            next_hop: nh.global,
                            ebgp: peer.ebgp,
                            peer_router_id: peer.router_id,
                            peer_addr: peer.addr,
                        });
                        shared.push(r.clone());
                        r
                    }
                };
                Path::new(route)
            });
            // A refused announcement replaces (withdraws) an earlier accepted one.
            self.set(peer.key, prefix, path, &mut out);
        }
        out
    }

    /// The peer's session went down without graceful restart: drop its routes.
    pub fn peer_down(&mut self, peer: PeerKey) -> Vec<Change> {
        let mut out = Vec::new();
        let prefixes = self
            .peers
            .remove(&peer)
            .map(|mut a| a.clear())
            .unwrap_or_default();
        for p in prefixes {
            out.extend(self.loc.set(p, peer, None));
        }
        out
    }

    /// Graceful restart: keep the peer's routes of `families`, marked stale;
    /// drop the rest.
    pub fn peer_restarting(&mut self, peer: PeerKey, families: &[Family]) -> Vec<Change> {
        let mut out = Vec::new();
        for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Some(adj) = self.peers.get_mut(&peer) else {
                return out;
            };
            let prefixes = adj.mark_stale(f);
            if !families.contains(&f) {
                out.extend(self.flush_stale(peer, f));
            } else {
                // Stale paths keep forwarding; the Loc-RIB copy learns the mark.
                for p in prefixes {
                    if let Some(path) = self.peers.get(&peer).and_then(|a| a.get(&p)).cloned() {
                        out.extend(self.loc.set(p, peer, Some(path)));
                    }
                }
            }
        }
        out
    }

    /// Drops the peer's routes of `family` still stale.
    pub fn flush_stale(&mut self, peer: PeerKey, family: Family) -> Vec<Change> {
        let mut out = Vec::new();
        let gone = self
            .peers
            .get_mut(&peer)
            .map(|a| a.take_stale(family))
            .unwrap_or_default();
        for p in gone {
            out.extend(self.loc.set(p, peer, None));
        }
        out
    }
}

#[cfg(test)]
mod tests;
