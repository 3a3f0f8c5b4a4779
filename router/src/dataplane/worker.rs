//! The batch loops. Per TUN queue one egress thread (TUN -> encapsulate ->
//! underlay) and one ingress thread (underlay -> decapsulate + anti-spoof
//! -> TUN). Buffers are allocated once; per batch a worker checks one
//! atomic for a new peer table and flushes its local counters once. No
//! per-packet allocation, lock, channel or log line.

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tun_rs::{SyncDevice, VIRTIO_NET_HDR_LEN, VirtioNetHdr};
use weft_encap::{MAX_HEADROOM, flow, icmp, ipip, udp, vxlan};

use super::counters::{CounterHandles, LocalCounts, Reason};
use super::encap_params::EncapParams;
use super::gro::TunWriter;
use super::peer_table::PeerTable;
use super::send::send_all;
use super::socket::{MAX_DATAGRAM, RecvBatch, Underlay, read_fd, wait_readable, write_vectored};
use super::tx_tap::{FRAME_HEADROOM, Wrap, build_frame, is_gso, segments};
use crate::mode::Mode;

/// Segments one egress batch holds.
const EGRESS_BATCH: usize = 256;
/// TUN reads per round at most (each may carry a 64 KiB burst).
const EGRESS_READS: usize = 64;
/// Room a single TUN read may need (a 64 KiB GSO packet in small segments).
const EGRESS_READ_ROOM: usize = 160;
/// Datagrams (or GRO batches) one receive takes.
const INGRESS_BATCH: usize = 32;
/// How long an idle worker sleeps before re-checking the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// State shared by the control loop and the workers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    /// Largest outer packet the underlay carries now.
    pub(crate) underlay_mtu: AtomicUsize,
    generation: AtomicU64,
    table: Mutex<Arc<PeerTable>>,
}

