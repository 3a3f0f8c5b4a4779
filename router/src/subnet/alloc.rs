//! Choosing this node's subnet and turning the other nodes' leases into
//! routes, as flannel's etcd subnet manager does. Pure: the store's
//! contents and a random number come in, decisions go out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::cidr::Cidr;
use crate::route_table::PeerRoute;
use crate::subnet::SubnetError;
use crate::subnet::lease::Lease;
use crate::subnet::network::Network;

/// The TTL of a lease (flannel's `subnetTTL`).
pub const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long before expiry a lease is renewed (flannel's `renewMargin`).
pub const RENEW_MARGIN: Duration = Duration::from_secs(3600);

/// flannel picks at random among the first this many free subnets, so
/// nodes starting together rarely race for the same one.
const CANDIDATES: usize = 100;

/// What this node should lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A lease with this node's `PublicIP` exists and fits the network
    /// config: take it over (its host-local leases on disk stay valid).
    Reuse(Cidr),
    /// Create a lease for this free subnet (create-if-absent: another
    /// node may win the race, then choose again).
    Create(Cidr),
}

impl Choice {
    /// The subnet either way.
    pub fn subnet(self) -> Cidr {
        match self {
            Self::Reuse(c) | Self::Create(c) => c,
        }
    }
}

/// Chooses this node's subnet from the leases in the store. `previous`
/// is the subnet this node held before (from its own files), tried when
/// it is free; `random` picks among the free candidates.
pub fn choose(
    net: &Network,
    leases: &[Lease],
    own_ip: Ipv4Addr,
    previous: Option<Cidr>,
    random: u64,
) -> Result<Choice, SubnetError> {
    if let Some(l) = leases
        .iter()
        .find(|l| l.attrs.public_ip == own_ip && net.is_compatible(l.subnet))
    {
        return Ok(Choice::Reuse(l.subnet));
    }
    let taken = Taken::new(leases);
    if let Some(p) = previous.filter(|p| net.is_compatible(*p) && !taken.overlaps(*p)) {
        return Ok(Choice::Create(p));
    }
    let size = 1u64 << (32 - net.subnet_len);
    let mut free = Vec::with_capacity(CANDIDATES);
    let mut at = u64::from(u32::from(net.subnet_min));
    let max = u64::from(u32::from(net.subnet_max));
    while at <= max && free.len() < CANDIDATES {
        let c = v4(at as u32, net.subnet_len);
        match taken.first_overlap(c) {
            // Skip past whatever covers this candidate.
            Some(end) => at = (end + 1).div_ceil(size) * size,
            None => {
                free.push(c);
                at += size;
            }
        }
    }
    if free.is_empty() {
        return Err(SubnetError::PoolExhausted {
            pool: net.to_string(),
            count: net.pool_size(),
        });
    }
    let i = (random % free.len() as u64) as usize;
    Ok(Choice::Create(free[i]))
}

/// When to renew a lease that has `remaining` until it expires.
pub fn renew_after(remaining: Duration) -> Duration {
    remaining.saturating_sub(RENEW_MARGIN)
}

/// Why another node's lease is not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The subnet is outside the network config's `Network`.
    OutsideNetwork,
    /// The lease claims this node's subnet with another `PublicIP`.
    ClaimsOwnSubnet,
    /// The lease overlaps this node's subnet.
    OverlapsOwnSubnet,
}

impl Ignored {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::OutsideNetwork => "outside_network",
            Self::ClaimsOwnSubnet => "claims_own_subnet",
            Self::OverlapsOwnSubnet => "overlaps_own_subnet",
        }
    }
}

