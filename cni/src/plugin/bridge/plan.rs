//! Pure planning for the bridge plugin: gateway and route decisions and the
//! nftables ops for macspoofchk (names and ipMasq ops are shared with ptp:
//! [`crate::plugin::names`], [`crate::plugin::masq`]). No kernel access here.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::nft::expr::{Base, CmpOp, Expr, REG32_00};
use crate::nft::skeleton::{self, SPOOF};
use crate::nft::{Op, Owned, Verdict, owner_records};
pub use crate::plugin::masq::masq_ops;
pub use crate::plugin::names::Names;

/// Addresses and routes to configure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrPlan {
    /// Container addresses with their (possibly computed) gateway.
    pub ips: Vec<(IpNet, Option<IpAddr>)>,
    /// Gateway addresses for the bridge (isGateway).
    pub bridge_addrs: Vec<IpNet>,
    /// Container routes (IPAM's plus the default routes of isDefaultGateway).
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

fn default_net(v6: bool) -> IpNet {
    if v6 {
        IpNet::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0).unwrap_or_default()
    } else {
        IpNet::default()
    }
}

fn first_host(net: &IpNet) -> Option<IpAddr> {
    match net.network() {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|v| IpAddr::V4(v.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|v| IpAddr::V6(v.into())),
    }
}

/// Computes gateways, bridge addresses and container routes like the
/// reference, except that a default route IPAM already provides (via the same
/// gateway) is not added twice.
pub fn plan_addresses(
    is_gateway: bool,
    is_default_gateway: bool,
    ips: &[(IpNet, Option<IpAddr>)],
    ipam_routes: &[(IpNet, Option<IpAddr>)],
) -> Result<AddrPlan, String> {
    let mut plan = AddrPlan {
        routes: ipam_routes.to_vec(),
        ..Default::default()
    };
    for (addr, gw) in ips {
        let mut gw = *gw;
        if gw.is_none() && is_gateway {
            gw = first_host(&addr.trunc());
        }
        if is_gateway {
            if let Some(g) = gw {
                let net = IpNet::new(g, addr.prefix_len()).map_err(|e| e.to_string())?;
                if !plan.bridge_addrs.contains(&net) {
                    plan.bridge_addrs.push(net);
                }
            }
        }
        if is_default_gateway {
            if let Some(g) = gw {
                let dst = default_net(g.is_ipv6());
                match ipam_routes.iter().find(|(d, _)| *d == dst) {
                    Some((_, Some(other))) if *other != g => {
                        return Err(format!(
                            "isDefaultGateway ineffective because IPAM sets default route via {other}"
                        ));
                    }
                    Some(_) => {}
                    None if plan.routes.iter().any(|(d, _)| *d == dst) => {}
                    None => plan.routes.push((dst, Some(g))),
                }
            }
        }
        plan.ips.push((*addr, gw));
    }
    Ok(plan)
}

/// What to do with the bridge's existing addresses of one family before
/// adding `want` (reference `ensureAddr`): `Ok(None)` when present already,
/// `Ok(Some(deletions))` to proceed, `Err` when a different address is in the
/// way and `forceAddress` is off.
pub fn ensure_bridge_addr(
    existing: &[IpNet],
    want: IpNet,
    force: bool,
    bridge: &str,
) -> Result<Option<Vec<IpNet>>, String> {
    let mut del = Vec::new();
    for a in existing
        .iter()
        .filter(|a| a.addr().is_ipv6() == want.addr().is_ipv6())
    {
        if *a == want {
            return Ok(None);
        }
        if let IpAddr::V6(v6) = a.addr() {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue; // link-local
            }
        }
        let clash = want.addr().is_ipv4() || a.contains(&want.addr()) || want.contains(&a.addr());
        if clash {
            if force {
                del.push(*a);
            } else {
                return Err(format!(
                    "{bridge:?} already has an IP address different from {want}"
                ));
            }
        }
    }
    Ok(Some(del))
}

/// The container route for `dst` with the gateway filled from the address of
/// the same family when IPAM gave none.
pub fn route_gateway(
    dst: &IpNet,
    gw: Option<IpAddr>,
    ips: &[(IpNet, Option<IpAddr>)],
) -> Option<IpAddr> {
    gw.or_else(|| {
        ips.iter()
            .find(|(a, _)| a.addr().is_ipv6() == dst.addr().is_ipv6())
            .and_then(|(_, g)| *g)
    })
}

