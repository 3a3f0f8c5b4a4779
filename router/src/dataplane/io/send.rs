//! Sending finished underlay datagrams: runs to one peer of equal size as
//! one UDP GSO send when the socket can, the rest through `sendmmsg`.

use std::net::SocketAddrV4;
use std::ops::Range;

use super::socket::Underlay;
use super::socket::{MAX_DATAGRAM, MAX_GSO_SEGMENTS};

/// No datagram in this slot (dropped before sending).
pub(crate) const EMPTY: usize = usize::MAX;

/// Sends `bufs[i][range]` to `dst(peer)` for every `(peer, range)` of
/// `out` whose peer is not [`EMPTY`]. Returns how many were not sent.
pub(crate) fn send_all(
    tx: &Underlay,
    dst: impl Fn(usize) -> SocketAddrV4,
    bufs: &[Vec<u8>],
    out: &[(usize, Range<usize>)],
) -> usize {
    let mut failed = 0;
    match tx {
        Underlay::Udp(sock) if sock.gso => {
            let mut i = 0;
            while i < out.len() {
                let (peer, ref r) = out[i];
                if peer == EMPTY {
                    i += 1;
                    continue;
                }
                let seg = r.len();
                let mut segs: [&[u8]; MAX_GSO_SEGMENTS] = [&[]; MAX_GSO_SEGMENTS];
                let mut n = 0;
                let mut total = 0;
                while i < out.len() && n < MAX_GSO_SEGMENTS {
                    let (p, ref r) = out[i];
                    if p == EMPTY {
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
                    sock.send_batch(1, |_| (dst(peer), segs[0])).map(drop)
                } else {
                    sock.send_gso(
                        dst(peer),
                        &segs[..n],
                        u16::try_from(seg).unwrap_or(u16::MAX),
                    )
                };
                if res.is_err() {
                    failed += n;
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
                    (dst(p), &bufs[idx[k]][r.clone()])
                };
                let res = match tx {
                    Underlay::Udp(s) => s.send_batch(idx.len(), get),
                    Underlay::Raw(s) => s.send_batch(idx.len(), get),
                };
                failed += idx.len() - res.unwrap_or(0).min(idx.len());
            };
            for (i, (p, _)) in out.iter().enumerate() {
                if *p == EMPTY {
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
    failed
}
