//! The batch loops. Per TUN queue one egress thread (TUN -> encapsulate ->
//! underlay) and one ingress thread (underlay -> decapsulate + anti-spoof
//! -> TUN). Every byte decision is `weft_encap`'s (egress plan, formats,
//! TAP frames, coalescing plan); the loops read, ask, count and write.
//! Buffers are allocated once; per batch a worker checks one atomic for a
//! new peer table and flushes its local counters once. No per-packet
//! allocation, lock, channel or log line.

mod egress;
mod ingress;
pub(crate) mod wireguard;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tun_rs::SyncDevice;

use super::counters::{CounterHandles, LocalCounts};
use super::io::socket::wait_readable;
use super::peer_table::PeerTable;

pub(crate) use egress::{TapQueue, egress};
pub(crate) use ingress::ingress;

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
    pub(crate) fn set_table(&self, t: Arc<PeerTable>) {
        if let Ok(mut g) = self.table.lock() {
            *g = t;
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
    /// Held instead of `table` while the worker sleeps.
    empty: Arc<PeerTable>,
    released: bool,
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
            empty: Arc::default(),
            released: false,
        }
    }

    /// One atomic load per batch; takes the new table only when routes
    /// changed or the worker let go of it to sleep (the counter handles
    /// and the counts' memory stay).
    fn refresh(&mut self, shared: &Shared) {
        if self.released || shared.generation.load(Ordering::Acquire) != self.generation {
            self.flush();
            let (generation, table) = shared.snapshot();
            self.counts.resize(table.peers().len());
            self.generation = generation;
            self.table = table;
            self.released = false;
        }
    }

    /// Waits (bounded by [`IDLE_WAIT`]) until `fd` is readable, having let
    /// go of the table first, so that the control side can bring it up to
    /// date in place instead of copying (see `publish`); the next
    /// [`View::refresh`] takes the current one.
    fn sleep(&mut self, fd: i32) {
        self.flush();
        self.table = Arc::clone(&self.empty);
        self.released = true;
        let _ = wait_readable(fd, IDLE_WAIT);
    }

    /// Hands the local counts to the metrics registry.
    fn flush(&mut self) {
        self.counts.flush(&mut self.handles, &self.table);
    }
}

fn tun_fd(tun: &SyncDevice) -> i32 {
    use std::os::fd::AsRawFd;
    tun.as_raw_fd()
}

/// The TUN takes and gives a virtio_net_hdr with every packet.
fn tun_has_vnet_hdr(tun: &SyncDevice) -> bool {
    tun.tcp_gso()
}
