//! nftables over native netlink (no `nft` process): objects and operations as
//! plain data, one atomic batch per apply, owner bookkeeping so DEL finds what
//! an ADD made from deterministic names alone.
//!
//! Why our own encoder: the `nftables` crate drives the `nft` binary (a child
//! process per call), and `rustables` 0.9 cannot express maps (no
//! `NFTA_SET_DATA_*`, no element data, so no verdict maps), `fib`, or
//! concatenated keys — all of which the flat per-pod cost design needs. The
//! wire format is small and stable, so [`nla`] writes it directly.

mod conntrack;
pub mod expr;
pub mod gc;
mod nla;
pub mod skeleton;
mod socket;

pub use expr::{Expr, Verdict};
pub use socket::NfSocket;

use nla::{MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFT_DATA_VERDICT`: the data type of verdict maps.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// Set flag `NFT_SET_MAP`.
const NFT_SET_MAP: u32 = 0x8;
/// `NFTA_RULE_USERDATA` is limited to this many bytes by the kernel.
const USERDATA_MAX: usize = 256;

/// nftables errors.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The netlink socket failed.
    #[error("nfnetlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel rejected an operation of a batch (the batch was rolled back).
    #[error("nftables {op}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// Which operation failed.
        op: String,
        /// The errno.
        errno: i32,
    },
}

impl NftError {
    /// The kernel errno, if the kernel rejected the batch.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            Self::Io(e) => e.raw_os_error(),
        }
    }
}

/// Table address families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `inet` (IPv4 and IPv6).
    Inet = 1,
    /// `bridge`.
    Bridge = 7,
}

impl Family {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Inet),
            7 => Some(Self::Bridge),
            _ => None,
        }
    }
}

/// A table, named by family and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: String,
}

impl Table {
    /// A table value.
    pub fn new(family: Family, name: &str) -> Self {
        Self {
            family,
            name: name.to_string(),
        }
    }
}

/// A base chain's hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `NF_INET_*` hook number (0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting).
    pub num: u32,
    /// Priority.
    pub priority: i32,
    /// Chain type: `filter` or `nat`.
    pub kind: &'static str,
}

/// Kernel-side objects and changes, applied in order as one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the table if missing.
    AddTable(Table),
    /// Create the table, failing with EEXIST if it exists; `userdata` marks
    /// the skeleton version.
    CreateTable {
        /// Table.
        table: Table,
        /// `NFTA_TABLE_USERDATA`.
        userdata: Vec<u8>,
    },
    /// Delete a table and everything in it (fails with ENOENT when absent:
    /// put an [`Op::AddTable`] before it to make it unconditional).
    DelTable(Table),
    /// Create (or keep) a chain; base chain when `hook` is set.
    AddChain {
        /// Table.
        table: Table,
        /// Chain name.
        name: String,
        /// Base chain hook.
        hook: Option<Hook>,
    },
    /// Create (or keep) a verdict map (`data_verdict`) or a plain set.
    AddSet {
        /// Table.
        table: Table,
        /// Set name.
        name: String,
        /// nft's key type id (only for `nft list` display).
        key_type: u32,
        /// Key length in bytes (registers are 4-byte aligned per field).
        key_len: u32,
        /// True for a verdict map.
        vmap: bool,
    },
    /// Append a rule.
    AddRule {
        /// Table.
        table: Table,
        /// Chain.
        chain: String,
        /// Expressions (may be empty: an owner record).
        exprs: Vec<Expr>,
        /// `NFTA_RULE_USERDATA` (≤ 256 bytes).
        userdata: Option<Vec<u8>>,
    },
    /// Delete every rule of a chain.
    FlushChain {
        /// Table.
        table: Table,
        /// Chain.
        chain: String,
    },
    /// Delete a chain (flush it first in the same batch).
    DelChain {
        /// Table.
        table: Table,
        /// Chain.
        chain: String,
    },
    /// Add elements; fails with EEXIST if a key is present.
    AddElems {
        /// Table.
        table: Table,
        /// Set.
        set: String,
        /// (key, verdict for vmaps).
        elems: Vec<(Vec<u8>, Option<Verdict>)>,
    },
    /// Delete elements.
    DelElems {
        /// Table.
        table: Table,
        /// Set.
        set: String,
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
}

impl Op {
    fn describe(&self) -> String {
        match self {
            Self::AddTable(t) | Self::CreateTable { table: t, .. } => {
                format!("add table {}", t.name)
            }
            Self::DelTable(t) => format!("delete table {}", t.name),
            Self::AddChain { table, name, .. } => format!("add chain {} {name}", table.name),
            Self::AddSet { table, name, .. } => format!("add set {} {name}", table.name),
            Self::AddRule { table, chain, .. } => format!("add rule {} {chain}", table.name),
            Self::FlushChain { table, chain } => format!("flush chain {} {chain}", table.name),
            Self::DelChain { table, chain } => format!("delete chain {} {chain}", table.name),
            Self::AddElems { table, set, .. } => format!("add element {} {set}", table.name),
            Self::DelElems { table, set, .. } => format!("delete element {} {set}", table.name),
        }
    }

    fn encode(&self, m: &mut MsgBuf, seq: u32, set_id: u32) {
        let flags = NLM_F_REQUEST | NLM_F_ACK;
        let ty = |t: u16| (SUBSYS_NFTABLES << 8) | t;
        match self {
            Self::AddTable(t) => {
                m.begin(
                    ty(NFT_MSG_NEWTABLE),
                    flags | NLM_F_CREATE,
                    seq,
                    t.family as u8,
                    0,
                );
                m.put_str(1, &t.name);
                m.put_be32(2, 0);
            }
            Self::CreateTable { table, userdata } => {
                let f = flags | NLM_F_CREATE | NLM_F_EXCL;
                m.begin(ty(NFT_MSG_NEWTABLE), f, seq, table.family as u8, 0);
                m.put_str(1, &table.name);
                m.put_be32(2, 0);
                m.put(6, userdata);
            }
            Self::DelTable(t) => {
                m.begin(ty(NFT_MSG_DELTABLE), flags, seq, t.family as u8, 0);
                m.put_str(1, &t.name);
            }
            Self::AddChain { table, name, hook } => {
                m.begin(
                    ty(NFT_MSG_NEWCHAIN),
                    flags | NLM_F_CREATE,
                    seq,
                    table.family as u8,
                    0,
                );
                m.put_str(1, &table.name);
                m.put_str(3, name);
                if let Some(h) = hook {
                    m.nest(4);
                    m.put_be32(1, h.num);
                    m.put(2, &h.priority.to_be_bytes());
                    m.nest_end();
                    m.put_be32(5, 1); // policy accept
                    m.put_str(7, h.kind);
                }
            }
            Self::AddSet {
                table,
                name,
                key_type,
                key_len,
                vmap,
            } => {
                m.begin(
                    ty(NFT_MSG_NEWSET),
                    flags | NLM_F_CREATE,
                    seq,
                    table.family as u8,
                    0,
                );
                m.put_str(1, &table.name);
                m.put_str(2, name);
                m.put_be32(3, if *vmap { NFT_SET_MAP } else { 0 });
                m.put_be32(4, *key_type);
                m.put_be32(5, *key_len);
                if *vmap {
                    m.put_be32(6, NFT_DATA_VERDICT);
                }
                m.put_be32(10, set_id);
            }
            Self::AddRule {
                table,
                chain,
                exprs,
                userdata,
            } => {
                m.begin(
                    ty(NFT_MSG_NEWRULE),
                    flags | NLM_F_CREATE | 0x800,
                    seq,
                    table.family as u8,
                    0,
                );
                m.put_str(1, &table.name);
                m.put_str(2, chain);
                if !exprs.is_empty() {
                    m.nest(4);
                    for e in exprs {
                        e.encode(m);
                    }
                    m.nest_end();
                }
                if let Some(u) = userdata {
                    m.put(7, &u[..u.len().min(USERDATA_MAX)]);
                }
            }
            Self::FlushChain { table, chain } => {
                m.begin(ty(NFT_MSG_DELRULE), flags, seq, table.family as u8, 0);
                m.put_str(1, &table.name);
                m.put_str(2, chain);
            }
            Self::DelChain { table, chain } => {
                m.begin(ty(NFT_MSG_DELCHAIN), flags, seq, table.family as u8, 0);
                m.put_str(1, &table.name);
                m.put_str(3, chain);
            }
            Self::AddElems { table, set, elems } => {
                let f = flags | NLM_F_CREATE | NLM_F_EXCL;
                m.begin(ty(NFT_MSG_NEWSETELEM), f, seq, table.family as u8, 0);
                m.put_str(1, &table.name);
                m.put_str(2, set);
                m.nest(3);
                for (key, verdict) in elems {
                    m.nest(1);
                    m.nest(1); // NFTA_SET_ELEM_KEY
                    m.put(1, key);
                    m.nest_end();
                    if let Some(v) = verdict {
                        m.nest(2); // NFTA_SET_ELEM_DATA
                        v.encode(m);
                        m.nest_end();
                    }
                    m.nest_end();
                }
                m.nest_end();
            }
            Self::DelElems { table, set, keys } => {
                m.begin(ty(NFT_MSG_DELSETELEM), flags, seq, table.family as u8, 0);
                m.put_str(1, &table.name);
                m.put_str(2, set);
                m.nest(3);
                for key in keys {
                    m.nest(1);
                    m.nest(1);
                    m.put(1, key);
                    m.nest_end();
                    m.nest_end();
                }
                m.nest_end();
            }
        }
        m.end();
    }
}

/// Encodes `ops` as one batch; returns the bytes and the sequence number of
/// each op.
fn encode_batch(ops: &[Op], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut m = MsgBuf::default();
    let mut seq = first_seq;
    m.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, SUBSYS_NFTABLES);
    m.end();
    let mut seqs = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        seq = seq.wrapping_add(1);
        seqs.push(seq);
        op.encode(&mut m, seq, u32::try_from(i).unwrap_or(0) + 1);
    }
    seq = seq.wrapping_add(1);
    m.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, SUBSYS_NFTABLES);
    m.end();
    (m.bytes().to_vec(), seqs)
}

/// A record of one kernel object owned by a pod, stored as the userdata of an
/// expression-less rule in the pod's owner chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// A set or map element.
    Elem {
        /// Table.
        table: Table,
        /// Set.
        set: String,
        /// Key bytes.
        key: Vec<u8>,
    },
    /// A chain (deleted after the elements).
    Chain {
        /// Table.
        table: Table,
        /// Chain.
        chain: String,
    },
    /// Who the owner chain belongs to (for GC): nothing to release.
    Attachment {
        /// Network name.
        network: String,
        /// Container id.
        container_id: String,
        /// Interface name (empty for per-container state).
        ifname: String,
    },
}

const OWNED_VERSION: u8 = 1;

impl Owned {
    /// Encodes as rule userdata.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![OWNED_VERSION];
        let put_str = |v: &mut Vec<u8>, s: &str| {
            v.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
            v.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
        };
        match self {
            Self::Elem { table, set, key } => {
                v.push(1);
                v.push(table.family as u8);
                put_str(&mut v, &table.name);
                put_str(&mut v, set);
                v.extend_from_slice(key);
            }
            Self::Chain { table, chain } => {
                v.push(2);
                v.push(table.family as u8);
                put_str(&mut v, &table.name);
                put_str(&mut v, chain);
            }
            Self::Attachment {
                network,
                container_id,
                ifname,
            } => {
                v.push(3);
                put_str(&mut v, network);
                put_str(&mut v, container_id);
                put_str(&mut v, ifname);
            }
        }
        v
    }

    /// Decodes rule userdata written by [`Owned::encode`]; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Self> {
        fn take_str<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
            let (&n, rest) = b.split_first()?;
            let s = rest.get(..usize::from(n))?;
            *b = &rest[usize::from(n)..];
            std::str::from_utf8(s).ok()
        }
        let (&ver, rest) = b.split_first()?;
        if ver != OWNED_VERSION {
            return None;
        }
        let (&kind, rest) = rest.split_first()?;
        if kind == 3 {
            let mut rest = rest;
            let network = take_str(&mut rest)?.to_string();
            let container_id = take_str(&mut rest)?.to_string();
            let ifname = take_str(&mut rest)?.to_string();
            return rest.is_empty().then_some(Self::Attachment {
                network,
                container_id,
                ifname,
            });
        }
        let (&fam, mut rest) = rest.split_first()?;
        let family = Family::from_u8(fam)?;
        let table = Table {
            family,
            name: take_str(&mut rest)?.to_string(),
        };
        let name = take_str(&mut rest)?.to_string();
        match kind {
            1 => Some(Self::Elem {
                table,
                set: name,
                key: rest.to_vec(),
            }),
            2 if rest.is_empty() => Some(Self::Chain { table, chain: name }),
            _ => None,
        }
    }
}

/// Ops appending the owner records to `owner_chain`.
pub fn owner_records(table: &Table, owner_chain: &str, owned: &[Owned]) -> Vec<Op> {
    owned
        .iter()
        .map(|o| Op::AddRule {
            table: table.clone(),
            chain: owner_chain.to_string(),
            exprs: Vec::new(),
            userdata: Some(o.encode()),
        })
        .collect()
}

/// Ops releasing everything recorded in an owner chain, then the chain itself.
pub fn release_ops(table: &Table, owner_chain: &str, owned: &[Owned]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut chains = Vec::new();
    for o in owned {
        match o {
            Owned::Elem { table, set, key } => {
                let merged = ops.iter_mut().find_map(|op| match op {
                    Op::DelElems {
                        table: t,
                        set: s,
                        keys,
                    } if t == table && s == set => Some(keys),
                    _ => None,
                });
                match merged {
                    Some(keys) => keys.push(key.clone()),
                    None => ops.push(Op::DelElems {
                        table: table.clone(),
                        set: set.clone(),
                        keys: vec![key.clone()],
                    }),
                }
            }
            Owned::Chain { table, chain } => chains.push((table.clone(), chain.clone())),
            Owned::Attachment { .. } => {}
        }
    }
    chains.push((table.clone(), owner_chain.to_string()));
    for (table, chain) in chains {
        ops.push(Op::FlushChain {
            table: table.clone(),
            chain: chain.clone(),
        });
        ops.push(Op::DelChain { table, chain });
    }
    ops
}

/// A short deterministic id for kernel object names, from the parts that
/// identify an attachment (network name, container id, ifname): FNV-1a 64,
/// as 16 hex digits.
pub fn owner_id(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests;