impl Shared {
    /// Publishes a new peer table.
    pub(crate) fn set_table(&self, t: PeerTable) {
        if let Ok(mut g) = self.table.lock() {
            *g = Arc::new(t);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn snapshot(&self) -> (u64, Arc<PeerTable>) {
        let generation = self.generation.load(Ordering::Acquire);
        let t = self
            .table
            .lock()
            .map(|g| Arc::clone(&g))
            .unwrap_or_default();
        (generation, t)
    }
}

/// A worker's copy of the peer table and counters, refreshed on change.
struct View {
    generation: u64,
    table: Arc<PeerTable>,
    handles: CounterHandles,
    counts: LocalCounts,
}

impl View {
    fn new(shared: &Shared) -> Self {
        let (generation, table) = shared.snapshot();
        Self {
            generation,
            handles: CounterHandles::new(),
            counts: LocalCounts::new(table.peers().len()),
            table,
        }
    }

    /// One atomic load per batch; takes the new table only when routes
    /// changed (the counter handles stay).
    fn refresh(&mut self, shared: &Shared) {
        if shared.generation.load(Ordering::Acquire) != self.generation {
            self.flush();
            let (generation, table) = shared.snapshot();
            self.counts = LocalCounts::new(table.peers().len());
            self.generation = generation;
            self.table = table;
        }
    }

    /// Hands the local counts to the metrics registry.
    fn flush(&mut self) {
        self.counts.flush(&mut self.handles, &self.table);
    }
}

fn inner_dst(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => {
            let b: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Egress: TUN queue -> encapsulate -> underlay.
pub(crate) fn egress(
    tun: &SyncDevice,
    tx: &Underlay,
    tap: Option<&TapQueue>,
    codec: EncapParams,
    shared: &Shared,
) {
    let offset = MAX_HEADROOM;
    let seg_cap = offset + shared.underlay_mtu.load(Ordering::Relaxed).max(1500) + 64;
    let mut raw = vec![0u8; FRAME_HEADROOM + 65_535];
    let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; seg_cap]; EGRESS_BATCH];
    let mut sizes = vec![0usize; EGRESS_BATCH];
    // Per segment: peer index and the finished datagram's range.
    let mut out: Vec<(usize, Range<usize>)> = vec![(usize::MAX, 0..0); EGRESS_BATCH];
    let mut icmp_buf = vec![0u8; VIRTIO_NET_HDR_LEN + 1500];
    let mut view = View::new(shared);

    while !shared.stop.load(Ordering::Relaxed) {
        view.refresh(shared);
        let max_inner = shared
            .underlay_mtu
            .load(Ordering::Relaxed)
            .saturating_sub(codec.overhead());
        let mut used = 0;
        let mut reads = 0;
        // Bounded: under steady load the loop must still come round to the
        // stop flag, the counters and route changes.
        while used + EGRESS_READ_ROOM <= EGRESS_BATCH && reads < EGRESS_READS {
            let res = match tap {
                Some(tap) => {
                    let mut ctx = TapCtx {
                        tun,
                        tap,
                        codec: &codec,
                        view: &mut view,
                        max_inner,
                        icmp_buf: &mut icmp_buf,
                    };
                    ctx.read_one(&mut raw, &mut bufs[used..], &mut sizes[used..], offset)
                }
                None => tun.recv_multiple(&mut raw, &mut bufs[used..], &mut sizes[used..], offset),
            };
            match res {
                Ok(n) => {
                    reads += 1;
                    used += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    view.counts.drop_packet(Reason::TUN_ERROR, None);
                    break;
                }
            }
        }
        if used == 0 {
            if reads > 0 {
                view.flush();
            } else {
                let _ = wait_readable(tun_fd(tun), IDLE_WAIT);
            }
            continue;
        }

        // Encapsulate in place.
        for i in 0..used {
            out[i].0 = usize::MAX;
            let inner = offset..offset + sizes[i];
            let pkt = &bufs[i][inner.clone()];
            let Some(dst) = inner_dst(pkt) else {
                view.counts.drop_packet(Reason::NO_ROUTE, None);
                continue;
            };
            let Some(peer) = view.table.lookup(dst) else {
                view.counts.drop_packet(Reason::NO_ROUTE, None);
                continue;
            };
            if sizes[i] > max_inner || sizes[i] + offset > seg_cap {
                if too_big_reply(tun, pkt, max_inner, &codec, &mut icmp_buf) {
                    view.counts.icmp_too_big();
                }
                view.counts.drop_packet(Reason::TOO_BIG, None);
                continue;
            }
            let p = &view.table.peers()[peer];
            let res = match codec.mode {
                Mode::Vxlan => {
                    vxlan::encap(&mut bufs[i], inner, codec.vni, codec.local_mac, p.vtep_mac)
                }
                Mode::Udp => udp::encap(&bufs[i], inner),
                // The raw socket's kernel side adds the outer header.
                Mode::Ipip => match pkt.first().map(|b| b >> 4) {
                    Some(4) => Ok(inner),
                    _ => Err(weft_encap::EncapError::NotIpv4),
                },
                // host-gw starts no dataplane; nothing reaches this.
                Mode::HostGw => Err(weft_encap::EncapError::NotIpv4),
            };
            match res {
                Ok(r) => {
                    view.counts.tx(peer, sizes[i]);
                    out[i] = (peer, r);
                }
                Err(_) => view.counts.drop_packet(Reason::ENCAP_ERROR, Some(peer)),
            }
        }

        send_all(
            tx,
            &codec,
            &view.table,
            &bufs,
            &out[..used],
            &mut view.counts,
        );
        view.flush();
    }
}

/// The TX TAP queue an egress thread writes whole bursts to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapQueue {
    pub(crate) fd: i32,
    pub(crate) mac: [u8; 6],
}

/// One egress thread's view while it reads for the TX TAP.
struct TapCtx<'a> {
    tun: &'a SyncDevice,
    tap: &'a TapQueue,
    codec: &'a EncapParams,
    view: &'a mut View,
    max_inner: usize,
    icmp_buf: &'a mut [u8],
}

