//! Pure packet codecs for weft's overlays (flannel udp, VXLAN, IP-in-IP)
//! and the packet helpers the router needs. No I/O, no allocation on the
//! packet path, no panics on any input.
//!
//! # Buffers and headroom
//! Encapsulation works in place: the inner IP packet sits at
//! `buf[inner]` with at least the format's `HEADROOM` bytes free in front
//! of it; `encap` writes the headers there and returns the range of the
//! finished datagram (`inner.start - HEADROOM .. inner.end`). Read TUN
//! packets into `buf[MAX_HEADROOM..]` and every format fits.
//!
//! Decapsulation borrows the received bytes and returns a validated view
//! ([`InnerPacket`]: version, addresses, protocol, bytes) plus the format's
//! metadata. Every rejection is a small `Copy` [`DecapError`] whose
//! [`reason`](DecapError::reason) is a stable label to count by.
//!
//! | format | module | UDP payload / packet | headroom | decap returns |
//! |---|---|---|---|---|
//! | flannel udp (port 8285) | [`udp`] | inner IP packet | 0 | [`InnerPacket`] |
//! | VXLAN (port 8472, VNI 1) | [`vxlan`] | 8 B VXLAN + 14 B Ethernet + inner IP | 22 | [`vxlan::VxlanFrame`] |
//! | IP-in-IP (protocol 4) | [`ipip`] | outer IPv4 header + inner IPv4 | 20 | [`ipip::IpipPacket`] |
//!
//! ```
//! use weft_encap::{MacAddr, vxlan, flow};
//! # let inner: &[u8] = &[0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
//! let mut buf = [0u8; 2048];
//! let start = weft_encap::MAX_HEADROOM;
//! buf[start..start + inner.len()].copy_from_slice(inner);
//! let inner_range = start..start + inner.len();
//! let src_port = vxlan::source_port(flow::hash(&buf[inner_range.clone()]), vxlan::DEFAULT_SRC_PORTS);
//! let out = vxlan::encap(&mut buf, inner_range, 1, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))?;
//! // send buf[out] from UDP port `src_port` to the peer's port 8472
//! # assert!(vxlan::DEFAULT_SRC_PORTS.contains(&src_port));
//! # assert_eq!(out.len(), 42);
//! # Ok::<(), weft_encap::EncapError>(())
//! ```
//!
//! Buffers are plain slices, so any owner works: `Vec<u8>`, a preallocated
//! ring, or `bytes::BytesMut` (it derefs to `[u8]`; the crate needs no
//! runtime dependency on `bytes` for that):
//!
//! ```
//! use bytes::BytesMut;
//! use weft_encap::{udp, vxlan, MacAddr};
//! # let inner: &[u8] = &[0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0x26, 0xd7, 10, 0, 0, 1, 10, 0, 0, 2];
//! let mut buf = BytesMut::zeroed(vxlan::HEADROOM);
//! buf.extend_from_slice(inner);
//! let end = buf.len();
//! let out = vxlan::encap(&mut buf, vxlan::HEADROOM..end, 1, MacAddr([2; 6]), MacAddr([4; 6]))?;
//! let datagram = buf.split_to(out.end).freeze(); // hand off without copying
//! let frame = vxlan::decap(&datagram, 1).expect("valid");
//! assert_eq!(udp::decap(frame.inner.bytes()).map(|p| p.len()), Ok(20));
//! # Ok::<(), weft_encap::EncapError>(())
//! ```
//!
//! For vxlan and udp the outer source address is what the caller's
//! `recvfrom` returned; [`ipip::IpipPacket`] also reports the outer
//! header's addresses because raw sockets hand the outer header up.
//!
//! # The packet pipeline
//! Beside the codecs, every byte decision of the router's dataplane:
//!
//! | step | module |
//! |---|---|
//! | inner destination of a TUN packet | [`inner::destination`] |
//! | `virtio_net_hdr` and its transport header length | [`offload`] |
//! | egress: peer, MTU, TAP / socket / split, source port | [`egress::plan`] |
//! | encapsulation / decapsulation per format, inner range | [`format::Format`] |
//! | outer Ethernet/IPv4/UDP frame for the TX TAP | [`tunnel_frame::build`] |
//! | which received TCP segments coalesce, rebuilt header | [`coalesce::Coalescer`] |
//!
//! Helpers: [`ttl::decrement`] (RFC 1624 incremental checksum),
//! [`icmp::frag_needed_v4`] and [`icmp::packet_too_big_v6`] replies for
//! packets over the tunnel MTU (and time-exceeded replies), [`flow::hash`]
//! over the inner 5-tuple.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::ops::Range;

pub mod checksum;
pub mod coalesce;
pub mod egress;
pub mod error;
pub mod flow;
pub mod format;
pub mod icmp;
pub mod inner;
pub mod ipip;
pub mod offload;
pub mod ttl;
pub mod tunnel_frame;
pub mod udp;
pub mod vxlan;
pub mod wireguard;

#[cfg(test)]
mod testutil;

pub use error::{DecapError, EncapError};
pub use inner::{InnerPacket, IpVersion};

/// Ethernet type of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethernet type of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Headroom that fits every format's headers.
pub const MAX_HEADROOM: usize = vxlan::HEADROOM;

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group (multicast) bit is clear.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0
    }
}

/// A MAC address that does not read as six `:`-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct MacParseError(pub String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacParseError(s.to_owned());
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            n += 1;
        }
        if n != 6 {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(a: [u8; 6]) -> Self {
        Self(a)
    }
}

/// Checks `inner` against a buffer of `len` bytes and `headroom`, and
/// returns the range of the finished datagram.
fn headroom_range(
    len: usize,
    inner: &Range<usize>,
    headroom: usize,
) -> Result<Range<usize>, EncapError> {
    if inner.start > inner.end || inner.end > len {
        return Err(EncapError::RangeOutOfBounds {
            start: inner.start,
            end: inner.end,
            len,
        });
    }
    if inner.start < headroom {
        return Err(EncapError::NoHeadroom {
            needed: headroom,
            have: inner.start,
        });
    }
    let out = inner.start - headroom..inner.end;
    if out.len() > usize::from(u16::MAX) {
        return Err(EncapError::TooLong(out.len()));
    }
    Ok(out)
}
