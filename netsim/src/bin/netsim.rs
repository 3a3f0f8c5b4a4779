//! The `netsim` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use netsim::{
    BenchConfig, BenchReport, Cluster, Mode, Routing, Topology, TopologyBuilder, report, run_bench,
};

/// Whole weft clusters in network namespaces: kernel baselines, weft modes, benchmarks.
#[derive(Debug, Parser)]
#[command(name = "netsim", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every pod pings every other pod in each mode; exits non-zero if any pair fails.
    PingMatrix {
        #[command(flatten)]
        topo: TopoArgs,
        /// Comma-separated modes.
        #[arg(long, default_value = "kernel-hostgw,kernel-vxlan")]
        modes: String,
    },
    /// Builds a cluster, applies a mode and keeps it until Ctrl-C (or --hold seconds).
    Up {
        #[command(flatten)]
        topo: TopoArgs,
        /// Forwarding mode, or "none".
        #[arg(long, default_value = "kernel-hostgw")]
        mode: String,
        /// Tear down after this many seconds.
        #[arg(long, default_value_t = 3600)]
        hold: u64,
    },
    /// Throughput (iperf3) and latency (ping, sockperf) per mode, modes interleaved.
    Bench(BenchArgs),
    /// The demo: a 3-node cluster as real nodes run it (pods attached by
    /// weft's CNI plugins with the conflist weftd wrote, routes over BGP
    /// through a BIRD route reflector by default): convergence time, routes
    /// per node, ping matrix and a checked TCP transfer per weft mode, then
    /// a short iperf3 bench against the kernel baselines into --out.
    Demo {
        #[command(flatten)]
        topo: TopoArgs,
        /// One weft mode (host-gw, vxlan, udp, ipip); all four when absent.
        #[arg(long)]
        mode: Option<String>,
        /// Comma-separated modes instead (kernel baselines included as given;
        /// overrides --mode).
        #[arg(long)]
        modes: Option<String>,
        /// How nodes learn routes: static, rr (BIRD route reflector on the
        /// ToR) or mesh (weftd full mesh).
        #[arg(long, default_value = "rr")]
        routing: String,
        /// Leave the cluster up afterwards (`netsim clean` removes it).
        #[arg(long)]
        keep: bool,
        /// Output directory.
        #[arg(long, default_value = "netsim-out")]
        out: PathBuf,
        /// iperf3 seconds per run.
        #[arg(long, default_value_t = 2)]
        duration: u64,
        /// Runs per (mode, streams).
        #[arg(long, default_value_t = 2)]
        repeat: u32,
    },
    /// Removes leftovers of earlier runs whose process is dead.
    Clean,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    topo: TopoArgs,
    /// Comma-separated modes, interleaved in this order (the first is the ratio baseline).
    #[arg(long, default_value = "kernel-hostgw,kernel-vxlan")]
    modes: String,
    /// Comma-separated parallel stream counts.
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    streams: Vec<u32>,
    /// iperf3 seconds per run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Runs per (mode, streams); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Pings (10 ms apart) for the RTT percentiles; 0 skips.
    #[arg(long, default_value_t = 200)]
    ping_count: u32,
    /// sockperf ping-pong seconds; 0 skips.
    #[arg(long, default_value_t = 2)]
    sockperf_secs: u64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
struct TopoArgs {
    /// Topology declaration (TOML); the flags below override it.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Pods per node.
    #[arg(long)]
    pods: Option<usize>,
    /// Add a ToR router namespace on the underlay.
    #[arg(long)]
    tor: bool,
    /// Underlay offloads (off = tso/gso/gro off on the node underlay veths).
    #[arg(long, value_enum)]
    underlay_offload: Option<OnOff>,
    /// weftd binary for weft modes (default: next to netsim).
    #[arg(long)]
    weftd: Option<PathBuf>,
    /// Static routes to this many fake peers in every weftd config
    /// (peer-table scale runs).
    #[arg(long)]
    fake_peers: Option<usize>,
}