impl TapCtx<'_> {
    /// Reads one packet from the TUN and writes it, encapsulated, to the
    /// TAP (Ok(0)), or drops and counts it (Ok(0)); a GSO packet the TAP
    /// cannot carry is split into `bufs` for the socket path (Ok(n)).
    fn read_one(
        &mut self,
        raw: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        // The packet lands after room for the frame headers, which are then
        // written in place in front of it.
        let at = FRAME_HEADROOM;
        let n = read_fd(tun_fd(self.tun), &mut raw[at - VIRTIO_NET_HDR_LEN..])?;
        let vh = VirtioNetHdr::decode(&raw[at - VIRTIO_NET_HDR_LEN..at]);
        let (Ok(vh), Some(len)) = (vh, n.checked_sub(VIRTIO_NET_HDR_LEN)) else {
            self.view.counts.drop_packet(Reason::TUN_ERROR, None);
            return Ok(0);
        };
        let inner = at..at + len;
        let pkt = &raw[inner.clone()];
        let counts = &mut self.view.counts;
        let Some(peer) = inner_dst(pkt).and_then(|d| self.view.table.lookup(d)) else {
            counts.drop_packet(Reason::NO_ROUTE, None);
            return Ok(0);
        };
        let Some(vh) = transport_hdr_len(vh, pkt) else {
            counts.drop_packet(Reason::TUN_ERROR, None);
            return Ok(0);
        };
        // The largest inner packet the burst becomes must fit the underlay
        // (the kernel would otherwise drop it silently when forwarding).
        let largest = if is_gso(&vh) {
            len.min(usize::from(vh.hdr_len) + usize::from(vh.gso_size))
        } else {
            len
        };
        if largest > self.max_inner {
            if too_big_reply(self.tun, pkt, self.max_inner, self.codec, self.icmp_buf) {
                counts.icmp_too_big();
            }
            counts.drop_packet(Reason::TOO_BIG, None);
            return Ok(0);
        }
        let p = &self.view.table.peers()[peer];
        let wrap = Wrap {
            src: self.codec.local_ip,
            dst: p.underlay,
            // Per flow, in Linux's ephemeral range: spreads flows over the
            // peer's SO_REUSEPORT sockets, as the kernel's vxlan does.
            src_port: vxlan::source_port(flow::hash(pkt), vxlan::DEFAULT_SRC_PORTS),
            dst_port: self.codec.port,
            vxlan: (self.codec.mode == Mode::Vxlan)
                .then(|| vxlan::Header::new(self.codec.vni, self.codec.local_mac, p.vtep_mac)),
        };
        let v6 = pkt.first().is_some_and(|b| b >> 4 == 6);
        match build_frame(raw, inner.clone(), self.tap.mac, &wrap, &vh) {
            Some(frame) => {
                let segs = segments(&vh, len);
                let bytes = len + (segs - 1) * usize::from(vh.hdr_len);
                match write_vectored(self.tap.fd, &[IoSlice::new(&raw[frame])]) {
                    Ok(_) => counts.tx_many(peer, segs, bytes),
                    Err(_) => {
                        for _ in 0..segs {
                            counts.drop_packet(Reason::SEND_ERROR, Some(peer));
                        }
                    }
                }
                Ok(0)
            }
            // Too long for one outer packet (a GRO-merged forward):
            // segment it here and send it through the socket.
            None => tun_rs::gso_split(&mut raw[inner], vh, bufs, sizes, offset, v6),
        }
    }
}

/// Sets `hdr_len` from the transport header in `pkt` (the kernel's value
/// may cover a whole first segment on forwarded packets). None when the
/// header is inconsistent.
fn transport_hdr_len(mut vh: VirtioNetHdr, pkt: &[u8]) -> Option<VirtioNetHdr> {
    if !is_gso(&vh) {
        return Some(vh);
    }
    let start = usize::from(vh.csum_start);
    let l4 = match vh.csum_offset {
        16 => usize::from(pkt.get(start + 12)? >> 4) * 4, // TCP
        6 => 8,                                           // UDP (USO)
        _ => return None,
    };
    if !(8..=60).contains(&l4) || start + l4 > pkt.len() || vh.gso_size == 0 {
        return None;
    }
    vh.hdr_len = u16::try_from(start + l4).ok()?;
    Some(vh)
}

fn tun_fd(tun: &SyncDevice) -> i32 {
    use std::os::fd::AsRawFd;
    tun.as_raw_fd()
}

