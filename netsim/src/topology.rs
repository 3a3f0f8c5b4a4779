//! Topology declarations (builder API or TOML) and the address plan that
//! follows from them. Pure: nothing here touches the kernel.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::attach::PodAttach;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::routing::Routing;

/// An IPv4 prefix such as `10.244.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Topology(format!("bad CIDR {s:?}"));
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        Ok(Self { addr, len })
    }

    /// The `n`-th host address (network address + n).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Most fake peers a topology may ask for (10.1.0.0/24 .. 10.64.255.0/24).
pub const MAX_FAKE_PEERS: usize = 16_384;

/// A declared topology: N nodes on one underlay segment, an optional ToR
/// router on it, and M pods per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Number of nodes (1..=253).
    pub nodes: usize,
    /// Pods per node (0..=250).
    pub pods_per_node: usize,
    /// Whether a top-of-rack router namespace sits on the underlay (at `.254`).
    pub tor: bool,
    /// `false` turns tso/gso/gro off on the node underlay veths so the wire
    /// carries real 1500-byte frames.
    pub underlay_offload: bool,
    /// `true` leaves tx checksum offload on on the underlay veths. Off by
    /// default: a userspace receiver of kernel-encapsulated frames needs
    /// finished checksums on the wire.
    pub underlay_tx_csum: bool,
    /// Underlay segment, a /24; node i (from 1) gets host address i.
    pub underlay_cidr: String,
    /// Cluster CIDR, a /16; node i gets the /24 with third octet i.
    pub cluster_cidr: String,
    /// Underlay MTU.
    pub underlay_mtu: u32,
    /// Run prefix tag: 1-2 lowercase letters (the prefix adds 4 hex digits).
    pub prefix_tag: String,
    /// Static routes to peers that do not exist, added to every weftd
    /// config (0..=16384): pod CIDRs `10.<1 + i / 256>.<i % 256>.0/24` via
    /// underlay addresses in 100.64.0.0/10 nobody answers, with weftd's
    /// cluster range widened to 10.0.0.0/8. For peer-table scale benchmarks.
    pub fake_peers: usize,
    /// How weftd's conflist attaches pods (`[cni] attach`: `bridge`, the
    /// default, or `ptp`).
    pub cni_attach: Option<String>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            nodes: 2,
            pods_per_node: 1,
            tor: false,
            underlay_offload: true,
            underlay_tx_csum: false,
            underlay_cidr: "172.31.0.0/24".into(),
            cluster_cidr: "10.244.0.0/16".into(),
            underlay_mtu: 1500,
            prefix_tag: "ns".into(),
            fake_peers: 0,
            cni_attach: None,
        }
    }
}

/// The addresses of one node, derived from the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Node number, from 1.
    pub number: usize,
    /// Underlay address.
    pub underlay_ip: Ipv4Addr,
    /// The node's pod CIDR (/24).
    pub pod_cidr: Ipv4Cidr,
    /// Gateway address on `cni0` (`.1` of the pod CIDR).
    pub gateway: Ipv4Addr,
    /// Pod addresses (`.2`, `.3`, ...).
    pub pod_ips: Vec<Ipv4Addr>,
}

