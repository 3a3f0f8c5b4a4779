//! The shared, static part of weft's rule set: tables, base chains, the maps
//! that per-pod elements go into, and the few fixed rules that look them up.
//!
//! Every ADD batch starts with these ops: tables, chains and sets are created
//! if missing, base chains are flushed and refilled with the same rules. So
//! the skeleton is self-healing and the batch stays one atomic transaction.

use super::expr::{self, Base, CmpOp, Expr, MetaKey, REG_VERDICT, REG32_00};
use super::{Family, Hook, Op, Table, Verdict};

/// The inet table both plugins use.
pub const INET_TABLE: &str = "weft-cni";
/// bridge ipMasq map keyed by pod IPv4 address.
pub const MASQ4: &str = "masq4";
/// bridge ipMasq map keyed by pod IPv6 address.
pub const MASQ6: &str = "masq6";
/// portmap: (host IPv4, l4proto, port) -> per-pod DNAT chain.
pub const PM_HOSTIP4: &str = "pm-hostip4";
/// portmap: (host IPv6, l4proto, port) -> per-pod DNAT chain.
pub const PM_HOSTIP6: &str = "pm-hostip6";
/// portmap: (l4proto, port) on any local IPv4 address -> per-pod DNAT chain.
pub const PM_ANY4: &str = "pm-any4";
/// portmap: (l4proto, port) on any local IPv6 address -> per-pod DNAT chain.
pub const PM_ANY6: &str = "pm-any6";
/// portmap: pod IPv4 -> per-pod masquerade chain (postrouting).
pub const PM_POST4: &str = "pm-post4";
/// portmap: pod IPv6 -> per-pod masquerade chain (postrouting).
pub const PM_POST6: &str = "pm-post6";
/// bridge macspoofchk map keyed by input ifindex (bridge table).
pub const SPOOF: &str = "spoof";
/// The regular chain holding the DNAT map lookups.
pub const PM_DNAT: &str = "pm-dnat";

// nft's data type ids, only for `nft list` output.
const T_IPV4: u32 = 7;
const T_IPV6: u32 = 8;
const T_PROTO: u32 = 12;
const T_SERVICE: u32 = 13;
const T_IFINDEX: u32 = 20;

fn concat(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
}

/// The inet table.
pub fn inet_table() -> Table {
    Table::new(Family::Inet, INET_TABLE)
}

/// The bridge-family table (macspoofchk).
pub fn bridge_table() -> Table {
    Table::new(Family::Bridge, INET_TABLE)
}

fn rule(t: &Table, chain: &str, exprs: Vec<Expr>) -> Op {
    Op::AddRule {
        table: t.clone(),
        chain: chain.into(),
        exprs,
        userdata: None,
    }
}

fn base(t: &Table, name: &str, num: u32, priority: i32, kind: &'static str) -> Op {
    Op::AddChain {
        table: t.clone(),
        name: name.into(),
        hook: Some(Hook {
            num,
            priority,
            kind,
        }),
    }
}

fn vmap(t: &Table, name: &str, key_type: u32, key_len: u32) -> Op {
    Op::AddSet {
        table: t.clone(),
        name: name.into(),
        key_type,
        key_len,
        vmap: true,
    }
}

/// Loads `ip[6] saddr|daddr` into registers starting at `reg`.
pub fn load_addr(v6: bool, dst: bool, reg: u32) -> Expr {
    let (offset, len) = expr::addr_field(v6, dst);
    Expr::Payload {
        base: Base::Network,
        offset,
        len,
        dreg: reg,
    }
}

/// Loads (l4proto, transport dport) into two registers starting at `reg`.
pub fn load_proto_dport(reg: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg,
        },
        Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
            dreg: reg + 1,
        },
    ]
}

fn lookup(set: &str, sreg: u32) -> Expr {
    Expr::Lookup {
        set: set.into(),
        sreg,
        dreg: Some(REG_VERDICT),
        invert: false,
    }
}

/// Marks tables whose skeleton this version created.
pub const MARKER: &[u8] = b"weft-cni skeleton v1";

/// Which skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skeleton {
    /// `inet weft-cni`: ipMasq and portmap.
    Inet,
    /// `bridge weft-cni`: macspoofchk.
    Bridge,
}

/// Makes sure the skeleton exists: nothing to do when the table carries our
/// marker (the common case: one GETTABLE); created atomically when missing
/// (a concurrent creator winning is fine); refilled when the table exists
/// without the marker (another version made it). Creation never deletes, so
/// the batch leaves no destroy work behind (closing an nfnetlink socket waits
/// for that work: an RCU grace period).
pub fn ensure(sock: &mut super::NfSocket, which: Skeleton) -> Result<(), super::NftError> {
    let (table, ops) = match which {
        Skeleton::Inet => (inet_table(), inet_ops()),
        Skeleton::Bridge => (bridge_table(), bridge_ops()),
    };
    match sock.table_userdata(&table)? {
        Some(u) if u == MARKER => Ok(()),
        Some(_) => sock.apply(&refill(ops)),
        None => {
            let mut create = ops;
            create[0] = Op::CreateTable {
                table,
                userdata: MARKER.to_vec(),
            };
            match sock.apply(&create) {
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
                r => r,
            }
        }
    }
}

/// The skeleton ops with every base chain flushed before its rules.
pub fn refill(ops: Vec<Op>) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len() + 8);
    let mut flushed: Vec<String> = Vec::new();
    for op in ops {
        if let Op::AddRule { table, chain, .. } = &op {
            if !flushed.contains(chain) {
                out.push(Op::FlushChain {
                    table: table.clone(),
                    chain: chain.clone(),
                });
                flushed.push(chain.clone());
            }
        }
        out.push(op);
    }
    out
}

