//! Adj-RIB-In: what one peer sent us (after import policy), with the
//! graceful-restart stale marks.

use std::collections::HashMap;

use super::Path;
use crate::prefix::Prefix;
use crate::wire::Family;

/// One peer's accepted routes.
#[derive(Clone, Debug, Default)]
pub struct AdjRibIn {
    routes: HashMap<Prefix, Path>,
}

impl AdjRibIn {
    /// Stores `path` for `prefix`; returns true when it differs from before.
    pub fn insert(&mut self, prefix: Prefix, path: Path) -> bool {
        match self.routes.insert(prefix, path.clone()) {
            Some(old) => old != path,
            None => true,
        }
    }

    /// Makes room for `n` more routes.
    pub fn reserve(&mut self, n: usize) {
        self.routes.reserve(n);
    }

    /// Removes the route; true when there was one.
    pub fn remove(&mut self, prefix: &Prefix) -> bool {
        self.routes.remove(prefix).is_some()
    }

    /// The route for `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&Path> {
        self.routes.get(prefix)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Marks every route of `family` stale; returns those prefixes.
    pub fn mark_stale(&mut self, family: Family) -> Vec<Prefix> {
        self.routes
            .iter_mut()
            .filter(|(p, _)| Family::of(p) == family)
            .map(|(p, path)| {
                path.stale = true;
                *p
            })
            .collect()
    }

    /// Removes the routes of `family` still stale; returns their prefixes.
    pub fn take_stale(&mut self, family: Family) -> Vec<Prefix> {
        let gone: Vec<Prefix> = self
            .routes
            .iter()
            .filter(|(p, path)| path.stale && Family::of(p) == family)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.routes.remove(p);
        }
        gone
    }

    /// Removes everything; returns the prefixes.
    pub fn clear(&mut self) -> Vec<Prefix> {
        self.routes.drain().map(|(p, _)| p).collect()
    }
}