impl Topology {
    /// A builder with the defaults (2 nodes, 1 pod each, no ToR, offload on).
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            topo: Self::default(),
            weftd: None,
            attach: None,
            routing: Routing::Static,
        }
    }

    /// Parses a TOML declaration (every key optional, unknown keys rejected).
    pub fn from_toml(text: &str) -> Result<Self> {
        let topo: Self = toml::from_str(text).map_err(|e| Error::Topology(e.to_string()))?;
        topo.validate()?;
        Ok(topo)
    }

    /// Checks the declaration; the error lists every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if !(1..=253).contains(&self.nodes) {
            problems.push(format!("nodes = {}: want 1..=253", self.nodes));
        }
        if self.fake_peers > MAX_FAKE_PEERS {
            problems.push(format!(
                "fake_peers = {}: want ≤ {MAX_FAKE_PEERS}",
                self.fake_peers
            ));
        }
        if self.pods_per_node > 250 {
            problems.push(format!(
                "pods_per_node = {}: want ≤ 250",
                self.pods_per_node
            ));
        }
        match Ipv4Cidr::parse(&self.underlay_cidr) {
            Ok(c) if c.len == 24 => {}
            _ => problems.push(format!(
                "underlay_cidr = {:?}: want a /24",
                self.underlay_cidr
            )),
        }
        match Ipv4Cidr::parse(&self.cluster_cidr) {
            Ok(c) if c.len == 16 => {}
            _ => problems.push(format!(
                "cluster_cidr = {:?}: want a /16",
                self.cluster_cidr
            )),
        }
        if !(1280..=9000).contains(&self.underlay_mtu) {
            problems.push(format!(
                "underlay_mtu = {}: want 1280..=9000",
                self.underlay_mtu
            ));
        }
        if self.prefix_tag.is_empty()
            || self.prefix_tag.len() > 2
            || !self.prefix_tag.bytes().all(|b| b.is_ascii_lowercase())
        {
            problems.push(format!(
                "prefix_tag = {:?}: want 1-2 lowercase letters",
                self.prefix_tag
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Topology(problems.join("; ")))
        }
    }

    /// The underlay segment.
    pub fn underlay(&self) -> Result<Ipv4Cidr> {
        Ipv4Cidr::parse(&self.underlay_cidr)
    }

    /// The cluster CIDR.
    pub fn cluster(&self) -> Result<Ipv4Cidr> {
        Ipv4Cidr::parse(&self.cluster_cidr)
    }

    /// The ToR's underlay address (`.254`).
    pub fn tor_ip(&self) -> Result<Ipv4Addr> {
        Ok(self.underlay()?.host(254))
    }

    /// Addresses of node `index` (0-based; the node number is `index + 1`).
    pub fn node_plan(&self, index: usize) -> Result<NodePlan> {
        let number = index + 1;
        let n = u32::try_from(number).map_err(|_| Error::Topology("node index".into()))?;
        let underlay = self.underlay()?;
        let cluster = self.cluster()?;
        let pod_cidr = Ipv4Cidr {
            addr: cluster.host(n << 8),
            len: 24,
        };
        let pods = u32::try_from(self.pods_per_node).map_err(|_| Error::Topology("pods".into()))?;
        Ok(NodePlan {
            number,
            underlay_ip: underlay.host(n),
            pod_cidr,
            gateway: pod_cidr.host(1),
            pod_ips: (0..pods).map(|j| pod_cidr.host(j + 2)).collect(),
        })
    }

    /// Plans of all nodes.
    pub fn plans(&self) -> Result<Vec<NodePlan>> {
        (0..self.nodes).map(|i| self.node_plan(i)).collect()
    }
}

/// Builds a [`Topology`] and then the [`Cluster`].
pub struct TopologyBuilder {
    topo: Topology,
    weftd: Option<PathBuf>,
    attach: Option<Box<dyn PodAttach>>,
    routing: Routing,
}

impl std::fmt::Debug for TopologyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyBuilder")
            .field("topo", &self.topo)
            .field("weftd", &self.weftd)
            .finish_non_exhaustive()
    }
}

impl TopologyBuilder {
    /// Starts from an existing declaration.
    pub fn from_topology(topo: Topology) -> Self {
        Self {
            topo,
            weftd: None,
            attach: None,
            routing: Routing::Static,
        }
    }

    /// Number of nodes.
    pub fn nodes(mut self, n: usize) -> Self {
        self.topo.nodes = n;
        self
    }

    /// Pods per node.
    pub fn pods_per_node(mut self, m: usize) -> Self {
        self.topo.pods_per_node = m;
        self
    }

    /// The conflist's attachment (`[cni] attach`: `bridge` or `ptp`).
    pub fn cni_attach(mut self, attach: &str) -> Self {
        self.topo.cni_attach = Some(attach.to_owned());
        self
    }

