//! The overlay dataplane: a TUN device, underlay sockets and worker
//! threads that move packets between them in batches.
//!
//! ```text
//!   pods ─► kernel route ─► TUN queue q ─► egress thread q ─► plan ─► TAP frame | encap ─► TAP | UDP/raw socket ─► peer
//!   peer ─► UDP/raw socket ─► ingress thread q ─► decap + anti-spoof ─► coalescing plan ─► TUN queue q ─► pods
//!   control loop ─► Shared{generation, Arc<PeerTable>} ─► every thread, checked once per batch
//! ```
//!
//! | module | owns |
//! |---|---|
//! | `worker` | the egress and ingress loops: read, ask `weft_encap`'s pipeline (egress plan, formats, TAP frames, coalescing plan), count, write |
//! | [`peer_table`] | longest-prefix match to peers, anti-spoofing |
//! | `publish` | handing the workers a changed table without copying it |
//! | [`counters`] | per-worker counts flushed to metrics once per batch |
//! | [`io`] | TUN, TX TAP, UDP/raw sockets, batched sends, TUN writes: the only `unsafe` |

pub mod counters;
pub(crate) mod encap_params;
pub mod io;
pub mod peer_table;
pub(crate) mod publish;
pub mod wireguard;
pub(crate) mod worker;

use std::net::{IpAddr, Ipv6Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use tracing::info;

use weft_encap::format::Format;

use crate::cidr::Cidr;
use crate::config::Config;
use crate::mode::Mode;
use crate::netlink::UnderlayLink;
use crate::route_table::NextHop;
use encap_params::{EncapParams, format_of};
use io::socket::{RawIpip, UdpSock, Underlay};
use io::tap::{self, TxTap};
use io::tun::Tun;
use peer_table::PeerTable;
use publish::TablePublisher;
use worker::{Shared, TapQueue};

/// Errors starting the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The TUN device could not be created.
    #[error("dataplane.tun_name: creating TUN {name}: {source}")]
    Tun {
        /// Device name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An underlay socket could not be opened.
    #[error("opening the {what} socket: {source}")]
    Socket {
        /// Which socket.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker thread could not be spawned.
    #[error("spawning a dataplane thread: {0}")]
    Thread(std::io::Error),
    /// The underlay address is not IPv4.
    #[error("underlay_ip: overlay modes need an IPv4 underlay")]
    NotIpv4,
    /// wireguard: the private key file cannot be used.
    #[error(transparent)]
    WireguardKey(wireguard::key_file::KeyFileError),
    /// The mode has no dataplane (host-gw).
    #[error("dataplane.mode: {0} has no overlay dataplane")]
    NotOverlay(Mode),
}

/// What the dataplane found out about the kernel at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// TUN vnet header + TSO.
    pub tun_offload: bool,
    /// TUN USO.
    pub tun_udp_gso: bool,
    /// UDP GSO on the underlay socket.
    pub udp_gso: bool,
    /// UDP GRO on the underlay socket.
    pub udp_gro: bool,
    /// TSO bursts go to the kernel through the TX TAP (UDP-tunnel GSO).
    pub tunnel_gso: bool,
}

/// A running overlay dataplane; [`Dataplane::stop`] ends it and removes
/// the TUN.
#[derive(Debug)]
pub struct Dataplane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Kept open for the workers' descriptors; closing removes the TAP.
    _tap: Option<TxTap>,
    own: Vec<Cidr>,
    /// The control side's tables; workers read the published one.
    table: std::sync::Mutex<TablePublisher>,
    /// Offloads in use.
    pub offloads: Offloads,
    /// The TUN's MTU at start.
    pub mtu: u32,
    mtu_fixed: bool,
    mode: Mode,
    /// wireguard: this node's public key.
    pub wireguard_public_key: Option<crate::wg_key::PublicKey>,
}

impl Dataplane {
    /// Creates the TUN and sockets and starts the workers.
    pub fn start(cfg: &Config, underlay: &UnderlayLink) -> Result<Self, DataplaneError> {
        Self::start_with_keys(cfg, underlay, None)
    }