/// The route to another node's lease, or why there is none. This node's
/// own lease gives `Ok(None)`.
pub fn route_for(
    net: &Network,
    own: Cidr,
    own_ip: Ipv4Addr,
    lease: &Lease,
) -> Result<Option<PeerRoute>, Ignored> {
    let s = lease.subnet;
    if s == own {
        return if lease.attrs.public_ip == own_ip {
            Ok(None)
        } else {
            Err(Ignored::ClaimsOwnSubnet)
        };
    }
    if !net.network.contains(s.addr()) || s.prefix_len() < net.network.prefix_len() {
        return Err(Ignored::OutsideNetwork);
    }
    if own.contains(s.addr()) || s.contains(own.addr()) {
        return Err(Ignored::OverlapsOwnSubnet);
    }
    Ok(Some(PeerRoute {
        pod_cidr: s,
        via: IpAddr::V4(lease.attrs.public_ip),
        vtep_mac: lease.attrs.vtep_mac(),
    }))
}

/// The leased ranges as sorted, non-overlapping-start intervals.
struct Taken(BTreeMap<u32, u32>);

impl Taken {
    fn new(leases: &[Lease]) -> Self {
        let mut m = BTreeMap::new();
        for l in leases {
            if let Some((start, end)) = span(l.subnet) {
                let e = m.entry(start).or_insert(end);
                *e = (*e).max(end);
            }
        }
        Self(m)
    }

    /// The end of a leased range overlapping `c`, if any.
    fn first_overlap(&self, c: Cidr) -> Option<u64> {
        let (start, end) = span(c)?;
        // Ranges starting inside c, or starting before it and reaching in.
        let inside = self.0.range(start..=end).map(|(_, e)| *e).max();
        let before = self
            .0
            .range(..start)
            .map(|(_, e)| *e)
            .filter(|e| *e >= start)
            .max();
        inside.max(before).map(u64::from)
    }

    fn overlaps(&self, c: Cidr) -> bool {
        self.first_overlap(c).is_some()
    }
}

/// First and last address of an IPv4 prefix.
fn span(c: Cidr) -> Option<(u32, u32)> {
    let IpAddr::V4(a) = c.network().addr() else {
        return None;
    };
    let start = u32::from(a);
    Some((
        start,
        start | u32::MAX.checked_shr(u32::from(c.prefix_len())).unwrap_or(0),
    ))
}

