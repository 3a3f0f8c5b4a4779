//! GC of owner chains: releases the state of every attachment of a network
//! that the runtime no longer lists in `cni.dev/valid-attachments`, found
//! through the [`Owned::Attachment`] record each owner chain carries.
//! Owner chains without that record (written before it existed) are left
//! alone: their attachment cannot be told.

use super::{NfSocket, NftError, Op, Owned, Table, release_ops};

/// The ops releasing every owner chain in `table` whose name starts with
/// `prefix`, that belongs to `network`, and whose (container id, ifname)
/// `keep` refuses. Also returns the records of each released chain.
pub fn stale_ops(
    sock: &mut NfSocket,
    table: &Table,
    prefix: &str,
    network: &str,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<(Vec<Op>, Vec<Owned>), NftError> {
    let mut ops = Vec::new();
    let mut released = Vec::new();
    for (chain, owned, _) in sock.chains(table, prefix)? {
        let Some((cid, ifname)) = owned.iter().find_map(|o| match o {
            Owned::Attachment {
                network: n,
                container_id,
                ifname,
            } if n == network => Some((container_id.clone(), ifname.clone())),
            _ => None,
        }) else {
            continue;
        };
        if keep(&cid, &ifname) {
            continue;
        }
        ops.extend(release_ops(table, &chain, &owned));
        released.extend(owned);
    }
    Ok((ops, released))
}

/// Applies release ops, tolerating a concurrent DEL that removed some first.
pub fn apply_release(sock: &mut NfSocket, ops: &[Op]) -> Result<(), NftError> {
    match sock.apply(ops) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {
            // Retry one op (and one element) at a time: only what is
            // still there goes.
            let single: Vec<Op> = ops
                .iter()
                .flat_map(|op| match op {
                    Op::DelElems { table, set, keys } => keys
                        .iter()
                        .map(|k| Op::DelElems {
                            table: table.clone(),
                            set: set.clone(),
                            keys: vec![k.clone()],
                        })
                        .collect(),
                    other => vec![other.clone()],
                })
                .collect();
            for op in &single {
                match sock.apply(std::slice::from_ref(op)) {
                    Err(e) if e.errno() != Some(libc::ENOENT) => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        }
        r => r,
    }
}
