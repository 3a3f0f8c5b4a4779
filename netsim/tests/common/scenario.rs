//! The cluster scenarios as steps that run in any weft mode: one cluster
//! of CNI-attached pods with routes through BIRD reflecting on the ToR,
//! each node's weftd started from [`Scenario::config`] (masquerade on, a
//! short graceful-restart time), and one method per scenario. host-gw
//! (`tests/scenarios.rs`) and the overlay modes (`tests/scenarios_overlay.rs`)
//! run the same code.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use netsim::cni::{self, Attachment, Extra};
use netsim::netns::Netns;
use netsim::weftd::WeftdConfig;
use netsim::{Cluster, PodId, Routing, WeftMode};
use serde_json::json;

/// weftd's graceful-restart time in the scenarios: a crashed node's routes
/// leave the others within this plus BIRD's reaction.
pub const RESTART_TIME: i64 = 4;

/// Longest pod-to-pod gap allowed while an overlay node's weftd restarts
/// (the TUN stays, the workers restart: measured 141–231 ms).
pub const OVERLAY_RESTART_GAP: Duration = Duration::from_millis(1500);

/// Interval of the pings that watch a restart.
const PING_INTERVAL: Duration = Duration::from_millis(50);

/// Pings sent while a restart is watched (4 s).
const PING_COUNT: u32 = 80;

/// A cluster in one weft mode and the scenarios run on it.
pub struct Scenario {
    /// The cluster.
    pub c: Cluster,
    /// The mode every node runs.
    pub mode: WeftMode,
}

impl Scenario {
    /// `nodes` nodes with `pods` pods each, namespaces tagged `sc`, BIRD
    /// started on the ToR; no weftd runs yet.
    pub fn new(mode: WeftMode, nodes: usize, pods: usize) -> Self {
        let mut c = super::cluster_tagged("sc", nodes, pods, Routing::Rr, None);
        c.start_route_reflector().unwrap();
        Self { c, mode }
    }

    /// Node `i`'s weftd config: the mode, masquerade on, restart time
    /// [`RESTART_TIME`].
    pub fn config(&self, i: usize) -> WeftdConfig {
        let mut cfg = self.c.weftd_config(i, self.mode).unwrap();
        cfg.ip_masq = Some(true);
        if let Some(b) = cfg.bgp.as_mut() {
            b.insert("restart_time".into(), RESTART_TIME.into());
        }
        cfg
    }

    /// Starts weftd on `nodes` and waits until they have each other's
    /// routes; returns the time from the first start.
    pub fn start(&mut self, nodes: &[usize]) -> Duration {
        let t0 = Instant::now();
        for &i in nodes {
            let cfg = self.config(i);
            self.c.start_weftd(i, &cfg).unwrap();
        }
        self.c.wait_converged(Duration::from_secs(20)).unwrap();
        let t = t0.elapsed();
        eprintln!("{:?}: nodes {nodes:?} converged in {t:?}", self.mode);
        t
    }

