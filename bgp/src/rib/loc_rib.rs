//! Loc-RIB: per prefix, the candidate path of each peer and the selection.
//! It is also every peer's Adj-RIB-In (after import policy): a peer's
//! routes are its candidates here, so each prefix is stored once.
//!
//! Laid out for the common case of one candidate per prefix: such a prefix
//! is one 8-byte path in a packed map (the path is its own selection);
//! only prefixes that several peers offer get a heap entry with the
//! candidate list and the cached selection.

use std::collections::HashMap;
use std::net::IpAddr;

use super::prefix_map::PrefixMap;
use super::{Path, PeerKey, decision};
use crate::prefix::Prefix;

/// The selected route of a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The best path (what we would re-advertise).
    pub best: Path,
    /// With ECMP: the next hops of every path tying with the best, sorted
    /// and unique. `None`: just the best path's next hop.
    ecmp: Option<Box<[IpAddr]>>,
}

impl Selected {
    fn only(p: &Path) -> Self {
        Self {
            best: p.clone(),
            ecmp: None,
        }
    }

    /// The next hops to install: the ECMP set, sorted.
    pub fn next_hops(&self) -> Vec<IpAddr> {
        match &self.ecmp {
            Some(v) => v.to_vec(),
            None => vec![self.best.next_hop],
        }
    }

