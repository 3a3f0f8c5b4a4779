//! Fuzz body: `wireguard::Message::classify` on arbitrary datagrams: never
//! a panic, and a classified message obeys WireGuard's type and length
//! rules (type byte 1-4, three zero reserved bytes, exact lengths for the
//! handshake and cookie messages, at least 32 bytes of data), and its
//! session index is the little-endian word the format puts there. Shared by
//! the `wireguard_classify` fuzz target and `encap/tests/fuzz_bodies.rs`.

use weft_encap::wireguard::Message;

pub(crate) fn run(data: &[u8]) {
    let Some(m) = Message::classify(data) else {
        return;
    };
    assert_eq!(&data[1..4], &[0, 0, 0], "reserved bytes");
    let word = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    match m {
        Message::HandshakeInit => {
            assert_eq!((data[0], data.len()), (1, 148));
            assert_eq!(m.peer(), None);
        }
        Message::HandshakeResponse { receiver } => {
            assert_eq!((data[0], data.len()), (2, 92));
            assert_eq!(receiver, word(8));
        }
        Message::CookieReply { receiver } => {
            assert_eq!((data[0], data.len()), (3, 64));
            assert_eq!(receiver, word(4));
        }
        Message::Data { receiver } => {
            assert!(data[0] == 4 && data.len() >= 32);
            assert_eq!(receiver, word(4));
            assert_eq!(m.peer(), Some((receiver >> 8) as usize));
        }
    }
}
