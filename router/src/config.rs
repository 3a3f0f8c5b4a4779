//! weftd's TOML configuration: the serde types, their defaults and the pure
//! `validate()` that reports every problem with the path of its field.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use weft_encap::MacAddr;

use crate::cidr::Cidr;
use crate::mode::Mode;
use crate::vtep;

mod cni;
mod log;
mod observe;
pub use cni::{Attach, CniConfig};
pub use log::{LogConfig, LogFormat};
pub use observe::{ControlConfig, DEFAULT_METRICS, DEFAULT_SOCKET, MetricsConfig};

/// The whole `weftd --config FILE` document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's name (for logs and metrics).
    pub node_name: String,
    /// This node's address on the underlay network.
    pub underlay_ip: IpAddr,
    /// The pods of this node (IPv4 or IPv6).
    pub pod_cidr: Cidr,
    /// All pods of the cluster; `pod_cidr` lies inside it.
    pub cluster_cidr: Cidr,
    /// Optional second (IPv6) pod range of this node, for dual-stack pods.
    #[serde(default)]
    pub pod_cidr_v6: Option<Cidr>,
    /// Optional cluster range containing `pod_cidr_v6`.
    #[serde(default)]
    pub cluster_cidr_v6: Option<Cidr>,
    /// How packets to other nodes' pods travel.
    pub dataplane: DataplaneConfig,
    /// Routes known without BGP.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
    /// Optional BGP speaker (`[bgp]` and `[[bgp.peers]]`, see `weft_bgp`).
    #[serde(default)]
    pub bgp: Option<weft_bgp::BgpConfig>,
    /// Masquerade pod traffic leaving the cluster range (never pod to pod).
    #[serde(default = "default_true")]
    pub ip_masq: bool,
    /// The CNI configuration and subnet file weftd writes.
    #[serde(default)]
    pub cni: CniConfig,
    /// Optional pod range leases from etcd, flannel's way (`[subnet]`).
    #[serde(default)]
    pub subnet: Option<SubnetConfig>,
    /// The control socket for the `weft` CLI.
    #[serde(default)]
    pub control: ControlConfig,
    /// Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Hitless restart: on SIGTERM the routes (and the overlay TUN) stay
    /// for the next weftd to adopt. Default: `bgp.graceful_restart` with
    /// `[bgp]`, false without.
    #[serde(default)]
    pub graceful_restart: Option<bool>,
    /// Log format and level (`[log]`).
    #[serde(default)]
    pub log: LogConfig,
}

/// The `[dataplane]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Forwarding mode.
    pub mode: Mode,
    /// Name of the TUN device for the overlay modes.
    #[serde(default = "default_tun_name")]
    pub tun_name: String,
    /// VXLAN network identifier (flannel 1, calico 4096).
    #[serde(default = "default_vni")]
    pub vxlan_vni: u32,
    /// VXLAN UDP port (flannel 8472, calico/IANA 4789).
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// flannel udp backend port.
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// TUN MTU; default: underlay MTU minus the mode's overhead.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// This node's VTEP MAC; default derived from `underlay_ip`.
    #[serde(default, deserialize_with = "vtep::deserialize_mac")]
    pub vtep_mac: Option<MacAddr>,
    /// Host-gw to peers on the underlay's L2 subnet, encap to the rest.
    #[serde(default)]
    pub direct_routing: bool,
    /// Use TUN and UDP offloads (vnet header, TSO, UDP GSO/GRO) when the
    /// kernel supports them.
    #[serde(default = "default_true")]
    pub offload: bool,
    /// vxlan / udp: hand whole TSO bursts to the kernel through a TX TAP
    /// with UDP-tunnel GSO, to be segmented after encapsulation (Linux
    /// 6.17+; needs `net.ipv4.ip_forward = 1` and `conf.all.rp_filter = 0`,
    /// and the node's FORWARD chain must pass the underlay packets).
    /// Falls back to UDP sockets by itself when unavailable.
    #[serde(default = "default_true")]
    pub tunnel_offload: bool,
    /// Number of TUN queues and worker pairs (multi-queue TUN + SO_REUSEPORT);
    /// default: two per CPU, at most 8 (one on a single CPU).
    #[serde(default = "default_queues")]
    pub queues: u32,
    /// wireguard: the UDP port weftd receives and sends on.
    #[serde(default = "default_wireguard_port")]
    pub wireguard_port: u16,
    /// wireguard: this node's private key, base64 as `wg genkey` writes
    /// it; generated (0600, directory 0700) when absent.
    #[serde(default = "default_wireguard_key_file")]
    pub wireguard_private_key_file: PathBuf,
    /// wireguard: persistent keepalive to every peer, in seconds (off
    /// when unset).
    #[serde(default)]
    pub wireguard_keepalive_s: Option<u16>,
}

