//! The routing information bases: the Loc-RIB with the decision process
//! (which also holds every peer's Adj-RIB-In: a peer's routes are its
//! candidates there), and the changes they produce. Pure.

pub mod decision;
pub mod loc_rib;
mod prefix_map;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use loc_rib::{Change, LocRib, Selected};

use crate::policy::{ImportPolicy, Loops};
use crate::prefix::Prefix;
use crate::wire::{Family, PathAttrs, Update};

/// Next hops of one multipath route at most (what BIRD's `merge paths`
/// and FRR's `maximum-paths` default to on Linux: the kernel's own ECMP
/// width is not limited, but 16 is the common hardware one).
pub const MAX_PATHS: usize = 16;

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
    /// Kept across the peer's graceful restart, not yet refreshed (a
    /// restart gives every route of the peer a stale twin).
    pub stale: bool,
}

/// One candidate path for a prefix: a shared [`Route`], 8 bytes per
/// prefix whatever the attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The shared part.
    pub route: Arc<Route>,
}

impl Path {
    /// A path for `route`.
    pub fn new(route: Arc<Route>) -> Self {
        Self { route }
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
    /// next hops, sorted: the best path's and, with multipath, those of the
    /// paths tying with it ([`MAX_PATHS`] at most).
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
    /// `peer` (its configured address) sent End-of-RIB for `family`: its
    /// initial routes of that family have all been reported before this
    /// event (RFC 4724 §2).
    EndOfRib {
        /// The peer.
        peer: IpAddr,
        /// The address family.
        family: Family,
        /// Every family negotiated with the peer has now ended its initial
        /// table (the peer is in sync).
        complete: bool,
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

/// The Loc-RIB (with the Adj-RIBs-In) plus import policy.
#[derive(Debug)]
pub struct Rib {
    import: ImportPolicy,
    loops: Loops,
    loc: LocRib,
}

impl Rib {
    /// An empty RIB with multipath (up to [`MAX_PATHS`] next hops).
    pub fn new(import: ImportPolicy, loops: Loops) -> Self {
        Self::with_max_paths(import, loops, MAX_PATHS)
    }

    /// An empty RIB whose routes carry `max_paths` next hops at most (1:
    /// the best path's next hop only, no multipath).
    pub fn with_max_paths(import: ImportPolicy, loops: Loops, max_paths: usize) -> Self {
        Self {
            import,
            loops,
            loc: LocRib::with_max_paths(max_paths),
        }
    }

    /// The Loc-RIB.
    pub fn loc(&self) -> &LocRib {
        &self.loc
    }

    /// `peer`'s accepted route for `prefix` (its Adj-RIB-In entry).
    pub fn adj_in(&self, peer: PeerKey, prefix: &Prefix) -> Option<&Path> {
        self.loc.candidate(prefix, peer)
    }

    /// Number of routes accepted from `peer`.
    pub fn received(&self, peer: PeerKey) -> usize {
        self.loc.received(peer)
    }

    fn set(&mut self, peer: PeerKey, prefix: Prefix, path: Option<Path>, out: &mut Vec<Change>) {
        out.extend(self.loc.set(prefix, peer, path));
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
                            stale: false,
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
        for p in self.loc.prefixes_of(peer, |_, _| true) {
            self.set(peer, p, None, &mut out);
        }
        out
    }

    /// Graceful restart: keep the peer's routes of `families`, marked stale;
    /// drop the rest.
    pub fn peer_restarting(&mut self, peer: PeerKey, families: &[Family]) -> Vec<Change> {
        let mut out = Vec::new();
        for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let of_family = self.loc.prefixes_of(peer, |p, _| Family::of(p) == f);
            if !families.contains(&f) {
                for p in of_family {
                    self.set(peer, p, None, &mut out);
                }
                continue;
            }
            // Stale paths keep forwarding: each shared route gets one stale
            // twin, keyed by the address of the fresh one.
            let mut twins: HashMap<usize, Path> = HashMap::new();
            for p in of_family {
                let Some(cur) = self.loc.candidate(&p, peer) else {
                    continue;
                };
                if cur.stale {
                    continue;
                }
                let twin = twins
                    .entry(Arc::as_ptr(&cur.route).addr())
                    .or_insert_with(|| {
                        Path::new(Arc::new(Route {
                            stale: true,
                            ..(*cur.route).clone()
                        }))
                    })
                    .clone();
                self.set(peer, p, Some(twin), &mut out);
            }
        }
        out
    }

    /// Drops the peer's routes of `family` still stale.
    pub fn flush_stale(&mut self, peer: PeerKey, family: Family) -> Vec<Change> {
        let mut out = Vec::new();
        let gone = self
            .loc
            .prefixes_of(peer, |p, path| path.stale && Family::of(p) == family);
        for p in gone {
            self.set(peer, p, None, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests;
