//! Address arithmetic on `IpAddr` as integers (family-preserving).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address as an integer.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An integer back to an address of `like`'s family (truncating for v4).
pub fn from_u128(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The next address (wrapping within the family).
pub fn next(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 (Go's `To4()` canonical form).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let a: IpAddr = "10.0.0.255".parse().unwrap();
        assert_eq!(next(a), "10.0.1.0".parse::<IpAddr>().unwrap());
        let b: IpAddr = "fd00::ffff".parse().unwrap();
        assert_eq!(next(b), "fd00::1:0".parse::<IpAddr>().unwrap());
        assert_eq!(from_u128(to_u128(a), a), a);
        assert_eq!(
            canonical("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
