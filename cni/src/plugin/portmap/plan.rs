//! Pure planning for portmap: per-pod DNAT and masquerade chains reached
//! through the shared verdict maps (so the per-packet cost does not grow with
//! the number of pods), and the owner records DEL uses.

use std::net::IpAddr;

use crate::nft::expr::{self, CmpOp, Expr, MetaKey, REG32_00};
use crate::nft::skeleton::{self, PM_ANY4, PM_ANY6, PM_HOSTIP4, PM_HOSTIP6, PM_POST4, PM_POST6};
use crate::nft::{Op, Owned, Table, Verdict, owner_id, owner_records};

use super::config::{Condition, HostIp, Mapping, Settings};

/// Name prefix of the per-pod DNAT (owner) chains.
pub const DNAT_PREFIX: &str = "cn-p-";

/// Deterministic names for one (network, container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmNames {
    /// Per-pod DNAT chain; also the owner chain.
    pub dnat_chain: String,
    /// Per-pod masquerade chain.
    pub post_chain: String,
    /// The attachment, recorded in the owner chain for GC.
    pub owner: Owned,
}

impl PmNames {
    /// Names for (network, container id).
    pub fn new(net: &str, cid: &str) -> Self {
        let id = owner_id(&[net, cid]);
        Self {
            dnat_chain: format!("{DNAT_PREFIX}{id}"),
            post_chain: format!("cn-q-{id}"),
            owner: Owned::Attachment {
                network: net.to_string(),
                container_id: cid.to_string(),
                ifname: String::new(),
            },
        }
    }
}

/// The plan for one ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PmPlan {
    /// nftables ops (after any release of previous state).
    pub ops: Vec<Op>,
    /// UDP host ports whose conntrack entries to flush.
    pub udp_ports: Vec<u16>,
    /// Whether IPv4 mappings from localhost need `route_localnet`.
    pub localnet: bool,
}

fn cond_exprs(c: &Condition) -> Vec<Expr> {
    match c {
        Condition::Source(n, neg) => expr::match_prefix(n.network(), n.prefix_len(), false, *neg),
        Condition::Dest(n, neg) => expr::match_prefix(n.network(), n.prefix_len(), true, *neg),
        Condition::InIface(name, neg) => {
            let mut data = name.as_bytes().to_vec();
            data.resize(16, 0);
            vec![
                Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG32_00,
                },
                Expr::Cmp {
                    sreg: REG32_00,
                    op: if *neg { CmpOp::Neq } else { CmpOp::Eq },
                    data,
                },
            ]
        }
    }
}

fn mark_exprs(s: &Settings) -> Vec<Expr> {
    match &s.external_chain {
        Some(c) => vec![Expr::Verdict(Verdict::Jump(c.clone()))],
        None => vec![
            Expr::Meta {
                key: MetaKey::Mark,
                dreg: REG32_00,
            },
            Expr::Bitwise {
                sreg: REG32_00,
                dreg: REG32_00,
                mask: (!s.mark).to_ne_bytes().to_vec(),
                xor: s.mark.to_ne_bytes().to_vec(),
            },
            Expr::SetMark { sreg: REG32_00 },
        ],
    }
}

