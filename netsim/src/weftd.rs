//! Running the real `weftd` in node namespaces: config generation (pure)
//! and the process lifecycle (start, wait ready, SIGTERM).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::mode::WeftMode;
use crate::netns::Netns;
use crate::process::{ChildGuard, process_cpu_seconds};
use crate::topology::Topology;

/// How long weftd may take to install its routes.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long weftd may take to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// weftd's config file (the subset netsim writes; see the router issue).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeftdConfig {
    /// Node name.
    pub node_name: String,
    /// Masquerade pod traffic leaving the cluster CIDR (netsim's default
    /// when unset: off, see [`node_local_files`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_masq: Option<bool>,
    /// This node's underlay address.
    pub underlay_ip: String,
    /// This node's pod CIDR.
    pub pod_cidr: String,
    /// The cluster CIDR.
    pub cluster_cidr: String,
    /// Dataplane settings.
    pub dataplane: DataplaneConfig,
    /// One route per other node.
    pub static_routes: Vec<StaticRoute>,
    /// weftd's `[bgp]` table, if any (see [`crate::bgp`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<toml::Table>,
    /// How many of `static_routes` (at the end) go to fake peers.
    #[serde(skip)]
    pub fake_routes: usize,
    /// `[cni] attach` (`bridge` when unset, or `ptp`), written with the
    /// node-local CNI paths (see [`node_local_files`]).
    #[serde(skip)]
    pub cni_attach: Option<String>,
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataplaneConfig {
    /// `host-gw`, `vxlan`, `udp` or `ipip`.
    pub mode: String,
    /// Further keys written as given (e.g. `vxlan_vni`, `vxlan_port`, `mtu`).
    #[serde(flatten)]
    pub extra: toml::Table,
}

/// `[[static_routes]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaticRoute {
    /// The peer's pod CIDR.
    pub pod_cidr: String,
    /// The peer's underlay address.
    pub via: String,
}

impl WeftdConfig {
    /// The config of node `index` (0-based) of `topo` in `mode`.
    pub fn for_node(topo: &Topology, index: usize, mode: WeftMode) -> Result<Self> {
        let me = topo.node_plan(index)?;
        let static_routes = topo
            .plans()?
            .into_iter()
            .filter(|p| p.number != me.number)
            .map(|p| StaticRoute {
                pod_cidr: p.pod_cidr.to_string(),
                via: p.underlay_ip.to_string(),
            })
            .chain((0..topo.fake_peers).map(fake_route))
            .collect();
        Ok(Self {
            node_name: format!("node-{}", me.number),
            ip_masq: None,
            underlay_ip: me.underlay_ip.to_string(),
            pod_cidr: me.pod_cidr.to_string(),
            cluster_cidr: if topo.fake_peers > 0 {
                "10.0.0.0/8".to_owned()
            } else {
                topo.cluster_cidr.clone()
            },
            dataplane: DataplaneConfig {
                mode: mode.config_name().to_owned(),
                extra: toml::Table::new(),
            },
            static_routes,
            bgp: None,
            fake_routes: topo.fake_peers,
            cni_attach: topo.cni_attach.clone(),
        })
    }

    /// The TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Weftd {
            node: self.node_name.clone(),
            msg: format!("serializing config: {e}"),
        })
    }

    /// Peer pod CIDRs, whose routes mark weftd as ready: every real peer's
    /// and the last fake peer's (installed last).
    pub fn peer_cidrs(&self) -> Vec<String> {
        let real = self.static_routes.len().saturating_sub(self.fake_routes);
        let last_fake = (self.fake_routes > 0).then(|| self.static_routes.last());
        self.static_routes[..real]
            .iter()
            .chain(last_fake.flatten())
            .map(|r| r.pod_cidr.clone())
            .collect()
    }
}

/// Fake peer `i`: pod CIDR 10.<1 + i / 256>.<i % 256>.0/24 via
/// 100.64.0.0 + i + 1.
fn fake_route(i: usize) -> StaticRoute {
    let (hi, lo) = (1 + i / 256, i % 256);
    let via =
        std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + i as u32 + 1);
    StaticRoute {
        pod_cidr: format!("10.{hi}.{lo}.0/24"),
        via: via.to_string(),
    }
}

