//! The nfnetlink socket: atomic batches, dumps of owner records, table
//! lookups and the conntrack flush.

use super::nla::{self, MsgBuf, NLM_F_DUMP, NLM_F_REQUEST};
use super::{
    NFT_MSG_GETRULE, NFT_MSG_GETSETELEM, NFT_MSG_GETTABLE, NftError, Op, Owned, SUBSYS_NFTABLES,
    Table, conntrack, encode_batch,
};

/// A netfilter netlink socket in the network namespace it was opened in.
#[derive(Debug)]
pub struct NfSocket {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
    deleted: bool,
}

impl Drop for NfSocket {
    fn drop(&mut self) {
        // Closing the socket makes nf_tables flush its pending destroy work
        // (an RCU grace period) if the worker has not picked it up yet.
        // Yielding first lets the worker take the list, so the close does
        // not wait; the grace period then ends in the background.
        if self.deleted {
            for _ in 0..4 {
                std::thread::yield_now();
            }
        }
    }
}

impl NfSocket {
    /// Opens a socket (in the calling thread's network namespace).
    pub fn open() -> Result<Self, NftError> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Self {
            sock,
            seq,
            buf: Vec::with_capacity(256 * 1024),
            deleted: false,
        })
    }

    fn next_seq(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(u32::try_from(n).unwrap_or(0) + 2);
        s
    }

    fn recv(&mut self, flags: libc::c_int) -> std::io::Result<usize> {
        self.buf.clear();
        self.sock.recv(&mut self.buf, flags)
    }

    /// Applies `ops` as one atomic transaction.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let first = self.next_seq(ops.len());
        let (bytes, seqs) = encode_batch(ops, first);
        self.deleted |= ops.iter().any(|o| {
            matches!(
                o,
                Op::FlushChain { .. } | Op::DelChain { .. } | Op::DelElems { .. } | Op::DelTable(_)
            )
        });
        self.sock.send(&bytes, 0)?;
        // nfnetlink processes the batch synchronously inside send(): every
        // answer is queued by now, so drain without blocking.
        let mut acked = 0usize;
        let mut first_err: Option<NftError> = None;
        while acked < seqs.len() {
            match self.recv(libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
            for msg in nla::messages(&self.buf) {
                if msg.ty != nla::NLMSG_ERROR {
                    continue;
                }
                let Some((errno, seq)) = nla::error_code(msg.payload) else {
                    continue;
                };
                acked += 1;
                if errno != 0 && first_err.is_none() {
                    let op = seqs
                        .iter()
                        .position(|s| *s == seq)
                        .and_then(|i| ops.get(i))
                        .map_or_else(|| "batch".to_string(), Op::describe);
                    first_err = Some(NftError::Kernel { op, errno });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends a dump request and collects the payload of every answer.
    fn dump(&mut self, build: impl FnOnce(&mut MsgBuf, u32)) -> Result<Vec<Vec<u8>>, NftError> {
        let seq = self.next_seq(1);
        let mut m = MsgBuf::default();
        build(&mut m, seq);
        self.sock.send(m.bytes(), 0)?;
        let mut out = Vec::new();
        loop {
            self.recv(0)?;
            let mut done = false;
            for msg in nla::messages(&self.buf) {
                if msg.seq != seq {
                    continue;
                }
                match msg.ty {
                    nla::NLMSG_DONE => done = true,
                    nla::NLMSG_ERROR => {
                        let errno = nla::error_code(msg.payload).map_or(0, |(e, _)| e);
                        if errno == libc::ENOENT {
                            return Ok(Vec::new());
                        }
                        if errno != 0 {
                            return Err(NftError::Kernel {
                                op: "dump".into(),
                                errno,
                            });
                        }
                        done = true;
                    }
                    _ => out.push(msg.payload.to_vec()),
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// The userdata of `table`: `None` when the table does not exist,
    /// `Some(empty)` when it has none.
    pub fn table_userdata(&mut self, table: &Table) -> Result<Option<Vec<u8>>, NftError> {
        let seq = self.next_seq(1);
        let mut m = MsgBuf::default();
        m.begin(
            (SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
            NLM_F_REQUEST,
            seq,
            table.family as u8,
            0,
        );
        m.put_str(1, &table.name);
        m.end();
        self.sock.send(m.bytes(), 0)?;
        loop {
            self.recv(0)?;
            for msg in nla::messages(&self.buf) {
                if msg.seq != seq {
                    continue;
                }
                if msg.ty == nla::NLMSG_ERROR {
                    return match nla::error_code(msg.payload).map_or(0, |(e, _)| e) {
                        libc::ENOENT => Ok(None),
                        0 => Ok(Some(Vec::new())),
                        errno => Err(NftError::Kernel {
                            op: format!("get table {}", table.name),
                            errno,
                        }),
                    };
                }
                let attrs = msg.payload.get(4..).unwrap_or_default();
                return Ok(Some(
                    nla::find(attrs, 6).map(<[u8]>::to_vec).unwrap_or_default(),
                ));
            }
        }
    }

    /// The owner records of `chain` (empty when the chain does not exist).
    pub fn owned(&mut self, table: &Table, chain: &str) -> Result<Vec<Owned>, NftError> {
        let msgs = self.dump(|m, seq| {
            m.begin(
                (SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                table.family as u8,
                0,
            );
            m.put_str(1, &table.name);
            m.put_str(2, chain);
            m.end();
        })?;
        let mut out = Vec::new();
        let mut any = false;
        for p in &msgs {
            let attrs = p.get(4..).unwrap_or_default();
            if nla::find(attrs, 2).map(nla::as_str).as_deref() != Some(chain) {
                continue;
            }
            any = true;
            if let Some(o) = nla::find(attrs, 7).and_then(Owned::decode) {
                out.push(o);
            }
        }
        if any && out.is_empty() {
            // A chain of ours with rules but no records: still release the chain.
            return Ok(Vec::new());
        }
        Ok(out)
    }

    /// Every rule of `table` whose chain name starts with `prefix`, grouped
    /// by chain in dump order: (chain, decoded owner records, number of
    /// rules that are not owner records).
    pub fn chains(
        &mut self,
        table: &Table,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<Owned>, usize)>, NftError> {
        let msgs = self.dump(|m, seq| {
            m.begin(
                (SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                table.family as u8,
                0,
            );
            m.put_str(1, &table.name);
            m.end();
        })?;
        let mut out: Vec<(String, Vec<Owned>, usize)> = Vec::new();
        for p in &msgs {
            let attrs = p.get(4..).unwrap_or_default();
            let Some(chain) = nla::find(attrs, 2).map(nla::as_str) else {
                continue;
            };
            if !chain.starts_with(prefix) {
                continue;
            }
            let rec = nla::find(attrs, 7).and_then(Owned::decode);
            let i = match out.iter().position(|(c, _, _)| *c == chain) {
                Some(i) => i,
                None => {
                    out.push((chain, Vec::new(), 0));
                    out.len() - 1
                }
            };
            match rec {
                Some(o) => out[i].1.push(o),
                None => out[i].2 += 1,
            }
        }
        Ok(out)
    }

    /// The element of `set` with `key` as the kernel reports it (its raw
    /// attributes, which hold the verdict's chain name), or `None` when
    /// there is no such element (or set).
    pub fn elem(
        &mut self,
        table: &Table,
        set: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, NftError> {
        let seq = self.next_seq(1);
        let mut m = MsgBuf::default();
        m.begin(
            (SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
            NLM_F_REQUEST,
            seq,
            table.family as u8,
            0,
        );
        m.put_str(1, &table.name);
        m.put_str(2, set);
        m.nest(3);
        m.nest(1);
        m.nest(1);
        m.put(1, key);
        m.nest_end();
        m.nest_end();
        m.nest_end();
        m.end();
        self.sock.send(m.bytes(), 0)?;
        loop {
            self.recv(0)?;
            for msg in nla::messages(&self.buf) {
                if msg.seq != seq {
                    continue;
                }
                if msg.ty == nla::NLMSG_ERROR {
                    return match nla::error_code(msg.payload).map_or(0, |(e, _)| e) {
                        libc::ENOENT => Ok(None),
                        0 => Ok(Some(Vec::new())),
                        errno => Err(NftError::Kernel {
                            op: format!("get element of {set}"),
                            errno,
                        }),
                    };
                }
                return Ok(Some(msg.payload.to_vec()));
            }
        }
    }

    /// The number of rules of `chain` that are not owner records (0 when
    /// the chain does not exist): a dump of that chain only.
    pub fn plain_rules(&mut self, table: &Table, chain: &str) -> Result<usize, NftError> {
        let msgs = self.dump(|m, seq| {
            m.begin(
                (SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                table.family as u8,
                0,
            );
            m.put_str(1, &table.name);
            m.put_str(2, chain);
            m.end();
        })?;
        Ok(msgs
            .iter()
            .map(|p| p.get(4..).unwrap_or_default())
            .filter(|a| nla::find(a, 2).map(nla::as_str).as_deref() == Some(chain))
            .filter(|a| nla::find(a, 7).and_then(Owned::decode).is_none())
            .count())
    }

    /// Whether `chain` has any rule (owner chains always have one).
    pub fn chain_has_rules(&mut self, table: &Table, chain: &str) -> Result<bool, NftError> {
        let msgs = self.dump(|m, seq| {
            m.begin(
                (SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                table.family as u8,
                0,
            );
            m.put_str(1, &table.name);
            m.put_str(2, chain);
            m.end();
        })?;
        Ok(msgs.iter().any(|p| {
            nla::find(p.get(4..).unwrap_or_default(), 2)
                .map(nla::as_str)
                .as_deref()
                == Some(chain)
        }))
    }

    /// Deletes conntrack entries of protocol `proto` whose original
    /// destination port is one of `ports` (both IP families). Returns how many.
    pub fn flush_conntrack_dports(&mut self, proto: u8, ports: &[u16]) -> Result<usize, NftError> {
        if ports.is_empty() {
            return Ok(0);
        }
        // A dump walks the whole (global) conntrack hash; skip it when this
        // namespace tracks nothing at all.
        let count = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count");
        if count.is_ok_and(|c| c.trim() == "0") {
            return Ok(0);
        }
        let mut n = 0;
        // AF_UNSPEC: one walk for both families.
        for family in [libc::AF_UNSPEC as u8] {
            let entries = self.dump(|m, seq| conntrack::dump_request(m, seq, family))?;
            let tuples: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
                .iter()
                .filter_map(|p| conntrack::matching_tuple(p, proto, ports))
                .collect();
            for (tuple, zone) in tuples {
                let seq = self.next_seq(1);
                let mut m = MsgBuf::default();
                let fam = conntrack::tuple_family(&tuple).unwrap_or(family);
                conntrack::delete_request(&mut m, seq, fam, &tuple, zone.as_deref());
                self.sock.send(m.bytes(), 0)?;
                self.recv(0)?;
                let errno = nla::messages(&self.buf)
                    .iter()
                    .find(|x| x.ty == nla::NLMSG_ERROR)
                    .and_then(|x| nla::error_code(x.payload))
                    .map_or(0, |(e, _)| e);
                match errno {
                    0 => n += 1,
                    libc::ENOENT => {}
                    e => {
                        return Err(NftError::Kernel {
                            op: "conntrack delete".into(),
                            errno: e,
                        });
                    }
                }
            }
        }
        Ok(n)
    }
}
