//! The control socket's wire format, shared by weftd and the `weft` CLI:
//! one JSON request line in, one JSON response line out. These types are
//! the stable schema `weft --json` prints (documented in router/README.md):
//! fields may be added, none renamed or removed.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::route_table::RouteSource;

/// Longest request line weftd reads, newline included.
pub const MAX_REQUEST: usize = 4096;

/// One request: `{"command":"status"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// What to do.
    pub command: Command,
}

/// A control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The node and its BGP peers ([`NodeStatus`]).
    Status,
    /// The BGP peers ([`PeerReport`] list).
    Peers,
    /// The pod ranges routed to other nodes ([`RouteReport`] list).
    Routes,
    /// Re-read the config file ([`ReloadReport`]).
    Reload,
}

/// One response line: `{"ok":true,"result":...}` or
/// `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// True when `result` holds the answer.
    pub ok: bool,
    /// The answer (`ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why the request failed (not `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A successful answer.
    pub fn ok(result: serde_json::Value) -> Self {
        Self {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure, with one line saying why.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(msg.into()),
        }
    }
}

/// `weft status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `node_name`.
    pub node: String,
    /// Dataplane mode (`host-gw`, `vxlan`, `udp`, `ipip`).
    pub mode: String,
    /// The pods' MTU (what the conflist gives them).
    pub mtu: u32,
    /// The underlay link's MTU.
    pub underlay_mtu: u32,
    /// Offloads in use (`tun_tso`, `tun_uso`, `udp_gso`, `udp_gro`,
    /// `tunnel_gso`); empty in host-gw.
    pub offloads: Vec<String>,
    /// This node's pod ranges.
    pub pod_cidrs: Vec<Cidr>,
    /// Seconds since weftd started.
    pub uptime_seconds: u64,
    /// What `/readyz` answers: ready, or why not.
    pub ready: bool,
    /// Why the node is not ready (empty when ready).
    pub not_ready: Vec<String>,
    /// Pod ranges of other nodes routed now.
    pub routes: usize,
    /// BGP peers (empty without `[bgp]`).
    pub peers: Vec<PeerReport>,
    /// This node's WireGuard public key, base64 as `wg pubkey` prints it
    /// (wireguard mode; null otherwise).
    #[serde(default)]
    pub wireguard_public_key: Option<String>,
}

/// One BGP peer, as `birdc show protocols` / `calicoctl node status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Peer address.
    pub address: IpAddr,
    /// Peer AS.
    pub asn: u32,
    /// `ibgp`, `ebgp` or `rr_client`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `idle`, `connect`, `active`, `open_sent`, `open_confirm`,
    /// `established`.
    pub state: String,
    /// Seconds in `state`.
    pub since_seconds: u64,
    /// Prefixes the peer announces now, before import policy.
    pub prefixes_received: usize,
    /// Of those, accepted by import policy and loop checks.
    pub prefixes_accepted: usize,
    /// Prefixes we advertise to the peer.
    pub prefixes_advertised: usize,
    /// UPDATE messages received since weftd started.
    pub updates_received: u64,
    /// End-of-RIB received for every family of the session.
    pub end_of_rib: bool,
    /// Why the session last went down, if it did.
    pub last_error: Option<String>,
    /// BFD session state (`admin_down`, `down`, `init`, `up`) when BFD runs
    /// with this peer.
    pub bfd: Option<String>,
}

/// One routed pod range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteReport {
    /// The other node's pod range.
    pub pod_cidr: Cidr,
    /// The other node's underlay address (the first gateway of a
    /// multipath route).
    pub next_hop: IpAddr,
    /// Every gateway: one, or the equal-cost set of a BGP multipath route.
    #[serde(default)]
    pub next_hops: Vec<IpAddr>,
    /// How packets go there: `host-gw`, `vxlan`, `udp` or `ipip`.
    pub mode: String,
    /// Who says so: `static`, `etcd` or `bgp`.
    pub source: RouteSource,
    /// Tunnel counters of the peer (overlay routes; zero until the peer
    /// carried a packet).
    pub tunnel: Option<TunnelCounters>,
}

/// Counters of one overlay peer (the `weft_dataplane_*` series).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelCounters {
    /// Inner packets sent.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Inner packets received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Packets from this peer dropped.
    pub drops: u64,
}

/// `weft reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// What changed, one line.
    pub summary: String,
    /// The same, field by field.
    pub applied: crate::reload::ReloadSummary,
}