fn v4(a: u32, len: u8) -> Cidr {
    Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), len).expect("subnet_len is at most 30")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subnet::lease::LeaseAttrs;

    fn net(json: &str) -> Network {
        Network::parse(json.as_bytes()).expect("network")
    }

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    fn lease(subnet: &str, ip: &str) -> Lease {
        Lease {
            subnet: c(subnet),
            attrs: LeaseAttrs {
                public_ip: ip.parse().expect("ip"),
                backend_type: "vxlan".into(),
                backend_data: Some(serde_json::json!({"VNI": 1, "VtepMAC": "a6:0e:12:34:56:78"})),
            },
        }
    }

    const N16: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
    const ME: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);

    #[test]
    fn reuses_the_lease_with_its_own_public_ip() {
        let n = net(N16);
        let ls = [
            lease("10.244.7.0/24", "172.31.0.2"),
            lease("10.244.9.0/24", "172.31.0.1"),
        ];
        assert_eq!(
            choose(&n, &ls, ME, None, 0),
            Ok(Choice::Reuse(c("10.244.9.0/24")))
        );
        // An incompatible own lease (wrong length) is not reused.
        let ls = [lease("10.244.9.0/25", "172.31.0.1")];
        assert!(matches!(
            choose(&n, &ls, ME, None, 0),
            Ok(Choice::Create(_))
        ));
    }

    #[test]
    fn previous_subnet_is_taken_back_when_free() {
        let n = net(N16);
        let ls = [lease("10.244.1.0/24", "172.31.0.2")];
        assert_eq!(
            choose(&n, &ls, ME, Some(c("10.244.5.0/24")), 0),
            Ok(Choice::Create(c("10.244.5.0/24")))
        );
        // Taken by another node: choose a free one instead.
        let got = choose(&n, &ls, ME, Some(c("10.244.1.0/24")), 0).expect("free");
        assert_eq!(got, Choice::Create(c("10.244.2.0/24")));
    }

    #[test]
    fn picks_among_free_subnets_skipping_leased_and_wider_ones() {
        let n = net(N16);
        // A /23 lease (written by someone with another SubnetLen) covers 2 and 3.
        let ls = [
            lease("10.244.1.0/24", "172.31.0.2"),
            lease("10.244.2.0/23", "172.31.0.3"),
        ];
        assert_eq!(
            choose(&n, &ls, ME, None, 0),
            Ok(Choice::Create(c("10.244.4.0/24")))
        );
        assert_eq!(
            choose(&n, &ls, ME, None, 1),
            Ok(Choice::Create(c("10.244.5.0/24")))
        );
        // Only the first 100 free subnets are candidates.
        assert_eq!(
            choose(&n, &ls, ME, None, 100),
            Ok(Choice::Create(c("10.244.4.0/24")))
        );
        for r in 0..500 {
            let s = choose(&n, &ls, ME, None, r).expect("free").subnet();
            assert!(
                n.is_compatible(s) && !ls.iter().any(|l| l.subnet.contains(s.addr())),
                "{s}"
            );
        }
    }

    #[test]
    fn exhausted_pool_names_the_pool_and_its_size() {
        let n = net(r#"{"Network":"10.5.0.0/26"}"#);
        let ls = [
            lease("10.5.0.16/28", "172.31.0.2"),
            lease("10.5.0.32/28", "172.31.0.3"),
            lease("10.5.0.48/28", "172.31.0.4"),
        ];
        let e = choose(&n, &ls, ME, None, 0).expect_err("full").to_string();
        assert!(e.contains("10.5.0.0/26") && e.contains("all 3"), "{e}");
    }

    #[test]
    fn ten_thousand_leases_choose_quickly_and_correctly() {
        let n = net(r#"{"Network":"10.0.0.0/8","SubnetLen":26}"#);
        let ls: Vec<Lease> = (1..=10_000u32)
            .map(|i| Lease {
                subnet: v4(0x0a00_0000 + i * 64, 26),
                attrs: lease("10.0.0.0/26", "172.31.0.2").attrs,
            })
            .collect();
        let got = choose(&n, &ls, ME, None, 0).expect("free").subnet();
        assert_eq!(got, v4(0x0a00_0000 + 10_001 * 64, 26));
    }

    #[test]
    fn renewal_is_an_hour_before_expiry() {
        assert_eq!(renew_after(LEASE_TTL), Duration::from_secs(23 * 3600));
        assert_eq!(renew_after(Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn routes_follow_the_leases_and_bad_ones_are_ignored() {
        let n = net(N16);
        let own = c("10.244.1.0/24");
        let r = route_for(&n, own, ME, &lease("10.244.2.0/24", "172.31.0.2"))
            .expect("routed")
            .expect("a route");
        assert_eq!(r.pod_cidr, c("10.244.2.0/24"));
        assert_eq!(r.via, "172.31.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            r.vtep_mac.map(|m| m.to_string()).as_deref(),
            Some("a6:0e:12:34:56:78")
        );
        assert_eq!(
            route_for(&n, own, ME, &lease("10.244.1.0/24", "172.31.0.1")),
            Ok(None)
        );
        assert_eq!(
            route_for(&n, own, ME, &lease("10.244.1.0/24", "172.31.0.9")),
            Err(Ignored::ClaimsOwnSubnet)
        );
        assert_eq!(
            route_for(&n, own, ME, &lease("10.9.1.0/24", "172.31.0.9")),
            Err(Ignored::OutsideNetwork)
        );
        assert_eq!(
            route_for(&n, own, ME, &lease("10.244.0.0/23", "172.31.0.9")),
            Err(Ignored::OverlapsOwnSubnet)
        );
    }
}
