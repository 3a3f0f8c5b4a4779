//! The DHCPv4 message codec (RFC 2131 fixed header, RFC 2132 options):
//! [`Message::parse`] validates a datagram once and never panics on any
//! input; [`Message::emit`] writes a request. Options are kept as raw
//! `(code, value)` pairs in order (split options of one code are joined,
//! RFC 3396); typed readers decode the few the client needs.
//!
//! Only what a client sends and reads is covered: the `sname`/`file`
//! fields are skipped (option overload is not followed).

use std::net::Ipv4Addr;

/// BOOTREQUEST.
pub const OP_REQUEST: u8 = 1;
/// BOOTREPLY.
pub const OP_REPLY: u8 = 2;
/// The broadcast bit of `flags`.
pub const FLAG_BROADCAST: u16 = 0x8000;
/// Length of the fixed header before the magic cookie.
pub const HEADER_LEN: usize = 236;
/// The options magic cookie.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Minimum emitted size (BOOTP's 300 bytes; some relays insist).
pub const MIN_LEN: usize = 300;

/// Options as `(code, value)` pairs in order.
pub type RawOptions = Vec<(u8, Vec<u8>)>;

/// Option codes the client uses.
pub mod opt {
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// DNS servers.
    pub const DNS: u8 = 6;
    /// Host name.
    pub const HOST_NAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Static routes (classful).
    pub const STATIC_ROUTES: u8 = 33;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// Lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAM_REQUEST: u8 = 55;
    /// Error message.
    pub const MESSAGE: u8 = 56;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// Padding.
    pub const PAD: u8 = 0;
    /// End of options.
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// DHCPDISCOVER.
    Discover = 1,
    /// DHCPOFFER.
    Offer = 2,
    /// DHCPREQUEST.
    Request = 3,
    /// DHCPDECLINE.
    Decline = 4,
    /// DHCPACK.
    Ack = 5,
    /// DHCPNAK.
    Nak = 6,
    /// DHCPRELEASE.
    Release = 7,
    /// DHCPINFORM.
    Inform = 8,
}

impl MessageType {
    /// The type for an option-53 value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Why a datagram was not a DHCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than header + cookie.
    #[error("message too short ({0} bytes)")]
    Short(usize),
    /// The magic cookie is wrong.
    #[error("bad magic cookie")]
    BadMagic,
    /// `hlen` is over 16.
    #[error("hardware address length {0} over 16")]
    BadHlen(u8),
    /// An option's length runs past the end.
    #[error("option {0} truncated")]
    Truncated(u8),
}

/// A parsed or to-be-sent DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// BOOTREQUEST or BOOTREPLY.
    pub op: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags (broadcast bit).
    pub flags: u16,
    /// Client address (renewing/rebinding).
    pub ciaddr: Ipv4Addr,
    /// "Your" address (offered/acked).
    pub yiaddr: Ipv4Addr,
    /// Next server.
    pub siaddr: Ipv4Addr,
    /// Relay agent.
    pub giaddr: Ipv4Addr,
    /// Client hardware address (first `hlen` bytes meaningful).
    pub chaddr: [u8; 16],
    /// Hardware address length.
    pub hlen: u8,
    /// Options in order, split options joined.
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl Message {
    /// A BOOTREQUEST from an Ethernet `mac` with transaction `xid`.
    pub fn request(xid: u32, mac: [u8; 6]) -> Self {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        Self {
            op: OP_REQUEST,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            hlen: 6,
            options: Vec::new(),
        }
    }

    /// Validates and parses one datagram.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN + MAGIC.len() {
            return Err(WireError::Short(b.len()));
        }
        if b[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let hlen = b[2];
        if hlen > 16 {
            return Err(WireError::BadHlen(hlen));
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[28..44]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut i = HEADER_LEN + 4;
        while i < b.len() {
            let code = b[i];
            i += 1;
            match code {
                opt::PAD => continue,
                opt::END => break,
                _ => {}
            }
            let Some(&len) = b.get(i) else {
                return Err(WireError::Truncated(code));
            };
            let end = i + 1 + usize::from(len);
            let Some(value) = b.get(i + 1..end) else {
                return Err(WireError::Truncated(code));
            };
            match options.iter_mut().find(|(c, _)| *c == code) {
                Some((_, v)) => v.extend_from_slice(value),
                None => options.push((code, value.to_vec())),
            }
            i = end;
        }
        Ok(Self {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip_at(b, 12),
            yiaddr: ip_at(b, 16),
            siaddr: ip_at(b, 20),
            giaddr: ip_at(b, 24),
            chaddr,
            hlen,
            options,
        })
    }

    /// Serializes the message (values over 255 bytes are split, RFC 3396),
    /// padded to [`MIN_LEN`].
    pub fn emit(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_LEN + 64);
        b.extend_from_slice(&[self.op, 1, self.hlen.min(16), 0]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.resize(HEADER_LEN, 0);
        b.extend_from_slice(&MAGIC);
        for (code, value) in &self.options {
            if value.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
            for chunk in value.chunks(255) {
                b.push(*code);
                // chunks(255) bounds the length.
                b.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                b.extend_from_slice(chunk);
            }
        }
        b.push(opt::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, 0);
        }
        b
    }

    /// The raw value of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets option `code` (replacing an earlier value).
    pub fn set_option(&mut self, code: u8, value: Vec<u8>) {
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => *v = value,
            None => self.options.push((code, value)),
        }
    }

    /// The message type (option 53).
    pub fn message_type(&self) -> Option<MessageType> {
        match self.option(opt::MESSAGE_TYPE)? {
            [t] => MessageType::from_u8(*t),
            _ => None,
        }
    }

    /// The first address of an address-list option.
    pub fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        ip_list(self.option(code)?).into_iter().next()
    }

    /// A 32-bit seconds option (lease time, T1, T2).
    pub fn secs_option(&self, code: u8) -> Option<u32> {
        let v: [u8; 4] = self.option(code)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }
}