/// A route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// The peer's pod range.
    pub pod_cidr: Cidr,
    /// The peer's underlay IP.
    pub via: IpAddr,
    /// The peer's VTEP MAC; default derived from `via`.
    #[serde(default, deserialize_with = "vtep::deserialize_mac")]
    pub vtep_mac: Option<MacAddr>,
    /// wireguard: the node's public key, base64 as `wg pubkey` prints it.
    #[serde(default)]
    pub wireguard_public_key: Option<String>,
    /// wireguard: where the node's WireGuard listens; default
    /// `via:wireguard_port`.
    #[serde(default)]
    pub wireguard_endpoint: Option<SocketAddr>,
}

fn default_tun_name() -> String {
    "weft0".to_owned()
}
fn default_vni() -> u32 {
    1
}
fn default_vxlan_port() -> u16 {
    8472
}
fn default_udp_port() -> u16 {
    8285
}
fn default_wireguard_port() -> u16 {
    51820
}
fn default_wireguard_key_file() -> PathBuf {
    PathBuf::from("/etc/weft/wg.key")
}
fn default_true() -> bool {
    true
}
/// Two TUN queues per CPU, at most 8; one on a single CPU.
///
/// More queues than CPUs spreads a handful of flows more evenly (the kernel
/// picks a flow's queue by hash: with one queue per CPU on 2 CPUs, 4 flows
/// share a queue 3:1 or 4:0 in 10 of 16 cases) and keeps both CPUs busy.
/// Measured with `netsim bench`, 4 streams, offload off, 2 CPUs: 0.83-0.90×
/// kernel-vxlan with 4 queues against 0.74-0.82× with 2.
fn default_queues() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus <= 1 {
        1
    } else {
        u32::try_from(cpus.saturating_mul(2).min(8)).unwrap_or(8)
    }
}

