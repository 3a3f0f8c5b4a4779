//! `Cidr`: an IPv4 or IPv6 prefix such as `10.244.1.0/24`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP prefix: address plus prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A prefix; `None` if `len` exceeds the family's bit width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Self { addr, len })
    }

    /// The address as written (may have host bits set).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.len))),
        };
        Self {
            addr,
            len: self.len,
        }
    }

    /// True when no host bits are set.
    pub fn is_network(&self) -> bool {
        self.network().addr == self.addr
    }

    /// True when `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = mask32(self.len);
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let m = mask128(self.len);
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }

    /// True when `other` lies entirely inside this prefix.
    pub fn contains_cidr(&self, other: &Self) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid CIDR {s:?} (expected ADDR/LEN)");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        Self::new(addr, len).ok_or_else(bad)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_display_and_bounds() {
        assert_eq!(c("10.244.1.0/24").to_string(), "10.244.1.0/24");
        assert_eq!(c("fd00::/64").to_string(), "fd00::/64");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
        assert_eq!(c("0.0.0.0/0").network(), c("0.0.0.0/0"));
    }

    #[test]
    fn containment_and_overlap() {
        let cl = c("10.244.0.0/16");
        assert!(cl.contains_cidr(&c("10.244.3.0/24")));
        assert!(!cl.contains_cidr(&c("10.245.3.0/24")));
        assert!(!c("10.244.3.0/24").contains_cidr(&cl));
        assert!(c("10.244.3.0/24").overlaps(&cl));
        assert!(!c("10.244.3.0/24").overlaps(&c("10.244.4.0/24")));
        assert!(!c("10.244.3.0/24").overlaps(&c("fd00::/8")));
        assert!(c("10.1.2.3/8").network() == c("10.0.0.0/8"));
        assert!(!c("10.1.2.3/8").is_network());
        assert!(c("fd10:244:1::/64").contains("fd10:244:1::5".parse().unwrap()));
        assert!(!c("fd10:244:1::/64").contains("fd10:244:2::5".parse().unwrap()));
    }
}
