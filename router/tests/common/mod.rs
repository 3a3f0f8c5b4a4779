//! Small cluster topologies for weftd's root tests, built by netsim's
//! library: an underlay bridge in a switch namespace, N node namespaces,
//! one pod namespace per node (attached by [`PodVeth`]), and weftd
//! processes that are stopped on drop. Traffic helpers (TCP transfer
//! with a payload hash, iperf3) live in [`traffic`].
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

pub mod cni_exec;
pub mod etcd;
pub mod node_rig;
pub mod traffic;
pub mod wireguard;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use netsim::netns::Netns;
use netsim::process::ChildGuard;
use netsim::{AttachRequest, Attached, PodAttach, Topology};

/// Topology options.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Underlay MTU (default 1500).
    pub underlay_mtu: Option<u32>,
    /// Give pods IPv6 addresses too (fd10:244:N::2/64).
    pub ipv6_pods: bool,
    /// Turn tx checksum offload off on the node underlay veths (needed when
    /// a userspace receiver reads kernel vxlan frames).
    pub underlay_csum_off: bool,
    /// Write `ip_masq = false` (weftd's default is true): no nat table,
    /// so no conntrack on the nodes (throughput probes against the kernel).
    pub no_masq: bool,
}

/// One node: its namespace, its pod's namespace, weftd.
#[derive(Debug)]
pub struct Node {
    /// 1-based node number.
    pub n: u8,
    /// The node namespace.
    pub ns: Netns,
    /// The pod namespace.
    pub pod: Netns,
    /// Running weftd, if any.
    pub weftd: Option<Weftd>,
}

/// A weftd process (netsim's [`ChildGuard`]: killed by pid on drop) and
/// its log.
#[derive(Debug)]
pub struct Weftd {
    child: ChildGuard,
    /// Its log file (stderr).
    pub log: PathBuf,
}

impl Weftd {
    /// Spawns `cmd` (a weftd, maybe another build) logging to `log`.
    pub fn spawn(cmd: Command, log: PathBuf) -> Self {
        let child = ChildGuard::spawn(cmd, "weftd", Some(&log)).unwrap();
        Self { child, log }
    }

    /// SIGTERM and wait (10 s at most); returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        match self.child.terminate(Duration::from_secs(10)) {
            Some((st, true)) => st,
            Some((_, false)) => panic!("weftd ignored SIGTERM; log:\n{}", self.log_text()),
            None => panic!("weftd already reaped; log:\n{}", self.log_text()),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }
}

/// A cluster of nodes on one underlay bridge.
#[derive(Debug)]
pub struct Cluster {
    /// Node namespaces (index 0 = node 1).
    pub nodes: Vec<Node>,
    /// The switch namespace (holds bridge `br0`).
    pub sw: Netns,
    /// Scratch directory for configs and logs.
    pub dir: PathBuf,
    /// Options it was built with.
    pub opts: Opts,
    /// netsim's cluster, which owns the namespaces (the handles above are
    /// aliases) and the scratch directory.
    inner: netsim::Cluster,
}

/// The underlay address of node `n`.
pub fn underlay(n: u8) -> String {
    format!("172.31.0.{n}")
}
/// Pod IPv4 of node `n`.
pub fn pod_ip(n: u8) -> String {
    format!("10.244.{n}.2")
}
/// Pod IPv6 of node `n`.
pub fn pod_ip6(n: u8) -> String {
    format!("fd10:244:{n}::2")
}
/// Pod CIDR of node `n`.
pub fn pod_cidr(n: u8) -> String {
    format!("10.244.{n}.0/24")
}
/// Pod IPv6 CIDR of node `n`.
pub fn pod_cidr6(n: u8) -> String {
    format!("fd10:244:{n}::/64")
}

/// Path of the built weftd.
pub fn weftd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weftd")
}

fn sysctl(ns: &Netns, kv: &str) {
    ns.run("sysctl", &["-qw", kv]).unwrap();
}

