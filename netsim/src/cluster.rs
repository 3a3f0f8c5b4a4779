//! A running cluster: fabric, nodes, optional ToR and pods in namespaces,
//! torn down on drop (also on panic and error).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::attach::{BridgeAttach, PodAttach};
use crate::bgp::Bird;
use crate::error::{Error, Result};
use crate::mode::{self, Mode, Step, UNDERLAY_IF, WeftMode};
use crate::netns::Netns;
use crate::routing::Routing;
use crate::run::{self, RunPrefix};
use crate::topology::{Ipv4Cidr, NodePlan, Topology};
use crate::weftd::{WeftdConfig, WeftdProcess, default_weftd_path};

/// Name of the pod bridge on each node.
pub const POD_BRIDGE: &str = "cni0";
/// Name of the fabric bridge.
pub const FABRIC_BRIDGE: &str = "br0";
/// Interface name inside pods.
pub const POD_IF: &str = "eth0";

/// A pod address: `(node index, pod index)`, both 0-based.
pub type PodId = (usize, usize);

/// A node namespace with its addresses.
#[derive(Debug)]
pub struct Node {
    pub(crate) ns: Netns,
    pub(crate) plan: NodePlan,
}

impl Node {
    /// The node's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Node number (from 1; node index + 1).
    pub fn number(&self) -> usize {
        self.plan.number
    }

    /// Underlay address.
    pub fn underlay_ip(&self) -> Ipv4Addr {
        self.plan.underlay_ip
    }

    /// Underlay interface name inside the node.
    pub fn underlay_if(&self) -> &'static str {
        UNDERLAY_IF
    }

    /// The node's pod CIDR.
    pub fn pod_cidr(&self) -> Ipv4Cidr {
        self.plan.pod_cidr
    }

    /// The pod gateway address on `cni0`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.plan.gateway
    }
}

/// A pod namespace attached to its node.
#[derive(Debug)]
pub struct Pod {
    pub(crate) ns: Netns,
    pub(crate) ip: Ipv4Addr,
    pub(crate) id: PodId,
    pub(crate) host_veth: String,
    pub(crate) container_id: String,
}

impl Pod {
    /// The pod's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The pod's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `(node index, pod index)`.
    pub fn id(&self) -> PodId {
        self.id
    }

    /// The host-side veth in the node namespace.
    pub fn host_veth(&self) -> &str {
        &self.host_veth
    }

    /// The container id it was attached with (`CNI_CONTAINERID`).
    pub fn container_id(&self) -> &str {
        &self.container_id
    }
}

/// A cluster in namespaces. Dropping it stops weftd, deletes every namespace
/// and removes the run's state file and directory.
pub struct Cluster {
    pub(crate) topo: Topology,
    /// weftd per node (index = node index).
    pub(crate) weftds: Vec<Option<WeftdProcess>>,
    pub(crate) pods: Vec<Vec<Pod>>,
    pub(crate) nodes: Vec<Node>,
    tor: Option<Netns>,
    /// Extra hosts on the underlay (route generators, "the internet").
    pub(crate) hosts: Vec<Netns>,
    fabric: Option<Netns>,
    /// Forwarding mode per node (index = node index).
    pub(crate) node_modes: Vec<Option<Mode>>,
    weftd_path: PathBuf,
    pub(crate) attach: Box<dyn PodAttach>,
    pub(crate) routing: Routing,
    pub(crate) bird: Option<Bird>,
    /// Route reflector clients besides the nodes (route generators).
    pub(crate) rr_extra: Vec<Ipv4Addr>,
    /// Nodes routed by something else than weftd or a kernel mode (FRR).
    pub(crate) external_routes: Vec<usize>,
    /// How long the last [`Cluster::apply_mode`] took to converge.
    last_convergence: Option<std::time::Duration>,
    pub(crate) prefix: RunPrefix,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("prefix", &self.prefix.as_str())
            .field("topo", &self.topo)
            .field("node_modes", &self.node_modes)
            .field("routing", &self.routing)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn create(
        topo: Topology,
        weftd: Option<PathBuf>,
        attach: Option<Box<dyn PodAttach>>,
        routing: Routing,
    ) -> Result<Self> {
        let prefix = RunPrefix::claim(&topo.prefix_tag)?;
        let mut c = Self {
            weftds: Vec::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            tor: None,
            hosts: Vec::new(),
            fabric: None,
            node_modes: Vec::new(),
            weftd_path: weftd.unwrap_or_else(default_weftd_path),
            attach: attach.unwrap_or_else(|| Box::new(BridgeAttach)),
            routing,
            bird: None,
            rr_extra: Vec::new(),
            external_routes: Vec::new(),
            last_convergence: None,
            prefix,
            topo,
        };
        // Any error below drops `c`, which removes what was made so far.
        c.build_fabric()?;
        for i in 0..c.topo.nodes {
            c.build_node(i)?;
        }
        if c.topo.tor {
            c.build_tor()?;
        }
        for i in 0..c.topo.nodes {
            c.pods.push(Vec::new());
            // Through CNI, pods wait for the conflist of their node's weftd.
            if !c.attach.needs_node_config() {
                c.attach_pods(i)?;
            }
        }
        Ok(c)
    }

