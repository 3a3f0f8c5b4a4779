//! Netlink message and attribute (TLV) encoding and decoding for nfnetlink.
//!
//! nf_tables and ctnetlink carry every integer attribute in network byte
//! order; the netlink header itself is host order.

/// Netlink attribute header length.
const NLA_HDR: usize = 4;
/// Flag on a nested attribute's type.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
/// Mask removing the flag bits from an attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NLM_F_REQUEST`.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub(crate) const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (root | match).
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CREATE`.
pub(crate) const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_EXCL`.
pub(crate) const NLM_F_EXCL: u16 = 0x200;
/// `NLMSG_ERROR`.
pub(crate) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub(crate) const NLMSG_DONE: u16 = 3;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing buffer of netlink messages.
#[derive(Debug, Default)]
pub(crate) struct MsgBuf {
    buf: Vec<u8>,
    msg_start: usize,
    nests: Vec<usize>,
}

impl MsgBuf {
    /// Starts a netlink message with an nfgenmsg header.
    pub(crate) fn begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.msg_start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // len, patched in end()
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Finishes the message started by [`MsgBuf::begin`].
    pub(crate) fn end(&mut self) {
        let len = self.buf.len() - self.msg_start;
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        self.buf[self.msg_start..self.msg_start + 4].copy_from_slice(&len32.to_ne_bytes());
    }

    /// Appends one attribute.
    pub(crate) fn put(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(NLA_HDR + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        let pad = align4(self.buf.len()) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    /// Appends a NUL-terminated string attribute.
    pub(crate) fn put_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v);
    }

    /// Appends a big-endian u32 attribute.
    pub(crate) fn put_be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute; close it with [`MsgBuf::nest_end`].
    pub(crate) fn nest(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    /// Closes the innermost open nested attribute.
    pub(crate) fn nest_end(&mut self) {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// The encoded bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// One decoded netlink message: type, flags, seq and the payload after the
/// netlink header.
#[derive(Debug)]
pub(crate) struct RawMsg<'a> {
    pub(crate) ty: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

/// Splits a datagram into netlink messages; stops at the first malformed one.
pub(crate) fn messages(mut buf: &[u8]) -> Vec<RawMsg<'_>> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push(RawMsg {
            ty,
            seq,
            payload: &buf[16..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// Iterates the attributes in `buf`, yielding (type without flags, payload).
pub(crate) fn attrs(buf: &[u8]) -> AttrIter<'_> {
    AttrIter { buf }
}

/// Iterator over netlink attributes.
#[derive(Debug)]
pub(crate) struct AttrIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NLA_HDR {
            return None;
        }
        let len = u16::from_ne_bytes([self.buf[0], self.buf[1]]) as usize;
        let ty = u16::from_ne_bytes([self.buf[2], self.buf[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDR || len > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let payload = &self.buf[NLA_HDR..len];
        self.buf = &self.buf[align4(len).min(self.buf.len())..];
        Some((ty, payload))
    }
}

/// Finds the first attribute of type `ty`.
pub(crate) fn find(buf: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(buf).find(|(t, _)| *t == ty).map(|(_, p)| p)
}

/// Decodes a NUL-terminated string attribute.
pub(crate) fn as_str(p: &[u8]) -> String {
    let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// Decodes a big-endian u16 attribute.
pub(crate) fn as_be16(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(..2)?.try_into().ok()?))
}

/// The errno of an `NLMSG_ERROR` payload (0 is an ACK).
pub(crate) fn error_code(payload: &[u8]) -> Option<(i32, u32)> {
    let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    // The original header follows: len(4) type(2) flags(2) seq(4).
    let seq = u32::from_ne_bytes(payload.get(12..16)?.try_into().ok()?);
    Some((-code, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut m = MsgBuf::default();
        m.begin(0x0a06, NLM_F_REQUEST, 7, 1, 0);
        m.put_str(1, "weft");
        m.nest(4);
        m.put_be32(2, 0xdead_beef);
        m.nest_end();
        m.end();
        let msgs = messages(m.bytes());
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].ty, 0x0a06);
        assert_eq!(msgs[0].seq, 7);
        let body = &msgs[0].payload[4..];
        assert_eq!(as_str(find(body, 1).unwrap()), "weft");
        let nested = find(body, 4).unwrap();
        assert_eq!(find(nested, 2).unwrap(), &0xdead_beefu32.to_be_bytes());
    }

    #[test]
    fn truncated_input_does_not_panic() {
        let mut m = MsgBuf::default();
        m.begin(1, 0, 1, 0, 0);
        m.put_str(1, "abcdef");
        m.end();
        let b = m.bytes();
        for cut in 0..b.len() {
            let _ = messages(&b[..cut]);
            let _ = attrs(&b[cut..]).count();
        }
    }
}
