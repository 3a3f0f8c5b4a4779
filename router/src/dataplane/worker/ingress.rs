//! Ingress: underlay -> decapsulate (`Format::decap`) -> anti-spoof ->
//! coalescing plan -> TUN queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tun_rs::SyncDevice;

use super::super::counters::Reason;
use super::super::encap_params::EncapParams;
use super::super::io::socket::{MAX_DATAGRAM, RecvBatch, Underlay};
use super::super::io::tun_writer::TunWriter;
use super::{Shared, View, tun_fd, tun_has_vnet_hdr};
use weft_encap::format::Format;

/// Datagrams (or GRO batches) one receive takes.
const INGRESS_BATCH: usize = 32;

/// Ingress loop. `tuns` are all queues of the TUN (`tun` among them):
/// frames are written to the queue their flow hashes to.
pub(crate) fn ingress(
    tun: &SyncDevice,
    tuns: &[Arc<SyncDevice>],
    rx: &Underlay,
    params: EncapParams,
    shared: &Shared,
) {
    let mut batch = RecvBatch::new(INGRESS_BATCH, MAX_DATAGRAM);
    let mut writer = TunWriter::new(tun_has_vnet_hdr(tun));
    let tfds: Vec<i32> = tuns.iter().map(|t| tun_fd(t)).collect();
    let mut view = View::new(shared);
    let fd = rx.raw_fd();
    // The UDP formats' sender is the datagram's source; ipip's is in the
    // outer header, and its decode errors are not charged to a peer.
    let charge_sender = params.format != Format::Ipip;

    while !shared.stop.load(Ordering::Relaxed) {
        // WouldBlock or a socket error: wait (bounded) and retry.
        let Ok(n) = rx.recv_batch(&mut batch) else {
            view.sleep(fd);
            continue;
        };
        view.refresh(shared);
        for m in 0..n {
            let (data, src, seg) = batch.get(m);
            for (k, dgram) in data.chunks(seg).enumerate() {
                let d = match params.format.decap(dgram) {
                    Ok(d) => d,
                    Err(e) => {
                        let known = charge_sender
                            .then(|| view.table.peer_by_underlay(*src.ip()))
                            .flatten();
                        view.counts.drop_packet(Reason::decap(e), known);
                        continue;
                    }
                };
                let outer_src = d.outer_src.unwrap_or(*src.ip());
                let peer = match view.table.admit(outer_src, d.inner.src(), d.inner.dst()) {
                    Ok(p) => p,
                    Err(r) => {
                        let known = view.table.peer_by_underlay(outer_src);
                        view.counts.drop_packet(Reason::refusal(r), known);
                        continue;
                    }
                };
                view.counts.rx(peer, d.inner.len());
                // Datagram k of receive buffer m starts at k * seg.
                let at = k * seg;
                writer.push(batch.bufs(), m, at + d.range.start..at + d.range.end);
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
