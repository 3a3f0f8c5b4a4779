//! [`OffloadHeader`]: the `virtio_net_hdr` a TUN/TAP device with
//! `IFF_VNET_HDR` puts in front of every packet (GSO type and size,
//! partial-checksum offsets), read and written little-endian as Linux does
//! on every architecture weft runs on.

/// Length of the plain `virtio_net_hdr` (no `num_buffers`).
pub const LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` is still to be
/// finished (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `gso_type`: TCP over IPv4 (TSO).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO), not tunnelled by the kernel.
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP burst carries ECN (CWR).
pub const GSO_ECN: u8 = 0x80;
/// `gso_type` bit: the burst is inside a UDP tunnel over IPv4.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

/// A decoded `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadHeader {
    /// `F_NEEDS_CSUM` and friends.
    pub flags: u8,
    /// `GSO_*`, possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers in front of the payload (IP + transport).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl OffloadHeader {
    /// Reads the first [`LEN`] bytes of `b`; None when shorter.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; LEN] = b.get(..LEN)?.try_into().ok()?;
        let le = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// Writes the header into `out`.
    pub fn emit(&self, out: &mut [u8; LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// A GSO burst (TSO / USO / UFO), not a single packet.
    #[must_use]
    pub const fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != 0
    }

    /// UDP fragmentation offload, which the kernel does not tunnel.
    #[must_use]
    pub const fn is_ufo(&self) -> bool {
        self.gso_type & !GSO_ECN == GSO_UDP
    }

    /// Segments a packet of `len` bytes becomes (1 without GSO).
    #[must_use]
    pub fn segments(&self, len: usize) -> usize {
        let payload = len.saturating_sub(usize::from(self.hdr_len));
        match (self.is_gso(), usize::from(self.gso_size)) {
            (true, s) if s > 0 => payload.div_ceil(s).max(1),
            _ => 1,
        }
    }

    /// Bytes on the wire of all segments of a `len`-byte packet (headers
    /// repeated per segment).
    #[must_use]
    pub fn segmented_len(&self, len: usize) -> usize {
        len + (self.segments(len) - 1) * usize::from(self.hdr_len)
    }

    /// The largest segment a `len`-byte packet becomes.
    #[must_use]
    pub fn largest_segment(&self, len: usize) -> usize {
        if self.is_gso() {
            len.min(usize::from(self.hdr_len) + usize::from(self.gso_size))
        } else {
            len
        }
    }

    /// This header with `hdr_len` recomputed from the transport header in
    /// `packet` (on forwarded packets the kernel's value may cover a whole
    /// first segment). None when a GSO header is inconsistent with the
    /// packet (unknown checksum offset, transport header out of bounds,
    /// zero segment size), or a partial checksum field outside the packet.
    /// Other non-GSO headers are returned as they are.
    #[must_use]
    pub fn with_transport_len(mut self, packet: &[u8]) -> Option<Self> {
        if !self.is_gso() {
            let field_end = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
            let partial = self.flags & F_NEEDS_CSUM != 0;
            return (!partial || field_end <= packet.len()).then_some(self);
        }
        let start = usize::from(self.csum_start);
        let l4 = match self.csum_offset {
            16 => usize::from(packet.get(start + 12)? >> 4) * 4, // TCP
            6 => 8,                                              // UDP (USO)
            _ => return None,
        };
        if !(8..=60).contains(&l4) || start + l4 > packet.len() || self.gso_size == 0 {
            return None;
        }
        self.hdr_len = u16::try_from(start + l4).ok()?;
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tso() -> OffloadHeader {
        OffloadHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1398,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn round_trips_little_endian() {
        let mut b = [0u8; LEN];
        tso().emit(&mut b);
        assert_eq!(b, [1, 1, 52, 0, 0x76, 0x05, 20, 0, 16, 0]);
        assert_eq!(OffloadHeader::parse(&b), Some(tso()));
        assert_eq!(OffloadHeader::parse(&b[..9]), None);
    }

    #[test]
    fn segment_count_and_sizes() {
        let h = tso();
        assert!(h.is_gso() && !h.is_ufo());
        assert_eq!(h.segments(52 + 1398 * 3), 3);
        assert_eq!(h.segments(52 + 1398 * 3 + 1), 4);
        assert_eq!(h.segmented_len(52 + 1398 * 3), 52 * 3 + 1398 * 3);
        assert_eq!(h.largest_segment(60_000), 52 + 1398);
        assert_eq!(h.largest_segment(100), 100);
        let plain = OffloadHeader::default();
        assert_eq!(plain.segments(1000), 1);
        assert_eq!(plain.largest_segment(9000), 9000);
        let ecn_only = OffloadHeader {
            gso_type: GSO_ECN,
            ..plain
        };
        assert!(!ecn_only.is_gso());
    }

    #[test]
    fn transport_len_comes_from_the_packet() {
        let mut p = vec![0u8; 200];
        p[20 + 12] = 8 << 4; // TCP header of 32 bytes
        let h = OffloadHeader {
            hdr_len: 1400, // the kernel's value on a forwarded burst
            ..tso()
        };
        assert_eq!(h.with_transport_len(&p).map(|h| h.hdr_len), Some(52));
        let uso = OffloadHeader {
            gso_type: GSO_UDP_L4,
            csum_offset: 6,
            ..tso()
        };
        assert_eq!(uso.with_transport_len(&p).map(|h| h.hdr_len), Some(28));
        assert_eq!(
            OffloadHeader {
                csum_offset: 7,
                ..tso()
            }
            .with_transport_len(&p),
            None
        );
        assert_eq!(h.with_transport_len(&p[..40]), None, "header past the end");
        p[20 + 12] = 1 << 4;
        assert_eq!(h.with_transport_len(&p), None, "TCP header under 8 bytes");
        assert_eq!(
            OffloadHeader { gso_size: 0, ..h }.with_transport_len(&[0; 200]),
            None
        );
        let plain = OffloadHeader::default();
        assert_eq!(plain.with_transport_len(&[]), Some(plain));
        let partial = OffloadHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..plain
        };
        assert_eq!(partial.with_transport_len(&[0; 38]), Some(partial));
        assert_eq!(
            partial.with_transport_len(&[0; 37]),
            None,
            "field past the end"
        );
    }
}
