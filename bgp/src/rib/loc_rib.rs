//! Loc-RIB: per prefix, the candidate path of each peer and the selection.
//! Laid out for the common case of one candidate per prefix: no heap
//! allocation per prefix unless several peers offer it.

use std::collections::HashMap;
use std::net::IpAddr;

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

/// The candidates of a prefix, one per peer.
#[derive(Clone, Debug)]
enum Candidates {
    One(Path),
    Many(Vec<Path>),
}

impl Candidates {
    fn as_slice(&self) -> &[Path] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(v) => v,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    candidates: Candidates,
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

fn select(c: &[Path]) -> Option<Selected> {
    let (best, multi) = decision::select(c)?;
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

impl LocRib {
    /// Makes room for `n` more prefixes.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Sets (or with `None` removes) `peer`'s candidate for `prefix`, reruns
    /// the decision, and returns the change if the selection moved.
    pub fn set(&mut self, prefix: Prefix, peer: PeerKey, path: Option<Path>) -> Option<Change> {
        let Some(entry) = self.entries.get_mut(&prefix) else {
            // New prefix: one candidate, selected as is.
            let p = path?;
            let selected = Selected {
                best: p.clone(),
                ecmp: None,
            };
            self.entries.insert(
                prefix,
                Entry {
                    candidates: Candidates::One(p),
                    selected: Some(selected.clone()),
                },
            );
            return Some(Change {
                prefix,
                old: None,
                new: Some(selected),
            });
        };
        let mut list = match std::mem::replace(&mut entry.candidates, Candidates::Many(Vec::new()))
        {
            Candidates::One(p) => vec![p],
            Candidates::Many(v) => v,
        };
        let pos = list.iter().position(|c| c.peer == peer);
        match (pos, path) {
            (Some(i), Some(p)) => list[i] = p,
            (None, Some(p)) => list.push(p),
            (Some(i), None) => {
                list.swap_remove(i);
            }
            (None, None) => {}
        }
        if list.is_empty() {
            let old = self.entries.remove(&prefix).and_then(|e| e.selected);
            return old.map(|o| Change {
                prefix,
                old: Some(o),
                new: None,
            });
        }
        entry.candidates = if list.len() == 1 {
            Candidates::One(list.swap_remove(0))
        } else {
            Candidates::Many(list)
        };
        let new = select(entry.candidates.as_slice());
        if new == entry.selected {
            return None;
        }
        let old = std::mem::replace(&mut entry.selected, new.clone());
        Some(Change { prefix, old, new })
    }

    /// The selection of `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&Selected> {
        self.entries.get(prefix).and_then(|e| e.selected.as_ref())
    }

    /// `peer`'s candidate for `prefix`.
    pub fn candidate(&self, prefix: &Prefix, peer: PeerKey) -> Option<&Path> {
        self.entries
            .get(prefix)
            .and_then(|e| e.candidates.as_slice().iter().find(|c| c.peer == peer))
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
