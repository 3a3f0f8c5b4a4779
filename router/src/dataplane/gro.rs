//! Ingress TCP coalescing (GRO) for the TUN write, without copying
//! payloads: consecutive in-order IPv4 TCP segments of one flow in a
//! receive batch become one TSO frame written with `writev` as
//! `[virtio_net_hdr + rebuilt IP/TCP header, payload 1, payload 2, …]`,
//! the iovecs pointing straight into the receive buffers. Everything else
//! (IPv6, UDP, ICMP, segments that do not continue a flow) is written as it
//! came, one frame each.
//!
//! A coalesced frame is marked `NEEDS_CSUM`, so the kernel no longer checks
//! the TCP checksum of what went into it: each segment's checksum is
//! verified here before it may join (a bad one is written alone and the
//! kernel drops and counts it, as it would have).

use std::io::IoSlice;
use std::ops::Range;

use weft_encap::checksum;

use super::socket::write_vectored;

/// virtio_net_hdr length (no num_buffers).
pub(crate) const VNET_HDR_LEN: usize = 10;
/// Segments one frame may carry.
const MAX_SEGS: usize = 64;
/// Flows looked at when placing a segment (the most recent ones).
const OPEN_FLOWS: usize = 8;
/// IPv4 header length coalesced (no IP options).
const IPV4_HDR: usize = 20;
pub(crate) const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// One packet of the batch: which receive buffer and where in it.
#[derive(Debug, Clone)]
struct Pkt {
    buf: usize,
    range: Range<usize>,
    /// Next packet of the same frame (usize::MAX: last).
    next: usize,
}

/// A frame being built: a single packet or a coalesced TCP flow.
#[derive(Debug, Clone)]
struct Frame {
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

/// Collects a batch's inner packets and writes them to a TUN descriptor.
#[derive(Debug)]
pub(crate) struct TunWriter {
    /// The TUN expects a virtio_net_hdr in front of every frame.
    vnet: bool,
    pkts: Vec<Pkt>,
    frames: Vec<Frame>,
    /// Frames (indices) still open to new segments, most recent last.
    open: Vec<usize>,
    hdr: [u8; VNET_HDR_LEN + 120],
}

/// What [`TunWriter::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Frames written.
    pub(crate) frames: usize,
    /// Frames the TUN refused.
    pub(crate) errors: usize,
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// `checksum::sum(acc, data)`, faster on long data: native-endian 32-bit
/// words summed into 64 bits (a loop the compiler vectorises), folded to
/// 16 bits and byte-swapped, which equals the big-endian word sum
/// (RFC 1071 §2 B: byte order independence).
fn sum_fast(acc: u64, data: &[u8]) -> u64 {
    let words = data.chunks_exact(4);
    let tail = words.remainder();
    let mut s: u64 = words
        .map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    let folded = if cfg!(target_endian = "little") {
        (s as u16).swap_bytes()
    } else {
        s as u16
    };
    checksum::sum(acc + u64::from(folded), tail)
}

/// A direction-independent hash of an IP packet's addresses and, for
/// unfragmented TCP / UDP / SCTP, ports.
pub(crate) fn flow_hash(p: &[u8]) -> u32 {
    let fold = |b: &[u8]| {
        b.chunks_exact(4).fold(0u32, |h, c| {
            h ^ u32::from_ne_bytes([c[0], c[1], c[2], c[3]])
        })
    };
    let (addrs, proto, l4) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            let unfragmented = be16(p, 6) & 0x3fff == 0;
            (
                fold(&p[12..16]) ^ fold(&p[16..20]),
                p[9],
                unfragmented.then_some(ihl),
            )
        }
        Some(6) if p.len() >= 40 => (fold(&p[8..24]) ^ fold(&p[24..40]), p[6], Some(40)),
        _ => return 0,
    };
    let ports = match (proto, l4) {
        (6 | 17 | 132, Some(at)) if p.len() >= at + 4 => u32::from(be16(p, at) ^ be16(p, at + 2)),
        _ => 0,
    };
    let h = (addrs ^ ports ^ u32::from(proto)).wrapping_mul(0x9e37_79b1);
    h ^ (h >> 16)
}

