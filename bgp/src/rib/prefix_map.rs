//! A hash map keyed by prefix, packed per family: an IPv4 key takes 5
//! bytes instead of [`Prefix`]'s 18, so a 100k-route table with an 8-byte
//! value costs 16 bytes per slot.

use foldhash::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prefix::Prefix;

type V4 = (u32, u8);
type V6 = ([u8; 16], u8);

fn v4(p: &Prefix) -> Option<V4> {
    match p.addr() {
        IpAddr::V4(a) => Some((u32::from(a), p.len())),
        IpAddr::V6(_) => None,
    }
}

fn v6(p: &Prefix) -> V6 {
    match p.addr() {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), p.len()),
        IpAddr::V6(a) => (a.octets(), p.len()),
    }
}

/// Prefix -> `V`.
#[derive(Clone, Debug)]
pub(crate) struct PrefixMap<V> {
    v4: HashMap<V4, V>,
    v6: HashMap<V6, V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            v4: HashMap::default(),
            v6: HashMap::default(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub(crate) fn get(&self, p: &Prefix) -> Option<&V> {
        match v4(p) {
            Some(k) => self.v4.get(&k),
            None => self.v6.get(&v6(p)),
        }
    }

    pub(crate) fn insert(&mut self, p: Prefix, v: V) -> Option<V> {
        match v4(&p) {
            Some(k) => self.v4.insert(k, v),
            None => self.v6.insert(v6(&p), v),
        }
    }

    pub(crate) fn remove(&mut self, p: &Prefix) -> Option<V> {
        let r = match v4(p) {
            Some(k) => self.v4.remove(&k),
            None => self.v6.remove(&v6(p)),
        };
        // Give the memory back once a big table is gone.
        if self.v4.is_empty() && self.v4.capacity() > 1024 {
            self.v4 = HashMap::default();
        }
        if self.v6.is_empty() && self.v6.capacity() > 1024 {
            self.v6 = HashMap::default();
        }
        r
    }

    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Prefix, &V)> {
        let a = self.v4.iter().filter_map(|((a, l), v)| {
            Prefix::new(IpAddr::V4(Ipv4Addr::from(*a)), *l).map(|p| (p, v))
        });
        let b = self.v6.iter().filter_map(|((a, l), v)| {
            Prefix::new(IpAddr::V6(Ipv6Addr::from(*a)), *l).map(|p| (p, v))
        });
        a.chain(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip() {
        let mut m = PrefixMap::default();
        let a: Prefix = "10.1.0.0/16".parse().unwrap();
        let b: Prefix = "fd00:1::/32".parse().unwrap();
        assert_eq!(m.insert(a, 1), None);
        assert_eq!(m.insert(b, 2), None);
        assert_eq!(m.insert(a, 3), Some(1));
        assert_eq!(m.get(&a), Some(&3));
        assert_eq!(m.get(&"10.1.0.0/17".parse().unwrap()), None);
        let mut all: Vec<(Prefix, i32)> = m.iter().map(|(p, v)| (p, *v)).collect();
        all.sort();
        assert_eq!(all, vec![(a, 3), (b, 2)]);
        assert_eq!(m.remove(&b), Some(2));
        assert_eq!(m.len(), 1);
    }
}
