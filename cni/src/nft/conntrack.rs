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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(family: u8, proto: u8, dport: u16, v6: bool) -> Vec<u8> {
        let mut m = MsgBuf::default();
        m.begin(0x0100, 0, 1, family, 0);
        m.nest(CTA_TUPLE_ORIG);
        m.nest(1); // CTA_TUPLE_IP
        if v6 {
            m.put(3, &[0xfd; 16]);
            m.put(4, &[0xfd; 16]);
        } else {
            m.put(1, &[10, 0, 0, 1]);
            m.put(2, &[10, 0, 0, 2]);
        }
        m.nest_end();
        m.nest(CTA_TUPLE_PROTO);
        m.put(CTA_PROTO_NUM, &[proto]);
        m.put(CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        m.nest_end();
        m.nest_end();
        m.put(CTA_ZONE, &7u16.to_be_bytes());
        m.end();
        nla::messages(m.bytes())[0].payload.to_vec()
    }

    #[test]
    fn matches_protocol_and_port_only() {
        let e = entry(2, 17, 5353, false);
        let (orig, zone) = matching_tuple(&e, 17, &[53, 5353]).unwrap();
        assert_eq!(zone, Some(7u16.to_be_bytes().to_vec()));
        assert_eq!(tuple_family(&orig), Some(libc::AF_INET as u8));
        assert!(matching_tuple(&e, 6, &[5353]).is_none());
        assert!(matching_tuple(&e, 17, &[53]).is_none());
        let e6 = entry(10, 17, 53, true);
        let (orig, _) = matching_tuple(&e6, 17, &[53]).unwrap();
        assert_eq!(tuple_family(&orig), Some(libc::AF_INET6 as u8));
        for cut in 0..e.len() {
            let _ = matching_tuple(&e[..cut], 17, &[5353]);
        }
    }
}
