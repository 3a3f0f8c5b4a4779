//! The `netsim` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use netsim::{Cluster, Mode, Topology, TopologyBuilder};

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
    /// Removes leftovers of earlier runs whose process is dead.
    Clean,
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

fn ping_matrix(topo: &TopoArgs, modes: &str) -> anyhow::Result<bool> {
    let modes = Mode::parse_list(modes)?;
    if modes.is_empty() {
        bail!("no modes given");
    }
    let mut c = build(topo.builder(3, 2)?)?;
    let mut all_ok = true;
    for m in modes {
        c.apply_mode(m).with_context(|| format!("applying {m}"))?;
        let r = c.ping_matrix()?;
        println!("{m}: {r}");
        all_ok &= r.all_ok();
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = netsim::run::install_signal_cleanup() {
        eprintln!("netsim: {e}");
    }
    let result = match cli.cmd {
        Cmd::PingMatrix { topo, modes } => ping_matrix(&topo, &modes),
        Cmd::Clean => clean(),
    };
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
