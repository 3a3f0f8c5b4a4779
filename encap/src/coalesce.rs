//! The receive-side TCP coalescing plan (GRO for the TUN write): which
//! inner packets of a receive batch join into one TSO frame. Consecutive
//! in-order IPv4 TCP segments of one flow become one frame, written as
//! `[virtio_net_hdr + rebuilt IP/TCP header, payload 1, payload 2, …]`
//! with the payloads left where they were received; everything else (IPv6,
//! UDP, ICMP, segments that do not continue a flow) stays one frame each.
//!
//! A coalesced frame is marked `NEEDS_CSUM`, so the kernel no longer checks
//! the TCP checksum of what went into it: each segment's checksum is
//! verified here before it may join (a bad one stays alone and the kernel
//! drops and counts it, as it would have).
//!
//! [`Coalescer`] holds indices only (which buffer, which range); the
//! caller owns the bytes and does the writing.

use std::ops::Range;

use crate::checksum;
use crate::offload::{self, OffloadHeader};

/// Segments one frame may carry.
pub const MAX_SEGS: usize = 64;
/// Room [`Coalescer::header`] needs: `virtio_net_hdr` + IPv4 + TCP with
/// options.
pub const MAX_HEADER: usize = offload::LEN + IPV4_HDR + 60;
/// Flows looked at when placing a segment (the most recent ones).
const OPEN_FLOWS: usize = 8;
/// IPv4 header length coalesced (no IP options).
const IPV4_HDR: usize = 20;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// No next segment.
const END: usize = usize::MAX;

/// One packet of the batch: which receive buffer and where in it.
#[derive(Debug, Clone)]
struct Seg {
    buf: usize,
    range: Range<usize>,
    /// Next packet of the same frame ([`END`]: last).
    next: usize,
}

/// A frame of the plan: a single packet or a coalesced TCP flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    head: usize,
    tail: usize,
    segs: usize,
    /// TCP candidate: header length (IP + TCP), else 0.
    hdr_len: usize,
    /// Payload bytes of the head (the GSO size).
    gso_size: usize,
    /// Sum of payload bytes.
    payload: usize,
    next_seq: u32,
    /// No segment may join any more.
    closed: bool,
    psh: bool,
}

impl Frame {
    /// Packets in this frame.
    #[must_use]
    pub const fn segments(&self) -> usize {
        self.segs
    }

    /// TCP payload bytes of a coalesced frame (0 for a single packet that
    /// is not a TCP candidate).
    #[must_use]
    pub const fn payload_len(&self) -> usize {
        self.payload
    }

    /// Whether the last segment carried PSH.
    #[must_use]
    pub const fn psh(&self) -> bool {
        self.psh
    }

    /// Built from more than one packet (needs [`Coalescer::header`]).
    #[must_use]
    pub const fn is_coalesced(&self) -> bool {
        self.segs > 1
    }
}