/// One problem in a config, with the path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted field path, e.g. `static_routes[1].pod_cidr`; empty for
    /// document-level (syntax) errors, whose message names the key.
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}: {}", self.path, self.msg)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config:")?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// True when some error concerns `path` (exact match).
    pub fn mentions(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let cfg: Self = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                msg: e.to_string().trim_end().to_owned(),
            }])
        })?;
        let errs = cfg.validate();
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// This node's VTEP MAC (configured or derived).
    pub fn vtep_mac(&self) -> MacAddr {
        self.dataplane.vtep_mac.unwrap_or(match self.underlay_ip {
            IpAddr::V4(v4) => vtep::derived_mac(v4),
            IpAddr::V6(_) => MacAddr([0x02, 0x57, 0, 0, 0, 0]),
        })
    }

    /// True when a stop keeps the routes and TUN for the next weftd
    /// (`graceful_restart`, or `bgp.graceful_restart`).
    pub fn graceful_restart(&self) -> bool {
        self.graceful_restart
            .or(self.bgp.as_ref().map(|b| b.graceful_restart))
            .unwrap_or(false)
    }

    /// This node's pod ranges (IPv4 and optionally IPv6).
    pub fn own_pod_cidrs(&self) -> Vec<Cidr> {
        let mut v = vec![self.pod_cidr];
        v.extend(self.pod_cidr_v6);
        v
    }

    /// Checks everything that can be checked without the kernel. Returns
    /// every problem found (empty = valid).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: &str, msg: String| {
            errs.push(ConfigError {
                path: path.to_owned(),
                msg,
            });
        };
        let dp = &self.dataplane;
        let mode = dp.mode;

        if self.node_name.trim().is_empty() {
            err("node_name", "must not be empty".into());
        }
        if self.underlay_ip.is_unspecified() || self.underlay_ip.is_multicast() {
            err(
                "underlay_ip",
                format!("{} is not a unicast address", self.underlay_ip),
            );
        }
        if mode.is_overlay() && !self.underlay_ip.is_ipv4() {
            err(
                "underlay_ip",
                format!("mode {mode} needs an IPv4 underlay address"),
            );
        }
        for (path, c) in [
            ("pod_cidr", &self.pod_cidr),
            ("cluster_cidr", &self.cluster_cidr),
        ] {
            if !c.is_network() {
                err(
                    path,
                    format!("{c} has host bits set (network is {})", c.network()),
                );
            }
        }
        if !self.cluster_cidr.contains_cidr(&self.pod_cidr) {
            err(
                "pod_cidr",
                format!(
                    "{} is outside cluster_cidr {}",
                    self.pod_cidr, self.cluster_cidr
                ),
            );
        }
        match (self.pod_cidr_v6, self.cluster_cidr_v6) {
            (Some(p), Some(c)) => {
                if !p.addr().is_ipv6() {
                    err("pod_cidr_v6", format!("{p} is not an IPv6 range"));
                }
                if !c.contains_cidr(&p) {
                    err("pod_cidr_v6", format!("{p} is outside cluster_cidr_v6 {c}"));
                }
                if !p.is_network() {
                    err("pod_cidr_v6", format!("{p} has host bits set"));
                }
            }
            (Some(_), None) => err("cluster_cidr_v6", "required when pod_cidr_v6 is set".into()),
            (None, Some(_)) => err("pod_cidr_v6", "required when cluster_cidr_v6 is set".into()),
            (None, None) => {}
        }

        if mode.is_overlay() {
            let name = &dp.tun_name;
            if name.is_empty()
                || name.len() > 15
                || name.contains(['/', ' ', ':', '%'])
                || name == "."
                || name == ".."
            {
                err(
                    "dataplane.tun_name",
                    format!(
                        "{name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
                    ),
                );
            }
        }
        if dp.vxlan_vni > 0xff_ffff {
            err(
                "dataplane.vxlan_vni",
                format!("{} exceeds 24 bits", dp.vxlan_vni),
            );
        }
        if dp.vxlan_port == 0 {
            err("dataplane.vxlan_port", "must not be 0".into());
        }
        if dp.udp_port == 0 {
            err("dataplane.udp_port", "must not be 0".into());
        }
        if let Some(mtu) = dp.mtu
            && !(576..=65_000).contains(&mtu)
        {
            err("dataplane.mtu", format!("{mtu} is outside 576..=65000"));
        }
        if !(1..=16).contains(&dp.queues) {
            err(
                "dataplane.queues",
                format!("{} is outside 1..=16", dp.queues),
            );
        }
        if let Some(m) = dp.vtep_mac
            && (!m.is_unicast() || m.0 == [0; 6])
        {
            err("dataplane.vtep_mac", format!("{m} is not a unicast MAC"));
        }

        if mode == Mode::Ipip {
            if let Some(v6) = self.pod_cidr_v6 {
                err(
                    "pod_cidr_v6",
                    format!("{v6}: ipip carries IPv4 pod traffic only"),
                );
            }
            if !self.pod_cidr.is_ipv4() {
                err("pod_cidr", "ipip carries IPv4 pod traffic only".into());
            }
        }
        let own = self.own_pod_cidrs();
        for (i, r) in self.static_routes.iter().enumerate() {
            let p = |f: &str| format!("static_routes[{i}].{f}");
            if !r.pod_cidr.is_network() {
                err(&p("pod_cidr"), format!("{} has host bits set", r.pod_cidr));
            }
            if let Some(o) = own.iter().find(|o| o.overlaps(&r.pod_cidr)) {
                err(
                    &p("pod_cidr"),
                    format!("{} overlaps this node's {o}", r.pod_cidr),
                );
            }
            let cluster = if r.pod_cidr.addr().is_ipv4() == self.cluster_cidr.addr().is_ipv4() {
                Some(self.cluster_cidr)
            } else {
                self.cluster_cidr_v6
            };
            match cluster {
                Some(c) if !c.contains_cidr(&r.pod_cidr) => {
                    err(
                        &p("pod_cidr"),
                        format!("{} is outside cluster range {c}", r.pod_cidr),
                    );
                }
                None => err(
                    &p("pod_cidr"),
                    format!("{} has no cluster range of its family", r.pod_cidr),
                ),
                Some(_) => {}
            }
            if r.via == self.underlay_ip {
                err(
                    &p("via"),
                    format!("{} is this node's own underlay_ip", r.via),
                );
            }
            if r.via.is_unspecified() || r.via.is_multicast() {
                err(&p("via"), format!("{} is not a unicast address", r.via));
            }
            if r.via.is_ipv4() != self.underlay_ip.is_ipv4() {
                err(
                    &p("via"),
                    format!("{} is not of underlay_ip's family", r.via),
                );
            }
            if mode == Mode::HostGw && r.via.is_ipv4() != r.pod_cidr.addr().is_ipv4() {
                err(
                    &p("via"),
                    "host-gw needs a gateway of the pod range's family".to_owned(),
                );
            }
            if mode == Mode::Ipip && !r.pod_cidr.is_ipv4() {
                err(&p("pod_cidr"), "ipip carries IPv4 pod traffic only".into());
            }
            if let Some(m) = r.vtep_mac
                && !m.is_unicast()
            {
                err(&p("vtep_mac"), format!("{m} is not a unicast MAC"));
            }
        }
        for (i, j) in overlapping_routes(&self.static_routes) {
            err(
                &format!("static_routes[{i}].pod_cidr"),
                format!(
                    "{} overlaps static_routes[{j}].pod_cidr {}",
                    self.static_routes[i].pod_cidr, self.static_routes[j].pod_cidr
                ),
            );
        }
        errs.extend(wireguard::validate(self));
        if let Some(b) = &self.bgp {
            errs.extend(validate_bgp(self, b));
            if self
                .graceful_restart
                .is_some_and(|g| g != b.graceful_restart)
            {
                errs.push(ConfigError {
                    path: "graceful_restart".into(),
                    msg: format!(
                        "disagrees with bgp.graceful_restart = {}",
                        b.graceful_restart
                    ),
                });
            }
        }
        errs.extend(self.cni.validate());
        errs.extend(self.control.validate());
        errs.extend(self.metrics.validate());
        errs.extend(self.log.validate());
        if let Some(s) = &self.subnet {
            errs.extend(s.validate());
        }
        errs
    }
}