impl Cluster {
    /// Builds `count` nodes with a pod each on a fresh underlay bridge:
    /// netsim's cluster (fabric `br0`, node `eth0` at [`underlay`]) with
    /// pods attached by [`PodVeth`].
    pub fn new(tag: &str, count: u8, opts: Opts) -> Self {
        let inner = Topology::builder()
            .prefix_tag(&prefix_tag(tag))
            .nodes(usize::from(count))
            .pods_per_node(1)
            .underlay_mtu(opts.underlay_mtu.unwrap_or(1500))
            .underlay_tx_csum(!opts.underlay_csum_off)
            .attach(Box::new(PodVeth {
                ipv6: opts.ipv6_pods,
            }))
            .build()
            .unwrap();
        let nodes = (1..=count)
            .map(|n| {
                let i = usize::from(n - 1);
                let ns = inner.node(i).ns().alias();
                sysctl(&ns, "net.ipv6.conf.all.forwarding=1");
                Node {
                    n,
                    ns,
                    pod: inner.pod(i, 0).ns().alias(),
                    weftd: None,
                }
            })
            .collect();
        let sw = inner.fabric_ns().unwrap().alias();
        let dir = inner.run_dir().to_owned();
        Self {
            nodes,
            sw,
            dir,
            opts,
            inner,
        }
    }

    /// The config weftd on node `n` gets in `mode`, with static routes to
    /// every other node; `dataplane_extra` is appended to `[dataplane]`.
    pub fn config(&self, n: u8, mode: &str, dataplane_extra: &str) -> String {
        let mut s = format!(
            "node_name = \"node-{n}\"\nunderlay_ip = \"{}\"\npod_cidr = \"{}\"\ncluster_cidr = \"10.244.0.0/16\"\n",
            underlay(n),
            pod_cidr(n)
        );
        if self.opts.no_masq {
            s += "ip_masq = false\n";
        }
        if self.opts.ipv6_pods {
            s += &format!(
                "pod_cidr_v6 = \"{}\"\ncluster_cidr_v6 = \"fd10:244::/32\"\n",
                pod_cidr6(n)
            );
        }
        // The CNI files stay in the test's directory, not the host's.
        let files = self.dir.join(format!("n{n}-cni"));
        s += &format!(
            "\n[cni]\nconf_dir = {:?}\nsubnet_env = {:?}\n",
            files.join("net.d").display().to_string(),
            files.join("subnet.env").display().to_string()
        );
        // The control socket too (the metrics endpoint's default address
        // is the node namespace's own loopback).
        s += &format!(
            "\n[control]\nsocket = {:?}\n",
            self.dir.join(format!("n{n}.sock")).display().to_string()
        );
        s += &format!("\n[dataplane]\nmode = \"{mode}\"\n{dataplane_extra}\n");
        for other in &self.nodes {
            if other.n == n {
                continue;
            }
            s += &format!(
                "\n[[static_routes]]\npod_cidr = \"{}\"\nvia = \"{}\"\n",
                pod_cidr(other.n),
                underlay(other.n)
            );
            if self.opts.ipv6_pods {
                s += &format!(
                    "\n[[static_routes]]\npod_cidr = \"{}\"\nvia = \"{}\"\n",
                    pod_cidr6(other.n),
                    underlay(other.n)
                );
            }
        }
        s
    }

    /// Node `n` (1-based).
    pub fn node(&self, n: u8) -> &Node {
        &self.nodes[usize::from(n - 1)]
    }

