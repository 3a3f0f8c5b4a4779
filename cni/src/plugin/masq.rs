//! ipMasq for the main plugins (bridge, ptp): the reference's per-pod
//! masquerade (accept to the pod's own subnet, masquerade the rest except
//! multicast) as one nftables chain per attachment, owned through owner
//! records so DEL releases exactly what ADD installed.

use std::net::IpAddr;

use ipnet::IpNet;

use super::names::Names;
use crate::error::CniError;
use crate::nft::expr::{self, Expr};
use crate::nft::skeleton::{self, MASQ4, MASQ6};
use crate::nft::{self, NfSocket, NftError, Op, Owned, Table, Verdict, owner_records};

/// ipMasq ops: a per-pod chain (accept to the pod's own subnet, masquerade
/// the rest except multicast), its owner records, and the map elements.
pub fn masq_ops(names: &Names, ips: &[IpNet]) -> Vec<Op> {
    let t = skeleton::inet_table();
    let chain = names.masq_chain.clone();
    let mut ops = vec![Op::AddChain {
        table: t.clone(),
        name: chain.clone(),
        hook: None,
    }];
    let mut owned = Vec::new();
    let mut elems4 = Vec::new();
    let mut elems6 = Vec::new();
    for ip in ips {
        let v6 = ip.addr().is_ipv6();
        let own = {
            let mut e = expr::match_nfproto(v6);
            e.extend(expr::match_prefix(
                ip.addr(),
                if v6 { 128 } else { 32 },
                false,
                false,
            ));
            e
        };
        let mut accept = own.clone();
        accept.extend(expr::match_prefix(
            ip.network(),
            ip.prefix_len(),
            true,
            false,
        ));
        accept.push(Expr::Verdict(Verdict::Accept));
        let (mcast, mlen): (IpAddr, u8) = if v6 {
            ("ff00::".parse().unwrap_or(IpAddr::V6(0.into())), 8)
        } else {
            ([224, 0, 0, 0].into(), 4)
        };
        let mut masq = own;
        masq.extend(expr::match_prefix(mcast, mlen, true, true));
        masq.push(Expr::Masquerade);
        for exprs in [accept, masq] {
            ops.push(Op::AddRule {
                table: t.clone(),
                chain: chain.clone(),
                exprs,
                userdata: None,
            });
        }
        let key = expr::ip_bytes(ip.addr());
        let set = if v6 { MASQ6 } else { MASQ4 };
        owned.push(Owned::Elem {
            table: t.clone(),
            set: set.into(),
            key: key.clone(),
        });
        let el = (key, Some(Verdict::Jump(chain.clone())));
        if v6 { elems6.push(el) } else { elems4.push(el) }
    }
    owned.push(names.owner.clone());
    ops.extend(owner_records(&t, &chain, &owned));
    for (set, elems) in [(MASQ4, elems4), (MASQ6, elems6)] {
        if !elems.is_empty() {
            ops.push(Op::AddElems {
                table: t.clone(),
                set: set.into(),
                elems,
            });
        }
    }
    ops
}

/// The ops releasing what `chain` of `table` owns (none when it owns nothing).
pub fn release_chain_ops(
    sock: &mut NfSocket,
    table: &Table,
    chain: &str,
) -> Result<Vec<Op>, NftError> {
    let owned = sock.owned(table, chain)?;
    Ok(if owned.is_empty() {
        Vec::new()
    } else {
        nft::release_ops(table, chain, &owned)
    })
}

/// Applies release ops; a concurrent DEL of the same attachment that won
/// the race (`ENOENT`) is success.
pub fn apply_release(sock: &mut NfSocket, ops: &[Op]) -> Result<(), NftError> {
    match sock.apply(ops) {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// Releases the attachment's ipMasq chain and map elements.
pub fn release(sock: &mut NfSocket, names: &Names) -> Result<(), NftError> {
    let ops = release_chain_ops(sock, &skeleton::inet_table(), &names.masq_chain)?;
    apply_release(sock, &ops)
}

/// Installs ipMasq for `ips` (replacing a previous install of the same
/// attachment) in one batch.
pub fn install(sock: &mut NfSocket, names: &Names, ips: &[IpNet]) -> Result<(), CniError> {
    let err = |e: NftError| CniError::internal(format!("ipMasq nftables: {e}"), "");
    if ips.is_empty() {
        return Ok(());
    }
    release(sock, names).map_err(err)?;
    skeleton::ensure(sock, skeleton::Skeleton::Inet).map_err(err)?;
    sock.apply(&masq_ops(names, ips)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn masq_plan_owns_its_elements() {
        let n = Names::new("n", "c", "eth0");
        let ops = masq_ops(&n, &[net("10.1.2.9/16"), net("fd00::5/64")]);
        let elems: Vec<_> = ops
            .iter()
            .filter(|o| matches!(o, Op::AddElems { .. }))
            .collect();
        assert_eq!(elems.len(), 2);
        let records = ops
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Op::AddRule {
                        userdata: Some(_),
                        ..
                    }
                )
            })
            .count();
        // one per element, one naming the attachment
        assert_eq!(records, 3);
        let rules = ops
            .iter()
            .filter(|o| matches!(o, Op::AddRule { userdata: None, .. }))
            .count();
        assert_eq!(rules, 4);
    }
}
