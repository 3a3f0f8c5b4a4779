//! The wireguard loops. Egress: TUN queue -> egress plan (peer, MTU) ->
//! the peer's key -> encrypt -> UDP GSO / `sendmmsg` from the WireGuard
//! port. Ingress: `recvmmsg` (with GRO) -> [`Tunnels::receive`] ->
//! allowed sources -> coalescing plan -> TUN. Timers: every 100 ms each
//! peer's rekey / keepalive / retry timers, every second the handshake
//! rate limit. Each loop asks the pure parts and counts; the crypto is
//! boringtun's, one lock per peer.

use std::io;
use std::net::SocketAddrV4;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tun_rs::{SyncDevice, VIRTIO_NET_HDR_LEN};
use weft_encap::InnerPacket;
use weft_encap::egress::{Egress, EgressDrop, EgressPath, plan};

use super::super::counters::Reason;
use super::super::encap_params::EncapParams;
use super::super::io::send::{EMPTY, send_all};
use super::super::io::socket::{MAX_DATAGRAM, RecvBatch, UdpSock, Underlay};
use super::super::io::tun_writer::TunWriter;
use super::super::wireguard::tunnels::{PeerSet, Received, Tunnels};
use super::egress::too_big_reply;
use super::{Shared, View, tun_fd, tun_has_vnet_hdr};

/// Packets one egress batch holds.
const EGRESS_BATCH: usize = 256;
/// TUN reads per round at most (each may carry a 64 KiB burst).
const EGRESS_READS: usize = 64;
/// Room a single TUN read may need (a 64 KiB GSO packet in small segments).
const EGRESS_READ_ROOM: usize = 160;
/// WireGuard's data message overhead: header 16 + tag 16.
pub(crate) const DATA_OVERHEAD: usize = 32;
/// Outer IPv4 + UDP + WireGuard data overhead.
const OUTER_V4: usize = 20 + 8 + DATA_OVERHEAD;
/// Datagrams (or GRO batches) one receive takes.
const INGRESS_BATCH: usize = 32;
/// Decrypted packets one ingress round keeps for the TUN writer.
const DECRYPT_SLOTS: usize = 512;
/// Largest datagram decrypted (a 9000-byte jumbo underlay and more).
const DECRYPT_ROOM: usize = 9216 + 256;
/// How often the peers' timers run.
const TICK: Duration = Duration::from_millis(100);

/// Egress loop of one TUN queue; sends on `tx` (bound to the WireGuard
/// port).
pub(crate) fn egress(
    tun: &SyncDevice,
    tx: &Underlay,
    wg: &Tunnels,
    params: EncapParams,
    shared: &Shared,
) {
    let seg_cap = shared.underlay_mtu.load(Ordering::Relaxed).max(1500) + 64;
    let mut raw = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
    let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; seg_cap]; EGRESS_BATCH];
    let mut sizes = vec![0usize; EGRESS_BATCH];
    let mut sealed: Vec<Vec<u8>> = vec![vec![0u8; seg_cap + DATA_OVERHEAD + 148]; EGRESS_BATCH];
    // Per packet: WireGuard peer and the datagram's range in `sealed`.
    let mut out: Vec<(usize, Range<usize>)> = vec![(EMPTY, 0..0); EGRESS_BATCH];
    let mut icmp_buf = vec![0u8; VIRTIO_NET_HDR_LEN + 1500];
    let mut view = View::new(shared);
    let (mut wg_gen, mut set) = wg.current();

    while !shared.stop.load(Ordering::Relaxed) {
        view.refresh(shared);
        if wg.generation() != wg_gen {
            (wg_gen, set) = wg.current();
        }
        let max_inner = shared
            .underlay_mtu
            .load(Ordering::Relaxed)
            .saturating_sub(OUTER_V4)
            .min(seg_cap);
        let path = EgressPath {
            max_inner,
            tap: false,
            vxlan: false,
        };
        let mut used = 0;
        let mut reads = 0;
        while used + EGRESS_READ_ROOM <= EGRESS_BATCH && reads < EGRESS_READS {
            match tun.recv_multiple(&mut raw, &mut bufs[used..], &mut sizes[used..], 0) {
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
        for i in 0..used {
            out[i].0 = EMPTY;
            let pkt = &bufs[i][..sizes[i]];
            match plan(pkt, None, &*view.table, &path) {
                Egress::Socket { peer } | Egress::Tap { peer, .. } | Egress::Split { peer, .. } => {
                    let via = view.table.peers()[peer].underlay;
                    let Some(w) = set.index.by_via(via) else {
                        view.counts.drop_packet(Reason::NO_KEY, Some(peer));
                        continue;
                    };
                    if let Some(n) = set.encapsulate(w, pkt, &mut sealed[i]) {
                        out[i] = (w, 0..n);
                    }
                    // Sent, or queued behind the handshake just sent.
                    view.counts.tx(peer, sizes[i]);
                }
                Egress::TooBig { mtu } => {
                    if too_big_reply(tun, pkt, mtu, &params, &mut icmp_buf) {
                        view.counts.icmp_too_big();
                    }
                    view.counts.drop_packet(Reason::TOO_BIG, None);
                }
                Egress::Drop(EgressDrop::NoRoute) => {
                    view.counts.drop_packet(Reason::NO_ROUTE, None);
                }
                Egress::Drop(EgressDrop::BadOffload) => {
                    view.counts.drop_packet(Reason::TUN_ERROR, None);
                }
            }
        }
        let dst = |w: usize| endpoint(&set, w);
        let failed = send_all(tx, dst, &sealed, &out[..used]);
        for _ in 0..failed {
            view.counts.drop_packet(Reason::SEND_ERROR, None);
        }
        view.flush();
    }
}

fn endpoint(set: &PeerSet, w: usize) -> SocketAddrV4 {
    set.peer(w)
        .map_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0), |t| {
            t.endpoint()
        })
}