    /// Nodes whose weftd runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.c.nodes().len())
            .filter(|&i| self.c.weftd(i).is_some())
            .collect()
    }

    /// Every pod of `nodes` pings every other; panics with the matrix and
    /// the weftd logs when a pair fails.
    pub fn matrix(&self, nodes: &[usize], what: &str) {
        let pods: Vec<PodId> = self
            .c
            .all_pods()
            .map(netsim::Pod::id)
            .filter(|(i, _)| nodes.contains(i))
            .collect();
        let r = self.c.ping_matrix_of(&pods).unwrap();
        assert!(
            r.all_ok(),
            "{:?}, {what}: {r}\n{}",
            self.mode,
            super::logs(&self.c)
        );
    }

    /// The drills every mode with a reflector and a spare node runs, in
    /// order, on a cluster whose nodes 0–2 run: hostPort, masquerade, node
    /// 3 joins, node 1 restarts gracefully, node 2 is killed and comes
    /// back, BIRD is killed and comes back.
    pub fn drills(&mut self) {
        self.host_port();
        self.masquerade();
        self.join(3);
        self.graceful_restart(1);
        self.node_failure(2);
        self.reflector_failure();
    }

    /// A pod with portMappings 8080 → 80 on node 1, reached on node 1's
    /// address from node 2, from node 1 itself and from the pod (hairpin);
    /// DEL twice (idempotent).
    pub fn host_port(&self) {
        let c = &self.c;
        let files = c.node_files_dir(0);
        let list = cni::read_conflist(&files).unwrap();
        let ns = Netns::create(&format!("{}-hp", c.prefix())).unwrap();
        let att = Attachment {
            container_id: format!("{}-hostport", c.prefix()),
            netns: ns.name().to_owned(),
            ifname: "eth0".into(),
        };
        let rt = json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
        ]});
        let data = cni::ipam_dir(&files);
        let extra = Extra {
            data_dir: Some(&data),
            runtime: Some(&rt),
        };
        let node = c.node(0).ns();
        let plugins = super::plugins();
        let result = cni::add(node, &plugins, &list, &att, extra).unwrap();
        let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80));
        let target = SocketAddr::from((c.node(0).underlay_ip(), 8080));
        for (what, client) in [
            ("another node", c.node(1).ns()),
            ("the node itself", node),
            ("the pod (hairpin)", &ns),
        ] {
            let seen = super::tcp_probe(&ns, bind, client, target);
            assert!(
                seen.is_ok(),
                "{:?}: hostPort from {what}: {seen:?}\n{}",
                self.mode,
                sh(&["ip", "netns", "exec", node.name(), "nft", "list", "ruleset"])
            );
        }
        cni::del(node, &plugins, &list, &att, &result, extra).unwrap();
        cni::del(node, &plugins, &list, &att, &result, extra).unwrap();
    }

    /// A pod reaching an address outside the cluster is masqueraded: the
    /// "internet" (an address on the ToR) sees the node's address.
    pub fn masquerade(&self) {
        let c = &self.c;
        let tor = c.tor().unwrap();
        tor.ip(&["link", "set", "lo", "up"]).unwrap();
        tor.ip(&["addr", "replace", "203.0.113.1/32", "dev", "lo"])
            .unwrap();
        let via = c.topology().tor_ip().unwrap().to_string();
        c.node(0)
            .ns()
            .ip(&["route", "replace", "203.0.113.0/24", "via", &via])
            .unwrap();
        let target = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 1), 80));
        let seen = super::tcp_probe(tor, target, c.pod(0, 0).ns(), target).unwrap();
        assert_eq!(
            seen.ip(),
            std::net::IpAddr::V4(c.node(0).underlay_ip()),
            "{:?}: the internet must see the node address, not the pod's {}",
            self.mode,
            c.pod(0, 0).ip()
        );
    }

    /// Node `i` joins: every node has its route within 3 s of the start,
    /// and every pod reaches every other.
    pub fn join(&mut self, i: usize) {
        let t = Instant::now();
        let cfg = self.config(i);
        self.c.start_weftd(i, &cfg).unwrap();
        let joined = self.c.wait_converged(Duration::from_secs(3));
        assert!(joined.is_ok(), "{:?}: join: {joined:?}", self.mode);
        eprintln!(
            "{:?}: node {} joined, routes everywhere {:?} after start",
            self.mode,
            i + 1,
            t.elapsed()
        );
        self.matrix(&self.running(), "after join");
    }

    /// Pings from pod `from` to pod `to` while `during` runs; returns what
    /// came back.
    fn ping_during(&mut self, from: PodId, to: PodId, during: impl FnOnce(&mut Self)) -> Pings {
        let ns = self.c.pod(from.0, from.1).ns().name().to_owned();
        let ip = self.c.pod(to.0, to.1).ip().to_string();
        let interval = format!("{:.2}", PING_INTERVAL.as_secs_f64());
        let count = PING_COUNT.to_string();
        let pinger = std::thread::spawn(move || {
            Command::new("timeout")
                .args(["20", "ip", "netns", "exec", &ns, "ping", "-n", "-c", &count])
                .args(["-i", &interval, "-W", "1", &ip])
                .output()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(500));
        during(self);
        let out = pinger.join().unwrap();
        Pings::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// SIGTERM + start of node `i`'s weftd under 20 pings/s from a pod on
    /// node 1 to one on node `i`. host-gw loses nothing (the kernel routes
    /// stay); an overlay mode keeps its TUN and restarts the workers, so
    /// pings stop for a bounded gap ([`OVERLAY_RESTART_GAP`]) and return.
    pub fn graceful_restart(&mut self, i: usize) {
        let p = self.ping_during((0, 0), (i, 0), |s| {
            let cfg = s.config(i);
            s.c.start_weftd(i, &cfg).unwrap();
        });
        assert_eq!(p.sent, PING_COUNT, "{p:?}");
        let gap = p.longest_gap();
        eprintln!(
            "{:?}: graceful restart under traffic: {}/{} answered, longest gap {gap:?}",
            self.mode,
            p.answered.len(),
            p.sent
        );
        if self.mode == WeftMode::HostGw {
            assert_eq!(
                p.answered.len() as u32,
                p.sent,
                "graceful restart lost packets\n{}",
                super::logs(&self.c)
            );
        } else {
            assert!(
                gap < OVERLAY_RESTART_GAP,
                "{:?}: restart gap {gap:?}\n{}",
                self.mode,
                super::logs(&self.c)
            );
            let tail = (PING_COUNT - 10 + 1..=PING_COUNT).all(|s| p.answered.contains(&s));
            assert!(tail, "{:?}: traffic did not return: {p:?}", self.mode);
        }
        self.c.wait_converged(Duration::from_secs(10)).unwrap();
    }

    /// SIGKILL of node `i`'s weftd: its route leaves the others within the
    /// restart time; the survivors still reach each other; it comes back
    /// and every pod reaches every other.
    pub fn node_failure(&mut self, i: usize) {
        let all = self.running();
        let gone = self.c.node(i).pod_cidr().to_string();
        let t = Instant::now();
        self.c.kill_weftd(i);
        let survivors = self.running();
        let end = t + Duration::from_secs(RESTART_TIME as u64 + 5);
        for &j in &survivors {
            while self.c.has_routes(j, std::slice::from_ref(&gone)) {
                assert!(
                    Instant::now() < end,
                    "{:?}: node {} still routes {gone} {:?} after the crash\n{}",
                    self.mode,
                    j + 1,
                    t.elapsed(),
                    self.c
                        .route_reflector()
                        .map(netsim::bgp::Bird::diagnostics)
                        .unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!(
            "{:?}: crashed node's route gone everywhere after {:?}",
            self.mode,
            t.elapsed()
        );
        self.matrix(&survivors, "survivors");
        let t = Instant::now();
        let cfg = self.config(i);
        self.c.start_weftd(i, &cfg).unwrap();
        self.c.wait_converged(Duration::from_secs(10)).unwrap();
        eprintln!(
            "{:?}: node {} back, routes everywhere after {:?}",
            self.mode,
            i + 1,
            t.elapsed()
        );
        self.matrix(&all, "after the node came back");
    }

    /// BIRD crashes: with graceful restart the nodes keep their routes and
    /// forward; BIRD returns, every session re-establishes, routes refresh.
    pub fn reflector_failure(&mut self) {
        let all = self.running();
        self.c.kill_route_reflector();
        // Longer than the hold time: a session without graceful restart is gone.
        std::thread::sleep(Duration::from_secs(4));
        for &i in &all {
            assert!(
                self.c.has_routes(i, &self.c.peer_cidrs(i)),
                "{:?}: node {} lost routes while the reflector was down\n{}",
                self.mode,
                i + 1,
                super::logs(&self.c)
            );
        }
        self.matrix(&all, "reflector down");
        let t = Instant::now();
        self.c.start_route_reflector().unwrap();
        let end = t + Duration::from_secs(20);
        loop {
            let out = self
                .c
                .route_reflector()
                .unwrap()
                .birdc(&["show", "protocols"]);
            if out.matches("Established").count() == all.len() {
                break;
            }
            assert!(Instant::now() < end, "sessions not back: {out}");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{:?}: reflector back, {} sessions established after {:?}",
            self.mode,
            all.len(),
            t.elapsed()
        );
        self.c.wait_converged(Duration::from_secs(10)).unwrap();
        let routes = self
            .c
            .route_reflector()
            .unwrap()
            .birdc(&["show", "route", "count"]);
        let n = all.len();
        assert!(routes.contains(&format!("{n} of {n} routes")), "{routes}");
        self.matrix(&all, "reflector back");
    }
}

/// What a ping run saw: requests sent and the sequence numbers answered.
#[derive(Debug)]
struct Pings {
    sent: u32,
    answered: BTreeSet<u32>,
}

impl Pings {
    /// Parses iputils ping output (`icmp_seq=N` per reply, the summary line).
    fn parse(text: &str) -> Self {
        let answered = text
            .lines()
            .filter(|l| l.contains(" bytes from "))
            .filter_map(|l| l.split("icmp_seq=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        let sent = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no ping summary: {text}"));
        Self { sent, answered }
    }

    /// The longest stretch without an answer, in ping intervals: from the
    /// last answered request before a run of losses to the next answered.
    fn longest_gap(&self) -> Duration {
        let mut longest = 0;
        let mut run = 0;
        for s in 1..=self.sent {
            if self.answered.contains(&s) {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        if longest == 0 {
            Duration::ZERO
        } else {
            PING_INTERVAL * (longest + 1)
        }
    }
}

/// stdout of a command (empty when it failed to start).
pub fn sh(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