    /// Starts weftd on node `n` with `config` and waits until the routes
    /// to every other node's pod CIDR are installed.
    pub fn start_weftd(&mut self, n: u8, config: &str) {
        let w = self.spawn_weftd(n, config);
        let idx = usize::from(n - 1);
        self.nodes[idx].weftd = Some(w);
        let others: Vec<u8> = self.nodes.iter().map(|x| x.n).filter(|&x| x != n).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let node = &mut self.nodes[idx];
            let w = node.weftd.as_mut().unwrap();
            if let Some(st) = w.try_wait() {
                panic!(
                    "weftd on node {n} exited early ({st}); log:\n{}",
                    w.log_text()
                );
            }
            let routes = own_routes(&node.ns);
            if others.iter().all(|o| routes.contains(&pod_cidr(*o))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "routes not installed on node {n}: {routes}\nlog:\n{}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns weftd on node `n` without waiting.
    pub fn spawn_weftd(&self, n: u8, config: &str) -> Weftd {
        let node = self.node(n);
        let cfg = self.dir.join(format!("n{n}.toml"));
        fs::write(&cfg, config).unwrap();
        let log = self.dir.join(format!("n{n}.log"));
        let mut cmd = node.ns.command(weftd_bin());
        cmd.arg("--config").arg(&cfg).env("RUST_LOG", "info");
        Weftd::spawn(cmd, log)
    }

    /// Starts weftd in `mode` on every node.
    pub fn start_all(&mut self, mode: &str, extra: &str) {
        for n in 1..=self.nodes.len() as u8 {
            let cfg = self.config(n, mode, extra);
            self.start_weftd(n, &cfg);
        }
    }

    /// Stops weftd on node `n`, asserting a clean exit.
    pub fn stop_weftd(&mut self, n: u8) {
        let w = self.nodes[usize::from(n - 1)].weftd.take().unwrap();
        let log = w.log.clone();
        let st = w.stop();
        assert!(
            st.success(),
            "weftd on node {n} exited {st}; log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Pings from pod `from` to `ip` (one reply within 5 s).
    pub fn ping(&self, from: u8, ip: &str) -> bool {
        let v6 = ip.contains(':');
        let mut args = vec!["-c", "1", "-w", "5", "-q"];
        if v6 {
            args.insert(0, "-6");
        }
        args.push(ip);
        self.node(from).pod.run("ping", &args).is_ok()
    }

    /// Every pod pings every other pod (IPv4, and IPv6 when configured).
    pub fn assert_ping_matrix(&self) {
        for a in &self.nodes {
            for b in &self.nodes {
                if a.n == b.n {
                    continue;
                }
                assert!(
                    self.ping(a.n, &pod_ip(b.n)),
                    "pod {} cannot ping pod {} ({})",
                    a.n,
                    b.n,
                    self.logs()
                );
                if self.opts.ipv6_pods {
                    assert!(
                        self.ping(a.n, &pod_ip6(b.n)),
                        "pod {} cannot ping6 pod {} ({})",
                        a.n,
                        b.n,
                        self.logs()
                    );
                }
            }
        }
    }

    /// All weftd logs (for failure messages).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.weftd
                    .as_ref()
                    .map(|w| format!("--- node {} ---\n{}", n.n, w.log_text()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // weftd stops before netsim's cluster deletes the namespaces.
        for n in &mut self.nodes {
            n.weftd.take();
        }
    }
}

/// netsim's run prefix tag (1-2 lowercase letters) for a test's tag:
/// its first two lowercase letters, or `rt`.
fn prefix_tag(tag: &str) -> String {
    let t: String = tag
        .chars()
        .filter(char::is_ascii_lowercase)
        .take(2)
        .collect();
    if t.is_empty() { "rt".into() } else { t }
}

/// Attaches a pod the way these tests' nodes expect: a veth `pod0` in the
/// node carrying the gateway (`10.244.N.1/24`, and `fd10:244:N::1/64` with
/// IPv6), `eth0` in the pod with [`pod_ip`] and a default route; no bridge.
#[derive(Debug, Clone, Copy)]
pub struct PodVeth {
    /// Give the pod an IPv6 address too.
    pub ipv6: bool,
}

impl PodAttach for PodVeth {
    fn attach(&self, req: &AttachRequest<'_>) -> netsim::Result<Attached> {
        let (node, pod) = (req.node, req.pod);
        node.veth_to("pod0", pod, req.ifname, None)?;
        let gw = req.gateway.to_string();
        let len = req.pod_cidr.len;
        node.ip(&["addr", "add", &format!("{gw}/{len}"), "dev", "pod0"])?;
        node.ip(&["link", "set", "pod0", "up"])?;
        pod.ip(&[
            "addr",
            "add",
            &format!("{}/{len}", req.ip),
            "dev",
            req.ifname,
        ])?;
        pod.ip(&["link", "set", req.ifname, "up"])?;
        pod.ip(&["route", "add", "default", "via", &gw])?;
        if self.ipv6 {
            // fd10:244:N::/64 from the node number in the pod CIDR.
            let n = req.pod_cidr.addr.octets()[2];
            let gw6 = format!("fd10:244:{n}::1");
            let a = format!("{gw6}/64");
            node.ip(&["-6", "addr", "add", &a, "dev", "pod0", "nodad"])?;
            let a = format!("{}/64", pod_ip6(n));
            pod.ip(&["-6", "addr", "add", &a, "dev", req.ifname, "nodad"])?;
            pod.ip(&["-6", "route", "add", "default", "via", &gw6])?;
        }
        Ok(Attached {
            ip: req.ip,
            host_veth: "pod0".into(),
        })
    }
}

/// `ip route show proto 0x57` (both families) of a namespace.
pub fn own_routes(ns: &Netns) -> String {
    let v4 = ns.ip(&["-4", "route", "show", "proto", "87"]).unwrap();
    let v6 = ns.ip(&["-6", "route", "show", "proto", "87"]).unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&v4.stdout),
        String::from_utf8_lossy(&v6.stdout)
    )
}

/// A kernel vxlan device on node `n`, configured the way flannel (or
/// calico) does: one device, a /32 address, and per peer an onlink route,
/// a permanent neighbour and an FDB entry.
#[derive(Debug, Clone)]
pub struct KernelVtep {
    /// Device name.
    pub name: String,
    /// VNI.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// This device's MAC.
    pub mac: String,
}

impl Cluster {
    /// Replaces weftd on node `n` by a kernel vxlan device; `peers` are
    /// (node number, peer VTEP MAC).
    pub fn kernel_vtep(&self, n: u8, vtep: &KernelVtep, peers: &[(u8, String)]) {
        let ns = &self.node(n).ns;
        let (vni, port) = (vtep.vni.to_string(), vtep.port.to_string());
        ns.ip(&[
            "link",
            "add",
            &vtep.name,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &underlay(n),
            "dev",
            "eth0",
            "dstport",
            &port,
            "nolearning",
        ])
        .unwrap();
        let mtu = (self.opts.underlay_mtu.unwrap_or(1500) - 50).to_string();
        ns.ip(&[
            "link", "set", &vtep.name, "address", &vtep.mac, "mtu", &mtu, "up",
        ])
        .unwrap();
        ns.ip(&[
            "addr",
            "add",
            &format!("10.244.{n}.0/32"),
            "dev",
            &vtep.name,
        ])
        .unwrap();
        for (p, mac) in peers {
            let gw = format!("10.244.{p}.0");
            ns.ip(&[
                "route",
                "add",
                &pod_cidr(*p),
                "via",
                &gw,
                "dev",
                &vtep.name,
                "onlink",
            ])
            .unwrap();
            ns.ip(&[
                "neigh",
                "add",
                &gw,
                "lladdr",
                mac,
                "dev",
                &vtep.name,
                "nud",
                "permanent",
            ])
            .unwrap();
            ns.run(
                "bridge",
                &["fdb", "add", mac, "dev", &vtep.name, "dst", &underlay(*p)],
            )
            .unwrap();
        }
    }
}

/// A counter of interface `dev` in `ns`
/// (`/sys/class/net/<dev>/statistics/<stat>`).
pub fn link_stat(ns: &Netns, dev: &str, stat: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/{stat}");
    let out = ns.run("cat", &[&path]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
