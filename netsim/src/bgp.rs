//! BGP setups for a cluster: weftd `[bgp]` tables (full mesh, clients of a
//! route reflector, one weftd reflecting for the others) and BIRD 2 as an
//! iBGP route reflector in the ToR namespace.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::ChildGuard;
use crate::topology::Topology;
use crate::weftd::WeftdConfig;

/// The cluster's AS number (iBGP everywhere).
pub const CLUSTER_ASN: u32 = 64512;

/// How the nodes learn each other's pod CIDRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpSetup {
    /// Every weftd peers with every other.
    FullMesh,
    /// Every weftd is a client of a route reflector on the ToR (BIRD).
    TorReflector,
    /// Node 0's weftd reflects for the others (`route_reflector_client`).
    WeftdReflector,
}

fn peer(address: String, rr_client: bool) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("address".into(), address.into());
    t.insert("asn".into(), i64::from(CLUSTER_ASN).into());
    if rr_client {
        t.insert("route_reflector_client".into(), true.into());
    }
    toml::Value::Table(t)
}

/// weftd's `[bgp]` table for node `index` in `setup`: short timers (hold 3 s,
/// retry 1 s) so tests converge fast.
pub fn weftd_bgp(topo: &Topology, index: usize, setup: BgpSetup) -> Result<toml::Table> {
    let me = topo.node_plan(index)?;
    let others = topo
        .plans()?
        .into_iter()
        .filter(|p| p.number != me.number)
        .map(|p| p.underlay_ip.to_string());
    let peers: Vec<toml::Value> = match setup {
        BgpSetup::FullMesh => others.map(|a| peer(a, false)).collect(),
        BgpSetup::TorReflector => vec![peer(topo.tor_ip()?.to_string(), false)],
        BgpSetup::WeftdReflector if index == 0 => others.map(|a| peer(a, true)).collect(),
        BgpSetup::WeftdReflector => vec![peer(topo.node_plan(0)?.underlay_ip.to_string(), false)],
    };
    let mut t = toml::Table::new();
    t.insert("asn".into(), i64::from(CLUSTER_ASN).into());
    t.insert("hold_time".into(), 3.into());
    t.insert("connect_retry".into(), 1.into());
    t.insert("restart_time".into(), 30.into());
    t.insert("peers".into(), toml::Value::Array(peers));
    Ok(t)
}

/// `cfg` with its static routes replaced by BGP in `setup`.
pub fn with_bgp(
    mut cfg: WeftdConfig,
    topo: &Topology,
    index: usize,
    setup: BgpSetup,
) -> Result<WeftdConfig> {
    cfg.static_routes.clear();
    cfg.bgp = Some(weftd_bgp(topo, index, setup)?);
    Ok(cfg)
}

/// BIRD 2 config for an iBGP route reflector on the ToR with every node as
/// a client (next hops are preserved: BIRD reflects unchanged).
pub fn bird_reflector_conf(topo: &Topology) -> Result<String> {
    bird_reflector_conf_with(topo, &[])
}

/// [`bird_reflector_conf`] with further clients at `extra` (e.g. a route
/// generator standing for many nodes).
pub fn bird_reflector_conf_with(topo: &Topology, extra: &[std::net::Ipv4Addr]) -> Result<String> {
    let tor = topo.tor_ip()?;
    let mut s = format!(
        "log stderr all;\nrouter id {tor};\nprotocol device {{ }}\n\
         template bgp node {{\n  local {tor} as {CLUSTER_ASN};\n  rr client;\n  direct;\n  \
         hold time 3;\n  keepalive time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
         graceful restart on;\n  ipv4 {{ import all; export all; }};\n}}\n"
    );
    for p in topo.plans()? {
        s.push_str(&format!(
            "protocol bgp node{} from node {{ neighbor {} as {CLUSTER_ASN}; }}\n",
            p.number, p.underlay_ip
        ));
    }
    for (k, ip) in extra.iter().enumerate() {
        s.push_str(&format!(
            "protocol bgp extra{k} from node {{ neighbor {ip} as {CLUSTER_ASN}; }}\n"
        ));
    }
    Ok(s)
}

/// A BIRD daemon in a namespace with private control socket; killed on drop.
#[derive(Debug)]
pub struct Bird {
    _child: ChildGuard,
    ctl: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Bird {
    /// Writes `conf` into `dir` and runs BIRD inside `ns` until it is up.
    pub fn start(ns: &Netns, conf: &str, dir: &Path, tag: &str) -> Result<Self> {
        let conf_path = dir.join(format!("{tag}-bird.conf"));
        let ctl = dir.join(format!("{tag}-bird.ctl"));
        std::fs::write(&conf_path, conf)
            .map_err(|e| Error::io(format!("write {}", conf_path.display()), e))?;
        let mut cmd = ns.command("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(dir.join(format!("{tag}-bird.pid")));
        let log = dir.join(format!("{tag}-bird.log"));
        let child = ChildGuard::spawn(cmd, "bird", Some(&log))?;
        let me = Self {
            _child: child,
            ctl,
            log: log.clone(),
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !me.birdc(&["show", "status"]).contains("Daemon is up") {
            if Instant::now() > end {
                return Err(Error::Weftd {
                    node: ns.name().to_owned(),
                    msg: format!(
                        "BIRD did not start: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    /// Runs `birdc` with `args` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self._child.pid()
    }

    /// SIGKILL (a crashed route reflector: no notification to its peers).
    pub fn kill(mut self) {
        let _ = self._child.kill();
    }

    /// BIRD's log and `show protocols`, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}\n{}",
            self.birdc(&["show", "protocols"]),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_generate_the_expected_peers() {
        let topo = Topology::builder().nodes(3).tor(true).topology().clone();
        let addrs = |t: &toml::Table| -> Vec<(String, bool)> {
            t["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["address"].as_str().unwrap().to_owned(),
                        p.get("route_reflector_client").is_some(),
                    )
                })
                .collect()
        };
        let mesh = weftd_bgp(&topo, 1, BgpSetup::FullMesh).unwrap();
        assert_eq!(mesh["asn"].as_integer(), Some(64512));
        assert_eq!(addrs(&mesh).len(), 2);
        assert!(addrs(&mesh).iter().all(|(a, rr)| !rr && a != "172.31.0.2"));
        let rr = weftd_bgp(&topo, 0, BgpSetup::WeftdReflector).unwrap();
        assert!(addrs(&rr).iter().all(|(_, rr)| *rr));
        let client = weftd_bgp(&topo, 2, BgpSetup::TorReflector).unwrap();
        assert_eq!(addrs(&client), vec![("172.31.0.254".to_owned(), false)]);
        let bird = bird_reflector_conf(&topo).unwrap();
        assert_eq!(bird.matches("from node").count(), 3);
        assert!(bird.contains("rr client;"));
        let with = bird_reflector_conf_with(&topo, &["172.31.0.200".parse().unwrap()]).unwrap();
        assert!(with.contains("protocol bgp extra0 from node { neighbor 172.31.0.200 as 64512; }"));
        assert_eq!(with.matches("from node").count(), 4);
    }
}