/// Plans the rules for `pod_ips` (the first address of each family is the
/// target, as the reference does).
pub fn plan(names: &PmNames, pod_ips: &[IpAddr], s: &Settings) -> PmPlan {
    let t = skeleton::inet_table();
    let mut plan = PmPlan::default();
    let v4 = pod_ips.iter().copied().find(IpAddr::is_ipv4);
    let v6 = pod_ips.iter().copied().find(IpAddr::is_ipv6);
    let mut rules: Vec<Vec<Expr>> = Vec::new();
    let mut elems: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for m in &s.mappings {
        for target in [v4, v6].into_iter().flatten() {
            let fam6 = target.is_ipv6();
            let (set, key_prefix, host_match) = match m.host_ip {
                HostIp::Any => (if fam6 { PM_ANY6 } else { PM_ANY4 }, Vec::new(), None),
                HostIp::AnyV4 if !fam6 => (PM_ANY4, Vec::new(), None),
                HostIp::AnyV6 if fam6 => (PM_ANY6, Vec::new(), None),
                HostIp::Addr(a) if a.is_ipv6() == fam6 => (
                    if fam6 { PM_HOSTIP6 } else { PM_HOSTIP4 },
                    expr::ip_bytes(a),
                    Some(a),
                ),
                _ => continue,
            };
            let mut key = key_prefix;
            key.extend(skeleton::proto_port_key(m.proto, m.host_port));
            if !elems.iter().any(|(s2, k)| *s2 == set && *k == key) {
                elems.push((set, key));
            }
            rules.extend(mapping_rules(m, target, host_match, s));
            if m.proto == 17 && !plan.udp_ports.contains(&m.host_port) {
                plan.udp_ports.push(m.host_port);
            }
            if !fam6 && s.snat {
                plan.localnet = true;
            }
        }
    }
    if elems.is_empty() {
        return plan;
    }
    let mut ops = vec![Op::AddChain {
        table: t.clone(),
        name: names.dnat_chain.clone(),
        hook: None,
    }];
    for exprs in rules {
        ops.push(Op::AddRule {
            table: t.clone(),
            chain: names.dnat_chain.clone(),
            exprs,
            userdata: None,
        });
    }
    let mut owned: Vec<Owned> = elems
        .iter()
        .map(|(set, key)| Owned::Elem {
            table: t.clone(),
            set: (*set).into(),
            key: key.clone(),
        })
        .collect();
    let masq_here = s.snat && s.external_chain.is_none();
    let mut post_elems = Vec::new();
    if masq_here {
        ops.push(Op::AddChain {
            table: t.clone(),
            name: names.post_chain.clone(),
            hook: None,
        });
        for target in [v4, v6].into_iter().flatten() {
            let mut r = expr::match_nfproto(target.is_ipv6());
            r.extend([
                Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: REG32_00,
                },
                Expr::Bitwise {
                    sreg: REG32_00,
                    dreg: REG32_00,
                    mask: s.mark.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                },
                Expr::Cmp {
                    sreg: REG32_00,
                    op: CmpOp::Eq,
                    data: s.mark.to_ne_bytes().to_vec(),
                },
                Expr::Masquerade,
            ]);
            ops.push(Op::AddRule {
                table: t.clone(),
                chain: names.post_chain.clone(),
                exprs: r,
                userdata: None,
            });
            let set = if target.is_ipv6() { PM_POST6 } else { PM_POST4 };
            owned.push(Owned::Elem {
                table: t.clone(),
                set: set.into(),
                key: expr::ip_bytes(target),
            });
            post_elems.push((set, expr::ip_bytes(target)));
        }
        owned.push(Owned::Chain {
            table: t.clone(),
            chain: names.post_chain.clone(),
        });
    }
    owned.push(names.owner.clone());
    ops.extend(owner_records(&t, &names.dnat_chain, &owned));
    push_elems(
        &mut ops,
        &t,
        &elems,
        &Verdict::Goto(names.dnat_chain.clone()),
    );
    push_elems(
        &mut ops,
        &t,
        &post_elems,
        &Verdict::Jump(names.post_chain.clone()),
    );
    plan.ops = ops;
    plan
}

fn push_elems(ops: &mut Vec<Op>, t: &Table, elems: &[(&'static str, Vec<u8>)], v: &Verdict) {
    for set in [PM_HOSTIP4, PM_HOSTIP6, PM_ANY4, PM_ANY6, PM_POST4, PM_POST6] {
        let keys: Vec<_> = elems
            .iter()
            .filter(|(s, _)| *s == set)
            .map(|(_, k)| (k.clone(), Some(v.clone())))
            .collect();
        if !keys.is_empty() {
            ops.push(Op::AddElems {
                table: t.clone(),
                set: set.into(),
                elems: keys,
            });
        }
    }
}

/// The rules of one mapping towards one target address: mark hairpin and
/// localhost traffic (or all with masqAll) for masquerade, then DNAT.
fn mapping_rules(
    m: &Mapping,
    target: IpAddr,
    host: Option<IpAddr>,
    s: &Settings,
) -> Vec<Vec<Expr>> {
    let v6 = target.is_ipv6();
    let mut conds = expr::match_nfproto(v6);
    if let Some(h) = host {
        conds.extend(expr::match_prefix(
            h,
            if v6 { 128 } else { 32 },
            true,
            false,
        ));
    }
    conds.extend([
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG32_00,
        },
        Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: vec![m.proto],
        },
        Expr::Payload {
            base: expr::Base::Transport,
            offset: 2,
            len: 2,
            dreg: REG32_00,
        },
        Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: m.host_port.to_be_bytes().to_vec(),
        },
    ]);
    for c in if v6 { &s.cond_v6 } else { &s.cond_v4 } {
        conds.extend(cond_exprs(c));
    }
    let mut out = Vec::new();
    if s.snat || s.masq_all {
        if s.masq_all {
            let mut r = conds.clone();
            r.extend(mark_exprs(s));
            out.push(r);
        } else {
            let mut r = conds.clone();
            r.extend(expr::match_prefix(
                target,
                if v6 { 128 } else { 32 },
                false,
                false,
            ));
            r.extend(mark_exprs(s));
            out.push(r);
            if !v6 {
                let mut r = conds.clone();
                r.extend(expr::match_prefix([127, 0, 0, 0].into(), 8, false, false));
                r.extend(mark_exprs(s));
                out.push(r);
            }
        }
    }
    let port_reg = REG32_00 + if v6 { 4 } else { 1 };
    let mut dnat = conds;
    dnat.extend([
        Expr::Imm {
            dreg: REG32_00,
            data: expr::ip_bytes(target),
        },
        Expr::Imm {
            dreg: port_reg,
            data: m.container_port.to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            family: if v6 {
                expr::NFPROTO_IPV6
            } else {
                expr::NFPROTO_IPV4
            },
            addr_reg: REG32_00,
            port_reg: Some(port_reg),
        },
    ]);
    out.push(dnat);
    out
}