/// macspoofchk ops: frames entering from the host veth must carry `mac`.
pub fn spoof_ops(names: &Names, host_ifindex: u32, mac: [u8; 6]) -> Vec<Op> {
    let t = skeleton::bridge_table();
    let chain = names.spoof_chain.clone();
    let key = host_ifindex.to_ne_bytes().to_vec();
    let mut ops = vec![
        Op::AddChain {
            table: t.clone(),
            name: chain.clone(),
            hook: None,
        },
        Op::AddRule {
            table: t.clone(),
            chain: chain.clone(),
            exprs: vec![
                Expr::Payload {
                    base: Base::Link,
                    offset: 6,
                    len: 6,
                    dreg: REG32_00,
                },
                Expr::Cmp {
                    sreg: REG32_00,
                    op: CmpOp::Neq,
                    data: mac.to_vec(),
                },
                Expr::Verdict(Verdict::Drop),
            ],
            userdata: None,
        },
    ];
    ops.extend(owner_records(
        &t,
        &chain,
        &[
            Owned::Elem {
                table: t.clone(),
                set: SPOOF.into(),
                key: key.clone(),
            },
            names.owner.clone(),
        ],
    ));
    ops.push(Op::AddElems {
        table: t.clone(),
        set: SPOOF.into(),
        elems: vec![(key, Some(Verdict::Jump(chain)))],
    });
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_defaults_to_first_host() {
        let p = plan_addresses(true, true, &[(net("10.1.2.9/16"), None)], &[]).unwrap();
        let gw: IpAddr = "10.1.0.1".parse().unwrap();
        assert_eq!(p.ips, vec![(net("10.1.2.9/16"), Some(gw))]);
        assert_eq!(p.bridge_addrs, vec![net("10.1.0.1/16")]);
        assert_eq!(p.routes, vec![(net("0.0.0.0/0"), Some(gw))]);
    }

    #[test]
    fn ipam_default_route_is_not_duplicated() {
        let gw: IpAddr = "10.1.0.1".parse().unwrap();
        let ips = [
            (net("10.1.2.9/16"), Some(gw)),
            (net("fd00::5/64"), Some("fd00::1".parse().unwrap())),
        ];
        let p = plan_addresses(true, true, &ips, &[(net("0.0.0.0/0"), None)]).unwrap();
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.routes[1], (net("::/0"), Some("fd00::1".parse().unwrap())));
        let err = plan_addresses(
            true,
            true,
            &ips,
            &[(net("0.0.0.0/0"), Some("10.1.0.7".parse().unwrap()))],
        );
        assert!(err.unwrap_err().contains("ineffective"));
    }

    #[test]
    fn no_gateway_without_is_gateway() {
        let p = plan_addresses(false, false, &[(net("10.1.2.9/16"), None)], &[]).unwrap();
        assert!(p.bridge_addrs.is_empty());
        assert_eq!(p.ips[0].1, None);
    }

    #[test]
    fn bridge_address_conflicts() {
        let want = net("10.1.0.1/16");
        assert_eq!(ensure_bridge_addr(&[want], want, false, "cni0"), Ok(None));
        assert!(ensure_bridge_addr(&[net("10.2.0.1/16")], want, false, "cni0").is_err());
        assert_eq!(
            ensure_bridge_addr(&[net("10.2.0.1/16")], want, true, "cni0"),
            Ok(Some(vec![net("10.2.0.1/16")]))
        );
        // v6: disjoint subnets may coexist, link-local is ignored
        let w6 = net("fd00:1::1/64");
        assert_eq!(
            ensure_bridge_addr(&[net("fd00:2::1/64"), net("fe80::1/64")], w6, false, "b"),
            Ok(Some(vec![]))
        );
    }

    #[test]
    fn route_gateway_falls_back_to_family_gateway() {
        let ips = [(net("10.1.2.9/16"), Some("10.1.0.1".parse().unwrap()))];
        assert_eq!(
            route_gateway(&net("192.168.0.0/24"), None, &ips),
            Some("10.1.0.1".parse().unwrap())
        );
        assert_eq!(route_gateway(&net("::/0"), None, &ips), None);
    }
}
