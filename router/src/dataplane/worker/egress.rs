//! Egress: TUN queue -> `weft_encap::egress::plan` -> TX TAP frame, or
//! encapsulation and the underlay socket. The plan is the same for both
//! paths; this loop reads, carries the decision out and counts.

use std::io::{self, IoSlice};
use std::net::SocketAddrV4;
use std::ops::Range;
use std::sync::atomic::Ordering;

use tun_rs::{SyncDevice, VIRTIO_NET_HDR_LEN, VirtioNetHdr};
use weft_encap::egress::{Egress, EgressDrop, EgressPath, plan};
use weft_encap::offload::{self, OffloadHeader};
use weft_encap::{IpVersion, MAX_HEADROOM, icmp, tunnel_frame, vxlan};

use super::super::counters::{LocalCounts, Reason};
use super::super::encap_params::EncapParams;
use super::super::io::send::{EMPTY, send_all};
use super::super::io::socket::{Underlay, read_fd, write_vectored};
use super::{Shared, View, tun_fd, tun_has_vnet_hdr};

/// Segments one egress batch holds.
const EGRESS_BATCH: usize = 256;
/// TUN reads per round at most (each may carry a 64 KiB burst).
const EGRESS_READS: usize = 64;
/// Room a single TUN read may need (a 64 KiB GSO packet in small segments).
const EGRESS_READ_ROOM: usize = 160;

/// The TX TAP queue an egress thread writes whole bursts to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapQueue {
    pub(crate) fd: i32,
    pub(crate) mac: [u8; 6],
}

/// Counts a drop the plan decided.
fn count_drop(counts: &mut LocalCounts, why: EgressDrop) {
    let reason = match why {
        EgressDrop::NoRoute => Reason::NO_ROUTE,
        EgressDrop::BadOffload => Reason::TUN_ERROR,
    };
    counts.drop_packet(reason, None);
}

/// Egress loop.
pub(crate) fn egress(
    tun: &SyncDevice,
    tx: &Underlay,
    tap: Option<&TapQueue>,
    params: EncapParams,
    shared: &Shared,
) {
    let offset = MAX_HEADROOM;
    let seg_cap = offset + shared.underlay_mtu.load(Ordering::Relaxed).max(1500) + 64;
    let mut raw = vec![0u8; tunnel_frame::HEADROOM + 65_535];
    let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; seg_cap]; EGRESS_BATCH];
    let mut sizes = vec![0usize; EGRESS_BATCH];
    // Per segment: peer index and the finished datagram's range.
    let mut out: Vec<(usize, Range<usize>)> = vec![(EMPTY, 0..0); EGRESS_BATCH];
    let mut icmp_buf = vec![0u8; VIRTIO_NET_HDR_LEN + 1500];
    let mut view = View::new(shared);

    while !shared.stop.load(Ordering::Relaxed) {
        view.refresh(shared);
        let max_inner = shared
            .underlay_mtu
            .load(Ordering::Relaxed)
            .saturating_sub(params.overhead());
        let path = EgressPath {
            max_inner,
            tap: tap.is_some(),
            vxlan: params.is_vxlan(),
        };
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
                        params: &params,
                        view: &mut view,
                        path,
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
                view.sleep(tun_fd(tun));
            }
            continue;
        }

        // Single packets for the socket, which must also fit the buffers.
        let socket_path = EgressPath {
            max_inner: max_inner.min(seg_cap - offset),
            tap: false,
            ..path
        };
        for i in 0..used {
            out[i].0 = EMPTY;
            let inner = offset..offset + sizes[i];
            match plan(&bufs[i][inner.clone()], None, &*view.table, &socket_path) {
                // Without an offload header the plan only says Socket;
                // any decision with a peer goes out through the socket.
                Egress::Socket { peer } | Egress::Tap { peer, .. } | Egress::Split { peer, .. } => {
                    let mac = view.table.peers()[peer].vtep_mac;
                    match params.format.encap(&mut bufs[i], inner, mac) {
                        Ok(r) => {
                            view.counts.tx(peer, sizes[i]);
                            out[i] = (peer, r);
                        }
                        Err(_) => view.counts.drop_packet(Reason::ENCAP_ERROR, Some(peer)),
                    }
                }
                Egress::TooBig { mtu } => {
                    let pkt = &bufs[i][offset..offset + sizes[i]];
                    if too_big_reply(tun, pkt, mtu, &params, &mut icmp_buf) {
                        view.counts.icmp_too_big();
                    }
                    view.counts.drop_packet(Reason::TOO_BIG, None);
                }
                Egress::Drop(why) => count_drop(&mut view.counts, why),
            }
        }

        let table = &view.table;
        let dst = |peer: usize| SocketAddrV4::new(table.peers()[peer].underlay, params.port);
        let failed = send_all(tx, dst, &bufs, &out[..used]);
        for _ in 0..failed {
            view.counts.drop_packet(Reason::SEND_ERROR, None);
        }
        view.flush();
    }
}