/// The plan for one receive batch; reused across batches (its vectors keep
/// their capacity, so the steady state allocates nothing).
#[derive(Debug)]
pub struct Coalescer {
    /// Coalescing on (the TUN takes a `virtio_net_hdr`); off, every
    /// packet is its own frame.
    enabled: bool,
    segs: Vec<Seg>,
    frames: Vec<Frame>,
    /// Frames (indices) still open to new segments, most recent last.
    open: Vec<usize>,
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// The TCP pseudo-header sum (unfolded) of an IPv4 packet (`p` holds at
/// least the 20-byte header).
fn pseudo_v4(p: &[u8], tcp_len: usize) -> u64 {
    checksum::sum(0, &p[12..20]) + 6 + tcp_len as u64
}

/// If `p` may be coalesced: (IP + TCP header length, payload length).
/// IPv4 without options or fragments, TCP with only ACK (or ACK+PSH), a
/// payload, consistent lengths and a correct TCP checksum (not checked
/// under `cfg(fuzzing)`).
#[must_use]
pub fn tcp_candidate(p: &[u8]) -> Option<(usize, usize)> {
    if p.len() < IPV4_HDR + 20 || p[0] != 0x45 || p[9] != 6 {
        return None;
    }
    if usize::from(be16(p, 2)) != p.len() || be16(p, 6) & 0x3fff != 0 {
        return None; // length mismatch, MF or a fragment offset
    }
    let tcp_hl = usize::from(p[IPV4_HDR + 12] >> 4) * 4;
    let flags = p[IPV4_HDR + 13];
    if tcp_hl < 20 || IPV4_HDR + tcp_hl >= p.len() || flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    let tcp_len = p.len() - IPV4_HDR;
    if !cfg!(fuzzing)
        && checksum::finish(checksum::sum_wide(pseudo_v4(p, tcp_len), &p[IPV4_HDR..])) != 0
    {
        return None;
    }
    Some((IPV4_HDR + tcp_hl, p.len() - IPV4_HDR - tcp_hl))
}

/// True when `p` continues the flow whose head is `h` in frame `f`.
fn continues(h: &[u8], f: &Frame, p: &[u8], hdr_len: usize, payload: usize) -> bool {
    !f.closed
        && f.hdr_len == hdr_len
        && f.segs < MAX_SEGS
        && payload <= f.gso_size
        && u16::try_from(hdr_len + f.payload + payload).is_ok()
        // TOS, DF, TTL and protocol, addresses, ports.
        && h[1] == p[1]
        && h[6] == p[6]
        && h[8..10] == p[8..10]
        && h[12..24] == p[12..24]
        && be32(p, IPV4_HDR + 4) == f.next_seq
        // Ack number; flags are ACK (PSH only allowed at the end).
        && h[IPV4_HDR + 8..IPV4_HDR + 12] == p[IPV4_HDR + 8..IPV4_HDR + 12]
        // Options (timestamps) identical, as the kernel's GRO requires.
        && h[IPV4_HDR + 20..hdr_len] == p[IPV4_HDR + 20..hdr_len]
}

impl Coalescer {
    /// An empty plan; `enabled` false keeps every packet alone (a TUN
    /// without `virtio_net_hdr` cannot take TSO frames).
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            segs: Vec::with_capacity(256),
            frames: Vec::with_capacity(256),
            open: Vec::with_capacity(OPEN_FLOWS),
        }
    }

    /// Packets queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Nothing queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The frames planned so far, in the order they are to be written.
    #[must_use]
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Forgets every queued packet and frame.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.frames.clear();
        self.open.clear();
    }

    /// Queues `bufs[buf][range]`, one inner IP packet. `bufs` must hold the
    /// same bytes until the plan is written and cleared. Returns false (and
    /// queues nothing) when `buf` or `range` lie outside `bufs`.
    pub fn push<B: AsRef<[u8]>>(&mut self, bufs: &[B], buf: usize, range: Range<usize>) -> bool {
        let Some(p) = bufs.get(buf).and_then(|b| b.as_ref().get(range.clone())) else {
            return false;
        };
        let i = self.segs.len();
        self.segs.push(Seg {
            buf,
            range,
            next: END,
        });
        let cand = if self.enabled { tcp_candidate(p) } else { None };
        let Some((hdr_len, payload)) = cand else {
            self.frames.push(Frame {
                head: i,
                tail: i,
                segs: 1,
                hdr_len: 0,
                gso_size: 0,
                payload: 0,
                next_seq: 0,
                closed: true,
                psh: false,
            });
            return true;
        };
        // Join the most recent open frame of this flow, if it fits.
        for k in (0..self.open.len()).rev() {
            let fi = self.open[k];
            let f = &self.frames[fi];
            let hs = &self.segs[f.head];
            // Every segment of an open frame was a candidate: in bounds.
            let Some(h) = bufs
                .get(hs.buf)
                .and_then(|b| b.as_ref().get(hs.range.clone()))
            else {
                continue;
            };
            if h[12..24] != p[12..24] {
                continue;
            }
            if continues(h, f, p, hdr_len, payload) {
                let flags = p[IPV4_HDR + 13];
                let f = &mut self.frames[fi];
                self.segs[f.tail].next = i;
                f.tail = i;
                f.segs += 1;
                f.payload += payload;
                f.next_seq = f.next_seq.wrapping_add(payload as u32);
                if payload < f.gso_size || flags & TCP_PSH != 0 {
                    f.closed = true;
                    f.psh = flags & TCP_PSH != 0;
                }
                return true;
            }
            // Same flow but not the continuation: it stays as it is.
            self.frames[fi].closed = true;
            self.open.remove(k);
            break;
        }
        let psh = p[IPV4_HDR + 13] & TCP_PSH != 0;
        if self.open.len() == OPEN_FLOWS {
            self.open.remove(0);
        }
        self.open.push(self.frames.len());
        self.frames.push(Frame {
            head: i,
            tail: i,
            segs: 1,
            hdr_len,
            gso_size: payload,
            payload,
            next_seq: be32(p, IPV4_HDR + 4).wrapping_add(payload as u32),
            closed: psh,
            psh,
        });
        true
    }

    /// Where the first packet of `f` lies: (buffer, range).
    #[must_use]
    pub fn head(&self, f: &Frame) -> (usize, Range<usize>) {
        let s = &self.segs[f.head];
        (s.buf, s.range.clone())
    }

    /// The byte ranges to write after the header of `f`: for a coalesced
    /// frame each segment's TCP payload, else the whole packet.
    pub fn payloads<'a>(&'a self, f: &Frame) -> impl Iterator<Item = (usize, Range<usize>)> + 'a {
        let skip = if f.is_coalesced() { f.hdr_len } else { 0 };
        let mut at = f.head;
        std::iter::from_fn(move || {
            let s = self.segs.get(at)?;
            at = s.next;
            Some((s.buf, s.range.start + skip..s.range.end))
        })
    }

    /// Writes the `virtio_net_hdr` and the rebuilt IP/TCP header of the
    /// coalesced frame `f` (first packet `head`) into `out`; returns their
    /// length. None for a single packet or when `out` is shorter than
    /// [`MAX_HEADER`].
    pub fn header(&self, head: &[u8], f: &Frame, out: &mut [u8]) -> Option<usize> {
        let hl = f.hdr_len;
        if !f.is_coalesced() || out.len() < MAX_HEADER || head.len() < hl {
            return None;
        }
        let total = hl + f.payload;
        let vh = OffloadHeader {
            flags: offload::F_NEEDS_CSUM,
            gso_type: offload::GSO_TCPV4,
            hdr_len: u16::try_from(hl).ok()?,
            gso_size: u16::try_from(f.gso_size).ok()?,
            csum_start: IPV4_HDR as u16,
            csum_offset: 16,
        };
        let (vnet, rest) = out.split_first_chunk_mut::<{ offload::LEN }>()?;
        vh.emit(vnet);
        let h = &mut rest[..hl];
        h.copy_from_slice(&head[..hl]);
        h[2..4].copy_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
        h[10..12].fill(0);
        let ipc = checksum::checksum(&h[..IPV4_HDR]);
        h[10..12].copy_from_slice(&ipc.to_be_bytes());
        if f.psh {
            h[IPV4_HDR + 13] |= TCP_PSH;
        }
        // NEEDS_CSUM: the TCP checksum field holds the folded pseudo-header
        // sum, the kernel adds the rest.
        let ps = !checksum::finish(pseudo_v4(h, total - IPV4_HDR));
        h[IPV4_HDR + 16..IPV4_HDR + 18].copy_from_slice(&ps.to_be_bytes());
        Some(offload::LEN + hl)
    }
}

