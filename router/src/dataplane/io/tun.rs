//! The overlay's TUN device, through `tun-rs`: offloads probed at open
//! (`IFF_VNET_HDR` with TSO/USO; the read path splits GSO packets and
//! finishes partial checksums, the write path coalesces with GRO), an
//! optional multi-queue device, txqueuelen 1000. With graceful restart
//! the device is persistent: it outlives weftd with its routes, and the
//! next weftd attaches to it (a TUN of the same name is adopted, not
//! created); without, the persistence is cleared so the device goes with
//! the last descriptor.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tun_rs::{DeviceBuilder, SyncDevice};

/// TUN transmit queue length.
pub const TX_QUEUE_LEN: u32 = 1000;

/// `TUNSETPERSIST`, `_IOW('T', 203, int)`.
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// Sets or clears the device's persistence (it survives its last
/// descriptor).
fn set_persist(fd: RawFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its int argument by value; `fd` is an
    // open TUN descriptor owned by the caller.
    let r = unsafe { libc::ioctl(fd, TUNSETPERSIST as _, libc::c_ulong::from(persist)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open TUN device with one descriptor per queue.
pub struct Tun {
    queues: Vec<SyncDevice>,
    /// Offloads (vnet header, TSO) are on.
    pub offload: bool,
    /// UDP segmentation offload (USO) is on as well.
    pub udp_gso: bool,
    /// Interface name.
    pub name: String,
}

fn open_one(name: &str, mtu: u16, queues: usize, offload: bool) -> io::Result<SyncDevice> {
    let dev = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .tx_queue_len(TX_QUEUE_LEN)
        .offload(offload)
        .multi_queue(queues > 1)
        .build_sync()?;
    dev.enabled(true)?;
    Ok(dev)
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("offload", &self.offload)
            .field("udp_gso", &self.udp_gso)
            .finish()
    }
}

impl Tun {
    /// Creates `name` with `queues` queues, or attaches to the existing
    /// (persistent) TUN of that name. With `offload`, tries the offloads
    /// first and falls back to a plain device if the kernel refuses them.
    /// `persist`: the device outlives the last descriptor (graceful
    /// restart); otherwise it goes with it, also when it was adopted.
    pub fn open(
        name: &str,
        mtu: u16,
        queues: usize,
        offload: bool,
        persist: bool,
    ) -> io::Result<Self> {
        let (first, offload) = match open_one(name, mtu, queues, offload) {
            Ok(d) => (d, offload),
            Err(e) if offload => {
                tracing::warn!(error = %e, "TUN offloads unavailable, using a plain TUN");
                (open_one(name, mtu, queues, false)?, false)
            }
            Err(e) => return Err(e),
        };
        set_persist(first.as_raw_fd(), persist)?;
        let udp_gso = offload && first.udp_gso();
        let mut all = vec![first];
        for _ in 1..queues {
            let q = all[0].try_clone()?;
            all.push(q);
        }
        for q in &all {
            q.set_nonblocking(true)?;
        }
        Ok(Self {
            queues: all,
            offload,
            udp_gso,
            name: name.to_owned(),
        })
    }

    /// Queue `i`.
    pub fn queue(&self, i: usize) -> &SyncDevice {
        &self.queues[i]
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The descriptor of queue `i` (for polling).
    pub fn raw_fd(&self, i: usize) -> RawFd {
        self.queues[i].as_raw_fd()
    }

    /// Splits the device into its queues (one per worker).
    pub fn into_queues(self) -> Vec<SyncDevice> {
        self.queues
    }
}
