//! The wireguard mode: the overlay dataplane's TUN and worker threads with
//! WireGuard (Noise_IKpsk2, boringtun's `noise` module) in place of an
//! encapsulation format. Interoperates with wireguard-go and the kernel.
//!
//! ```text
//!   pods ─► TUN queue q ─► egress q ─► plan (peer, MTU) ─► peer's key ─► encrypt ─► UDP :wireguard_port ─► endpoint
//!   peer ─► UDP :wireguard_port (SO_REUSEPORT, socket q) ─► ingress q ─► Tunnels::receive ─► allowed sources ─► TUN
//!   timers ─► every peer: rekey, keepalive, handshake retry; rate limit reset
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`key_file`] | this node's private key on disk |
//! | [`peers`] | pure: one peer per key, message classifier, allowed sources |
//! | [`key_book`] | keys learned from etcd leases |
//! | `tunnels` | the sessions, endpoints (roaming) and the cookie rate limiter |
//!
//! The key of a node (an underlay address) is the `wireguard_public_key`
//! of any static route via that address; failing that, the `PublicKey` in
//! the `BackendData` of the node's etcd lease. Ranges learned from BGP use
//! the key of their via the same way. Packets to a node without a key are
//! dropped (`no_key`), never sent in clear.

pub mod key_book;
pub mod key_file;
pub mod peers;
pub(crate) mod tunnels;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tracing::info;
use weft_encap::format::Format;

use super::encap_params::EncapParams;
use super::io::socket::{UdpSock, Underlay};
use super::peer_table::PeerTable;
use super::publish::TablePublisher;
use super::worker::{self, Shared};
use super::{Dataplane, DataplaneError, Offloads, icmp6_source};
use crate::config::Config;
use crate::netlink::UnderlayLink;
use tunnels::Tunnels;

impl Dataplane {
    /// Starts the wireguard mode: key, TUN, one WireGuard socket per
    /// queue on `wireguard_port`, the workers and the timer thread.
    pub(super) fn start_wireguard(
        cfg: &Config,
        underlay: &UnderlayLink,
        local_ip: Ipv4Addr,
        keys: Option<Arc<key_book::KeyBook>>,
    ) -> Result<Self, DataplaneError> {
        let dp = &cfg.dataplane;
        let key = key_file::load_or_create(&dp.wireguard_private_key_file)
            .map_err(DataplaneError::WireguardKey)?;
        let public = key.public;
        info!(public_key = %public, port = dp.wireguard_port, "WireGuard public key");
        let specs = peers::specs_from_routes(&cfg.static_routes, dp.wireguard_port);
        let (tun, mtu) = super::open_tun(cfg, underlay)?;
        let queues = dp.queues as usize;
        let (tun_offload, tun_udp_gso) = (tun.offload, tun.udp_gso);
        let mut socks = Vec::new();
        for _ in 0..queues {
            let s = UdpSock::bind(
                SocketAddrV4::new(local_ip, dp.wireguard_port),
                queues > 1,
                dp.offload,
            )
            .map_err(|source| DataplaneError::Socket {
                what: "wireguard udp",
                source,
            })?;
            socks.push(Arc::new(s));
        }
        let (udp_gso, udp_gro) = socks.first().map_or((false, false), |s| (s.gso, s.gro));
        let wg = Arc::new(Tunnels::new(key, &specs, dp.wireguard_keepalive_s, keys));
        // Only the ICMP too-big replies read these; WireGuard has no
        // encapsulation format of weft_encap's.
        let params = EncapParams {
            format: Format::Udp,
            port: dp.wireguard_port,
            local_ip,
            icmp6_src: icmp6_source(cfg),
        };
        let shared = Arc::new(Shared::default());
        shared
            .underlay_mtu
            .store(underlay.mtu as usize, Ordering::Relaxed);
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(DataplaneError::Thread)
        };
        let devices: Vec<Arc<_>> = tun.into_queues().into_iter().map(Arc::new).collect();
        let mut threads = Vec::new();
        for (q, (dev, sock)) in devices.iter().zip(&socks).enumerate() {
            let (d, s, w, sh) = (
                Arc::clone(dev),
                Underlay::Udp(Arc::clone(sock)),
                Arc::clone(&wg),
                Arc::clone(&shared),
            );
            threads.push(spawn(
                format!("weft-wg-egress-{q}"),
                Box::new(move || worker::wireguard::egress(&d, &s, &w, params, &sh)),
            )?);
            let (d, s, w, sh) = (
                Arc::clone(dev),
                Arc::clone(sock),
                Arc::clone(&wg),
                Arc::clone(&shared),
            );
            let all = devices.clone();
            threads.push(spawn(
                format!("weft-wg-ingress-{q}"),
                Box::new(move || worker::wireguard::ingress(&d, &all, &s, &w, &sh)),
            )?);
        }
        if let Some(sock) = socks.first() {
            let (s, w, sh) = (Arc::clone(sock), Arc::clone(&wg), Arc::clone(&shared));
            threads.push(spawn(
                "weft-wg-timers".into(),
                Box::new(move || worker::wireguard::timers(&s, &w, &sh)),
            )?);
        }
        info!(
            tun = %dp.tun_name, mtu, queues, mode = %dp.mode, peers = specs.len(),
            tun_offload, tun_udp_gso, udp_gso, udp_gro,
            "overlay dataplane started"
        );
        Ok(Self {
            shared,
            threads,
            _tap: None,
            own: cfg.own_pod_cidrs(),
            table: Mutex::new(TablePublisher::new(PeerTable::default())),
            offloads: Offloads {
                tun_offload,
                tun_udp_gso,
                udp_gso,
                udp_gro,
                tunnel_gso: false,
            },
            mtu,
            mtu_fixed: dp.mtu.is_some(),
            mode: dp.mode,
            wireguard_public_key: Some(public),
        })
    }
}
