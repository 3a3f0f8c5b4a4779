//! WireGuard messages by type and length, before any crypto: which
//! message a datagram is and which of our session indices it names (the
//! receiver picks the peer from it). The crypto is the router's (boringtun's
//! `noise`); this is the only byte decision weft makes on the framing.

/// A WireGuard message by its type and length, before any crypto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Type 1, 148 bytes: the peer is found by decrypting its static key.
    HandshakeInit,
    /// Type 2, 92 bytes, to our session index `receiver`.
    HandshakeResponse {
        /// Our index.
        receiver: u32,
    },
    /// Type 3, 64 bytes.
    CookieReply {
        /// Our index.
        receiver: u32,
    },
    /// Type 4, at least 32 bytes.
    Data {
        /// Our index.
        receiver: u32,
    },
}

impl Message {
    /// Classifies a datagram; None when it is no WireGuard message.
    pub fn classify(d: &[u8]) -> Option<Self> {
        let word = |at: usize| -> Option<u32> {
            let b = d.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        // The type is one byte followed by three reserved zero bytes.
        Some(match (word(0)?, d.len()) {
            (1, 148) => Self::HandshakeInit,
            (2, 92) => Self::HandshakeResponse { receiver: word(8)? },
            (3, 64) => Self::CookieReply { receiver: word(4)? },
            (4, n) if n >= 32 => Self::Data { receiver: word(4)? },
            _ => return None,
        })
    }

    /// The peer a message to our session index belongs to: our indices are
    /// `peer << 8 | session`.
    pub fn peer(&self) -> Option<usize> {
        match self {
            Self::HandshakeInit => None,
            Self::HandshakeResponse { receiver }
            | Self::CookieReply { receiver }
            | Self::Data { receiver } => Some((receiver >> 8) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_type_and_length() {
        let mut init = vec![0u8; 148];
        init[0] = 1;
        assert_eq!(Message::classify(&init), Some(Message::HandshakeInit));
        init[1] = 1; // reserved bytes must be zero
        assert_eq!(Message::classify(&init), None);
        let mut resp = vec![0u8; 92];
        resp[0] = 2;
        resp[8..12].copy_from_slice(&0x0000_0305u32.to_le_bytes());
        let m = Message::classify(&resp).unwrap();
        assert_eq!(m.peer(), Some(3));
        let mut data = vec![0u8; 32];
        data[0] = 4;
        data[4..8].copy_from_slice(&0x0100_0001u32.to_le_bytes());
        assert_eq!(Message::classify(&data).unwrap().peer(), Some(0x1_0000));
        assert_eq!(Message::classify(&data[..31]), None);
        assert_eq!(Message::classify(&[]), None);
        assert_eq!(Message::classify(&[1, 0, 0]), None);
    }
}
