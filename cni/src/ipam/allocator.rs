//! The pure allocator: the reference's round-robin order (continue after
//! `last_reserved_ip.<set>`, wrap through every range of the set, stop when
//! back at the start), never handing out a gateway, network or IPv4
//! broadcast address. No files here: it works on any [`LeaseStore`].

use std::fmt;
use std::net::IpAddr;

use super::config::{Range, RangeSet};
use super::ipmath::next;
use super::store::{LeaseStore, Owner};
use crate::error::CniError;
use crate::spec::IpConfig;

/// Walks a range set in allocation order.
#[derive(Debug)]
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    range_idx: usize,
    cur: Option<IpAddr>,
    start_ip: Option<IpAddr>,
    start_range: usize,
}

impl<'a> RangeIter<'a> {
    /// Starts after `last_reserved` when the set holds it, else at the
    /// first range's start.
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> Self {
        let mut it = Self {
            set,
            range_idx: 0,
            cur: None,
            start_ip: None,
            start_range: 0,
        };
        if let Some(last) = last_reserved
            && let Some(i) = set.0.iter().position(|r| r.contains(last))
        {
            it.range_idx = i;
            it.cur = Some(last);
        } else if let Some(r) = set.0.first() {
            it.start_ip = Some(r.range_start);
        }
        it
    }
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.set.0.len();
        if n == 0 {
            return None;
        }
        loop {
            let r = &self.set.0[self.range_idx];
            let Some(cur) = self.cur else {
                self.cur = Some(r.range_start);
                self.start_ip = Some(r.range_start);
                if r.assignable(r.range_start) {
                    return Some((r.range_start, r));
                }
                continue;
            };
            let (ip, r) = if cur == r.range_end {
                self.range_idx = (self.range_idx + 1) % n;
                let r = &self.set.0[self.range_idx];
                (r.range_start, r)
            } else {
                (next(cur), r)
            };
            self.cur = Some(ip);
            match self.start_ip {
                None => {
                    self.start_ip = Some(ip);
                    self.start_range = self.range_idx;
                }
                Some(s) if s == ip && self.range_idx == self.start_range => return None,
                Some(_) => {}
            }
            if r.assignable(ip) {
                return Some((ip, r));
            }
        }
    }
}

