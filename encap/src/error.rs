//! The typed errors of every codec. All are small `Copy` values so that a
//! dataplane worker can count rejections by [`DecapError::reason`] without
//! allocating or formatting.

/// Why encapsulation refused a packet. These are caller mistakes (buffer
/// layout) or inner packets that the format cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// The inner range does not lie inside the buffer.
    #[error("inner range {start}..{end} is outside the {len}-byte buffer")]
    RangeOutOfBounds {
        /// Start of the inner range.
        start: usize,
        /// End of the inner range.
        end: usize,
        /// Buffer length.
        len: usize,
    },
    /// Fewer bytes of headroom in front of the inner packet than the format needs.
    #[error("need {needed} bytes of headroom, have {have}")]
    NoHeadroom {
        /// Bytes the format writes in front of the inner packet.
        needed: usize,
        /// Bytes available in front of the inner packet.
        have: usize,
    },
    /// The inner packet is empty or does not start with IP version 4 or 6.
    #[error("inner packet is not IPv4 or IPv6")]
    NotIp,
    /// The format only carries IPv4 (ipip) and the inner packet is IPv6.
    #[error("inner packet must be IPv4 for this format")]
    NotIpv4,
    /// The encapsulated packet would exceed 65535 bytes.
    #[error("encapsulated length {0} exceeds 65535")]
    TooLong(usize),
}

impl EncapError {
    /// A stable, low-cardinality label for counters (`weft_..._total{reason=..}`).
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::RangeOutOfBounds { .. } => "range_out_of_bounds",
            Self::NoHeadroom { .. } => "no_headroom",
            Self::NotIp => "not_ip",
            Self::NotIpv4 => "not_ipv4",
            Self::TooLong(_) => "too_long",
        }
    }
}

/// Why a received datagram was rejected. Every variant maps to one stable
/// [`reason`](Self::reason) label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecapError {
    /// Shorter than the fixed encapsulation header(s).
    #[error("datagram of {len} bytes is shorter than the {needed}-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the headers need.
        needed: usize,
    },
    /// VXLAN header without the I (valid VNI) flag.
    #[error("vxlan header without the I flag")]
    VxlanNoIFlag,
    /// VXLAN header with reserved bits set (Linux drops these too).
    #[error("vxlan header has reserved bits set")]
    VxlanReservedBits,
    /// VXLAN VNI other than the configured one.
    #[error("vxlan vni {got}, expected {expected}")]
    VniMismatch {
        /// VNI in the datagram.
        got: u32,
        /// VNI configured.
        expected: u32,
    },
    /// Inner Ethernet type is neither IPv4 (0x0800) nor IPv6 (0x86dd).
    #[error("inner ethertype {0:#06x} is not IPv4 or IPv6")]
    EtherType(u16),
    /// Inner Ethernet type and inner IP version disagree.
    #[error("inner ethertype {ethertype:#06x} but IP version {version}")]
    EtherTypeMismatch {
        /// Ethernet type of the inner frame.
        ethertype: u16,
        /// IP version nibble of the inner packet.
        version: u8,
    },
    /// The inner packet does not start with IP version 4 or 6.
    #[error("inner IP version {0} is not 4 or 6")]
    InnerVersion(u8),
    /// The format carries only IPv4 (ipip) but the inner packet is not.
    #[error("inner packet is not IPv4")]
    InnerNotIpv4,
    /// The inner IP header is malformed (too short, bad IHL, ...).
    #[error("inner IP header is malformed")]
    InnerHeader,
    /// The inner IPv4 header checksum is wrong.
    #[error("inner IPv4 header checksum is wrong")]
    InnerChecksum,
    /// The inner IP length field disagrees with the bytes received.
    #[error("inner IP length {claimed} but {available} bytes present")]
    InnerLength {
        /// Length the inner header claims.
        claimed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The outer IPv4 header (ipip) is malformed.
    #[error("outer IPv4 header is malformed")]
    OuterHeader,
    /// The outer IPv4 header checksum (ipip) is wrong.
    #[error("outer IPv4 header checksum is wrong")]
    OuterChecksum,
    /// The outer IPv4 protocol is not 4 (IP-in-IP).
    #[error("outer IPv4 protocol {0} is not ipip (4)")]
    OuterProtocol(u8),
    /// The outer IPv4 packet is a fragment (the kernel reassembles before
    /// raw sockets see packets, so this is never legitimate here).
    #[error("outer IPv4 packet is a fragment")]
    OuterFragment,
    /// The outer IPv4 total length disagrees with the bytes received.
    #[error("outer IPv4 length {claimed} but {available} bytes present")]
    OuterLength {
        /// Length the outer header claims.
        claimed: usize,
        /// Bytes actually present.
        available: usize,
    },
}

impl DecapError {
    /// A stable, low-cardinality label for counters (`weft_..._total{reason=..}`).
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::VxlanNoIFlag => "vxlan_no_i_flag",
            Self::VxlanReservedBits => "vxlan_reserved_bits",
            Self::VniMismatch { .. } => "vni_mismatch",
            Self::EtherType(_) => "ethertype",
            Self::EtherTypeMismatch { .. } => "ethertype_mismatch",
            Self::InnerVersion(_) => "inner_version",
            Self::InnerNotIpv4 => "inner_not_ipv4",
            Self::InnerHeader => "inner_header",
            Self::InnerChecksum => "inner_checksum",
            Self::InnerLength { .. } => "inner_length",
            Self::OuterHeader => "outer_header",
            Self::OuterChecksum => "outer_checksum",
            Self::OuterProtocol(_) => "outer_protocol",
            Self::OuterFragment => "outer_fragment",
            Self::OuterLength { .. } => "outer_length",
        }
    }

    /// Every reason label, for pre-registering counters.
    pub const REASONS: [&'static str; 16] = [
        "truncated",
        "vxlan_no_i_flag",
        "vxlan_reserved_bits",
        "vni_mismatch",
        "ethertype",
        "ethertype_mismatch",
        "inner_version",
        "inner_not_ipv4",
        "inner_header",
        "inner_checksum",
        "inner_length",
        "outer_header",
        "outer_checksum",
        "outer_protocol",
        "outer_fragment",
        "outer_length",
    ];
}
