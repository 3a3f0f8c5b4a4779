//! Message framing and dispatch. Every length is checked before it is used;
//! no index can go out of bounds, whatever the peer sends.

use std::net::Ipv4Addr;

use super::{
    DecodeError, HEADER_LEN, MAX_MESSAGE_LEN, Message, Notification, RouteRefresh, SessionCaps,
};

/// A bounds-checked forward reader over a byte slice.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let r = self.buf;
        self.buf = &[];
        r
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn ipv4(&mut self) -> Option<Ipv4Addr> {
        self.u32().map(Ipv4Addr::from)
    }
}

/// Checks the header at the start of `buf` and returns the whole message's
/// length once it is all there: `Ok(None)` means read more. Lets a reader
/// cut frames from a stream without decoding them.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(DecodeError::BadMarker);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let n = usize::from(len);
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&n) {
        return Err(DecodeError::BadLength(len));
    }
    Ok((buf.len() >= n).then_some(n))
}

/// Decodes exactly one message occupying all of `buf`.
pub fn decode(buf: &[u8], caps: &SessionCaps) -> Result<Message, DecodeError> {
    let n = frame_len(buf)?.ok_or(DecodeError::Incomplete)?;
    if n != buf.len() {
        return Err(DecodeError::BadLength(
            u16::try_from(buf.len()).unwrap_or(u16::MAX),
        ));
    }
    let len = u16::try_from(n).unwrap_or(u16::MAX);
    let kind = buf[18];
    let body = &buf[HEADER_LEN..];
    match kind {
        1 => {
            if n < 29 {
                return Err(DecodeError::BadLength(len));
            }
            super::open::decode_open(body).map(Message::Open)
        }
        2 => {
            if n < 23 {
                return Err(DecodeError::BadLength(len));
            }
            super::attrs::decode_update(body, caps).map(Message::Update)
        }
        3 => {
            if n < 21 {
                return Err(DecodeError::BadLength(len));
            }
            Ok(Message::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: body[2..].to_vec(),
            }))
        }
        4 => {
            if n != HEADER_LEN {
                return Err(DecodeError::BadLength(len));
            }
            Ok(Message::Keepalive)
        }
        5 => {
            if n != 23 {
                return Err(DecodeError::BadRouteRefreshLength(len));
            }
            Ok(Message::RouteRefresh(RouteRefresh {
                afi: u16::from_be_bytes([body[0], body[1]]),
                subtype: body[2],
                safi: body[3],
            }))
        }
        t => Err(DecodeError::BadType(t)),
    }
}
