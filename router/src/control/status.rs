//! Everything weftd answers about itself, gathered from the tasks that own
//! it: the router core's snapshot (via the driver), the BGP speaker's
//! per-peer status, the node service's CNI files and the dataplane's
//! counters (the Prometheus registry). Shared by the control socket and
//! the HTTP `/readyz`; nothing here reads the kernel.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use weft_bgp::bfd::BfdState;
use weft_bgp::fsm::State;
use weft_bgp::{PeerKind, PeerStatus, SpeakerHandle};

use super::schema::{NodeStatus, PeerReport, RouteReport, TunnelCounters};
use crate::cidr::Cidr;
use crate::cni_conf::{NodeFiles, pod_mtu};
use crate::config::{Config, DataplaneConfig};
use crate::core::Readiness;
use crate::dataplane::Offloads;
use crate::dataplane::counters::{PEER_DROPS, RX_BYTES, RX_PACKETS, TX_BYTES, TX_PACKETS};
use crate::reload::ReloadRequest;
use crate::route_table::NextHop;
use crate::snapshot::{RouterQueries, RouterSnapshot};

/// The handles status answers are gathered from.
#[derive(Debug, Clone)]
pub struct StatusSource {
    node: String,
    dataplane: DataplaneConfig,
    pod_cidrs: Vec<Cidr>,
    bgp_configured: bool,
    started: Instant,
    router: RouterQueries,
    bgp: Option<SpeakerHandle>,
    files: watch::Receiver<Option<NodeFiles>>,
    metrics: Option<PrometheusHandle>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    wireguard_public_key: Option<String>,
}

/// Everything a status answer needs, read once.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The router's state (None: the router is not running).
    pub router: Option<RouterSnapshot>,
    /// BGP peers (None: no `[bgp]`, or the speaker did not answer).
    pub peers: Option<Vec<PeerStatus>>,
    /// The CNI files' state (None: not written yet).
    pub files: Option<NodeFiles>,
}

impl StatusSource {
    /// A source for the node `cfg` describes.
    pub fn new(
        cfg: &Config,
        router: RouterQueries,
        files: watch::Receiver<Option<NodeFiles>>,
    ) -> Self {
        Self {
            node: cfg.node_name.clone(),
            dataplane: cfg.dataplane.clone(),
            pod_cidrs: cfg.own_pod_cidrs(),
            bgp_configured: cfg.bgp.is_some(),
            started: Instant::now(),
            router,
            bgp: None,
            files,
            metrics: None,
            reload: None,
            wireguard_public_key: None,
        }
    }

    /// With this node's WireGuard public key (base64, as `wg pubkey`).
    pub fn with_wireguard_key(mut self, key: Option<String>) -> Self {
        self.wireguard_public_key = key;
        self
    }

    /// With the BGP speaker to ask for peers.
    pub fn with_bgp(mut self, bgp: Option<SpeakerHandle>) -> Self {
        self.bgp = bgp;
        self
    }

    /// With the Prometheus registry (tunnel counters).
    pub fn with_metrics(mut self, metrics: Option<PrometheusHandle>) -> Self {
        self.metrics = metrics;
        self
    }

    /// With the daemon's reload hook (`weft reload`).
    pub fn with_reload(mut self, reload: Option<mpsc::Sender<ReloadRequest>>) -> Self {
        self.reload = reload;
        self
    }

    /// The reload hook, if the daemon gave one.
    pub fn reload_hook(&self) -> Option<&mpsc::Sender<ReloadRequest>> {
        self.reload.as_ref()
    }

    /// The BGP peers now (None without `[bgp]` or when the speaker is gone).
    pub async fn bgp_peers(&self) -> Option<Vec<PeerStatus>> {
        match &self.bgp {
            Some(h) => h.peers().await.ok(),
            None => None,
        }
    }

    /// Reads every handle once.
    pub async fn gather(&self) -> Gathered {
        Gathered {
            router: self.router.snapshot().await,
            peers: self.bgp_peers().await,
            files: self.files.borrow().clone(),
        }
    }

    /// Why the node is not ready; empty when it is (`/readyz`).
    pub fn not_ready(&self, g: &Gathered) -> Vec<String> {
        not_ready(g, self.bgp_configured)
    }

    /// `weft status`.
    pub fn node_status(&self, g: &Gathered) -> NodeStatus {
        let underlay_mtu = g.router.as_ref().map_or(0, |r| r.underlay_mtu);
        let not_ready = self.not_ready(g);
        NodeStatus {
            node: self.node.clone(),
            mode: self.dataplane.mode.to_string(),
            mtu: pod_mtu(&self.dataplane, underlay_mtu),
            underlay_mtu,
            offloads: g
                .router
                .as_ref()
                .and_then(|r| r.offloads)
                .map(offload_names)
                .unwrap_or_default(),
            pod_cidrs: self.pod_cidrs.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            ready: not_ready.is_empty(),
            not_ready,
            routes: g.router.as_ref().map_or(0, |r| r.routes.len()),
            peers: g.peers.iter().flatten().map(peer_report).collect(),
            wireguard_public_key: self.wireguard_public_key.clone(),
        }
    }