/// The TCP pseudo-header sum (unfolded) of an IPv4 packet.
fn pseudo_v4(p: &[u8], tcp_len: usize) -> u64 {
    checksum::sum(0, &p[12..20]) + 6 + tcp_len as u64
}

/// If `p` may be coalesced: (IP + TCP header length, payload length).
/// IPv4 without options or fragments, TCP with only ACK (or ACK+PSH),
/// a payload, consistent lengths and a correct TCP checksum.
fn tcp_candidate(p: &[u8]) -> Option<(usize, usize)> {
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
    if checksum::finish(sum_fast(pseudo_v4(p, tcp_len), &p[IPV4_HDR..])) != 0 {
        return None;
    }
    Some((IPV4_HDR + tcp_hl, p.len() - IPV4_HDR - tcp_hl))
}

/// True when `p` continues the flow whose head is `h` at `f`.
fn continues(h: &[u8], f: &Frame, p: &[u8], hdr_len: usize, payload: usize) -> bool {
    !f.closed
        && f.hdr_len == hdr_len
        && f.segs < MAX_SEGS
        && payload <= f.gso_size
        && hdr_len + f.payload + payload <= 65_535
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

impl TunWriter {
    /// A writer for a TUN with (`vnet`) or without a virtio_net_hdr.
    pub(crate) fn new(vnet: bool) -> Self {
        Self {
            vnet,
            pkts: Vec::with_capacity(256),
            frames: Vec::with_capacity(256),
            open: Vec::with_capacity(OPEN_FLOWS),
            hdr: [0; VNET_HDR_LEN + 120],
        }
    }

    /// Packets queued.
    pub(crate) fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Queues `bufs[buf][range]` (one inner IP packet). `bufs` must be the
    /// same slice of buffers, unchanged, until [`Self::flush`].
    pub(crate) fn push<B: AsRef<[u8]>>(&mut self, bufs: &[B], buf: usize, range: Range<usize>) {
        let i = self.pkts.len();
        let p = &bufs[buf].as_ref()[range.clone()];
        self.pkts.push(Pkt {
            buf,
            range,
            next: usize::MAX,
        });
        let cand = if self.vnet { tcp_candidate(p) } else { None };
        if let Some((hdr_len, payload)) = cand {
            // Join the most recent open frame of this flow, if it fits.
            for k in (0..self.open.len()).rev() {
                let fi = self.open[k];
                let f = &self.frames[fi];
                let hp = &self.pkts[f.head];
                let h = &bufs[hp.buf].as_ref()[hp.range.clone()];
                if h[12..24] != p[12..24] {
                    continue;
                }
                if continues(h, f, p, hdr_len, payload) {
                    let flags = p[IPV4_HDR + 13];
                    let f = &mut self.frames[fi];
                    self.pkts[f.tail].next = i;
                    f.tail = i;
                    f.segs += 1;
                    f.payload += payload;
                    f.next_seq = f.next_seq.wrapping_add(payload as u32);
                    if payload < f.gso_size || flags & TCP_PSH != 0 {
                        f.closed = true;
                        f.psh = flags & TCP_PSH != 0;
                    }
                    return;
                }
                // Same flow but not the continuation: it stays as it is.
                self.frames[fi].closed = true;
                self.open.remove(k);
                break;
            }
            let flags = p[IPV4_HDR + 13];
            let psh = flags & TCP_PSH != 0;
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
        } else {
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
        }
    }

    /// Writes every queued frame to `fd` and forgets them.
    ///
    /// Each frame goes to the TUN queue `fds[flow_hash % fds.len()]`: the
    /// kernel steers a flow's outgoing packets to the queue its incoming
    /// packets were last written to, so writing by a fixed hash keeps every
    /// flow on one egress thread (writing from whichever ingress thread got
    /// the datagram lets the peers' port hashing flip a flow between queues
    /// every round trip, reordering it).
    pub(crate) fn flush<B: AsRef<[u8]>>(&mut self, fds: &[i32], bufs: &[B]) -> Written {
        let mut w = Written::default();
        let zero = [0u8; VNET_HDR_LEN];
        for fi in 0..self.frames.len() {
            let f = self.frames[fi].clone();
            let hp = &self.pkts[f.head];
            let head = &bufs[hp.buf].as_ref()[hp.range.clone()];
            let fd = match fds.len() {
                0 => continue,
                1 => fds[0],
                n => fds[flow_hash(head) as usize % n],
            };
            let res = if f.segs == 1 {
                if self.vnet {
                    write_vectored(fd, &[IoSlice::new(&zero), IoSlice::new(head)])
                } else {
                    write_vectored(fd, &[IoSlice::new(head)])
                }
            } else {
                let n = self.build_header(head, &f);
                let mut iov: [IoSlice<'_>; MAX_SEGS + 1] = [IoSlice::new(&[]); MAX_SEGS + 1];
                iov[0] = IoSlice::new(&self.hdr[..n]);
                let mut k = 1;
                let mut pi = f.head;
                while pi != usize::MAX && k <= MAX_SEGS {
                    let p = &self.pkts[pi];
                    let bytes = &bufs[p.buf].as_ref()[p.range.clone()];
                    iov[k] = IoSlice::new(&bytes[f.hdr_len..]);
                    k += 1;
                    pi = p.next;
                }
                write_vectored(fd, &iov[..k])
            };
            w.frames += 1;
            if res.is_err() {
                w.errors += 1;
            }
        }
        self.pkts.clear();
        self.frames.clear();
        self.open.clear();
        w
    }

    /// Writes the virtio_net_hdr and the coalesced IP/TCP header of `f`
    /// into `self.hdr`; returns their length.
    fn build_header(&mut self, head: &[u8], f: &Frame) -> usize {
        let hl = f.hdr_len;
        let total = hl + f.payload;
        let out = &mut self.hdr;
        out[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        out[1] = VIRTIO_NET_HDR_GSO_TCPV4;
        out[2..4].copy_from_slice(&(hl as u16).to_le_bytes());
        out[4..6].copy_from_slice(&(f.gso_size as u16).to_le_bytes());
        out[6..8].copy_from_slice(&(IPV4_HDR as u16).to_le_bytes());
        out[8..10].copy_from_slice(&16u16.to_le_bytes());
        let h = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + hl];
        h.copy_from_slice(&head[..hl]);
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
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
        VNET_HDR_LEN + hl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP segment 10.0.0.1:1000 -> 10.0.0.2:80 with a timestamp
    /// option, correct checksums.
    fn seg(seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
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

    fn frames(w: &TunWriter) -> Vec<(usize, usize, bool)> {
        w.frames
            .iter()
            .map(|f| (f.segs, f.payload, f.psh))
            .collect()
    }

    #[test]
    fn coalesces_in_order_segments_and_rebuilds_a_valid_header() {
        let a = seg(100, &[1; 50], TCP_ACK);
        let b = seg(150, &[2; 50], TCP_ACK);
        let c = seg(200, &[3; 20], TCP_ACK | TCP_PSH);
        let bufs = vec![a.clone(), b, c];
        let mut w = TunWriter::new(true);
        for (i, p) in bufs.iter().enumerate() {
            w.push(&bufs, i, 0..p.len());
        }
        assert_eq!(frames(&w), vec![(3, 120, true)]);
        let f = w.frames[0].clone();
        let n = w.build_header(&a, &f);
        assert_eq!(n, VNET_HDR_LEN + 52);
        let h = &w.hdr[VNET_HDR_LEN..n];
        assert_eq!(be16(h, 2) as usize, 52 + 120);
        assert!(checksum::header_ok(&h[..20]));
        assert_eq!(h[IPV4_HDR + 13], TCP_ACK | TCP_PSH);
        assert_eq!(w.hdr[0..2], [1, 1]);
        assert_eq!(u16::from_le_bytes([w.hdr[4], w.hdr[5]]), 50);
        // The pseudo-header sum plus the segment bytes with the checksum
        // field holding it gives a valid checksum of the merged packet.
        let mut merged = h.to_vec();
        merged.extend_from_slice(&[1; 50]);
        merged.extend_from_slice(&[2; 50]);
        merged.extend_from_slice(&[3; 20]);
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
        let a = seg(100, &[1; 50], TCP_ACK);
        let gap = seg(200, &[2; 50], TCP_ACK);
        let mut bad = seg(250, &[3; 50], TCP_ACK);
        bad[60] ^= 1;
        let syn = seg(300, &[4; 10], 0x02);
        let bufs = vec![a, gap, bad, syn];
        let mut w = TunWriter::new(true);
        for (i, p) in bufs.iter().enumerate() {
            w.push(&bufs, i, 0..p.len());
        }
        assert_eq!(w.frames.len(), 4);
        assert!(w.frames.iter().all(|f| f.segs == 1));
        let mut w = TunWriter::new(false);
        let ok = vec![seg(100, &[1; 50], TCP_ACK), seg(150, &[1; 50], TCP_ACK)];
        for (i, p) in ok.iter().enumerate() {
            w.push(&ok, i, 0..p.len());
        }
        assert_eq!(w.frames.len(), 2);
    }

    #[test]
    fn fast_sum_equals_the_reference() {
        let data: Vec<u8> = (0..3001u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0, 1, 2, 3, 4, 5, 63, 64, 65, 1448, 3001] {
            for acc in [0u64, 0xffff, 0x1234_5678] {
                let d = &data[..len];
                assert_eq!(
                    checksum::finish(sum_fast(acc, d)),
                    checksum::finish(checksum::sum(acc, d)),
                    "len {len} acc {acc:#x}"
                );
            }
        }
        let ones = vec![0xffu8; 4096];
        assert_eq!(
            checksum::finish(sum_fast(0, &ones)),
            checksum::finish(checksum::sum(0, &ones))
        );
    }

    #[test]
    fn flow_hash_is_symmetric_and_spreads() {
        let a = seg(1, &[0; 4], TCP_ACK);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&a[16..20]);
        b[16..20].copy_from_slice(&a[12..16]);
        b[20..22].copy_from_slice(&a[22..24]);
        b[22..24].copy_from_slice(&a[20..22]);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let queues: std::collections::HashSet<u32> = (0..16u16)
            .map(|i| {
                let mut c = a.clone();
                c[20..22].copy_from_slice(&(40000 + i).to_be_bytes());
                flow_hash(&c) % 2
            })
            .collect();
        assert_eq!(queues.len(), 2, "16 flows should use both of 2 queues");
        assert_eq!(flow_hash(&[]), 0);
        assert_eq!(flow_hash(&a[..10]), 0);
    }

    #[test]
    fn a_short_segment_closes_the_frame() {
        let bufs = vec![
            seg(100, &[1; 50], TCP_ACK),
            seg(150, &[1; 30], TCP_ACK),
            seg(180, &[1; 50], TCP_ACK),
            seg(230, &[1; 50], TCP_ACK),
        ];
        let mut w = TunWriter::new(true);
        for (i, p) in bufs.iter().enumerate() {
            w.push(&bufs, i, 0..p.len());
        }
        assert_eq!(frames(&w), vec![(2, 80, false), (2, 100, false)]);
        assert_eq!(w.len(), 4);
    }
}