/// Why an allocation failed (messages as the reference prints them).
#[derive(Debug)]
pub enum AllocError {
    /// A requested address is outside the set.
    NotInSet(IpAddr, String),
    /// A requested address is the gateway (or network/broadcast).
    Reserved(IpAddr),
    /// A requested address is taken.
    Unavailable(IpAddr, String),
    /// The owner already holds an address in this set.
    Duplicate(IpAddr, String),
    /// Every address of the set is taken.
    Exhausted(String),
    /// The store failed.
    Store(CniError),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInSet(ip, s) => write!(f, "{ip} not in range set {s}"),
            Self::Reserved(ip) => write!(f, "requested ip {ip} is subnet's gateway"),
            Self::Unavailable(ip, s) => {
                write!(
                    f,
                    "requested IP address {ip} is not available in range set {s}"
                )
            }
            Self::Duplicate(ip, id) => write!(
                f,
                "{ip} has been allocated to {id}, duplicate allocation is not allowed"
            ),
            Self::Exhausted(s) => write!(f, "no IP addresses available in range set: {s}"),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl AllocError {
    /// The plugin-level error for range set `idx` ("failed to allocate for
    /// range N: ..."): exhaustion is code 50, store errors keep their code,
    /// the rest are 999 like the reference.
    pub fn into_cni(self, idx: usize) -> CniError {
        let msg = format!("failed to allocate for range {idx}: {self}");
        match self {
            Self::Exhausted(_) => CniError::not_available(msg, ""),
            Self::Store(e) => match e {
                CniError::Io { source, .. } => CniError::io(msg, source),
                other => CniError::Plugin {
                    code: other.code(),
                    msg,
                    details: other.details(),
                },
            },
            _ => CniError::internal(msg, ""),
        }
    }
}

/// Takes one address from `set` (index `set_idx`) for `owner`: the
/// requested one if given, else the next free one in round-robin order.
pub fn allocate(
    set: &RangeSet,
    set_idx: usize,
    store: &mut dyn LeaseStore,
    owner: &Owner,
    requested: Option<IpAddr>,
) -> Result<IpConfig, AllocError> {
    let cfg = |ip: IpAddr, r: &Range| IpConfig {
        // The prefix length always fits the family: it comes from a parsed subnet.
        address: ipnet::IpNet::new(ip, r.subnet.prefix_len()).unwrap_or(r.subnet),
        gateway: Some(r.gateway),
        interface: None,
    };
    if let Some(ip) = requested {
        let Some(r) = set.range_for(ip) else {
            return Err(AllocError::NotInSet(ip, set.to_string()));
        };
        if !r.assignable(ip) {
            return Err(AllocError::Reserved(ip));
        }
        if !store
            .reserve(ip, owner, set_idx)
            .map_err(AllocError::Store)?
        {
            return Err(AllocError::Unavailable(ip, set.to_string()));
        }
        return Ok(cfg(ip, r));
    }
    for ip in store.owned(owner).map_err(AllocError::Store)? {
        if set.contains(ip) {
            return Err(AllocError::Duplicate(ip, owner.container_id.clone()));
        }
    }
    let last = store.last_reserved(set_idx);
    for (ip, r) in RangeIter::new(set, last) {
        if store
            .reserve(ip, owner, set_idx)
            .map_err(AllocError::Store)?
        {
            return Ok(cfg(ip, r));
        }
    }
    Err(AllocError::Exhausted(set.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::config::IpamConfig;
    use crate::ipam::store::MemStore;

    fn sets(ipam: &str) -> Vec<RangeSet> {
        let conf = format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#);
        IpamConfig::load(conf.as_bytes(), "").unwrap().ranges
    }

    fn walk(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        RangeIter::new(set, last.map(|s| s.parse().unwrap()))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    #[test]
    fn order_skips_gateway_and_wraps() {
        let s = &sets(r#"{"subnet":"10.0.0.0/29"}"#)[0];
        assert_eq!(
            walk(s, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(
            walk(s, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // A last-reserved outside the set restarts at the beginning.
        assert_eq!(walk(s, Some("10.9.9.9")).len(), 5);
    }

    #[test]
    fn order_across_ranges_and_explicit_bounds() {
        let s = &sets(
            r#"{"ranges":[[{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.0","rangeEnd":"10.0.0.2"},
            {"subnet":"10.0.1.0/24","rangeStart":"10.0.1.253","rangeEnd":"10.0.1.255","gateway":"10.0.1.254"}]]}"#,
        )[0];
        // network .0 and gateway .1 skipped; gateway .254 and broadcast .255 skipped.
        assert_eq!(walk(s, None), ["10.0.0.2", "10.0.1.253"]);
        assert_eq!(walk(s, Some("10.0.0.2")), ["10.0.1.253", "10.0.0.2"]);
    }

    #[test]
    fn allocates_round_robin_and_exhausts() {
        let s = &sets(r#"{"subnet":"10.0.0.0/29"}"#)[0];
        let mut st = MemStore::default();
        let mut got = Vec::new();
        for i in 0..5 {
            let c = allocate(s, 0, &mut st, &Owner::new(&format!("c{i}"), "eth0"), None).unwrap();
            assert_eq!(c.gateway, Some("10.0.0.1".parse().unwrap()));
            got.push(c.address.to_string());
        }
        assert_eq!(
            got,
            [
                "10.0.0.2/29",
                "10.0.0.3/29",
                "10.0.0.4/29",
                "10.0.0.5/29",
                "10.0.0.6/29"
            ]
        );
        let e = allocate(s, 0, &mut st, &Owner::new("c9", "eth0"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no IP addresses available in range set: 10.0.0.1-10.0.0.6"
        );
        assert_eq!(e.into_cni(0).code(), 50);
        // Release one in the middle: the next allocation continues after the last one and wraps to it.
        st.release(&Owner::new("c1", "eth0")).unwrap();
        let c = allocate(s, 0, &mut st, &Owner::new("c9", "eth0"), None).unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.3/29");
    }

    #[test]
    fn requested_and_duplicates() {
        let s = &sets(r#"{"subnet":"10.0.0.0/24"}"#)[0];
        let mut st = MemStore::default();
        let o = Owner::new("c1", "eth0");
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            allocate(s, 0, &mut st, &o, ip("10.0.0.50"))
                .unwrap()
                .address
                .to_string(),
            "10.0.0.50/24"
        );
        let e = allocate(s, 0, &mut st, &o, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.0.0.50 has been allocated to c1, duplicate allocation is not allowed"
        );
        let o2 = Owner::new("c2", "eth0");
        assert!(matches!(
            allocate(s, 0, &mut st, &o2, ip("10.0.0.50")),
            Err(AllocError::Unavailable(..))
        ));
        assert!(matches!(
            allocate(s, 0, &mut st, &o2, ip("10.0.0.1")),
            Err(AllocError::Reserved(_))
        ));
        assert!(matches!(
            allocate(s, 0, &mut st, &o2, ip("10.0.1.1")),
            Err(AllocError::NotInSet(..))
        ));
        // Round robin continues after the requested one.
        assert_eq!(
            allocate(s, 0, &mut st, &o2, None)
                .unwrap()
                .address
                .to_string(),
            "10.0.0.51/24"
        );
    }

    #[test]
    fn v6_includes_last_address() {
        let s = &sets(r#"{"ranges":[[{"subnet":"fd00::/126"}]]}"#)[0];
        assert_eq!(walk(s, None), ["fd00::2", "fd00::3"]);
    }
}

#[cfg(test)]
mod props {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::ipam::config::IpamConfig;
    use crate::ipam::store::MemStore;

    /// A small v4 range set: 1-3 ranges in distinct /28s with random bounds
    /// and gateways.
    fn small_set() -> impl Strategy<Value = RangeSet> {
        prop::collection::vec((0u8..16, 0u8..16, 0u8..16, any::<bool>()), 1..4).prop_map(|rs| {
            let ranges: Vec<String> = rs
                .iter()
                .enumerate()
                .map(|(i, (a, b, g, explicit_gw))| {
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let base = 16 * i;
                    let gw = if *explicit_gw {
                        format!(r#","gateway":"10.0.0.{}""#, base + usize::from(*g))
                    } else {
                        String::new()
                    };
                    format!(
                        r#"{{"subnet":"10.0.0.{base}/28","rangeStart":"10.0.0.{}","rangeEnd":"10.0.0.{}"{gw}}}"#,
                        base + usize::from(*lo),
                        base + usize::from(*hi)
                    )
                })
                .collect();
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","ipam":{{"ranges":[[{}]]}}}}"#,
                ranges.join(",")
            );
            IpamConfig::load(conf.as_bytes(), "").unwrap().ranges.remove(0)
        })
    }

    proptest! {
        /// Random ADD/DEL sequences: addresses are unique, assignable, inside
        /// the set, and ADD fails exactly when every assignable address is taken.
        #[test]
        fn allocations_are_unique_and_exhaustion_is_exact(
            set in small_set(),
            ops in prop::collection::vec((any::<bool>(), 0u8..40), 1..120),
        ) {
            let mut st = MemStore::default();
            let all: BTreeSet<IpAddr> = set
                .0
                .iter()
                .flat_map(|r| {
                    let (s, e) = (crate::ipam::ipmath::to_u128(r.range_start), crate::ipam::ipmath::to_u128(r.range_end));
                    (s..=e).map(|n| crate::ipam::ipmath::from_u128(n, r.range_start)).filter(|ip| r.assignable(*ip))
                })
                .collect();
            prop_assert_eq!(set.capacity(), all.len() as u128);
            for (add, who) in ops {
                let owner = Owner::new(&format!("c{who}"), "eth0");
                if add {
                    let held = st.owned(&owner).unwrap();
                    let res = allocate(&set, 0, &mut st, &owner, None);
                    match res {
                        Ok(c) => {
                            let ip = c.address.addr();
                            prop_assert!(held.is_empty());
                            prop_assert!(all.contains(&ip));
                            prop_assert_eq!(c.gateway, set.range_for(ip).map(|r| r.gateway));
                        }
                        Err(AllocError::Duplicate(..)) => prop_assert!(!held.is_empty()),
                        Err(AllocError::Exhausted(_)) => prop_assert_eq!(st.leases.len(), all.len()),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                } else {
                    st.release(&owner).unwrap();
                }
                let taken: BTreeSet<IpAddr> = st.leases.keys().copied().collect();
                prop_assert!(taken.is_subset(&all));
            }
        }

        /// Arbitrary JSON in the ipam section never panics the loader.
        #[test]
        fn config_loader_never_panics(
            subnet in "[0-9a-f:./]{0,24}",
            start in "[0-9a-f:.]{0,20}",
            end in "[0-9a-f:.]{0,20}",
            gw in "[0-9a-f:.]{0,20}",
            extra in prop::option::of("[\\[\\]{}0-9a-z\",:]{0,30}"),
        ) {
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","ipam":{{"ranges":[[{{"subnet":"{subnet}","rangeStart":"{start}","rangeEnd":"{end}","gateway":"{gw}"}}]]{}}}}}"#,
                extra.map(|e| format!(",\"x\":{e}")).unwrap_or_default()
            );
            let _ = IpamConfig::load(conf.as_bytes(), "");
        }

        /// Huge v6 ranges: capacity saturates instead of overflowing.
        #[test]
        fn v6_capacity_never_overflows(prefix in 0u8..126) {
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","ipam":{{"ranges":[[{{"subnet":"::/{prefix}","rangeStart":"::"}}]]}}}}"#
            );
            if let Ok(c) = IpamConfig::load(conf.as_bytes(), "") {
                prop_assert!(c.ranges[0].capacity() > 0);
            }
        }
    }
}
