//! Remote nodes' WireGuard keys learned at run time: the etcd lease
//! keeper writes each lease's `BackendData` (flannel's wireguard backend
//! format, `{"PublicKey": ..., "Port": ...}`) here by subnet, and the
//! dataplane's timer thread turns a changed book into peers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cidr::Cidr;
use crate::wg_key::PublicKey;

/// One lease's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedKey {
    /// The node's underlay address (the lease's `PublicIP`).
    pub via: Ipv4Addr,
    /// Its public key.
    pub public: PublicKey,
    /// Its WireGuard port.
    pub port: u16,
}

/// Keys by leased subnet, with a generation bumped on every change.
#[derive(Debug, Default)]
pub struct KeyBook {
    keys: Mutex<BTreeMap<Cidr, LearnedKey>>,
    generation: AtomicU64,
}

impl KeyBook {
    /// Records (or, with `None`, forgets) the key of `subnet`'s node.
    pub fn set(&self, subnet: Cidr, key: Option<LearnedKey>) {
        if let Ok(mut m) = self.keys.lock() {
            let changed = match key {
                Some(k) => m.insert(subnet, k) != Some(k),
                None => m.remove(&subnet).is_some(),
            };
            if changed {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Replaces every entry (after a full listing).
    pub fn replace(&self, all: BTreeMap<Cidr, LearnedKey>) {
        if let Ok(mut m) = self.keys.lock()
            && *m != all
        {
            *m = all;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// The change count.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every learned key.
    pub fn entries(&self) -> Vec<LearnedKey> {
        self.keys
            .lock()
            .map(|m| m.values().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_moves_only_on_change() {
        let b = KeyBook::default();
        let k = LearnedKey {
            via: Ipv4Addr::new(172, 31, 0, 2),
            public: PublicKey([2; 32]),
            port: 51820,
        };
        let s: Cidr = "10.244.2.0/24".parse().unwrap();
        b.set(s, Some(k));
        assert_eq!(b.generation(), 1);
        b.set(s, Some(k));
        assert_eq!(b.generation(), 1);
        b.replace(BTreeMap::from([(s, k)]));
        assert_eq!(b.generation(), 1);
        b.set(s, None);
        assert_eq!((b.generation(), b.entries().len()), (2, 0));
    }
}
