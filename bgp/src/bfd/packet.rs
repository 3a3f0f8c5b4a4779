//! The BFD control packet (RFC 5880 §4.1) and its validating codec.
//!
//! Decoding applies the reception checks of §6.8.6 that need only the
//! packet: version 1, a length that fits, a non-zero detect multiplier, the
//! multipoint bit clear, a non-zero My Discriminator, and Your
//! Discriminator zero only in Down or AdminDown. Authentication is not
//! supported: a packet with the A bit is refused (the RFC says to discard
//! it when the session has no authentication).

use std::fmt;

/// The length of a control packet without authentication.
pub const CONTROL_LEN: usize = 24;

/// BFD session state (§4.1 "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum BfdState {
    /// Administratively down.
    AdminDown = 0,
    /// Down.
    Down = 1,
    /// Initializing: the peer is heard, it has not yet heard us.
    Init = 2,
    /// Up.
    Up = 3,
}

impl BfdState {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }
}

impl fmt::Display for BfdState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AdminDown => "AdminDown",
            Self::Down => "Down",
            Self::Init => "Init",
            Self::Up => "Up",
        })
    }
}

/// Diagnostic codes (§4.1 "Diag").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// No diagnostic.
    None,
    /// Control detection time expired.
    TimeExpired,
    /// Echo function failed.
    EchoFailed,
    /// The neighbor signaled session down.
    NeighborDown,
    /// Forwarding plane reset.
    ForwardingReset,
    /// Path down.
    PathDown,
    /// Concatenated path down.
    ConcatenatedPathDown,
    /// Administratively down.
    AdminDown,
    /// Reverse concatenated path down.
    ReverseConcatenatedPathDown,
    /// A value this codec does not name (9–31, reserved).
    Other(u8),
}

impl Diag {
    fn from_bits(b: u8) -> Self {
        match b & 0x1f {
            0 => Self::None,
            1 => Self::TimeExpired,
            2 => Self::EchoFailed,
            3 => Self::NeighborDown,
            4 => Self::ForwardingReset,
            5 => Self::PathDown,
            6 => Self::ConcatenatedPathDown,
            7 => Self::AdminDown,
            8 => Self::ReverseConcatenatedPathDown,
            n => Self::Other(n),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TimeExpired => 1,
            Self::EchoFailed => 2,
            Self::NeighborDown => 3,
            Self::ForwardingReset => 4,
            Self::PathDown => 5,
            Self::ConcatenatedPathDown => 6,
            Self::AdminDown => 7,
            Self::ReverseConcatenatedPathDown => 8,
            Self::Other(n) => n & 0x1f,
        }
    }
}

/// A BFD control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    /// The sender's diagnostic.
    pub diag: Diag,
    /// The sender's state.
    pub state: BfdState,
    /// Poll: the sender asks for a Final.
    pub poll: bool,
    /// Final: the answer to a Poll.
    pub fin: bool,
    /// Control plane independent: the sender's forwarding survives a
    /// control plane restart.
    pub cpi: bool,
    /// Demand mode (not used by weft, kept as received).
    pub demand: bool,
    /// Detect time multiplier.
    pub detect_mult: u8,
    /// The sender's discriminator.
    pub my_disc: u32,
    /// The receiver's discriminator as the sender knows it (0: unknown).
    pub your_disc: u32,
    /// Desired min TX interval, µs.
    pub desired_min_tx_us: u32,
    /// Required min RX interval, µs.
    pub required_min_rx_us: u32,
    /// Required min echo RX interval, µs.
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than a control packet.
    #[error("packet of {0} bytes is shorter than 24")]
    Short(usize),
    /// Version other than 1.
    #[error("version {0}, not 1")]
    Version(u8),
    /// The Length field is below 24 or beyond the datagram.
    #[error("length field {field} does not fit the {got}-byte datagram")]
    Length {
        /// The Length field.
        field: u8,
        /// Bytes received.
        got: usize,
    },
    /// Detect Mult is zero.
    #[error("detect multiplier 0")]
    DetectMult,
    /// The multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("my discriminator 0")]
    MyDisc,
    /// Your Discriminator is zero outside Down/AdminDown.
    #[error("your discriminator 0 in state {0}")]
    YourDisc(BfdState),
    /// Authentication is present; weft runs BFD without it.
    #[error("authentication present (not configured)")]
    Auth,
}