/// An IPv4 TCP segment 10.0.0.1:1000 -> 10.0.0.2:80 with a timestamp
/// option and correct checksums (for tests and fuzz seeds).
#[doc(hidden)]
#[must_use]
pub fn test_segment(seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
    let tcp_hl = 32;
    let total = IPV4_HDR + tcp_hl + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[IPV4_HDR..];
    t[0..2].copy_from_slice(&1000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&7u32.to_be_bytes());
    t[12] = ((tcp_hl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&1000u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
    t[32..].copy_from_slice(payload);
    let tcp_len = total - IPV4_HDR;
    let c = checksum::finish(checksum::sum(pseudo_v4(&p, tcp_len), &p[IPV4_HDR..]));
    p[IPV4_HDR + 16..IPV4_HDR + 18].copy_from_slice(&c.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: u8 = TCP_ACK;
    const PSH: u8 = TCP_PSH;

    fn seg(seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
        test_segment(seq, payload, flags)
    }

    fn plan(bufs: &[Vec<u8>], enabled: bool) -> Coalescer {
        let mut c = Coalescer::new(enabled);
        for (i, p) in bufs.iter().enumerate() {
            assert!(c.push(bufs, i, 0..p.len()));
        }
        c
    }

    fn shape(c: &Coalescer) -> Vec<(usize, usize, bool)> {
        c.frames()
            .iter()
            .map(|f| (f.segments(), f.payload_len(), f.psh()))
            .collect()
    }

    #[test]
    fn coalesces_in_order_segments_and_rebuilds_a_valid_header() {
        let a = seg(100, &[1; 50], ACK);
        let bufs = vec![
            a.clone(),
            seg(150, &[2; 50], ACK),
            seg(200, &[3; 20], ACK | PSH),
        ];
        let c = plan(&bufs, true);
        assert_eq!(shape(&c), vec![(3, 120, true)]);
        let f = &c.frames()[0];
        let mut out = [0u8; MAX_HEADER];
        let n = c.header(&a, f, &mut out).unwrap();
        assert_eq!(n, offload::LEN + 52);
        let vh = OffloadHeader::parse(&out).unwrap();
        assert_eq!(
            (vh.flags, vh.gso_type, vh.hdr_len, vh.gso_size),
            (1, 1, 52, 50)
        );
        let h = &out[offload::LEN..n];
        assert_eq!(be16(h, 2) as usize, 52 + 120);
        assert!(checksum::header_ok(&h[..20]));
        assert_eq!(h[IPV4_HDR + 13], ACK | PSH);
        let payloads: Vec<_> = c.payloads(f).collect();
        assert_eq!(payloads, vec![(0, 52..102), (1, 52..102), (2, 52..72)]);
        // The pseudo-header sum in the checksum field plus the segment bytes
        // gives a valid checksum of the merged packet.
        let mut merged = h.to_vec();
        for (b, r) in payloads {
            merged.extend_from_slice(&bufs[b][r]);
        }
        merged[IPV4_HDR + 16..IPV4_HDR + 18].fill(0);
        let full = checksum::finish(checksum::sum(
            pseudo_v4(&merged, merged.len() - IPV4_HDR),
            &merged[IPV4_HDR..],
        ));
        merged[IPV4_HDR + 16..IPV4_HDR + 18].copy_from_slice(&full.to_be_bytes());
        assert!(
            tcp_candidate(&merged).is_some(),
            "merged packet must verify"
        );
    }

    #[test]
    fn gaps_bad_checksums_other_flags_and_no_vnet_stay_single() {
        let mut bad = seg(250, &[3; 50], ACK);
        bad[60] ^= 1;
        let bufs = vec![
            seg(100, &[1; 50], ACK),
            seg(200, &[2; 50], ACK),
            bad,
            seg(300, &[4; 10], 0x02),
        ];
        let c = plan(&bufs, true);
        assert_eq!(c.frames().len(), 4);
        assert!(c.frames().iter().all(|f| !f.is_coalesced()));
        let single = &c.frames()[3];
        assert_eq!(c.payloads(single).collect::<Vec<_>>(), vec![(3, 0..62)]);
        assert_eq!(c.header(&bufs[3], single, &mut [0; MAX_HEADER]), None);
        let ok = vec![seg(100, &[1; 50], ACK), seg(150, &[1; 50], ACK)];
        assert_eq!(plan(&ok, false).frames().len(), 2);
    }

    #[test]
    fn a_short_segment_closes_the_frame() {
        let bufs = vec![
            seg(100, &[1; 50], ACK),
            seg(150, &[1; 30], ACK),
            seg(180, &[1; 50], ACK),
            seg(230, &[1; 50], ACK),
        ];
        let c = plan(&bufs, true);
        assert_eq!(shape(&c), vec![(2, 80, false), (2, 100, false)]);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn out_of_bounds_pushes_are_refused_and_clear_empties() {
        let bufs = vec![seg(1, &[1; 10], ACK)];
        let mut c = Coalescer::new(true);
        assert!(!c.push(&bufs, 1, 0..10));
        assert!(!c.push(&bufs, 0, 0..1000));
        assert!(c.is_empty());
        assert!(c.push(&bufs, 0, 0..bufs[0].len()));
        c.clear();
        assert!(c.is_empty() && c.frames().is_empty());
    }
}