/// Ingress loop of one WireGuard socket. `tuns` are all queues of the TUN.
pub(crate) fn ingress(
    tun: &SyncDevice,
    tuns: &[Arc<SyncDevice>],
    rx: &UdpSock,
    wg: &Tunnels,
    shared: &Shared,
) {
    let mut batch = RecvBatch::new(INGRESS_BATCH, MAX_DATAGRAM);
    let mut writer = TunWriter::new(tun_has_vnet_hdr(tun));
    let tfds: Vec<i32> = tuns.iter().map(|t| tun_fd(t)).collect();
    let mut plain: Vec<Vec<u8>> = vec![vec![0u8; DECRYPT_ROOM]; DECRYPT_SLOTS];
    let mut used = 0;
    // Queued packets come from the egress side and may be as large as its
    // buffers; boringtun needs room for each plus its overhead.
    let mut reply = vec![0u8; MAX_DATAGRAM + DATA_OVERHEAD];
    let mut view = View::new(shared);
    let fd = rx.raw_fd();
    let (mut wg_gen, mut set) = wg.current();

    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(n) = rx.recv_batch(&mut batch) else {
            view.sleep(fd);
            continue;
        };
        view.refresh(shared);
        if wg.generation() != wg_gen {
            (wg_gen, set) = wg.current();
        }
        for m in 0..n {
            let (data, src, seg) = batch.get(m);
            for dgram in data.chunks(seg) {
                if dgram.len() > DECRYPT_ROOM {
                    view.counts.drop_packet(Reason::TOO_BIG, None);
                    continue;
                }
                if used == DECRYPT_SLOTS {
                    flush(&mut writer, &tfds, &plain, &mut view);
                    used = 0;
                }
                match wg.receive(&set, src, dgram, &mut plain[used]) {
                    Received::Packet { peer, len } => {
                        let pkt = &plain[used][..len];
                        let Ok(inner) = InnerPacket::parse(pkt) else {
                            view.counts.drop_packet(Reason::WG_INVALID, None);
                            continue;
                        };
                        match set.index.admit(&view.table, peer, inner.src(), inner.dst()) {
                            Ok(routed) => {
                                view.counts.rx(routed, len);
                                writer.push(&plain, used, 0..len);
                                used += 1;
                            }
                            Err(r) => view.counts.drop_packet(Reason::refusal(r), None),
                        }
                    }
                    Received::Reply { to, len, peer } => {
                        let msg = &plain[used][..len];
                        let _ = rx.send_batch(1, |_| (to, msg));
                        match peer {
                            // What the peer queued before its session.
                            Some(w) => {
                                while let Some(k) = set.queued(w, &mut reply) {
                                    let to = endpoint(&set, w);
                                    let _ = rx.send_batch(1, |_| (to, &reply[..k]));
                                }
                            }
                            None => view.counts.drop_packet(Reason::WG_COOKIE, None),
                        }
                    }
                    Received::Nothing => {}
                    Received::Drop(r, _) => view.counts.drop_packet(r, None),
                }
            }
        }
        if used > 0 {
            flush(&mut writer, &tfds, &plain, &mut view);
            used = 0;
        }
        view.flush();
    }
}

fn flush(writer: &mut TunWriter, tfds: &[i32], plain: &[Vec<u8>], view: &mut View) {
    if writer.len() > 0 {
        let w = writer.flush(tfds, plain);
        for _ in 0..w.errors {
            view.counts.drop_packet(Reason::TUN_ERROR, None);
        }
    }
}

/// Timer loop: learned keys and each peer's timers every [`TICK`], the
/// handshake rate limit once a second. Sends on `tx`.
pub(crate) fn timers(tx: &UdpSock, wg: &Tunnels, shared: &Shared) {
    let mut buf = vec![0u8; 2048];
    let mut last_reset = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        wg.refresh_keys();
        let (_, set) = wg.current();
        for w in 0..set.len() {
            if let Some(n) = set.tick(w, &mut buf) {
                let to = endpoint(&set, w);
                let _ = tx.send_batch(1, |_| (to, &buf[..n]));
            }
        }
        if last_reset.elapsed() >= Duration::from_secs(1) {
            wg.reset_rate_limit();
            last_reset = Instant::now();
        }
    }
}