    /// True when both select the same next hops.
    pub fn same_next_hops(&self, other: &Self) -> bool {
        match (&self.ecmp, &other.ecmp) {
            (None, None) => self.best.next_hop == other.best.next_hop,
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// A prefix several peers offer.
#[derive(Clone, Debug)]
struct Multi {
    candidates: Vec<Path>,
    selected: Option<Selected>,
}

/// A change of a prefix's selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The prefix.
    pub prefix: Prefix,
    /// The selection before.
    pub old: Option<Selected>,
    /// The selection now.
    pub new: Option<Selected>,
}

/// The Loc-RIB.
#[derive(Clone, Debug)]
pub struct LocRib {
    /// Next hops of one selection at most (1: no multipath).
    max_paths: usize,
    /// Prefixes with exactly one candidate.
    one: PrefixMap<Path>,
    /// Prefixes with two or more.
    many: HashMap<Prefix, Multi>,
    /// Candidates per peer.
    counts: HashMap<PeerKey, usize>,
}

impl Default for LocRib {
    /// A Loc-RIB with multipath up to [`super::MAX_PATHS`].
    fn default() -> Self {
        Self::with_max_paths(super::MAX_PATHS)
    }
}

fn select(c: &[Path], max_paths: usize) -> Option<Selected> {
    let (best, multi) = decision::select(c, max_paths)?;
    let ecmp = (multi.len() > 1).then(|| {
        let mut v: Vec<IpAddr> = multi.iter().map(|i| c[*i].next_hop).collect();
        v.sort_unstable();
        v.dedup();
        v.into_boxed_slice()
    });
    // A tie that collapses to one next hop is just that next hop.
    let ecmp = ecmp.filter(|v| v.len() > 1);
    Some(Selected {
        best: c[best].clone(),
        ecmp,
    })
}

fn change(prefix: Prefix, old: Option<Selected>, new: Option<Selected>) -> Option<Change> {
    (old != new).then_some(Change { prefix, old, new })
}

impl LocRib {
    /// An empty Loc-RIB whose selections have `max_paths` next hops at
    /// most (1 or 0: the best path's only).
    pub fn with_max_paths(max_paths: usize) -> Self {
        Self {
            max_paths: max_paths.max(1),
            one: PrefixMap::default(),
            many: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    fn count(&mut self, peer: PeerKey, added: bool) {
        let n = self.counts.entry(peer).or_default();
        if added {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
    }

    /// Sets (or with `None` removes) `peer`'s candidate for `prefix`, reruns
    /// the decision, and returns the change if the selection moved.
    pub fn set(&mut self, prefix: Prefix, peer: PeerKey, path: Option<Path>) -> Option<Change> {
        if self.many.contains_key(&prefix) {
            return self.set_many(prefix, peer, path);
        }
        let cur = self.one.get(&prefix);
        match (cur, path) {
            (None, Some(p)) => {
                self.count(peer, true);
                let new = Selected::only(&p);
                self.one.insert(prefix, p);
                change(prefix, None, Some(new))
            }
            (Some(c), Some(p)) if c.peer == peer => {
                if *c == p {
                    return None;
                }
                let old = Selected::only(c);
                let new = Selected::only(&p);
                self.one.insert(prefix, p);
                change(prefix, Some(old), Some(new))
            }
            (Some(c), None) if c.peer == peer => {
                let old = Selected::only(c);
                self.one.remove(&prefix);
                self.count(peer, false);
                change(prefix, Some(old), None)
            }
            // Nothing to remove, or another peer's candidate.
            (_, None) => None,
            (Some(_), Some(p)) => {
                // A second peer offers it: it becomes a multi entry.
                let c = self.one.remove(&prefix)?;
                self.count(peer, true);
                let old = Selected::only(&c);
                let candidates = vec![c, p];
                let new = select(&candidates, self.max_paths);
                self.many.insert(
                    prefix,
                    Multi {
                        candidates,
                        selected: new.clone(),
                    },
                );
                change(prefix, Some(old), new)
            }
        }
    }

    fn set_many(&mut self, prefix: Prefix, peer: PeerKey, path: Option<Path>) -> Option<Change> {
        let m = self.many.get_mut(&prefix)?;
        let pos = m.candidates.iter().position(|c| c.peer == peer);
        let delta = match (pos, path) {
            (Some(i), Some(p)) => {
                if m.candidates[i] == p {
                    return None;
                }
                m.candidates[i] = p;
                None
            }
            (None, Some(p)) => {
                m.candidates.push(p);
                Some(true)
            }
            (Some(i), None) => {
                m.candidates.swap_remove(i);
                Some(false)
            }
            (None, None) => return None,
        };
        let old = m.selected.take();
        let new = if m.candidates.len() == 1 {
            let m = self.many.remove(&prefix)?;
            let only = m.candidates.into_iter().next();
            let new = only.as_ref().map(Selected::only);
            if let Some(p) = only {
                self.one.insert(prefix, p);
            }
            new
        } else {
            let new = select(&m.candidates, self.max_paths);
            m.selected.clone_from(&new);
            new
        };
        if let Some(added) = delta {
            self.count(peer, added);
        }
        change(prefix, old, new)
    }

    /// The selection of `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<Selected> {
        match self.one.get(prefix) {
            Some(p) => Some(Selected::only(p)),
            None => self.many.get(prefix).and_then(|m| m.selected.clone()),
        }
    }

    /// `peer`'s candidate for `prefix` (its Adj-RIB-In entry).
    pub fn candidate(&self, prefix: &Prefix, peer: PeerKey) -> Option<&Path> {
        match self.one.get(prefix) {
            Some(p) => (p.peer == peer).then_some(p),
            None => self
                .many
                .get(prefix)
                .and_then(|m| m.candidates.iter().find(|c| c.peer == peer)),
        }
    }

    /// The prefixes for which `peer` has a candidate that passes `keep`.
    pub fn prefixes_of(&self, peer: PeerKey, keep: impl Fn(&Prefix, &Path) -> bool) -> Vec<Prefix> {
        let one = self
            .one
            .iter()
            .filter(|(pfx, p)| p.peer == peer && keep(pfx, p))
            .map(|(pfx, _)| pfx);
        let many = self.many.iter().filter_map(|(pfx, m)| {
            m.candidates
                .iter()
                .any(|p| p.peer == peer && keep(pfx, p))
                .then_some(*pfx)
        });
        one.chain(many).collect()
    }

    /// Number of candidates `peer` offers (its Adj-RIB-In size).
    pub fn received(&self, peer: PeerKey) -> usize {
        self.counts.get(&peer).copied().unwrap_or(0)
    }

    /// Every selected route.
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, Selected)> + '_ {
        let one = self.one.iter().map(|(p, path)| (p, Selected::only(path)));
        let many = self
            .many
            .iter()
            .filter_map(|(p, m)| m.selected.clone().map(|s| (*p, s)));
        one.chain(many)
    }

    /// Number of prefixes with a selection.
    pub fn len(&self) -> usize {
        self.one.len() + self.many.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