    /// `weft routes`.
    pub fn routes(&self, g: &Gathered) -> Vec<RouteReport> {
        let counters = self
            .metrics
            .as_ref()
            .map(|m| tunnel_counters(&m.render()))
            .unwrap_or_default();
        let Some(r) = &g.router else {
            return Vec::new();
        };
        r.routes
            .iter()
            .map(|(cidr, hop, source)| {
                let (next_hops, mode, tunnel) = match hop {
                    NextHop::HostGw(via) => (vec![*via], "host-gw".to_owned(), None),
                    NextHop::Multipath(vias) => (vias.clone(), "host-gw".to_owned(), None),
                    NextHop::Overlay(p) => (
                        vec![p.underlay.into()],
                        p.mode.to_string(),
                        Some(counters.get(&p.underlay).copied().unwrap_or_default()),
                    ),
                };
                RouteReport {
                    pod_cidr: *cidr,
                    next_hop: next_hops
                        .first()
                        .copied()
                        .unwrap_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    next_hops,
                    mode,
                    source: *source,
                    tunnel,
                }
            })
            .collect()
    }
}

/// Why the node is not ready: routes not programmed, CNI files not
/// written, or (with BGP) no peer has sent End-of-RIB.
pub fn not_ready(g: &Gathered, bgp_configured: bool) -> Vec<String> {
    let mut out = Vec::new();
    match g.router.as_ref().map(|r| r.readiness) {
        None => out.push("the router is not running".to_owned()),
        Some(Readiness::Starting) => out.push("routes not programmed yet".to_owned()),
        Some(Readiness::Stopping) => out.push("stopping".to_owned()),
        Some(Readiness::Ready) => {}
    }
    match &g.files {
        None => out.push("CNI config not written yet".to_owned()),
        Some(f) if !f.errors.is_empty() => {
            out.push(format!("CNI config not written: {}", f.errors.join("; ")));
        }
        Some(_) => {}
    }
    if bgp_configured {
        match &g.peers {
            None => out.push("the BGP speaker does not answer".to_owned()),
            Some(p) if !p.iter().any(|p| p.end_of_rib) => out.push(format!(
                "no End-of-RIB from any BGP peer yet ({} of {} established)",
                p.iter().filter(|p| p.state == State::Established).count(),
                p.len()
            )),
            Some(_) => {}
        }
    }
    out
}

/// The names of the offloads in use.
pub fn offload_names(o: Offloads) -> Vec<String> {
    [
        (o.tun_offload, "tun_tso"),
        (o.tun_udp_gso, "tun_uso"),
        (o.udp_gso, "udp_gso"),
        (o.udp_gro, "udp_gro"),
        (o.tunnel_gso, "tunnel_gso"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_owned())
    .collect()
}

/// A BGP state's name in the schema.
pub fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "idle",
        State::Connect => "connect",
        State::Active => "active",
        State::OpenSent => "open_sent",
        State::OpenConfirm => "open_confirm",
        State::Established => "established",
    }
}

/// A peer kind's name in the schema.
pub fn kind_name(k: PeerKind) -> &'static str {
    match k {
        PeerKind::Ibgp => "ibgp",
        PeerKind::Ebgp => "ebgp",
        PeerKind::RrClient => "rr_client",
    }
}

fn bfd_name(s: BfdState) -> &'static str {
    match s {
        BfdState::AdminDown => "admin_down",
        BfdState::Down => "down",
        BfdState::Init => "init",
        BfdState::Up => "up",
    }
}

/// One peer in the schema.
pub fn peer_report(p: &PeerStatus) -> PeerReport {
    PeerReport {
        address: p.address,
        asn: p.asn,
        kind: kind_name(p.kind).to_owned(),
        state: state_name(p.state).to_owned(),
        since_seconds: p.state_for.as_secs(),
        prefixes_received: p.prefixes_received,
        prefixes_accepted: p.routes_received,
        prefixes_advertised: p.routes_advertised,
        updates_received: p.updates_received,
        end_of_rib: p.end_of_rib,
        last_error: p.last_error.clone(),
        bfd: p.bfd.map(|s| bfd_name(s).to_owned()),
    }
}

/// The per-peer dataplane counters in a Prometheus text rendering.
pub fn tunnel_counters(text: &str) -> HashMap<Ipv4Addr, TunnelCounters> {
    let mut out: HashMap<Ipv4Addr, TunnelCounters> = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once("{peer=\"") else {
            continue;
        };
        let Some((peer, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let (Ok(peer), Ok(value)) = (peer.parse::<Ipv4Addr>(), value.trim().parse::<f64>()) else {
            continue;
        };
        let c = out.entry(peer).or_default();
        // Counters are integers; Prometheus text carries them as floats.
        let v = value as u64;
        match name {
            TX_PACKETS => c.tx_packets = v,
            TX_BYTES => c.tx_bytes = v,
            RX_PACKETS => c.rx_packets = v,
            RX_BYTES => c.rx_bytes = v,
            PEER_DROPS => c.drops = v,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
