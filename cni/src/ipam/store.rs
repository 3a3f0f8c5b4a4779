//! The lease store interface the allocator works against, and an in-memory
//! store for tests.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::error::CniError;

/// Who holds a lease: (container id, interface name). Leases written by
/// pre-0.4 reference versions hold only a container id (`ifname` empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// Container id.
    pub container_id: String,
    /// Interface name (empty for legacy leases).
    pub ifname: String,
}

impl Owner {
    /// An owner.
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.trim().to_owned(),
            ifname: ifname.to_owned(),
        }
    }

    /// The lease file content (`<cid>\r\n<ifname>`; just `<cid>` for legacy).
    pub fn file_content(&self) -> String {
        if self.ifname.is_empty() {
            self.container_id.clone()
        } else {
            format!("{}\r\n{}", self.container_id, self.ifname)
        }
    }

    /// Parses lease file content (whitespace-trimmed like the reference).
    pub fn from_file_content(s: &str) -> Self {
        let s = s.trim();
        match s.split_once("\r\n") {
            Some((cid, ifname)) => Self::new(cid, ifname),
            None => Self::new(s, ""),
        }
    }

    /// The legacy owner with the same container id.
    pub fn legacy(&self) -> Self {
        Self::new(&self.container_id, "")
    }
}

/// A lease store. All calls happen under the store's lock.
pub trait LeaseStore {
    /// The last address reserved in range set `set`.
    fn last_reserved(&mut self, set: usize) -> Option<IpAddr>;
    /// Reserves `ip` for `owner` if free; records it as the last reserved
    /// for `set`. `Ok(false)` when taken.
    fn reserve(&mut self, ip: IpAddr, owner: &Owner, set: usize) -> Result<bool, CniError>;
    /// Addresses held by `owner` or by its legacy (container-id-only) form.
    fn owned(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError>;
    /// Releases everything `owner` holds (falling back to legacy leases of
    /// the container id when there are none, like the reference); returns
    /// the released addresses.
    fn release(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError>;
    /// Every lease (a full scan: GC and STATUS only).
    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>, CniError>;
    /// Removes one lease (GC).
    fn remove(&mut self, ip: IpAddr) -> Result<(), CniError>;
}

/// An in-memory [`LeaseStore`] (tests, benchmarks of the pure allocator).
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Leases.
    pub leases: BTreeMap<IpAddr, Owner>,
    /// Last reserved per range set.
    pub last: BTreeMap<usize, IpAddr>,
}

impl LeaseStore for MemStore {
    fn last_reserved(&mut self, set: usize) -> Option<IpAddr> {
        self.last.get(&set).copied()
    }

    fn reserve(&mut self, ip: IpAddr, owner: &Owner, set: usize) -> Result<bool, CniError> {
        if self.leases.contains_key(&ip) {
            return Ok(false);
        }
        self.leases.insert(ip, owner.clone());
        self.last.insert(set, ip);
        Ok(true)
    }

    fn owned(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let legacy = owner.legacy();
        Ok(self
            .leases
            .iter()
            .filter(|(_, o)| **o == *owner || **o == legacy)
            .map(|(ip, _)| *ip)
            .collect())
    }

    fn release(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, CniError> {
        let mut gone: Vec<IpAddr> = self
            .leases
            .iter()
            .filter(|(_, o)| **o == *owner)
            .map(|(ip, _)| *ip)
            .collect();
        if gone.is_empty() {
            let legacy = owner.legacy();
            gone = self
                .leases
                .iter()
                .filter(|(_, o)| **o == legacy)
                .map(|(ip, _)| *ip)
                .collect();
        }
        for ip in &gone {
            self.leases.remove(ip);
        }
        Ok(gone)
    }

    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>, CniError> {
        Ok(self.leases.iter().map(|(ip, o)| (*ip, o.clone())).collect())
    }

    fn remove(&mut self, ip: IpAddr) -> Result<(), CniError> {
        self.leases.remove(&ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_file_format() {
        let o = Owner::new(" c1 ", "eth0");
        assert_eq!(o.file_content(), "c1\r\neth0");
        assert_eq!(Owner::from_file_content("c1\r\neth0"), o);
        assert_eq!(Owner::from_file_content("c1\n"), Owner::new("c1", ""));
        assert_eq!(o.legacy().file_content(), "c1");
    }

    #[test]
    fn release_falls_back_to_legacy() {
        let mut s = MemStore::default();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        assert!(s.reserve(a, &Owner::new("c1", ""), 0).unwrap());
        assert!(s.reserve(b, &Owner::new("c1", "eth1"), 0).unwrap());
        assert!(!s.reserve(b, &Owner::new("c2", "eth0"), 0).unwrap());
        assert_eq!(s.owned(&Owner::new("c1", "eth0")).unwrap(), vec![a]);
        assert_eq!(s.release(&Owner::new("c1", "eth1")).unwrap(), vec![b]);
        assert_eq!(s.release(&Owner::new("c1", "eth0")).unwrap(), vec![a]);
        assert!(s.leases.is_empty());
    }
}
