//! Pure planning for ptp: from IPAM's addresses and routes to the addresses
//! and routes of both ends, as the reference lays them out. The container
//! gets its address without the subnet route, an on-link host route to the
//! gateway and the subnet via the gateway (so even pod-subnet traffic goes
//! through the host); the host end gets the gateway as a /32 (/128) and a
//! host route to the pod.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::link::RouteScope;
use crate::plugin::bridge::plan::route_gateway;

/// A route in the plan (output interface filled in at apply time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRoute {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Preferred source.
    pub src: Option<IpAddr>,
    /// Scope (universe when `None`).
    pub scope: Option<RouteScope>,
}

/// Everything ptp configures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PtpPlan {
    /// Container addresses (added without their prefix route).
    pub container_addrs: Vec<IpNet>,
    /// Container routes, in the order they must be added.
    pub container_routes: Vec<PlannedRoute>,
    /// Host veth addresses: each gateway as a host prefix.
    pub host_addrs: Vec<IpNet>,
    /// Host routes to the pod addresses (scope host, like the reference).
    pub host_routes: Vec<PlannedRoute>,
}

fn host_prefix(ip: IpAddr) -> IpNet {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    // A full-length prefix is always valid.
    IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip))
}

/// Plans ptp for IPAM's `ips` (address, gateway) and `routes` (dst, gw).
/// Every address needs a gateway: it is the host end's address.
pub fn plan(
    ips: &[(IpNet, Option<IpAddr>)],
    routes: &[(IpNet, Option<IpAddr>)],
) -> Result<PtpPlan, String> {
    let mut p = PtpPlan::default();
    for (addr, gw) in ips {
        let gw = gw.ok_or_else(|| {
            format!("IPAM returned no gateway for {addr}: ptp uses it as the host side's address")
        })?;
        if gw.is_ipv4() != addr.addr().is_ipv4() {
            return Err(format!(
                "gateway {gw} of {addr} is of another address family"
            ));
        }
        p.container_addrs.push(*addr);
        p.container_routes.push(PlannedRoute {
            dst: host_prefix(gw),
            gw: None,
            src: Some(addr.addr()),
            scope: Some(RouteScope::Link),
        });
        p.container_routes.push(PlannedRoute {
            dst: addr.trunc(),
            gw: Some(gw),
            src: Some(addr.addr()),
            scope: None,
        });
        let h = host_prefix(gw);
        if !p.host_addrs.contains(&h) {
            p.host_addrs.push(h);
        }
        p.host_routes.push(PlannedRoute {
            dst: host_prefix(addr.addr()),
            gw: None,
            src: None,
            scope: Some(RouteScope::Host),
        });
    }
    for (dst, gw) in routes {
        let planned = PlannedRoute {
            dst: *dst,
            gw: route_gateway(dst, *gw, ips),
            src: None,
            scope: None,
        };
        if !p.container_routes.iter().any(|r| r.dst == planned.dst) {
            p.container_routes.push(planned);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dual_stack_layout() {
        let p = plan(
            &[
                (net("10.1.2.9/24"), Some(ip("10.1.2.1"))),
                (net("fd00::9/64"), Some(ip("fd00::1"))),
            ],
            &[(net("0.0.0.0/0"), None), (net("::/0"), None)],
        )
        .unwrap();
        assert_eq!(
            p.container_addrs,
            vec![net("10.1.2.9/24"), net("fd00::9/64")]
        );
        assert_eq!(p.host_addrs, vec![net("10.1.2.1/32"), net("fd00::1/128")]);
        assert_eq!(p.host_routes[0].dst, net("10.1.2.9/32"));
        assert_eq!(p.host_routes[1].scope, Some(RouteScope::Host));
        let r: Vec<_> = p
            .container_routes
            .iter()
            .map(|r| (r.dst, r.gw, r.src))
            .collect();
        assert_eq!(
            r,
            vec![
                (net("10.1.2.1/32"), None, Some(ip("10.1.2.9"))),
                (
                    net("10.1.2.0/24"),
                    Some(ip("10.1.2.1")),
                    Some(ip("10.1.2.9"))
                ),
                (net("fd00::1/128"), None, Some(ip("fd00::9"))),
                (net("fd00::/64"), Some(ip("fd00::1")), Some(ip("fd00::9"))),
                (net("0.0.0.0/0"), Some(ip("10.1.2.1")), None),
                (net("::/0"), Some(ip("fd00::1")), None),
            ]
        );
    }

    #[test]
    fn a_gateway_is_required() {
        let e = plan(&[(net("10.1.2.9/24"), None)], &[]).unwrap_err();
        assert!(e.contains("no gateway"), "{e}");
        assert!(plan(&[(net("10.1.2.9/24"), Some(ip("fd00::1")))], &[]).is_err());
    }
}
