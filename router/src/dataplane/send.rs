//! Sending finished underlay datagrams: UDP GSO runs per peer, or
//! `sendmmsg` batches.

use std::net::SocketAddrV4;
use std::ops::Range;

use super::counters::{LocalCounts, Reason};
use super::encap_params::EncapParams;
use super::peer_table::PeerTable;
use super::socket::Underlay;
use super::socket::{MAX_DATAGRAM, MAX_GSO_SEGMENTS};

/// Sends the finished datagrams: runs to one peer of equal size go out as
/// one UDP GSO send when available; the rest through `sendmmsg`.
pub(crate) fn send_all(
    tx: &Underlay,
    codec: &EncapParams,
    table: &PeerTable,
    bufs: &[Vec<u8>],
    out: &[(usize, Range<usize>)],
    counts: &mut LocalCounts,
) {
    let dst_of = |peer: usize| SocketAddrV4::new(table.peers()[peer].underlay, codec.port);
    match tx {
        Underlay::Udp(sock) if sock.gso => {
            let mut i = 0;
            while i < out.len() {
                let (peer, ref r) = out[i];
                if peer == usize::MAX {
                    i += 1;
                    continue;
                }
                let seg = r.len();
                let mut segs: [&[u8]; MAX_GSO_SEGMENTS] = [&[]; MAX_GSO_SEGMENTS];
                let mut n = 0;
                let mut total = 0;
                while i < out.len() && n < MAX_GSO_SEGMENTS {
                    let (p, ref r) = out[i];
                    if p == usize::MAX {
                        i += 1;
                        continue;
                    }
                    if p != peer || r.len() > seg || total + r.len() > MAX_DATAGRAM - 100 {
                        break;
                    }
                    segs[n] = &bufs[i][r.clone()];
                    n += 1;
                    total += r.len();
                    i += 1;
                    if r.len() < seg {
                        break; // a shorter segment ends a GSO run
                    }
                }
                let res = if n == 1 {
                    sock.send_batch(1, |_| (dst_of(peer), segs[0])).map(drop)
                } else {
                    sock.send_gso(
                        dst_of(peer),
                        &segs[..n],
                        u16::try_from(seg).unwrap_or(u16::MAX),
                    )
                };
                if res.is_err() {
                    for _ in 0..n {
                        counts.drop_packet(Reason::SEND_ERROR, None);
                    }
                }
            }
        }
        _ => {
            // Compact the valid entries' indices onto the stack in chunks.
            let mut idx = [0usize; 64];
            let mut n = 0;
            let mut flush = |idx: &[usize]| {
                let get = |k: usize| {
                    let (p, ref r) = out[idx[k]];
                    (dst_of(p), &bufs[idx[k]][r.clone()])
                };
                let res = match tx {
                    Underlay::Udp(s) => s.send_batch(idx.len(), get),
                    Underlay::Raw(s) => s.send_batch(idx.len(), get),
                };
                let sent = res.unwrap_or(0);
                for _ in sent..idx.len() {
                    counts.drop_packet(Reason::SEND_ERROR, None);
                }
            };
            for (i, (p, _)) in out.iter().enumerate() {
                if *p == usize::MAX {
                    continue;
                }
                idx[n] = i;
                n += 1;
                if n == idx.len() {
                    flush(&idx[..n]);
                    n = 0;
                }
            }
            if n > 0 {
                flush(&idx[..n]);
            }
        }
    }
}