/// `text` with weftd's node-service files kept inside the run: a `[cni]`
/// table putting the conflist and subnet.env under `dir/<node>-cni/` (not
/// the host's `/etc/cni/net.d` and `/run/weft`, which every namespace
/// shares), a `[control]` socket at [`control_socket`] (not the shared
/// `/run/weft/weftd.sock`), and `ip_masq = false`: netsim's pods talk only
/// to pods, and a nat table would put conntrack on every packet of a
/// benchmark. Each is left alone when `text` sets it. (`[metrics]` keeps
/// its default, 127.0.0.1:9420, which is the node namespace's own.)
pub fn node_local_files(text: &str, dir: &Path, node: &str) -> String {
    let mut out = String::new();
    if !text.lines().any(|l| l.trim_start().starts_with("ip_masq")) {
        out.push_str("ip_masq = false\n");
    }
    out.push_str(text);
    if !text.lines().any(|l| l.trim() == "[cni]") {
        let files = dir.join(format!("{node}-cni"));
        out.push_str(&format!(
            "\n[cni]\nconf_dir = {:?}\nsubnet_env = {:?}\n",
            files.join("net.d").display().to_string(),
            files.join("subnet.env").display().to_string(),
        ));
    }
    if !text.lines().any(|l| l.trim() == "[control]") {
        out.push_str(&format!(
            "\n[control]\nsocket = {:?}\n",
            control_socket(dir, node).display().to_string()
        ));
    }
    out
}

/// `GET http://127.0.0.1:9420<path>` (weftd's default metrics endpoint)
/// from inside `ns` with curl: (HTTP status, body); status 0 when curl
/// got no answer within 5 s.
pub fn http_get(ns: &Netns, path: &str) -> (u16, String) {
    let out = ns
        .command("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:9420{path}"))
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The control socket of the weftd on `node` (for `weft --socket`).
pub fn control_socket(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}-weftd.sock"))
}

/// The default weftd path: next to the running executable, or one level
/// up when that is a test binary in `deps/`.
pub fn default_weftd_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let here = dir.join("weftd");
    if here.exists() || !dir.ends_with("deps") {
        return here;
    }
    dir.parent().map_or(here, |p| p.join("weftd"))
}

/// A weftd process running in a node namespace; SIGTERMed on drop.
#[derive(Debug)]
pub struct WeftdProcess {
    child: ChildGuard,
    node: String,
    log: PathBuf,
}

impl WeftdProcess {
    /// Writes `cfg` to `dir/<node>.toml`, starts `weftd --config` inside
    /// `node` and waits until every peer route is in the node's table.
    pub fn start(weftd: &Path, node: &Netns, cfg: &WeftdConfig, dir: &Path) -> Result<Self> {
        let err = |msg: String| Error::Weftd {
            node: node.name().to_owned(),
            msg,
        };
        if !weftd.exists() {
            return Err(err(format!(
                "binary {} not found (build it, or pass --weftd)",
                weftd.display()
            )));
        }
        let cfg_path = dir.join(format!("{}.toml", node.name()));
        let mut text = node_local_files(&cfg.to_toml()?, dir, node.name());
        if let Some(attach) = &cfg.cni_attach {
            text = text.replacen("\n[cni]\n", &format!("\n[cni]\nattach = {attach:?}\n"), 1);
        }
        std::fs::write(&cfg_path, text)
            .map_err(|e| Error::io(format!("write {}", cfg_path.display()), e))?;
        let log = dir.join(format!("{}-weftd.log", node.name()));
        let mut cmd = node.command(&weftd.to_string_lossy());
        cmd.arg("--config").arg(&cfg_path);
        let child = ChildGuard::spawn(cmd, "weftd", Some(&log))?;
        let mut me = Self {
            child,
            node: node.name().to_owned(),
            log,
        };
        me.wait_ready(node, &cfg.peer_cidrs())?;
        Ok(me)
    }

