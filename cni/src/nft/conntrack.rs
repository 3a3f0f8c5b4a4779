//! ctnetlink requests: dump entries by protocol and original destination
//! port, delete one entry by its original tuple.

use super::nla::{self, MsgBuf, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// `NFNL_SUBSYS_CTNETLINK`.
const SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_ZONE: u16 = 18;

/// A dump of the namespace's entries. The kernel refuses a tuple filter with
/// `AF_UNSPEC`, and two filtered per-family dumps would walk the (global)
/// hash twice, so this is one unfiltered walk; [`matching_tuple`] filters.
pub(super) fn dump_request(m: &mut MsgBuf, seq: u32, family: u8) {
    m.begin(
        (SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        0,
    );
    m.end();
}

/// The original tuple (and zone) of a dumped entry if it matches.
pub(super) fn matching_tuple(
    payload: &[u8],
    proto: u8,
    ports: &[u16],
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let attrs = payload.get(4..)?;
    let orig = nla::find(attrs, CTA_TUPLE_ORIG)?;
    let p = nla::find(orig, CTA_TUPLE_PROTO)?;
    let num = *nla::find(p, CTA_PROTO_NUM)?.first()?;
    let dport = nla::as_be16(nla::find(p, CTA_PROTO_DST_PORT)?)?;
    if num != proto || !ports.contains(&dport) {
        return None;
    }
    Some((
        orig.to_vec(),
        nla::find(attrs, CTA_ZONE).map(<[u8]>::to_vec),
    ))
}

/// Deletes one entry.
pub(super) fn delete_request(
    m: &mut MsgBuf,
    seq: u32,
    family: u8,
    orig: &[u8],
    zone: Option<&[u8]>,
) {
    m.begin(
        (SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family,
        0,
    );
    m.put(CTA_TUPLE_ORIG | nla::NLA_F_NESTED, orig);
    if let Some(z) = zone {
        m.put(CTA_ZONE, z);
    }
    m.end();
}

/// The address family of an original tuple (from its IP attributes).
pub(super) fn tuple_family(orig: &[u8]) -> Option<u8> {
    let ip = nla::find(orig, 1)?; // CTA_TUPLE_IP
    let (ty, _) = nla::attrs(ip).next()?;
    // CTA_IP_V4_SRC/DST = 1/2, CTA_IP_V6_SRC/DST = 3/4
    Some(if ty <= 2 {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    })
}