impl TopoArgs {
    fn builder(
        &self,
        default_nodes: usize,
        default_pods: usize,
    ) -> anyhow::Result<TopologyBuilder> {
        let mut topo = match &self.topology {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Topology::from_toml(&text)?
            }
            None => Topology {
                nodes: default_nodes,
                pods_per_node: default_pods,
                ..Topology::default()
            },
        };
        if let Some(n) = self.nodes {
            topo.nodes = n;
        }
        if let Some(m) = self.pods {
            topo.pods_per_node = m;
        }
        topo.tor |= self.tor;
        if let Some(o) = self.underlay_offload {
            topo.underlay_offload = matches!(o, OnOff::On);
        }
        if let Some(n) = self.fake_peers {
            topo.fake_peers = n;
        }
        let mut b = TopologyBuilder::from_topology(topo);
        if let Some(w) = &self.weftd {
            b = b.weftd(w);
        }
        Ok(b)
    }
}

fn build(b: TopologyBuilder) -> anyhow::Result<Cluster> {
    let t = b.topology().clone();
    let c = b.build().context("building the cluster")?;
    eprintln!(
        "netsim: cluster {} up: {} nodes, {} pods each{}, underlay offload {}",
        c.prefix(),
        t.nodes,
        t.pods_per_node,
        if t.tor { ", ToR" } else { "" },
        if t.underlay_offload { "on" } else { "off" }
    );
    Ok(c)
}

/// Parses a mode name where "none" means no forwarding mode.
fn mode_or_none(s: &str) -> anyhow::Result<Option<Mode>> {
    Ok(if s == "none" { None } else { Some(s.parse()?) })
}

fn set_mode(c: &mut Cluster, m: Option<Mode>) -> anyhow::Result<()> {
    match m {
        Some(m) => c.apply_mode(m).with_context(|| format!("applying {m}")),
        None => Ok(c.clear_mode()?),
    }
}

fn ping_matrix(topo: &TopoArgs, modes: &str) -> anyhow::Result<bool> {
    let modes: Vec<Option<Mode>> = modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(mode_or_none)
        .collect::<anyhow::Result<_>>()?;
    if modes.is_empty() {
        bail!("no modes given");
    }
    let mut c = build(topo.builder(3, 2)?)?;
    let mut all_ok = true;
    for m in modes {
        set_mode(&mut c, m)?;
        let r = c.ping_matrix()?;
        print!("{}: {r}", m.map_or("none", Mode::as_str));
        all_ok &= r.all_ok();
    }
    Ok(all_ok)
}