    /// Whether to add a ToR router namespace.
    pub fn tor(mut self, on: bool) -> Self {
        self.topo.tor = on;
        self
    }

    /// Underlay offloads (tso/gso/gro) on or off.
    pub fn underlay_offload(mut self, on: bool) -> Self {
        self.topo.underlay_offload = on;
        self
    }

    /// Underlay tx checksum offload on or off (default off).
    pub fn underlay_tx_csum(mut self, on: bool) -> Self {
        self.topo.underlay_tx_csum = on;
        self
    }

    /// Underlay MTU.
    pub fn underlay_mtu(mut self, mtu: u32) -> Self {
        self.topo.underlay_mtu = mtu;
        self
    }

    /// Run prefix tag (1-2 lowercase letters), e.g. "rt" for router tests.
    pub fn prefix_tag(mut self, tag: &str) -> Self {
        tag.clone_into(&mut self.topo.prefix_tag);
        self
    }

    /// Path of the `weftd` binary for weft modes (default: next to this executable).
    pub fn weftd(mut self, path: impl Into<PathBuf>) -> Self {
        self.weftd = Some(path.into());
        self
    }

    /// Replaces the pod attach step (default: [`crate::attach::BridgeAttach`]).
    pub fn attach(mut self, attach: Box<dyn PodAttach>) -> Self {
        self.attach = Some(attach);
        self
    }

    /// Pods attached by exec'ing weft's CNI plugins from `plugins` with
    /// the conflist each node's weftd writes ([`crate::cni::CniAttach`]).
    pub fn cni(self, plugins: impl Into<PathBuf>) -> Self {
        self.attach(Box::new(crate::cni::CniAttach::new(plugins)))
    }

    /// Route distribution for weft modes (default: static); the route
    /// reflector adds the ToR.
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        if routing == Routing::Rr {
            self.topo.tor = true;
        }
        self
    }

    /// The declaration built so far.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Creates the cluster in namespaces.
    pub fn build(self) -> Result<Cluster> {
        self.topo.validate()?;
        Cluster::create(self.topo, self.weftd, self.attach, self.routing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_matches_the_issue() {
        let t = Topology::builder()
            .nodes(3)
            .pods_per_node(2)
            .topology()
            .clone();
        let p = t.node_plan(1).unwrap();
        assert_eq!(p.number, 2);
        assert_eq!(p.underlay_ip, Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(p.pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(p.gateway, Ipv4Addr::new(10, 244, 2, 1));
        assert_eq!(
            p.pod_ips,
            vec![Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 2, 3)]
        );
        assert_eq!(t.tor_ip().unwrap(), Ipv4Addr::new(172, 31, 0, 254));
    }

    #[test]
    fn toml_declaration_parses_and_rejects_unknown_keys() {
        let t = Topology::from_toml("nodes = 3\npods_per_node = 2\ntor = true\n").unwrap();
        assert_eq!((t.nodes, t.pods_per_node, t.tor), (3, 2, true));
        assert_eq!(t.cluster_cidr, "10.244.0.0/16");
        assert!(!t.underlay_tx_csum);
        let t = Topology::from_toml("underlay_tx_csum = true\n").unwrap();
        assert!(t.underlay_tx_csum);
        let err = Topology::from_toml("nodez = 3\n").unwrap_err().to_string();
        assert!(err.contains("nodez"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let t = Topology {
            nodes: 0,
            underlay_cidr: "172.31.0.0/16".into(),
            prefix_tag: "toolong".into(),
            ..Topology::default()
        };
        let err = t.validate().unwrap_err().to_string();
        assert!(
            err.contains("nodes") && err.contains("underlay_cidr") && err.contains("prefix_tag"),
            "{err}"
        );
    }

    #[test]
    fn cidr_parse() {
        assert!(Ipv4Cidr::parse("10.0.0.0/33").is_err());
        assert!(Ipv4Cidr::parse("10.0.0/8").is_err());
        assert_eq!(
            Ipv4Cidr::parse("10.1.2.0/24").unwrap().host(5),
            Ipv4Addr::new(10, 1, 2, 5)
        );
    }
}