    fn wait_ready(&mut self, node: &Netns, peers: &[String]) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let min_alive = Instant::now() + Duration::from_millis(200);
        loop {
            if let Some(st) = self.child.try_wait() {
                return Err(Error::Weftd {
                    node: self.node.clone(),
                    msg: format!("exited early ({st}); log:\n{}", self.log_tail()),
                });
            }
            let routes_ok = peers.iter().all(|cidr| {
                node.ip(&["-4", "route", "show", cidr])
                    .is_ok_and(|o| !o.stdout.is_empty())
            });
            if routes_ok && (!peers.is_empty() || Instant::now() >= min_alive) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Weftd {
                    node: self.node.clone(),
                    msg: format!(
                        "routes {peers:?} not installed after {READY_TIMEOUT:?}; log:\n{}",
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines weftd logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// CPU seconds (user + system) used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.pid().and_then(process_cpu_seconds)
    }

    /// SIGKILL (a node crash): no session teardown, routes left as they are.
    pub fn kill(mut self) {
        let _ = self.child.kill();
    }

    /// weftd's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]. Errors if it had to be killed
    /// or exited unsuccessfully.
    pub fn stop(mut self) -> Result<()> {
        match self.child.terminate(STOP_GRACE) {
            Some((st, true)) if st.success() => Ok(()),
            Some((st, true)) => Err(Error::Weftd {
                node: self.node.clone(),
                msg: format!("exited with {st} on SIGTERM; log:\n{}", self.log_tail()),
            }),
            Some((_, false)) => Err(Error::Weftd {
                node: self.node.clone(),
                msg: format!("ignored SIGTERM for {STOP_GRACE:?}, killed"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WeftdProcess {
    fn drop(&mut self) {
        let _ = self.child.terminate(STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_for_node_two_of_three() {
        let t = Topology {
            nodes: 3,
            ..Topology::default()
        };
        let c = WeftdConfig::for_node(&t, 1, WeftMode::Vxlan).unwrap();
        let text = c.to_toml().unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["node_name"].as_str(), Some("node-2"));
        assert_eq!(v["underlay_ip"].as_str(), Some("172.31.0.2"));
        assert_eq!(v["pod_cidr"].as_str(), Some("10.244.2.0/24"));
        assert_eq!(v["cluster_cidr"].as_str(), Some("10.244.0.0/16"));
        assert_eq!(v["dataplane"]["mode"].as_str(), Some("vxlan"));
        let routes = v["static_routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["pod_cidr"].as_str(), Some("10.244.1.0/24"));
        assert_eq!(routes[0]["via"].as_str(), Some("172.31.0.1"));
        assert_eq!(routes[1]["pod_cidr"].as_str(), Some("10.244.3.0/24"));
        assert_eq!(routes[1]["via"].as_str(), Some("172.31.0.3"));
        assert!(text.contains("[[static_routes]]"), "{text}");
        assert_eq!(c.peer_cidrs(), vec!["10.244.1.0/24", "10.244.3.0/24"]);
    }

    #[test]
    fn fake_peers_widen_the_cluster_and_wait_for_the_last_one() {
        let t = Topology {
            nodes: 2,
            fake_peers: 300,
            ..Topology::default()
        };
        let c = WeftdConfig::for_node(&t, 0, WeftMode::Vxlan).unwrap();
        assert_eq!(c.static_routes.len(), 301);
        assert_eq!(c.cluster_cidr, "10.0.0.0/8");
        assert_eq!(c.static_routes[1].pod_cidr, "10.1.0.0/24");
        assert_eq!(c.static_routes[1].via, "100.64.0.1");
        assert_eq!(c.static_routes[300].pod_cidr, "10.2.43.0/24");
        assert_eq!(c.peer_cidrs(), vec!["10.244.2.0/24", "10.2.43.0/24"]);
        let text = c.to_toml().unwrap();
        assert!(!text.contains("fake_routes"), "{text}");
        assert!(
            Topology {
                fake_peers: 20_000,
                ..Topology::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn extra_dataplane_keys_are_written() {
        let mut c = WeftdConfig::for_node(&Topology::default(), 0, WeftMode::Vxlan).unwrap();
        c.dataplane.extra.insert("vxlan_vni".into(), 4096.into());
        c.dataplane.extra.insert("vxlan_port".into(), 4789.into());
        let v: toml::Value = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(v["dataplane"]["mode"].as_str(), Some("vxlan"));
        assert_eq!(v["dataplane"]["vxlan_vni"].as_integer(), Some(4096));
        assert_eq!(v["dataplane"]["vxlan_port"].as_integer(), Some(4789));
    }

    #[test]
    fn node_files_stay_in_the_run_dir() {
        let c = WeftdConfig::for_node(&Topology::default(), 0, WeftMode::Vxlan).unwrap();
        let text = node_local_files(&c.to_toml().unwrap(), Path::new("/run/x"), "n1");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["ip_masq"].as_bool(), Some(false));
        assert_eq!(v["cni"]["conf_dir"].as_str(), Some("/run/x/n1-cni/net.d"));
        assert_eq!(
            v["cni"]["subnet_env"].as_str(),
            Some("/run/x/n1-cni/subnet.env")
        );
        assert_eq!(v["dataplane"]["mode"].as_str(), Some("vxlan"));
        assert_eq!(
            v["control"]["socket"].as_str(),
            Some("/run/x/n1-weftd.sock")
        );
        // Set by the caller: left alone.
        let own = format!(
            "ip_masq = true\n{}\n[cni]\nconf_dir = \"/d\"\n[control]\nsocket = \"\"\n",
            c.to_toml().unwrap()
        );
        assert_eq!(node_local_files(&own, Path::new("/run/x"), "n1"), own);
    }

    #[test]
    fn every_weft_mode_has_its_config_name() {
        let t = Topology::default();
        for (m, name) in [
            (WeftMode::HostGw, "host-gw"),
            (WeftMode::Vxlan, "vxlan"),
            (WeftMode::Udp, "udp"),
            (WeftMode::Ipip, "ipip"),
        ] {
            let c = WeftdConfig::for_node(&t, 0, m).unwrap();
            assert_eq!(c.dataplane.mode, name);
            assert_eq!(WeftMode::from_config_name(name), Some(m));
        }
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let ns_name = "netsim-unit-never-created";
        // No namespace needed: the binary check comes first.
        let fake = Netns::handle_for_tests(ns_name);
        let cfg = WeftdConfig::for_node(&Topology::default(), 0, WeftMode::Udp).unwrap();
        let err = WeftdProcess::start(
            Path::new("/nonexistent/weftd"),
            &fake,
            &cfg,
            &std::env::temp_dir(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not found"), "{err}");
    }
}
