//! A rig for weftd's node-service root tests: a netsim cluster (nodes on
//! one underlay, optionally a ToR at `.254` standing for "the internet"),
//! weftd started per node with its CNI files in the run directory, and
//! pods attached by exec'ing weft's CNI plugins with the conflist weftd
//! wrote, as a container runtime does.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use netsim::netns::Netns;
use netsim::process::ChildGuard;
use netsim::weftd::WeftdConfig;
use netsim::{Cluster, Topology, WeftMode};
use serde_json::Value;

use netsim::cni::{self, Attachment, Extra};

use super::cni_exec;

/// One pod attached through the conflist.
#[derive(Debug)]
pub struct RigPod {
    /// Its namespace.
    pub ns: Netns,
    /// The attachment (for DEL).
    pub att: Attachment,
    /// The chain's final result.
    pub result: Value,
    /// Its first address.
    pub ip: String,
    /// Node index it lives on.
    pub node: usize,
}

/// The rig.
#[derive(Debug)]
pub struct NodeRig {
    /// Pods, in attach order (dropped before the cluster).
    pub pods: Vec<RigPod>,
    weftds: Vec<Option<ChildGuard>>,
    /// The netsim cluster.
    pub cluster: Cluster,
    /// weft's plugin binaries.
    pub plugins: PathBuf,
    /// The CNI network name (unique per rig).
    pub net: String,
}

impl NodeRig {
    /// `nodes` nodes without pods (and a ToR when `tor`); `None` when the
    /// plugins are not built (see [`cni_exec::plugin_dir`]). `test` names
    /// the test in messages; every rig's namespaces start with the node
    /// service tests' tag `wn` (netsim adds 4 hex digits, unique per run).
    pub fn new(test: &str, nodes: usize, tor: bool) -> Option<Self> {
        let plugins = cni_exec::plugin_dir()?;
        let cluster = Topology::builder()
            .nodes(nodes)
            .pods_per_node(0)
            .tor(tor)
            .prefix_tag("wn")
            .build()
            .unwrap_or_else(|e| panic!("{test}: building the cluster: {e}"));
        let net = format!("weft-{}", cluster.prefix());
        Some(Self {
            pods: Vec::new(),
            weftds: (0..nodes).map(|_| None).collect(),
            cluster,
            plugins,
            net,
        })
    }

    /// Where node `i`'s weftd writes its CNI files.
    pub fn files_dir(&self, i: usize) -> PathBuf {
        self.cluster.run_dir().join(format!("n{i}-cni"))
    }

    /// The conflist path of node `i`.
    pub fn conflist_path(&self, i: usize) -> PathBuf {
        self.files_dir(i).join("net.d/10-weft.conflist")
    }

    /// The subnet.env path of node `i`.
    pub fn subnet_env_path(&self, i: usize) -> PathBuf {
        self.files_dir(i).join("subnet.env")
    }

    /// Node `i`'s weftd config in `mode`: `top` goes before the tables,
    /// `cni` into `[cni]` (after conf_dir, subnet_env and network_name).
    pub fn config(&self, i: usize, mode: WeftMode, top: &str, cni: &str) -> String {
        let base = WeftdConfig::for_node(self.cluster.topology(), i, mode)
            .unwrap()
            .to_toml()
            .unwrap();
        format!(
            "{top}\n{base}\n[control]\nsocket = {:?}\n\n[cni]\nconf_dir = {:?}\nsubnet_env = {:?}\nnetwork_name = {:?}\n{cni}\n",
            self.cluster
                .run_dir()
                .join(format!("n{i}.sock"))
                .display()
                .to_string(),
            self.files_dir(i).join("net.d").display().to_string(),
            self.subnet_env_path(i).display().to_string(),
            self.net,
        )
    }