    pub(crate) fn ns_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix.as_str())
    }

    fn build_fabric(&mut self) -> Result<()> {
        let fab = run::create_netns(&self.ns_name("fab"))?;
        fab.ip(&["link", "add", FABRIC_BRIDGE, "type", "bridge"])?;
        fab.ip(&[
            "link",
            "set",
            FABRIC_BRIDGE,
            "mtu",
            &self.topo.underlay_mtu.to_string(),
            "up",
        ])?;
        self.fabric = Some(fab);
        Ok(())
    }

    fn fabric(&self) -> Result<&Netns> {
        self.fabric
            .as_ref()
            .ok_or_else(|| Error::Topology("fabric missing".into()))
    }

    /// Joins `ns` to the fabric with a veth: `port` in the fabric, `eth0` in `ns`.
    fn plug_underlay(&self, ns: &Netns, port: &str, addr: Ipv4Addr) -> Result<()> {
        let fab = self.fabric()?;
        let mtu = self.topo.underlay_mtu.to_string();
        fab.ip(&[
            "link",
            "add",
            port,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_IF,
            "mtu",
            &mtu,
            "netns",
            ns.name(),
        ])?;
        fab.ip(&["link", "set", port, "master", FABRIC_BRIDGE, "up"])?;
        // Unless asked otherwise: a userspace receiver of kernel-encapsulated
        // frames needs finished checksums on the wire.
        if !self.topo.underlay_tx_csum {
            fab.run("ethtool", &["-K", port, "tx", "off"])?;
            ns.run("ethtool", &["-K", UNDERLAY_IF, "tx", "off"])?;
        }
        let len = self.topo.underlay()?.len;
        ns.ip(&["addr", "add", &format!("{addr}/{len}"), "dev", UNDERLAY_IF])?;
        ns.ip(&["link", "set", UNDERLAY_IF, "up"])?;
        ns.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        Ok(())
    }

    fn build_node(&mut self, i: usize) -> Result<()> {
        let plan = self.topo.node_plan(i)?;
        let ns = run::create_netns(&self.ns_name(&format!("n{}", plan.number)))?;
        self.plug_underlay(&ns, &format!("n{}", plan.number), plan.underlay_ip)?;
        if !self.topo.underlay_offload {
            ns.run(
                "ethtool",
                &["-K", UNDERLAY_IF, "tso", "off", "gso", "off", "gro", "off"],
            )?;
        }
        self.nodes.push(Node { ns, plan });
        self.node_modes.push(None);
        self.weftds.push(None);
        Ok(())
    }

    /// Adds a host namespace `<prefix>-<suffix>` on the underlay at `ip`
    /// (a route generator, an outside server); returns its index for
    /// [`Cluster::host`].
    pub fn add_host(&mut self, suffix: &str, ip: Ipv4Addr) -> Result<usize> {
        let ns = run::create_netns(&self.ns_name(suffix))?;
        self.plug_underlay(&ns, &format!("h{}", self.hosts.len()), ip)?;
        self.hosts.push(ns);
        Ok(self.hosts.len() - 1)
    }

    /// Extra host `k` (see [`Cluster::add_host`]). Panics when out of range.
    pub fn host(&self, k: usize) -> &Netns {
        &self.hosts[k]
    }

    fn build_tor(&mut self) -> Result<()> {
        let ns = run::create_netns(&self.ns_name("tor"))?;
        let ip = self.topo.tor_ip()?;
        self.plug_underlay(&ns, "tor", ip)?;
        self.tor = Some(ns);
        Ok(())
    }

    /// The run prefix every resource name starts with.    /// The run prefix every resource name starts with.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// The run's temporary directory (configs, logs); removed on drop.
    pub fn run_dir(&self) -> &Path {
        self.prefix.dir()
    }

    /// The declaration this cluster was built from.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Node by 0-based index. Panics when out of range, like slice indexing.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Pod `j` of node `i` (both 0-based). Panics when out of range.
    pub fn pod(&self, i: usize, j: usize) -> &Pod {
        &self.pods[i][j]
    }

    /// Every pod, node by node.
    pub fn all_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().flatten()
    }

    /// The fabric (underlay switch) namespace.
    pub fn fabric_ns(&self) -> Option<&Netns> {
        self.fabric.as_ref()
    }

    /// The ToR router namespace, when the topology has one.
    pub fn tor(&self) -> Option<&Netns> {
        self.tor.as_ref()
    }

    /// The forwarding mode in effect when every node runs the same one.
    pub fn mode(&self) -> Option<Mode> {
        let first = *self.node_modes.first()?;
        self.node_modes
            .iter()
            .all(|m| *m == first)
            .then_some(first)
            .flatten()
    }

    /// The forwarding mode of node `i`.
    pub fn node_mode(&self, i: usize) -> Option<Mode> {
        self.node_modes.get(i).copied().flatten()
    }

    /// Sets the weftd binary used by weft modes.
    pub fn set_weftd(&mut self, path: impl Into<PathBuf>) {
        self.weftd_path = path.into();
    }

    /// The weftd binary used by weft modes.
    pub fn weftd_path(&self) -> &Path {
        &self.weftd_path
    }

    /// Running weftd processes.
    pub fn weftds(&self) -> impl Iterator<Item = &WeftdProcess> {
        self.weftds.iter().flatten()
    }

    /// The weftd running on node `i`, if any.
    pub fn weftd(&self, i: usize) -> Option<&WeftdProcess> {
        self.weftds.get(i).and_then(Option::as_ref)
    }

    fn run_step(&self, node: &Netns, step: &Step) -> Result<()> {
        let mut cmd = std::process::Command::new(step.tool);
        cmd.arg("-n").arg(node.name()).args(&step.args);
        crate::netns::run_checked(&mut cmd)?;
        Ok(())
    }

    /// Removes node `i`'s forwarding state (stops its weftd). Errors when
    /// weftd did not exit 0 on SIGTERM.
    pub fn clear_node_mode(&mut self, i: usize) -> Result<()> {
        self.stop_node(i, true)
    }

    /// Stops node `i`'s mode; `flush` also removes routes a weftd left on
    /// a graceful stop (kept for a restart in the same mode).
    fn stop_node(&mut self, i: usize, flush: bool) -> Result<()> {
        let Some(old) = self.node_modes.get_mut(i).and_then(Option::take) else {
            return Ok(());
        };
        let stopped = self.weftds[i].take().map_or(Ok(()), WeftdProcess::stop);
        for step in mode::kernel_teardown(old, &self.topo, i)? {
            let _ = self.run_step(&self.nodes[i].ns, &step);
        }
        if flush && matches!(old, Mode::Weft(_)) {
            let _ = self.nodes[i].ns.ip(&["route", "flush", "proto", "87"]);
        }
        stopped
    }

    /// SIGKILLs node `i`'s weftd (a node crash): its routes and sessions
    /// are left for the peers' hold and restart timers to clean up.
    pub fn kill_weftd(&mut self, i: usize) {
        if let Some(w) = self.weftds.get_mut(i).and_then(Option::take) {
            w.kill();
        }
        if let Some(m) = self.node_modes.get_mut(i) {
            *m = None;
        }
    }

    /// Removes every node's forwarding state (stops weftd). Errors when a
    /// weftd did not stop cleanly on SIGTERM.
    pub fn clear_mode(&mut self) -> Result<()> {
        let mut first_err = None;
        for i in 0..self.nodes.len() {
            if let Err(e) = self.clear_node_mode(i) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sets the MTU of node `i`'s pods, their host veths and `cni0` (none
    /// when the pods are attached by ptp).
    fn set_pod_mtu(&self, i: usize, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        let node = &self.nodes[i];
        for pod in &self.pods[i] {
            pod.ns.ip(&["link", "set", POD_IF, "mtu", &mtu])?;
            node.ns.ip(&["link", "set", &pod.host_veth, "mtu", &mtu])?;
        }
        if !self.pods[i].is_empty() && self.topo.cni_attach.as_deref() != Some("ptp") {
            node.ns.ip(&["link", "set", POD_BRIDGE, "mtu", &mtu])?;
        }
        Ok(())
    }

    /// Switches every node to `mode`: clears the previous mode everywhere,
    /// sets pod MTUs, then programs the kernel or starts weftd on each node.
    /// With BGP routing, also waits until every node has every other
    /// node's route ([`Cluster::last_convergence`] says how long that took).
    pub fn apply_mode(&mut self, mode: Mode) -> Result<()> {
        self.clear_mode()?;
        self.start_route_reflector()?;
        let t0 = std::time::Instant::now();
        for i in 0..self.nodes.len() {
            self.apply_node_mode(i, mode)?;
        }
        self.last_convergence = None;
        if matches!(mode, Mode::Weft(_)) && self.routing != Routing::Static {
            self.wait_converged(crate::routing::CONVERGE_TIMEOUT)?;
            self.last_convergence = Some(t0.elapsed());
        }
        Ok(())
    }

    /// Time from starting the first weftd to every route everywhere in the
    /// last [`Cluster::apply_mode`] of a weft mode with BGP routing.
    pub fn last_convergence(&self) -> Option<std::time::Duration> {
        self.last_convergence
    }

    /// Switches node `i` alone to `mode` (e.g. weft vxlan on one node and
    /// kernel vxlan on another, for interop tests).
    pub fn apply_node_mode(&mut self, i: usize, mode: Mode) -> Result<()> {
        match mode {
            Mode::Weft(w) => {
                let cfg = self.weftd_config(i, w)?;
                self.start_weftd(i, &cfg)
            }
            Mode::KernelHostGw | Mode::KernelVxlan => {
                if self.pods[i].len() < self.topo.pods_per_node {
                    return Err(Error::Mode {
                        mode: mode.to_string(),
                        msg: "pods attach through the conflist of weftd: start a weft mode \
                              first, or build with the built-in attach"
                            .into(),
                    });
                }
                self.clear_node_mode(i)?;
                self.set_pod_mtu(i, mode.pod_mtu(self.topo.underlay_mtu))?;
                self.node_modes[i] = Some(mode);
                for step in mode::kernel_setup(mode, &self.topo, i)? {
                    self.run_step(&self.nodes[i].ns, &step)
                        .map_err(|e| Error::Mode {
                            mode: mode.to_string(),
                            msg: e.to_string(),
                        })?;
                }
                Ok(())
            }
        }
    }

    /// Starts weftd on node `i` with a caller-made config (start from
    /// [`Cluster::weftd_config`] and adjust), after stopping node `i`'s
    /// mode (a restart in the same mode keeps the routes weftd left). With
    /// a CNI attach, the node's pods are attached once weftd has written
    /// its conflist.
    pub fn start_weftd(&mut self, i: usize, cfg: &WeftdConfig) -> Result<()> {
        let w = WeftMode::from_config_name(&cfg.dataplane.mode).ok_or_else(|| Error::Mode {
            mode: cfg.dataplane.mode.clone(),
            msg: "not a weft dataplane mode".into(),
        })?;
        let mode = Mode::Weft(w);
        let same = self.node_modes[i] == Some(mode);
        self.stop_node(i, !same)?;
        self.set_pod_mtu(i, mode.pod_mtu(self.topo.underlay_mtu))?;
        self.node_modes[i] = Some(mode);
        let p = WeftdProcess::start(&self.weftd_path, &self.nodes[i].ns, cfg, self.prefix.dir())?;
        self.weftds[i] = Some(p);
        if self.attach.needs_node_config() && self.pods[i].len() < self.topo.pods_per_node {
            self.wait_conflist(i)?;
            self.attach_pods(i)?;
        }
        Ok(())
    }

    /// Leaves everything running and in place (namespaces, weftd, BIRD,
    /// the run directory): `netsim clean` removes it once this process is
    /// gone.
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// Total CPU seconds used so far by this cluster's weftd processes.
    pub fn router_cpu_seconds(&self) -> Option<f64> {
        let mut any = false;
        let mut sum = 0.0;
        for w in self.weftds() {
            sum += w.cpu_seconds()?;
            any = true;
        }
        any.then_some(sum)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.weftds.clear();
        self.bird = None;
        self.pods.clear();
        self.nodes.clear();
        self.tor = None;
        self.hosts.clear();
        self.fabric = None;
        // Safety net for anything created but not yet owned by a guard.
        run::remove_run(self.prefix.as_str());
    }
}
