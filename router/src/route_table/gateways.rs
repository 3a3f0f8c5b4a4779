//! The gateway interner of the BGP routes: a whole table shares a handful
//! of next hops (or equal-cost next-hop sets), so each route stores a
//! 32-bit id instead. Ids are reference counted; freed ids are reused.

use std::collections::HashMap;
use std::net::IpAddr;

use weft_encap::MacAddr;

/// Where a route goes, without its pod range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Gateway {
    /// One next hop, with the peer's VTEP MAC when it is not derived.
    One(IpAddr, Option<MacAddr>),
    /// Equal-cost next hops: sorted, unique, two or more.
    Many(Box<[IpAddr]>),
}

/// A gateway id as stored beside a pod range: four unaligned bytes, so an
/// IPv4 route's map slot is 9 bytes.
pub(super) type GatewayId = [u8; 4];

/// Interned gateways with reference counts.
///
/// There is no limit below the 2^32 ids: every distinct gateway costs more
/// than 40 bytes here, so memory runs out long before the ids do.
#[derive(Debug, Clone, Default)]
pub(super) struct Gateways {
    slots: Vec<(Gateway, u32)>,
    ids: HashMap<Gateway, u32>,
    free: Vec<u32>,
}

fn index(id: GatewayId) -> usize {
    // u32 -> usize is lossless on the 32- and 64-bit targets weftd builds for.
    u32::from_le_bytes(id) as usize
}

impl Gateways {
    /// The gateway of a live id.
    pub(super) fn get(&self, id: GatewayId) -> &Gateway {
        &self.slots[index(id)].0
    }

    /// The id of `g`, one more reference.
    pub(super) fn acquire(&mut self, g: Gateway) -> GatewayId {
        if let Some(&id) = self.ids.get(&g) {
            self.slots[id as usize].1 += 1;
            return id.to_le_bytes();
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (g.clone(), 1);
                id
            }
            None => {
                // Past u32::MAX slots (over 170 GiB of gateways) ids would
                // wrap; the allocation fails well before that.
                let id = self.slots.len() as u32;
                self.slots.push((g.clone(), 1));
                id
            }
        };
        self.ids.insert(g, id);
        id.to_le_bytes()
    }

    /// Drops one reference to `id`.
    pub(super) fn release(&mut self, id: GatewayId) {
        let i = index(id);
        let slot = &mut self.slots[i];
        slot.1 -= 1;
        if slot.1 == 0 {
            self.ids.remove(&slot.0);
            self.free.push(u32::from_le_bytes(id));
        }
    }

    /// Number of distinct gateways in use.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Number of slots ever allocated (in use or free).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn shared_counted_and_reused() {
        let mut g = Gateways::default();
        let a = g.acquire(Gateway::One(ip("172.31.0.2"), None));
        let b = g.acquire(Gateway::Many([ip("172.31.0.2"), ip("172.31.0.3")].into()));
        assert_ne!(a, b);
        assert_eq!(g.acquire(Gateway::One(ip("172.31.0.2"), None)), a);
        assert_eq!(g.len(), 2);
        g.release(a);
        assert_eq!(g.len(), 2);
        g.release(a);
        assert_eq!(g.len(), 1);
        assert_eq!(
            g.get(b),
            &Gateway::Many([ip("172.31.0.2"), ip("172.31.0.3")].into())
        );
        // The freed slot comes back.
        let c = g.acquire(Gateway::One(ip("172.31.0.9"), None));
        assert_eq!(c, a);
        assert_eq!(g.slots(), 2);
    }

    #[test]
    fn more_than_65536_gateways() {
        let mut g = Gateways::default();
        let ids: Vec<GatewayId> = (0..70_000u32)
            .map(|i| {
                g.acquire(Gateway::One(
                    IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                    None,
                ))
            })
            .collect();
        assert_eq!(g.len(), 70_000);
        assert_eq!(
            g.get(ids[69_999]),
            &Gateway::One(IpAddr::from((0x0a00_0000u32 + 69_999).to_be_bytes()), None)
        );
    }
}
