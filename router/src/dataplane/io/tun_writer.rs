//! Writing a receive batch's inner packets to the TUN queues, as
//! `weft_encap::coalesce` planned them: a coalesced TCP flow is one
//! `writev` of `[virtio_net_hdr + rebuilt IP/TCP header, payload 1,
//! payload 2, …]` with the iovecs pointing straight into the receive
//! buffers (no payload copy); every other packet is one write.

use std::io::IoSlice;
use std::ops::Range;

use weft_encap::coalesce::{Coalescer, MAX_HEADER, MAX_SEGS};
use weft_encap::{flow, offload};

use super::socket::write_vectored;

/// Collects a batch's inner packets and writes them to TUN descriptors.
#[derive(Debug)]
pub(crate) struct TunWriter {
    /// The TUN expects a virtio_net_hdr in front of every frame.
    vnet: bool,
    plan: Coalescer,
    hdr: [u8; MAX_HEADER],
}

/// What [`TunWriter::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Frames written.
    pub(crate) frames: usize,
    /// Frames the TUN refused.
    pub(crate) errors: usize,
}

impl TunWriter {
    /// A writer for a TUN with (`vnet`: coalescing on) or without a
    /// virtio_net_hdr.
    pub(crate) fn new(vnet: bool) -> Self {
        Self {
            vnet,
            plan: Coalescer::new(vnet),
            hdr: [0; MAX_HEADER],
        }
    }

    /// Packets queued.
    pub(crate) fn len(&self) -> usize {
        self.plan.len()
    }

    /// Queues `bufs[buf][range]` (one inner IP packet). `bufs` must be the
    /// same slice of buffers, unchanged, until [`Self::flush`].
    pub(crate) fn push<B: AsRef<[u8]>>(&mut self, bufs: &[B], buf: usize, range: Range<usize>) {
        self.plan.push(bufs, buf, range);
    }

    /// Writes every queued frame and forgets them.
    ///
    /// Each frame goes to the TUN queue `fds[flow hash % fds.len()]`: the
    /// kernel steers a flow's outgoing packets to the queue its incoming
    /// packets were last written to, so writing by a fixed hash keeps every
    /// flow on one egress thread (writing from whichever ingress thread got
    /// the datagram lets the peers' port hashing flip a flow between queues
    /// every round trip, reordering it).
    pub(crate) fn flush<B: AsRef<[u8]>>(&mut self, fds: &[i32], bufs: &[B]) -> Written {
        let mut w = Written::default();
        let zero = [0u8; offload::LEN];
        let bytes = |(b, r): (usize, Range<usize>)| &bufs[b].as_ref()[r];
        for f in self.plan.frames() {
            let head = bytes(self.plan.head(f));
            let fd = match fds.len() {
                0 => continue,
                1 => fds[0],
                n => fds[flow::hash(head) as usize % n],
            };
            let mut iov: [IoSlice<'_>; MAX_SEGS + 1] = [IoSlice::new(&[]); MAX_SEGS + 1];
            let mut k = 0;
            if f.is_coalesced() {
                let Some(n) = self.plan.header(head, f, &mut self.hdr) else {
                    continue;
                };
                iov[0] = IoSlice::new(&self.hdr[..n]);
                k = 1;
            } else if self.vnet {
                iov[0] = IoSlice::new(&zero);
                k = 1;
            }
            for seg in self.plan.payloads(f).take(MAX_SEGS) {
                iov[k] = IoSlice::new(bytes(seg));
                k += 1;
            }
            w.frames += 1;
            if write_vectored(fd, &iov[..k]).is_err() {
                w.errors += 1;
            }
        }
        self.plan.clear();
        w
    }
}