impl ControlPacket {
    /// Decodes and validates one datagram.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() < CONTROL_LEN {
            return Err(PacketError::Short(b.len()));
        }
        let version = b[0] >> 5;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let len = b[3];
        if usize::from(len) < CONTROL_LEN || usize::from(len) > b.len() {
            return Err(PacketError::Length {
                field: len,
                got: b.len(),
            });
        }
        let flags = b[1];
        let state = BfdState::from_bits(flags >> 6);
        if flags & 0x04 != 0 {
            return Err(PacketError::Auth);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = Self {
            diag: Diag::from_bits(b[0]),
            state,
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: b[2],
            my_disc: word(4),
            your_disc: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if p.detect_mult == 0 {
            return Err(PacketError::DetectMult);
        }
        if p.my_disc == 0 {
            return Err(PacketError::MyDisc);
        }
        if p.your_disc == 0 && !matches!(state, BfdState::Down | BfdState::AdminDown) {
            return Err(PacketError::YourDisc(state));
        }
        Ok(p)
    }

    /// The 24-byte wire form.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut b = [0u8; CONTROL_LEN];
        b[0] = (1 << 5) | self.diag.bits();
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.fin) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = CONTROL_LEN as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from BIRD 2.0.12 (`protocol bfd`, 300 ms × 3, a neighbor
    /// not yet heard): Down, your discriminator 0, the slow 1 s TX.
    const BIRD_DOWN_CAPTURED: [u8; 24] = [
        0x20, 0x40, 0x03, 0x18, 0x84, 0x75, 0xee, 0xe1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0x00, 0x00,
    ];
    /// A control packet in Init as BIRD 2 sends it with `interval 100 ms;
    /// multiplier 5` (built by hand from the RFC layout).
    const BIRD_INIT: [u8; 24] = [
        0x20, 0x80, 0x05, 0x18, 0x5d, 0x3a, 0x11, 0x02, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x86,
        0xa0, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x00, 0x00,
    ];
    /// A Down packet with the C bit, 1 s slow timers and a 50 ms echo
    /// interval, as FRR bfdd advertises them (built by hand).
    const FRR_DOWN: [u8; 24] = [
        0x20, 0x48, 0x03, 0x18, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0xc3, 0x50,
    ];

    /// Captured from FRR 8.4.4 bfdd (single-hop peer, 300 ms × 3) talking
    /// to weftd, in the order of one session's life: Down with "neighbor
    /// signaled session down" after weftd's last session went, your
    /// discriminator 0, 1 s slow timers and bfdd's 50 ms echo interval;
    /// Init after a detection timeout; Up at 300 ms with Poll (bfdd's timer
    /// change) and then with Final (its answer to weftd's Poll).
    const FRR_CAPTURED: [[u8; 24]; 4] = [
        [
            0x23, 0x40, 0x03, 0x18, 0x29, 0xf9, 0xfd, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f,
            0x42, 0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0xc3, 0x50,
        ],
        [
            0x21, 0x80, 0x03, 0x18, 0x29, 0xf9, 0xfd, 0xff, 0x4e, 0x57, 0xd2, 0xee, 0x00, 0x0f,
            0x42, 0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0xc3, 0x50,
        ],
        [
            0x20, 0xe0, 0x03, 0x18, 0x29, 0xf9, 0xfd, 0xff, 0x4e, 0x57, 0xd2, 0xee, 0x00, 0x04,
            0x93, 0xe0, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0xc3, 0x50,
        ],
        [
            0x20, 0xd0, 0x03, 0x18, 0x29, 0xf9, 0xfd, 0xff, 0x4e, 0x57, 0xd2, 0xee, 0x00, 0x04,
            0x93, 0xe0, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0xc3, 0x50,
        ],
    ];

    #[test]
    fn captured_frr_packets_decode_and_encode_back() {
        let p: Vec<ControlPacket> = FRR_CAPTURED
            .iter()
            .map(|b| ControlPacket::decode(b).expect("valid"))
            .collect();
        assert_eq!(
            (p[0].state, p[0].diag),
            (BfdState::Down, Diag::NeighborDown)
        );
        assert_eq!((p[0].my_disc, p[0].your_disc), (0x29f9_fdff, 0));
        assert_eq!(
            (p[0].desired_min_tx_us, p[0].required_min_rx_us),
            (1_000_000, 1_000_000)
        );
        assert_eq!(p[0].required_min_echo_rx_us, 50_000);
        assert_eq!((p[1].state, p[1].diag), (BfdState::Init, Diag::TimeExpired));
        assert_eq!(p[1].your_disc, 0x4e57_d2ee);
        assert_eq!(
            (p[2].state, p[2].poll, p[2].fin),
            (BfdState::Up, true, false)
        );
        assert_eq!(
            (p[2].desired_min_tx_us, p[2].required_min_rx_us),
            (300_000, 300_000)
        );
        assert_eq!(
            (p[3].state, p[3].poll, p[3].fin),
            (BfdState::Up, false, true)
        );
        for (b, p) in FRR_CAPTURED.iter().zip(&p) {
            assert_eq!(p.detect_mult, 3);
            assert!(!p.cpi && !p.demand);
            assert_eq!(&p.encode(), b);
        }
    }

    #[test]
    fn captured_bird_packet_decodes_and_encodes_back() {
        let p = ControlPacket::decode(&BIRD_DOWN_CAPTURED).expect("valid");
        assert_eq!(p.state, BfdState::Down);
        assert_eq!(p.diag, Diag::None);
        assert_eq!(p.detect_mult, 3);
        assert_eq!(p.my_disc, 0x8475_eee1);
        assert_eq!(p.your_disc, 0);
        assert_eq!(p.desired_min_tx_us, 1_000_000);
        assert_eq!(p.required_min_rx_us, 300_000);
        assert!(!p.poll && !p.fin && !p.cpi);
        assert_eq!(p.encode(), BIRD_DOWN_CAPTURED);
    }

    #[test]
    fn vectors_decode_and_encode_back() {
        let p = ControlPacket::decode(&BIRD_INIT).expect("valid");
        assert_eq!(p.state, BfdState::Init);
        assert_eq!(p.detect_mult, 5);
        assert_eq!(p.my_disc, 0x5d3a_1102);
        assert_eq!(p.your_disc, 7);
        assert_eq!(p.desired_min_tx_us, 100_000);
        assert_eq!(p.encode(), BIRD_INIT);
        let p = ControlPacket::decode(&FRR_DOWN).expect("valid");
        assert_eq!(p.state, BfdState::Down);
        assert!(p.cpi);
        assert_eq!(p.your_disc, 0);
        assert_eq!(p.required_min_echo_rx_us, 50_000);
        assert_eq!(p.encode(), FRR_DOWN);
    }

    #[test]
    fn every_reception_check_refuses() {
        let bad = |f: &dyn Fn(&mut [u8; 24]), want: PacketError| {
            let mut b = BIRD_INIT;
            f(&mut b);
            assert_eq!(ControlPacket::decode(&b), Err(want));
        };
        bad(&|b| b[0] = 0x40, PacketError::Version(2));
        bad(&|b| b[3] = 23, PacketError::Length { field: 23, got: 24 });
        bad(&|b| b[3] = 26, PacketError::Length { field: 26, got: 24 });
        bad(&|b| b[2] = 0, PacketError::DetectMult);
        bad(&|b| b[1] |= 1, PacketError::Multipoint);
        bad(&|b| b[1] |= 4, PacketError::Auth);
        bad(&|b| b[4..8].fill(0), PacketError::MyDisc);
        bad(&|b| b[8..12].fill(0), PacketError::YourDisc(BfdState::Init));
        assert_eq!(
            ControlPacket::decode(&BIRD_INIT[..20]),
            Err(PacketError::Short(20))
        );
        // A longer datagram whose Length says 24 is fine (trailing bytes).
        let mut long = BIRD_INIT.to_vec();
        long.extend([0, 0]);
        assert!(ControlPacket::decode(&long).is_ok());
    }

    #[test]
    fn any_bytes_decode_without_panic_and_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut b = [0u8; 26];
            for v in &mut b {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x as u8;
            }
            // Bias towards valid headers so the checks past the first run.
            if x & 1 == 0 {
                b[0] = (b[0] & 0x1f) | 0x20;
                b[1] &= !0x05;
                b[3] = 24;
            }
            if let Ok(p) = ControlPacket::decode(&b[..(x % 27) as usize]) {
                assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            }
        }
    }
}