/// Writes an ICMP too-big reply for `pkt` into the TUN. True if sent.
fn too_big_reply(
    tun: &SyncDevice,
    pkt: &[u8],
    mtu: usize,
    codec: &EncapParams,
    buf: &mut [u8],
) -> bool {
    let (hdr, body) = buf.split_at_mut(VIRTIO_NET_HDR_LEN);
    hdr.fill(0);
    let n = match pkt.first().map(|b| b >> 4) {
        Some(4) => icmp::frag_needed_v4(
            pkt,
            u16::try_from(mtu).unwrap_or(u16::MAX),
            codec.local_ip,
            body,
        ),
        Some(6) => icmp::packet_too_big_v6(
            pkt,
            u32::try_from(mtu).unwrap_or(u32::MAX),
            codec.icmp6_src,
            body,
        ),
        _ => return false,
    };
    let Ok(n) = n else { return false };
    let with_hdr = tun_has_vnet_hdr(tun);
    let frame = if with_hdr {
        &buf[..VIRTIO_NET_HDR_LEN + n]
    } else {
        &buf[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + n]
    };
    tun.send(frame).is_ok()
}

fn tun_has_vnet_hdr(tun: &SyncDevice) -> bool {
    tun.tcp_gso()
}

/// Ingress: underlay -> decapsulate -> anti-spoof -> TUN queue.
/// `tuns` are all queues of the TUN (`tun` among them): frames are written
/// to the queue their flow hashes to.
pub(crate) fn ingress(
    tun: &SyncDevice,
    tuns: &[Arc<SyncDevice>],
    rx: &Underlay,
    codec: EncapParams,
    shared: &Shared,
) {
    let mut batch = RecvBatch::new(INGRESS_BATCH, MAX_DATAGRAM);
    let mut writer = TunWriter::new(tun_has_vnet_hdr(tun));
    let tfds: Vec<i32> = tuns.iter().map(|t| tun_fd(t)).collect();
    let mut view = View::new(shared);
    let fd = rx.raw_fd();

    while !shared.stop.load(Ordering::Relaxed) {
        let n = match rx.recv_batch(&mut batch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = wait_readable(fd, IDLE_WAIT);
                continue;
            }
            Err(_) => {
                let _ = wait_readable(fd, IDLE_WAIT);
                continue;
            }
        };
        view.refresh(shared);
        for m in 0..n {
            let (data, src, seg) = batch.get(m);
            for dgram in data.chunks(seg) {
                let (outer_src, inner) = match codec.mode {
                    Mode::Vxlan => match vxlan::decap(dgram, codec.vni) {
                        Ok(f) => (*src.ip(), f.inner),
                        Err(e) => {
                            let known = view.table.peer_by_underlay(*src.ip());
                            view.counts.drop_packet(Reason::decap(e), known);
                            continue;
                        }
                    },
                    Mode::Udp | Mode::HostGw => match udp::decap(dgram) {
                        Ok(p) => (*src.ip(), p),
                        Err(e) => {
                            let known = view.table.peer_by_underlay(*src.ip());
                            view.counts.drop_packet(Reason::decap(e), known);
                            continue;
                        }
                    },
                    Mode::Ipip => match ipip::decap(dgram) {
                        Ok(p) => (p.outer_src, p.inner),
                        Err(e) => {
                            view.counts.drop_packet(Reason::decap(e), None);
                            continue;
                        }
                    },
                };
                let peer = match view.table.admit(outer_src, inner.src(), inner.dst()) {
                    Ok(p) => p,
                    Err(r) => {
                        let known = view.table.peer_by_underlay(outer_src);
                        view.counts.drop_packet(Reason::refusal(r), known);
                        continue;
                    }
                };
                let bytes = inner.bytes();
                view.counts.rx(peer, bytes.len());
                // Where the inner packet lies in receive buffer m.
                let at = bytes.as_ptr() as usize - data.as_ptr() as usize;
                writer.push(batch.bufs(), m, at..at + bytes.len());
            }
        }
        if writer.len() > 0 {
            let w = writer.flush(&tfds, batch.bufs());
            for _ in 0..w.errors {
                view.counts.drop_packet(Reason::TUN_ERROR, None);
            }
        }
        view.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_dst_reads_both_families_and_rejects_runts() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 244, 2, 5]);
        assert_eq!(inner_dst(&v4), Some("10.244.2.5".parse().unwrap()));
        assert_eq!(inner_dst(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24] = 0xfd;
        assert_eq!(inner_dst(&v6), Some("fd00::".parse().unwrap()));
        assert_eq!(inner_dst(&[0x10; 40]), None);
        assert_eq!(inner_dst(&[]), None);
    }
}