/// One egress thread's view while it reads for the TX TAP.
struct TapCtx<'a> {
    tun: &'a SyncDevice,
    tap: &'a TapQueue,
    params: &'a EncapParams,
    view: &'a mut View,
    path: EgressPath,
    icmp_buf: &'a mut [u8],
}

impl TapCtx<'_> {
    /// Reads one packet from the TUN and carries out its plan: written,
    /// encapsulated, to the TAP (Ok(0)), or dropped and counted (Ok(0)); a
    /// GSO burst no single frame carries is split into `bufs` for the
    /// socket path (Ok(n)).
    fn read_one(
        &mut self,
        raw: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        // The packet lands after room for the frame headers, which are then
        // written in place in front of it.
        let at = tunnel_frame::HEADROOM;
        let n = read_fd(tun_fd(self.tun), &mut raw[at - offload::LEN..])?;
        let vh = OffloadHeader::parse(&raw[at - offload::LEN..at]);
        let counts = &mut self.view.counts;
        let (Some(vh), Some(len)) = (vh, n.checked_sub(offload::LEN)) else {
            counts.drop_packet(Reason::TUN_ERROR, None);
            return Ok(0);
        };
        let inner = at..at + len;
        let table = &self.view.table;
        match plan(&raw[inner.clone()], Some(vh), &**table, &self.path) {
            Egress::Tap {
                peer,
                offload: o,
                src_port,
            } => {
                let p = &table.peers()[peer];
                let outer = tunnel_frame::Outer {
                    src: self.params.local_ip,
                    dst: p.underlay,
                    src_port,
                    dst_port: self.params.port,
                    vxlan: match self.params.format {
                        weft_encap::format::Format::Vxlan { vni, local_mac } => {
                            Some(vxlan::Header::new(vni, local_mac, p.vtep_mac))
                        }
                        _ => None,
                    },
                };
                let Some(frame) = tunnel_frame::build(raw, inner, self.tap.mac, &outer, &o) else {
                    counts.drop_packet(Reason::ENCAP_ERROR, Some(peer));
                    return Ok(0);
                };
                match write_vectored(self.tap.fd, &[IoSlice::new(&raw[frame])]) {
                    Ok(_) => counts.tx_many(peer, o.segments(len), o.segmented_len(len)),
                    Err(_) => {
                        for _ in 0..o.segments(len) {
                            counts.drop_packet(Reason::SEND_ERROR, Some(peer));
                        }
                    }
                }
                Ok(0)
            }
            // Too long for one outer packet (a GRO-merged forward):
            // segment it here; the segments take the socket path.
            Egress::Split { offload: o, .. } => {
                let v6 = IpVersion::of(&raw[inner.clone()]) == Some(IpVersion::V6);
                let vh = VirtioNetHdr {
                    flags: o.flags,
                    gso_type: o.gso_type,
                    hdr_len: o.hdr_len,
                    gso_size: o.gso_size,
                    csum_start: o.csum_start,
                    csum_offset: o.csum_offset,
                };
                tun_rs::gso_split(&mut raw[inner], vh, bufs, sizes, offset, v6)
            }
            // A single packet the TAP does not take: the socket path.
            Egress::Socket { .. } => match bufs.first_mut() {
                Some(b) if offset + len <= b.len() => {
                    b[offset..offset + len].copy_from_slice(&raw[inner]);
                    sizes[0] = len;
                    Ok(1)
                }
                _ => {
                    counts.drop_packet(Reason::TOO_BIG, None);
                    Ok(0)
                }
            },
            Egress::TooBig { mtu } => {
                let pkt = &raw[inner];
                if too_big_reply(self.tun, pkt, mtu, self.params, self.icmp_buf) {
                    counts.icmp_too_big();
                }
                counts.drop_packet(Reason::TOO_BIG, None);
                Ok(0)
            }
            Egress::Drop(why) => {
                count_drop(counts, why);
                Ok(0)
            }
        }
    }
}

/// Writes an ICMP too-big reply for `pkt` into the TUN. True if sent.
pub(super) fn too_big_reply(
    tun: &SyncDevice,
    pkt: &[u8],
    mtu: usize,
    params: &EncapParams,
    buf: &mut [u8],
) -> bool {
    let (hdr, body) = buf.split_at_mut(VIRTIO_NET_HDR_LEN);
    hdr.fill(0);
    let n = match IpVersion::of(pkt) {
        Some(IpVersion::V4) => icmp::frag_needed_v4(
            pkt,
            u16::try_from(mtu).unwrap_or(u16::MAX),
            params.local_ip,
            body,
        ),
        Some(IpVersion::V6) => icmp::packet_too_big_v6(
            pkt,
            u32::try_from(mtu).unwrap_or(u32::MAX),
            params.icmp6_src,
            body,
        ),
        None => return false,
    };
    let Ok(n) = n else { return false };
    let frame = if tun_has_vnet_hdr(tun) {
        &buf[..VIRTIO_NET_HDR_LEN + n]
    } else {
        &buf[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + n]
    };
    tun.send(frame).is_ok()
}
