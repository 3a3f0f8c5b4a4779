//! How a cluster's nodes learn each other's pod CIDRs: static routes in
//! every weftd config, BGP through BIRD 2 as iBGP route reflector on the
//! ToR (the default), or a weftd full mesh; plus the convergence wait that
//! measures it.

use std::time::{Duration, Instant};

use crate::bgp::{self, BgpSetup, Bird};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::mode::{Mode, WeftMode};
use crate::weftd::WeftdConfig;

/// Route distribution for weft modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// `[[static_routes]]` to every other node.
    Static,
    /// BGP: every weftd peers with BIRD reflecting on the ToR.
    Rr,
    /// BGP: every weftd peers with every other.
    Mesh,
}

impl Routing {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Rr => "rr",
            Self::Mesh => "mesh",
        }
    }

    /// The BGP setup, `None` for static routes.
    pub fn bgp_setup(self) -> Option<BgpSetup> {
        match self {
            Self::Static => None,
            Self::Rr => Some(BgpSetup::TorReflector),
            Self::Mesh => Some(BgpSetup::FullMesh),
        }
    }
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Routing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "static" => Ok(Self::Static),
            "rr" => Ok(Self::Rr),
            "mesh" => Ok(Self::Mesh),
            _ => Err(Error::Topology(format!(
                "unknown routing {s:?} (static, rr, mesh)"
            ))),
        }
    }
}

/// How long BGP may take to put every route everywhere.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

impl Cluster {
    /// Node `i`'s weftd config in `mode` with the cluster's routing.
    pub fn weftd_config(&self, i: usize, mode: WeftMode) -> Result<WeftdConfig> {
        let cfg = WeftdConfig::for_node(&self.topo, i, mode)?;
        match self.routing.bgp_setup() {
            None => Ok(cfg),
            Some(setup) => bgp::with_bgp(cfg, &self.topo, i, setup),
        }
    }

    /// The route distribution in use.
    pub fn routing(&self) -> Routing {
        self.routing
    }

    /// Starts BIRD on the ToR as route reflector for every planned node,
    /// unless it runs already (a no-op without route-reflector routing).
    pub fn start_route_reflector(&mut self) -> Result<()> {
        if self.routing != Routing::Rr || self.bird.is_some() {
            return Ok(());
        }
        let tor = self
            .tor()
            .ok_or_else(|| Error::Topology("route reflector routing needs the ToR".into()))?;
        let conf = bgp::bird_reflector_conf_with(&self.topo, &self.rr_extra)?;
        let bird = Bird::start(tor, &conf, self.prefix.dir(), "rr")?;
        self.bird = Some(bird);
        Ok(())
    }

    /// Makes `ip` (e.g. a host from [`Cluster::add_host`]) a client of the
    /// route reflector started next.
    pub fn add_reflector_client(&mut self, ip: std::net::Ipv4Addr) {
        self.rr_extra.push(ip);
    }

    /// SIGKILLs the route reflector (a crash: peers get no notification).
    pub fn kill_route_reflector(&mut self) {
        if let Some(b) = self.bird.take() {
            b.kill();
        }
    }

    /// The route reflector, when running.
    pub fn route_reflector(&self) -> Option<&Bird> {
        self.bird.as_ref()
    }

    /// Nodes whose pods are reachable through weftd or a kernel mode.
    fn routed_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| match self.node_mode(i) {
                Some(Mode::Weft(_)) => self.weftd(i).is_some(),
                Some(_) => true,
                None => self.external_routes.contains(&i),
            })
            .collect()
    }

    /// Whether node `i` has a route to every CIDR in `cidrs`.
    pub fn has_routes(&self, i: usize, cidrs: &[String]) -> bool {
        let Ok(out) = self.nodes[i].ns().ip(&["-4", "route", "show"]) else {
            return false;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        cidrs.iter().all(|c| {
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(c.as_str()))
        })
    }

    /// Pod CIDRs of the routed nodes other than `i`.
    pub fn peer_cidrs(&self, i: usize) -> Vec<String> {
        self.routed_nodes()
            .into_iter()
            .filter(|&j| j != i)
            .map(|j| self.nodes[j].pod_cidr().to_string())
            .collect()
    }

    /// Waits until every routed node has a route to every other routed
    /// node's pod CIDR; returns how long that took.
    pub fn wait_converged(&self, within: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let nodes = self.routed_nodes();
        loop {
            let missing: Vec<(usize, Vec<String>)> = nodes
                .iter()
                .map(|&i| (i, self.peer_cidrs(i)))
                .filter(|(i, c)| !self.has_routes(*i, c))
                .collect();
            if missing.is_empty() {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > within {
                let rr = self
                    .bird
                    .as_ref()
                    .map(Bird::diagnostics)
                    .unwrap_or_default();
                let logs: Vec<String> = self
                    .weftds()
                    .map(crate::weftd::WeftdProcess::log_tail)
                    .collect();
                return Err(Error::Topology(format!(
                    "routes not converged after {within:?}: nodes {:?} miss some of their peers' \
                     pod CIDRs\nroute reflector:\n{rr}\nweftd logs:\n{}",
                    missing.iter().map(|(i, _)| i + 1).collect::<Vec<_>>(),
                    logs.join("\n----\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Marks node `i` as routed by something other than weftd or a kernel
    /// mode (e.g. FRR), so convergence waits include it.
    pub fn mark_externally_routed(&mut self, i: usize) {
        if !self.external_routes.contains(&i) {
            self.external_routes.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_names_round_trip() {
        for r in [Routing::Static, Routing::Rr, Routing::Mesh] {
            assert_eq!(r.as_str().parse::<Routing>().unwrap(), r);
        }
        assert!("ospf".parse::<Routing>().is_err());
        assert_eq!(Routing::Static.bgp_setup(), None);
    }
}