    /// [`Self::start`]; wireguard also takes remote nodes' keys from `keys`
    /// (filled from etcd leases) as they change.
    pub fn start_with_keys(
        cfg: &Config,
        underlay: &UnderlayLink,
        keys: Option<Arc<wireguard::key_book::KeyBook>>,
    ) -> Result<Self, DataplaneError> {
        let dp = &cfg.dataplane;
        let IpAddr::V4(local_ip) = cfg.underlay_ip else {
            return Err(DataplaneError::NotIpv4);
        };
        if dp.mode == Mode::Wireguard {
            return Self::start_wireguard(cfg, underlay, local_ip, keys);
        }
        let format = format_of(dp.mode, dp.vxlan_vni, cfg.vtep_mac())
            .ok_or(DataplaneError::NotOverlay(dp.mode))?;
        let (tun, mtu) = open_tun(cfg, underlay)?;
        let queues = dp.queues as usize;
        let tun_offload = tun.offload;
        let tun_udp_gso = tun.udp_gso;

        let port = match dp.mode {
            Mode::Vxlan => dp.vxlan_port,
            _ => dp.udp_port,
        };
        let sock = |what: &'static str| move |source| DataplaneError::Socket { what, source };
        // Per queue: (receiving socket or None, sending socket).
        let mut unders: Vec<(Option<Underlay>, Underlay)> = Vec::new();
        for q in 0..queues {
            match format {
                Format::Ipip => {
                    // Every raw socket gets a copy of every packet: open one,
                    // received by queue 0's worker, sent on by all.
                    let s = match unders.first() {
                        Some((_, Underlay::Raw(s))) => Arc::clone(s),
                        _ => Arc::new(RawIpip::open(local_ip).map_err(sock("ipip raw"))?),
                    };
                    let rx = (q == 0).then(|| Underlay::Raw(Arc::clone(&s)));
                    unders.push((rx, Underlay::Raw(s)));
                }
                Format::Vxlan { .. } | Format::Udp => {
                    let rx =
                        UdpSock::bind(SocketAddrV4::new(local_ip, port), queues > 1, dp.offload)
                            .map_err(sock("underlay udp"))?;
                    // Sending from a per-queue ephemeral port spreads flows
                    // over the peer's SO_REUSEPORT sockets.
                    let tx = UdpSock::bind(SocketAddrV4::new(local_ip, 0), false, dp.offload)
                        .map_err(sock("underlay udp send"))?;
                    // UDP GSO needs checksums (the kernel refuses GSO sends
                    // with SO_NO_CHECK); without GSO skip them like vxlan.
                    if !tx.gso
                        && let Err(e) = tx.no_udp_checksum()
                    {
                        tracing::debug!(error = %e, "SO_NO_CHECK unavailable");
                    }
                    unders.push((
                        Some(Underlay::Udp(Arc::new(rx))),
                        Underlay::Udp(Arc::new(tx)),
                    ));
                }
            }
        }
        let (udp_gso, udp_gro) = match unders.first() {
            Some((Some(Underlay::Udp(rx)), Underlay::Udp(tx))) => (tx.gso, rx.gro),
            _ => (false, false),
        };

        let tap = if tun_offload && dp.tunnel_offload && matches!(dp.mode, Mode::Vxlan | Mode::Udp)
        {
            let name = tap::tap_name(&dp.tun_name);
            match TxTap::open(&name, queues, &underlay.name) {
                Ok(t) => Some(t),
                Err(e) => {
                    info!(tap = %name, reason = %e, "tunnel offload unavailable, sending through UDP sockets");
                    None
                }
            }
        } else {
            None
        };

        let icmp6_src = icmp6_source(cfg);
        let codec = EncapParams {
            format,
            port,
            local_ip,
            icmp6_src,
        };
        let shared = Arc::new(Shared::default());
        shared
            .underlay_mtu
            .store(underlay.mtu as usize, Ordering::Relaxed);
        let mut threads = Vec::new();
        let devices: Vec<Arc<_>> = tun.into_queues().into_iter().map(Arc::new).collect();
        for (q, (dev, (rx, tx))) in devices.iter().zip(unders).enumerate() {
            let dev = Arc::clone(dev);
            let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
                std::thread::Builder::new()
                    .name(name)
                    .spawn(f)
                    .map_err(DataplaneError::Thread)
            };
            {
                let (dev, shared) = (Arc::clone(&dev), Arc::clone(&shared));
                let tq = tap.as_ref().map(|t| TapQueue {
                    fd: t.queue_fd(q),
                    mac: t.mac,
                });
                threads.push(spawn(
                    format!("weft-egress-{q}"),
                    Box::new(move || worker::egress(&dev, &tx, tq.as_ref(), codec, &shared)),
                )?);
            }
            if let Some(rx) = rx {
                let (dev, shared) = (Arc::clone(&dev), Arc::clone(&shared));
                let all = devices.clone();
                threads.push(spawn(
                    format!("weft-ingress-{q}"),
                    Box::new(move || worker::ingress(&dev, &all, &rx, codec, &shared)),
                )?);
            }
        }
        let offloads = Offloads {
            tun_offload,
            tun_udp_gso,
            udp_gso,
            udp_gro,
            tunnel_gso: tap.is_some(),
        };
        info!(
            tun = %dp.tun_name, mtu, queues, mode = %dp.mode,
            tun_offload, tun_udp_gso, udp_gso, udp_gro, tunnel_gso = tap.is_some(),
            "overlay dataplane started"
        );
        Ok(Self {
            shared,
            threads,
            _tap: tap,
            own: cfg.own_pod_cidrs(),
            table: std::sync::Mutex::new(TablePublisher::new(PeerTable::default())),
            offloads,
            mtu,
            mtu_fixed: dp.mtu.is_some(),
            mode: dp.mode,
            wireguard_public_key: None,
        })
    }

    /// Hands the workers a whole new set of routes.
    pub fn set_routes(&self, hops: &[(Cidr, NextHop)]) {
        let table = PeerTable::new(hops, &self.own);
        if let Ok(mut p) = self.table.lock() {
            self.shared.set_table(p.replace(table));
        }
    }

    /// Hands the workers changed routes (`None`: withdrawn); costs the
    /// same whatever the size of the table (see `publish`).
    pub fn update_routes(&self, changes: &[(Cidr, Option<NextHop>)]) {
        let Ok(mut p) = self.table.lock() else {
            return;
        };
        let (table, _) = p.update(changes);
        self.shared.set_table(table);
    }

    /// Tells the workers the underlay MTU changed; returns the TUN MTU that
    /// now fits (None when the MTU is configured explicitly).
    pub fn underlay_mtu_changed(&self, underlay_mtu: u32) -> Option<u32> {
        self.shared
            .underlay_mtu
            .store(underlay_mtu as usize, Ordering::Relaxed);
        (!self.mtu_fixed).then(|| underlay_mtu.saturating_sub(self.mode.overhead()))
    }

    /// Stops forwarding; the TUN disappears with the last descriptor,
    /// unless graceful restart made it persistent (then it stays, with
    /// its routes, for the next weftd to attach to).
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Creates (or, after a graceful restart, adopts) the TUN with the
/// configured queues and offloads, at the configured MTU or the underlay's
/// less the mode's overhead; returns it with that MTU.
fn open_tun(cfg: &Config, underlay: &UnderlayLink) -> Result<(Tun, u32), DataplaneError> {
    let dp = &cfg.dataplane;
    let mtu = dp
        .mtu
        .unwrap_or_else(|| underlay.mtu.saturating_sub(dp.mode.overhead()));
    let tun = Tun::open(
        &dp.tun_name,
        u16::try_from(mtu).unwrap_or(u16::MAX),
        dp.queues as usize,
        dp.offload,
        cfg.graceful_restart(),
    )
    .map_err(|source| DataplaneError::Tun {
        name: dp.tun_name.clone(),
        source,
    })?;
    Ok((tun, mtu))
}

/// Source of ICMPv6 replies: the first address of this node's IPv6 pod
/// range (unspecified without one).
fn icmp6_source(cfg: &Config) -> Ipv6Addr {
    cfg.pod_cidr_v6
        .or(Some(cfg.pod_cidr).filter(|c| !c.is_ipv4()))
        .and_then(|c| match c.network().addr() {
            IpAddr::V6(a) => Some(Ipv6Addr::from(u128::from(a) + 1)),
            IpAddr::V4(_) => None,
        })
        .unwrap_or(Ipv6Addr::UNSPECIFIED)
}
