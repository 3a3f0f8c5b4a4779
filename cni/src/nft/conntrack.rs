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
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
const FILTER_PROTO_NUM: u32 = 1 << 3;
const FILTER_PROTO_DST_PORT: u32 = 1 << 5;

/// A filtered dump of one family's entries (the kernel filters since 5.8;
/// [`matching_tuple`] re-checks either way).
pub(super) fn dump_request(m: &mut MsgBuf, seq: u32, family: u8, proto: u8, port: u16) {
    m.begin(
        (SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        0,
    );
    m.nest(CTA_TUPLE_ORIG);
    m.nest(CTA_TUPLE_PROTO);
    m.put_u8(CTA_PROTO_NUM, proto);
    m.put_be16(CTA_PROTO_DST_PORT, port);
    m.nest_end();
    m.nest_end();
    m.nest(CTA_FILTER);
    m.put(
        CTA_FILTER_ORIG_FLAGS,
        &(FILTER_PROTO_NUM | FILTER_PROTO_DST_PORT).to_ne_bytes(),
    );
    m.put(CTA_FILTER_REPLY_FLAGS, &0u32.to_ne_bytes());
    m.nest_end();
    m.end();
}

/// The original tuple (and zone) of a dumped entry if it matches.
pub(super) fn matching_tuple(
    payload: &[u8],
    proto: u8,
    port: u16,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let attrs = payload.get(4..)?;
    let orig = nla::find(attrs, CTA_TUPLE_ORIG)?;
    let p = nla::find(orig, CTA_TUPLE_PROTO)?;
    let num = *nla::find(p, CTA_PROTO_NUM)?.first()?;
    let dport = nla::as_be16(nla::find(p, CTA_PROTO_DST_PORT)?)?;
    if num != proto || dport != port {
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