fn up(topo: &TopoArgs, mode: &str, hold: u64) -> anyhow::Result<bool> {
    let m = mode_or_none(mode)?;
    let mut c = build(topo.builder(2, 1)?)?;
    set_mode(&mut c, m)?;
    println!("netsim up: run {} in mode {mode}; namespaces:", c.prefix());
    if let Some(f) = c.fabric_ns() {
        println!("  {} (underlay bridge)", f.name());
    }
    if let Some(t) = c.tor() {
        println!("  {} (ToR {})", t.name(), c.topology().tor_ip()?);
    }
    for (i, n) in c.nodes().iter().enumerate() {
        println!(
            "  {} (node {}, {} on {}, pods {})",
            n.ns().name(),
            n.number(),
            n.underlay_ip(),
            n.underlay_if(),
            n.pod_cidr()
        );
        for j in 0..c.topology().pods_per_node {
            let p = c.pod(i, j);
            println!("    {} ({})", p.ns().name(), p.ip());
        }
    }
    println!("Ctrl-C tears it down (or after {hold} s).");
    std::thread::sleep(Duration::from_secs(hold));
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = netsim::run::install_signal_cleanup() {
        eprintln!("netsim: {e}");
    }
    let result = match cli.cmd {
        Cmd::PingMatrix { topo, modes } => ping_matrix(&topo, &modes),
        Cmd::Up { topo, mode, hold } => up(&topo, &mode, hold),
        Cmd::Bench(args) => bench(&args),
        Cmd::Demo {
            topo,
            mode,
            modes,
            routing,
            keep,
            out,
            duration,
            repeat,
        } => {
            let modes = modes.unwrap_or_else(|| {
                let weft = mode.unwrap_or_else(|| "host-gw,vxlan,udp,ipip".into());
                format!("kernel-hostgw,kernel-vxlan,{weft}")
            });
            demo(&topo, &modes, &routing, keep, &out, duration, repeat)
        }
        Cmd::Clean => clean(),
    };
    netsim::run::exit_if_interrupted();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("netsim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn clean() -> anyhow::Result<bool> {
    let cleaned = netsim::run::clean_dead_runs()?;
    if cleaned.is_empty() {
        println!("netsim clean: nothing left over");
    }
    for (prefix, ns) in cleaned {
        println!(
            "netsim clean: removed run {prefix}: {} namespaces {ns:?}",
            ns.len()
        );
    }
    Ok(true)
}

fn bench_config(
    modes: &str,
    streams: Vec<u32>,
    duration: u64,
    repeat: u32,
) -> anyhow::Result<BenchConfig> {
    let modes = Mode::parse_list(modes)?;
    if modes.is_empty() {
        bail!("no modes given");
    }
    Ok(BenchConfig {
        modes,
        streams,
        duration: Duration::from_secs(duration.max(1)),
        repeat: repeat.max(1),
        ..BenchConfig::default()
    })
}

fn write_outputs(
    report: &BenchReport,
    json: Option<&Path>,
    svg: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(p) = json {
        report::write_json(report, p)?;
    }
    if let Some(p) = svg {
        report::write_svg(report, p)?;
    }
    Ok(())
}

fn bench(a: &BenchArgs) -> anyhow::Result<bool> {
    let mut cfg = bench_config(&a.modes, a.streams.clone(), a.duration, a.repeat)?;
    cfg.ping_count = a.ping_count;
    cfg.sockperf = Duration::from_secs(a.sockperf_secs);
    let b = a.topo.builder(2, 1)?;
    if b.topology().nodes < 2 || b.topology().pods_per_node < 1 {
        bail!("bench needs at least 2 nodes with a pod each");
    }
    let mut c = build(b)?;
    let report = run_bench(&mut c, &cfg)?;
    drop(c);
    print!("{}", report::markdown(&report));
    write_outputs(&report, a.json.as_deref(), a.svg.as_deref())?;
    Ok(true)
}

/// weftd's routes (proto 87) per node, e.g. `n1 2, n2 2, n3 2`.
fn routes_per_node(c: &Cluster) -> String {
    c.nodes()
        .iter()
        .map(|n| {
            let count = n
                .ns()
                .ip(&["-4", "route", "show", "proto", "87"])
                .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().count());
            format!("n{} {count}", n.number())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the demo cluster: CNI attach when weft's plugins are built next
/// to weftd (else the built-in attach, said so), routing as asked.
fn demo_cluster(topo: &TopoArgs, routing: Routing) -> anyhow::Result<(Cluster, bool)> {
    let mut b = topo.builder(3, 2)?.routing(routing);
    let weftd = topo
        .weftd
        .clone()
        .unwrap_or_else(netsim::weftd::default_weftd_path);
    let cni = match netsim::cni::plugin_dir_next_to(&weftd) {
        Ok(dir) => {
            b = b.cni(dir);
            true
        }
        Err(why) => {
            eprintln!("netsim demo: {why}; pods use the built-in attach");
            false
        }
    };
    Ok((build(b)?, cni))
}

/// Per weft mode first (with CNI, pods attach once weftd wrote the
/// conflist), then the kernel baselines: convergence, routes per node, the
/// ping matrix and a checked TCP transfer.
fn demo_checks(c: &mut Cluster, cfg: &BenchConfig) -> anyhow::Result<()> {
    let (nodes, pods) = (c.topology().nodes, c.topology().pods_per_node);
    let last = (nodes - 1, pods - 1);
    let mut order: Vec<Mode> = cfg.modes.iter().copied().filter(|m| m.is_weft()).collect();
    order.extend(cfg.modes.iter().copied().filter(|m| !m.is_weft()));
    for m in order {
        c.apply_mode(m).with_context(|| format!("applying {m}"))?;
        if let Some(t) = c.last_convergence() {
            println!(
                "{m}: BGP converged in {:.0} ms; weftd routes per node: {}",
                t.as_secs_f64() * 1000.0,
                routes_per_node(c)
            );
        }
        let r = c.ping_matrix()?;
        print!("{m}: {r}");
        if !r.all_ok() {
            bail!("{m}: ping matrix failed");
        }
        let t = c
            .tcp_transfer_check((0, 0), last, 20_000_000)
            .with_context(|| format!("{m}: TCP transfer"))?;
        println!(
            "{m}: TCP transfer {} -> {}: {} bytes, hash {:016x} equal on both ends ({:.0} ms)",
            c.pod(0, 0).ip(),
            c.pod(last.0, last.1).ip(),
            t.bytes,
            t.hash,
            t.elapsed.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// Copies the run's configs and logs (weftd, BIRD) to `out/logs/` before
/// the failed cluster is torn down.
fn save_logs(c: &Cluster, out: &Path) {
    let dest = out.join("logs");
    let _ = std::fs::create_dir_all(&dest);
    let Ok(entries) = std::fs::read_dir(c.run_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            let _ = std::fs::copy(&p, dest.join(e.file_name()));
        }
    }
    eprintln!("netsim demo: logs and configs kept in {}", dest.display());
}

fn demo(
    topo: &TopoArgs,
    modes: &str,
    routing: &str,
    keep: bool,
    out: &Path,
    duration: u64,
    repeat: u32,
) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    let routing: Routing = routing.parse()?;
    let mut cfg = bench_config(modes, vec![1, 4], duration, repeat)?;
    // Short latency probes keep the demo under two minutes with all six modes.
    cfg.ping_count = 100;
    cfg.sockperf = Duration::from_secs(1);
    let (mut c, cni) = demo_cluster(topo, routing)?;
    let nodes = c.topology().nodes;
    let pods = c.topology().pods_per_node;
    if nodes < 2 || pods < 1 {
        bail!("the demo needs at least 2 nodes with a pod each");
    }
    println!(
        "netsim demo: pods attached by {}, routes {}",
        if cni {
            "weft's CNI plugins (conflist written by weftd)"
        } else {
            "netsim's built-in attach"
        },
        match routing {
            Routing::Static => "from static config",
            Routing::Rr => "over BGP through BIRD reflecting on the ToR",
            Routing::Mesh => "over a BGP full mesh of weftds",
        }
    );
    let run = demo_checks(&mut c, &cfg).and_then(|()| Ok(run_bench(&mut c, &cfg)?));
    let report = match run {
        Ok(r) => r,
        Err(e) => {
            save_logs(&c, out);
            return Err(e);
        }
    };
    let kept = keep.then(|| keep_cluster(c));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = report::markdown(&report);
    print!("\n{md}");
    let (mdp, json, svg) = (
        out.join("bench.md"),
        out.join("bench.json"),
        out.join("bench.svg"),
    );
    std::fs::write(&mdp, &md).with_context(|| format!("writing {}", mdp.display()))?;
    write_outputs(&report, Some(&json), Some(&svg))?;
    println!(
        "\nnetsim demo: done in {:.0} s ({:.0} s of it waiting for other benchmarks){}. Files:\n  {}\n  {}\n  {}",
        t0.elapsed().as_secs_f64(),
        netsim::measure::bench_lock_wait().as_secs_f64(),
        if kept.is_some() {
            ""
        } else {
            ", everything torn down"
        },
        mdp.display(),
        json.display(),
        svg.display()
    );
    if let Some(text) = kept {
        print!("{text}");
    }
    Ok(true)
}

/// Leaves the cluster running and says how to use it: each instruction
/// is a command line that works as printed.
fn keep_cluster(c: Cluster) -> String {
    let mut s = format!(
        "\nThe cluster {} stays up (its daemons keep running; `netsim clean` removes it).\n",
        c.prefix()
    );
    let first = c.all_pods().next();
    let other = c.all_pods().find(|p| p.id().0 != 0);
    if let Some(p) = first {
        s += &format!(
            "  enter a pod:        ip netns exec {} sh   (address {})\n",
            p.ns().name(),
            p.ip()
        );
        if let Some(q) = other {
            s += &format!(
                "  ping across nodes:  ip netns exec {} ping -c 3 {}\n",
                p.ns().name(),
                q.ip()
            );
        }
    }
    let n = c.node(0).ns().name().to_owned();
    // weft sits next to weftd in a build; the control socket is the run's.
    let weft = c.weftd_path().with_file_name("weft");
    let weft = if weft.exists() {
        weft.display().to_string()
    } else {
        "weft".to_owned()
    };
    let socket = netsim::weftd::control_socket(c.run_dir(), &n);
    s += &format!(
        "  weft status:        ip netns exec {n} {weft} --socket {} status\n",
        socket.display()
    );
    s += &format!("  node routes:        ip -n {n} route\n");
    if c.route_reflector().is_some() {
        s += &format!(
            "  route reflector:    birdc -s {}/rr-bird.ctl show protocols\n",
            c.run_dir().display()
        );
    }
    s += &format!("  configs and logs:   {}\n", c.run_dir().display());
    c.keep();
    s
}