/// UDP host ports recorded in owner records (for the conntrack flush on DEL).
pub fn owned_udp_ports(owned: &[Owned]) -> Vec<u16> {
    let mut out = Vec::new();
    for o in owned {
        if let Owned::Elem { set, key, .. } = o {
            if [PM_ANY4, PM_ANY6, PM_HOSTIP4, PM_HOSTIP6].contains(&set.as_str()) {
                if let Some((17, port)) = skeleton::parse_proto_port(key) {
                    if !out.contains(&port) {
                        out.push(port);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::portmap::config::PortMapConf;

    fn settings(json: &str) -> Settings {
        PortMapConf::parse(json.as_bytes())
            .unwrap()
            .settings()
            .unwrap()
    }

    fn count(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().filter(|o| f(o)).count()
    }

    #[test]
    fn dual_stack_wildcard_and_host_ip() {
        let s = settings(
            r#"{"runtimeConfig":{"portMappings":[
            {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
            {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"192.0.2.1"}]}}"#,
        );
        let n = PmNames::new("net", "cid");
        let p = plan(
            &n,
            &["10.1.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            &s,
        );
        assert_eq!(p.udp_ports, vec![5353]);
        assert!(p.localnet);
        // tcp:8080 -> any4 + any6, udp:5353 -> hostip4; post4 + post6
        let elem_sets: Vec<_> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::AddElems { set, elems, .. } => Some((set.as_str(), elems.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            elem_sets,
            vec![
                (PM_HOSTIP4, 1),
                (PM_ANY4, 1),
                (PM_ANY6, 1),
                (PM_POST4, 1),
                (PM_POST6, 1)
            ]
        );
        // rules: v4 tcp (hairpin, localhost, dnat), v6 tcp (hairpin, dnat), v4 udp (3)
        let rules = count(
            &p.ops,
            |o| matches!(o, Op::AddRule { userdata: None, chain, .. } if *chain == n.dnat_chain),
        );
        assert_eq!(rules, 8);
        let owned = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::AddRule {
                    userdata: Some(u), ..
                } => Owned::decode(u),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(owned.len(), 3 + 2 + 1 + 1);
        assert!(owned.contains(&n.owner));
        assert_eq!(owned_udp_ports(&owned), vec![5353]);
    }

    #[test]
    fn external_chain_replaces_own_masquerade() {
        let s = settings(
            r#"{"externalSetMarkChain":"KUBE-MARK-MASQ","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":2}]}}"#,
        );
        let n = PmNames::new("net", "cid");
        let p = plan(&n, &["10.1.0.5".parse().unwrap()], &s);
        assert_eq!(
            count(
                &p.ops,
                |o| matches!(o, Op::AddChain { name, .. } if *name == n.post_chain)
            ),
            0
        );
        assert!(p.ops.iter().any(|o| matches!(o, Op::AddRule { exprs, .. }
            if exprs.contains(&Expr::Verdict(Verdict::Jump("KUBE-MARK-MASQ".into()))))));
    }

    #[test]
    fn family_mismatch_and_no_mappings_plan_nothing() {
        let s = settings(
            r#"{"runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":2,"hostIP":"::"}]}}"#,
        );
        let p = plan(&PmNames::new("n", "c"), &["10.1.0.5".parse().unwrap()], &s);
        assert!(p.ops.is_empty());
        let p = plan(
            &PmNames::new("n", "c"),
            &["10.1.0.5".parse().unwrap()],
            &settings("{}"),
        );
        assert!(p.ops.is_empty());
    }
}