    /// Starts weftd on node `i` with `config` (extra environment `env`)
    /// and waits until it is ready (routes programmed, files written).
    pub fn start_weftd(&mut self, i: usize, config: &str, env: &[(&str, &str)]) {
        let dir = self.cluster.run_dir();
        let cfg = dir.join(format!("n{i}.toml"));
        std::fs::write(&cfg, config).unwrap();
        let log = self.log_path(i);
        let mut cmd = self.cluster.node(i).ns().command(super::weftd_bin());
        cmd.arg("--config").arg(&cfg).env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = ChildGuard::spawn(cmd, "weftd", Some(&log)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        // The node service logs its status once routes are programmed and
        // the files are written.
        while !self.log(i).contains("routes programmed") {
            if let Some(st) = child.try_wait() {
                panic!("weftd {i} exited ({st}):\n{}", self.log(i));
            }
            assert!(
                Instant::now() < deadline,
                "weftd {i} not ready:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.weftds[i] = Some(child);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.cluster.run_dir().join(format!("n{i}-weftd.log"))
    }

    /// weftd `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// weftd `i`'s pid.
    pub fn weftd_pid(&self, i: usize) -> Option<u32> {
        self.weftds[i].as_ref().and_then(ChildGuard::pid)
    }

    /// SIGTERMs weftd `i` and waits (bounded) for its exit.
    pub fn stop_weftd(&mut self, i: usize) -> ExitStatus {
        let mut w = self.weftds[i].take().unwrap();
        let (st, in_time) = w.terminate(Duration::from_secs(10)).unwrap();
        assert!(in_time, "weftd {i} ignored SIGTERM:\n{}", self.log(i));
        st
    }

    /// Attaches a new pod on node `i` by running the conflist weftd wrote
    /// (ADD, chained); returns the pod's index in [`NodeRig::pods`].
    pub fn attach_pod(&mut self, i: usize) -> usize {
        let list: Value =
            serde_json::from_str(&std::fs::read_to_string(self.conflist_path(i)).unwrap()).unwrap();
        let k = self.pods.len();
        let ns = Netns::create(&format!("{}-p{k}", self.cluster.prefix())).unwrap();
        let att = Attachment {
            container_id: format!("{}-pod{k}", self.cluster.prefix()),
            netns: ns.name().to_owned(),
            ifname: "eth0".into(),
        };
        let node = self.cluster.node(i).ns();
        let data = cni::ipam_dir(&self.files_dir(i));
        let extra = Extra {
            data_dir: Some(&data),
            runtime: None,
        };
        let result = cni::add(node, &self.plugins, &list, &att, extra)
            .unwrap_or_else(|e| panic!("CNI ADD on node {i}: {e}\nweftd:\n{}", self.log(i)));
        let ip = cni::first_ipv4(&result).unwrap().to_string();
        self.pods.push(RigPod {
            ns,
            att,
            result,
            ip,
            node: i,
        });
        k
    }

    /// Runs DEL for every pod (reverse order), as the runtime does when
    /// the pods go.
    pub fn detach_all(&mut self) {
        while let Some(p) = self.pods.pop() {
            let list: Value =
                serde_json::from_str(&std::fs::read_to_string(self.conflist_path(p.node)).unwrap())
                    .unwrap();
            let data = cni::ipam_dir(&self.files_dir(p.node));
            let extra = Extra {
                data_dir: Some(&data),
                runtime: None,
            };
            cni::del(
                self.cluster.node(p.node).ns(),
                &self.plugins,
                &list,
                &p.att,
                &p.result,
                extra,
            )
            .unwrap();
        }
    }

    /// Pings `ip` from pod `k` (one reply within 3 s, a few tries).
    pub fn ping(&self, k: usize, ip: &str) -> bool {
        (0..3).any(|_| {
            self.pods[k]
                .ns
                .run("ping", &["-c", "1", "-W", "2", "-q", ip])
                .is_ok()
        })
    }
}

impl Drop for NodeRig {
    fn drop(&mut self) {
        self.pods.clear();
        self.weftds.clear();
    }
}