/// Pairs `(i, j)`, `j < i`, of static routes whose ranges overlap: each
/// route inside another is paired with the innermost route holding it.
/// Sorted by network, then shortest first, a range's enclosing ranges are
/// the stack of ranges before it that still contain it: O(n log n), so a
/// config of 10 000 routes validates at once.
fn overlapping_routes(routes: &[StaticRoute]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..routes.len()).collect();
    let key = |i: usize| {
        let c = routes[i].pod_cidr.network();
        (c.is_ipv4(), c.addr(), c.prefix_len(), i)
    };
    order.sort_by_key(|&i| key(i));
    let mut stack: Vec<usize> = Vec::new();
    let mut pairs = Vec::new();
    for i in order {
        let c = routes[i].pod_cidr;
        while let Some(&top) = stack.last() {
            if routes[top].pod_cidr.contains_cidr(&c) {
                break;
            }
            stack.pop();
        }
        if let Some(&top) = stack.last() {
            pairs.push((i.max(top), i.min(top)));
        }
        stack.push(i);
    }
    pairs.sort_unstable();
    pairs
}

/// Problems in `[bgp]` that need the rest of the config (plus the bgp
/// crate's own checks), with field paths.
fn validate_bgp(cfg: &Config, b: &weft_bgp::BgpConfig) -> Vec<ConfigError> {
    let mut errs: Vec<ConfigError> = b
        .validate()
        .into_iter()
        .map(|e| ConfigError {
            path: e.path,
            msg: e.msg,
        })
        .collect();
    if b.router_id.is_none() && !cfg.underlay_ip.is_ipv4() {
        errs.push(ConfigError {
            path: "bgp.router_id".into(),
            msg: "required when underlay_ip is IPv6".into(),
        });
    }
    for (i, p) in b.peers.iter().enumerate() {
        if p.address == cfg.underlay_ip {
            errs.push(ConfigError {
                path: format!("bgp.peers[{i}].address"),
                msg: format!("{} is this node's own underlay_ip", p.address),
            });
        }
    }
    errs
}

mod subnet;
mod wireguard;
pub use subnet::{LeaseDefaults, SubnetConfig};

#[cfg(test)]
mod tests;