/// The addresses of a list-of-addresses option (a trailing partial address is ignored).
pub fn ip_list(v: &[u8]) -> Vec<Ipv4Addr> {
    v.chunks_exact(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        let mut m = Message::request(0x1234_5678, [2, 0, 0, 0, 0, 1]);
        m.flags = FLAG_BROADCAST;
        m.set_option(opt::MESSAGE_TYPE, vec![MessageType::Discover as u8]);
        m.set_option(opt::CLIENT_ID, b"\0c1/net/eth0".to_vec());
        m.set_option(opt::PARAM_REQUEST, vec![1, 3]);
        m
    }

    #[test]
    fn round_trip_and_layout() {
        let m = sample();
        let b = m.emit();
        assert_eq!(b.len(), MIN_LEN);
        assert_eq!(&b[236..240], &MAGIC);
        assert_eq!(b[240..243], [53, 1, 1]);
        assert_eq!(Message::parse(&b).unwrap(), m);
        assert_eq!(m.message_type(), Some(MessageType::Discover));
    }

    #[test]
    fn long_options_split_and_join() {
        let mut m = sample();
        m.set_option(opt::HOST_NAME, vec![b'x'; 600]);
        let back = Message::parse(&m.emit()).unwrap();
        assert_eq!(back.option(opt::HOST_NAME).unwrap().len(), 600);
    }

    #[test]
    fn malformed_is_an_error() {
        let b = sample().emit();
        assert_eq!(Message::parse(&b[..200]), Err(WireError::Short(200)));
        let mut bad = b.clone();
        bad[236] = 0;
        assert_eq!(Message::parse(&bad), Err(WireError::BadMagic));
        let mut bad = b[..243].to_vec();
        bad.extend_from_slice(&[54, 4, 10]);
        assert_eq!(Message::parse(&bad), Err(WireError::Truncated(54)));
        let mut bad = b.clone();
        bad[2] = 17;
        assert_eq!(Message::parse(&bad), Err(WireError::BadHlen(17)));
    }

    #[test]
    fn typed_readers() {
        let mut m = sample();
        m.set_option(opt::LEASE_TIME, 120u32.to_be_bytes().to_vec());
        m.set_option(opt::ROUTER, vec![10, 0, 0, 1, 10, 0, 0, 2, 9]);
        m.set_option(opt::MESSAGE_TYPE, vec![5, 5]);
        assert_eq!(m.secs_option(opt::LEASE_TIME), Some(120));
        assert_eq!(m.ip_option(opt::ROUTER), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(m.message_type(), None);
        assert_eq!(m.secs_option(opt::ROUTER), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Message::parse(&data);
        }

        #[test]
        fn parse_never_panics_after_cookie(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = sample().emit()[..240].to_vec();
            b.extend_from_slice(&tail);
            let _ = Message::parse(&b);
        }

        #[test]
        fn round_trips(xid in any::<u32>(), opts in proptest::collection::vec((1u8..=254, proptest::collection::vec(any::<u8>(), 1..300)), 0..6)) {
            let mut m = Message::request(xid, [2, 1, 2, 3, 4, 5]);
            for (c, v) in opts {
                m.set_option(c, v);
            }
            prop_assert_eq!(Message::parse(&m.emit()).unwrap(), m);
        }
    }
}
