//! Loc-RIB: per prefix, the candidate path of each peer and the selection.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Path, PeerKey, decision};
use crate::prefix::Prefix;

/// The selected route of a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The best path (what we would re-advertise).
    pub best: Path,
    /// Next hops of every path tying with the best (ECMP), sorted, unique.
    pub next_hops: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
struct Entry {
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
#[derive(Clone, Debug, Default)]
pub struct LocRib {
    entries: HashMap<Prefix, Entry>,
}

impl LocRib {
    /// Sets (or with `None` removes) `peer`'s candidate for `prefix`, reruns
    /// the decision, and returns the change if the selection moved.
    pub fn set(&mut self, prefix: Prefix, peer: PeerKey, path: Option<Path>) -> Option<Change> {
        let entry = self.entries.entry(prefix).or_default();
        let pos = entry.candidates.iter().position(|c| c.peer == peer);
        match (pos, path) {
            (Some(i), Some(p)) => entry.candidates[i] = p,
            (None, Some(p)) => entry.candidates.push(p),
            (Some(i), None) => {
                entry.candidates.swap_remove(i);
            }
            (None, None) => {
                if entry.candidates.is_empty() {
                    self.entries.remove(&prefix);
                }
                return None;
            }
        }
        let new = decision::select(&entry.candidates).map(|(best, multi)| {
            let mut next_hops: Vec<IpAddr> = multi
                .iter()
                .map(|i| entry.candidates[*i].next_hop)
                .collect();
            next_hops.sort_unstable();
            next_hops.dedup();
            Selected {
                best: entry.candidates[best].clone(),
                next_hops,
            }
        });
        if new == entry.selected {
            return None;
        }
        let old = std::mem::replace(&mut entry.selected, new.clone());
        if entry.candidates.is_empty() {
            self.entries.remove(&prefix);
        }
        Some(Change { prefix, old, new })
    }

    /// The selection of `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&Selected> {
        self.entries.get(prefix).and_then(|e| e.selected.as_ref())
    }

    /// Every selected route.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &Selected)> {
        self.entries
            .iter()
            .filter_map(|(p, e)| e.selected.as_ref().map(|s| (p, s)))
    }

    /// Number of prefixes with a selection.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