/// Ops creating the inet skeleton (table, maps, chains, fixed rules).
pub fn inet_ops() -> Vec<Op> {
    let t = inet_table();
    let mut ops = vec![
        Op::AddTable(t.clone()),
        vmap(&t, MASQ4, T_IPV4, 4),
        vmap(&t, MASQ6, T_IPV6, 16),
        vmap(&t, PM_HOSTIP4, concat(&[T_IPV4, T_PROTO, T_SERVICE]), 12),
        vmap(&t, PM_HOSTIP6, concat(&[T_IPV6, T_PROTO, T_SERVICE]), 24),
        vmap(&t, PM_ANY4, concat(&[T_PROTO, T_SERVICE]), 8),
        vmap(&t, PM_ANY6, concat(&[T_PROTO, T_SERVICE]), 8),
        vmap(&t, PM_POST4, T_IPV4, 4),
        vmap(&t, PM_POST6, T_IPV6, 16),
        Op::AddChain {
            table: t.clone(),
            name: PM_DNAT.into(),
            hook: None,
        },
        base(&t, "guard", 0, -150, "filter"),
        base(&t, "prerouting", 0, -100, "nat"),
        base(&t, "output", 3, -100, "nat"),
        base(&t, "postrouting", 4, 100, "nat"),
    ];
    for c in ["guard", "prerouting", "output", "postrouting", PM_DNAT] {
        ops.push(Op::FlushChain {
            table: t.clone(),
            chain: c.into(),
        });
    }
    // route_localnet makes 127/8 routable on the bridge; drop such martians
    // arriving from anywhere but loopback (before DNAT could forward them).
    let mut guard = expr::match_nfproto(false);
    guard.push(Expr::Meta {
        key: MetaKey::Iif,
        dreg: REG32_00,
    });
    guard.push(Expr::Cmp {
        sreg: REG32_00,
        op: CmpOp::Neq,
        data: 1u32.to_ne_bytes().to_vec(),
    });
    guard.extend(expr::match_prefix(
        "127.0.0.0"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        8,
        true,
        false,
    ));
    guard.push(Expr::Verdict(Verdict::Drop));
    ops.push(rule(&t, "guard", guard));
    for c in ["prerouting", "output"] {
        ops.push(rule(
            &t,
            c,
            vec![Expr::Verdict(Verdict::Jump(PM_DNAT.into()))],
        ));
    }
    for (v6, hostip, addr_regs) in [(false, PM_HOSTIP4, 1), (true, PM_HOSTIP6, 4)] {
        let mut r = expr::match_nfproto(v6);
        r.push(load_addr(v6, true, REG32_00));
        r.extend(load_proto_dport(REG32_00 + addr_regs));
        r.push(lookup(hostip, REG32_00));
        ops.push(rule(&t, PM_DNAT, r));
    }
    for (v6, any) in [(false, PM_ANY4), (true, PM_ANY6)] {
        let mut r = vec![
            Expr::FibDaddrType { dreg: REG32_00 },
            Expr::Cmp {
                sreg: REG32_00,
                op: CmpOp::Eq,
                data: 2u32.to_ne_bytes().to_vec(),
            }, // RTN_LOCAL
        ];
        r.extend(expr::match_nfproto(v6));
        r.extend(load_proto_dport(REG32_00));
        r.push(lookup(any, REG32_00));
        ops.push(rule(&t, PM_DNAT, r));
    }
    for (v6, dst, set) in [
        (false, true, PM_POST4),
        (true, true, PM_POST6),
        (false, false, MASQ4),
        (true, false, MASQ6),
    ] {
        let mut r = expr::match_nfproto(v6);
        r.push(load_addr(v6, dst, REG32_00));
        r.push(lookup(set, REG32_00));
        ops.push(rule(&t, "postrouting", r));
    }
    ops
}

/// Ops creating the bridge-family skeleton (macspoofchk).
pub fn bridge_ops() -> Vec<Op> {
    let t = bridge_table();
    vec![
        Op::AddTable(t.clone()),
        vmap(&t, SPOOF, T_IFINDEX, 4),
        base(&t, "prerouting", 0, -200, "filter"),
        Op::FlushChain {
            table: t.clone(),
            chain: "prerouting".into(),
        },
        rule(
            &t,
            "prerouting",
            vec![
                Expr::Meta {
                    key: MetaKey::Iif,
                    dreg: REG32_00,
                },
                lookup(SPOOF, REG32_00),
            ],
        ),
    ]
}

/// Key of `(l4proto, port)` as loaded into two 32-bit registers.
pub fn proto_port_key(proto: u8, port: u16) -> Vec<u8> {
    let p = port.to_be_bytes();
    vec![proto, 0, 0, 0, p[0], p[1], 0, 0]
}

/// Parses `(l4proto, port)` from the tail of a DNAT map key.
pub fn parse_proto_port(key: &[u8]) -> Option<(u8, u16)> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some((tail[0], u16::from_be_bytes([tail[4], tail[5]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(proto_port_key(6, 8080), vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        let mut k = vec![10, 0, 0, 1];
        k.extend(proto_port_key(17, 53));
        assert_eq!(parse_proto_port(&k), Some((17, 53)));
        assert_eq!(parse_proto_port(&[1, 2]), None);
        assert_eq!(concat(&[T_PROTO, T_SERVICE]), (12 << 6) | 13);
    }

    #[test]
    fn skeleton_refills_base_chains() {
        let ops = inet_ops();
        let flushes = ops
            .iter()
            .filter(|o| matches!(o, Op::FlushChain { .. }))
            .count();
        assert_eq!(flushes, 5);
        let rules = ops
            .iter()
            .filter(|o| matches!(o, Op::AddRule { .. }))
            .count();
        assert_eq!(rules, 1 + 2 + 4 + 4);
    }
}
