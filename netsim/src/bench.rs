//! `netsim bench`: throughput and latency of several modes on one cluster,
//! modes interleaved (A B A B …) so machine drift hits all alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, PodId};
use crate::error::{Error, Result};
use crate::health::{DEFAULT_TUN, NetHealth};
use crate::measure::{BenchLock, IperfOptions, IperfResult, Latency, have_tool, median};
use crate::mode::Mode;
use crate::process::cpu_count;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Modes, in the order they are interleaved.
    pub modes: Vec<Mode>,
    /// Parallel stream counts.
    pub streams: Vec<u32>,
    /// iperf3 run time.
    pub duration: Duration,
    /// Runs per (mode, streams); the median is reported.
    pub repeat: u32,
    /// Pings per latency measurement (0 = skip).
    pub ping_count: u32,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// sockperf ping-pong run time (zero = skip; also skipped when not installed).
    pub sockperf: Duration,
    /// Sender pod.
    pub from: PodId,
    /// Receiver pod (on another node).
    pub to: PodId,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            modes: vec![Mode::KernelHostGw, Mode::KernelVxlan],
            streams: vec![1, 4],
            duration: Duration::from_secs(5),
            repeat: 3,
            ping_count: 200,
            ping_interval: Duration::from_millis(10),
            sockperf: Duration::from_secs(2),
            from: (0, 0),
            to: (1, 0),
            progress: true,
        }
    }
}

/// One row: a mode at a stream count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Mode name.
    pub mode: String,
    /// Parallel streams.
    pub streams: u32,
    /// Median throughput (Gbit/s).
    pub gbps: f64,
    /// Every run's throughput (Gbit/s), in run order.
    pub runs: Vec<f64>,
    /// Sender retransmits per run.
    pub retransmits: Vec<u64>,
    /// Ping RTT median (µs).
    pub rtt_us_p50: Option<f64>,
    /// Ping RTT 99th percentile (µs).
    pub rtt_us_p99: Option<f64>,
    /// sockperf one-way latency median (µs).
    pub sockperf_us_p50: Option<f64>,
    /// sockperf one-way latency 99th percentile (µs).
    pub sockperf_us_p99: Option<f64>,
    /// Median busy cores of the machine during the runs.
    pub cpu_cores_busy: f64,
    /// Median weftd core-seconds per Gbit (weft modes only).
    pub router_core_s_per_gbit: Option<f64>,
    /// Checksum / UDP buffer errors and TUN tx drops that appeared during
    /// the runs (summed over runs; sender and receiver node and pod
    /// namespaces). A steady run keeps these at zero.
    #[serde(default)]
    pub health: NetHealth,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Kernel release.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Whether the underlay veths kept tso/gso/gro.
    pub underlay_offload: bool,
}

/// How the bench was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchMeta {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// iperf3 seconds per run.
    pub duration_s: f64,
    /// Runs per row.
    pub repeat: u32,
    /// Sender pod address.
    pub from: String,
    /// Receiver pod address.
    pub to: String,
    /// Start time (seconds since the epoch).
    pub started_unix: u64,
}

/// The report: `{"results":[…], "host":{…}, "bench":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// One row per (mode, streams), modes in the order given.
    pub results: Vec<BenchResult>,
    /// Machine facts.
    pub host: HostInfo,
    /// Bench settings.
    pub bench: BenchMeta,
}

/// The running kernel's release string.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[derive(Debug, Default)]
struct Acc {
    runs: Vec<IperfResult>,
    health: NetHealth,
    ping: Option<Latency>,
    sockperf: Option<Latency>,
}

/// Runs the bench on `cluster` (which must have ≥ 2 nodes with a pod each
/// at `cfg.from`/`cfg.to`). Leaves the cluster in the last mode measured.
pub fn run_bench(cluster: &mut Cluster, cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.modes.is_empty() || cfg.streams.is_empty() || cfg.repeat == 0 {
        return Err(Error::measure(
            "bench",
            "need at least one mode, stream count and repeat",
        ));
    }
    let pods = &cluster.pods;
    let exists = |(n, p): PodId| pods.get(n).is_some_and(|v| p < v.len());
    if !exists(cfg.from) || !exists(cfg.to) {
        return Err(Error::measure(
            "bench",
            format!("pods {:?} and {:?} must exist", cfg.from, cfg.to),
        ));
    }
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let use_sockperf = !cfg.sockperf.is_zero() && have_tool("sockperf");
    let latency_steps = u64::from(cfg.ping_count > 0) + u64::from(use_sockperf);
    let total =
        cfg.modes.len() as u64 * (u64::from(cfg.repeat) * cfg.streams.len() as u64 + latency_steps);
    let bar = if cfg.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    let mut acc: Vec<Vec<Acc>> = cfg
        .modes
        .iter()
        .map(|_| cfg.streams.iter().map(|_| Acc::default()).collect())
        .collect();
    for r in 0..cfg.repeat {
        for (mi, &mode) in cfg.modes.iter().enumerate() {
            bar.set_message(format!("{mode}: applying"));
            cluster.apply_mode(mode)?;
            if r == 0 {
                let (ping, sp) = latency(cluster, cfg, use_sockperf, mode, &bar)?;
                for a in &mut acc[mi] {
                    a.ping = ping;
                    a.sockperf = sp;
                }
            }
            for (si, &streams) in cfg.streams.iter().enumerate() {
                bar.set_message(format!(
                    "{mode}: iperf3 -P {streams} (run {}/{})",
                    r + 1,
                    cfg.repeat
                ));
                let opts = IperfOptions {
                    streams,
                    duration: cfg.duration,
                };
                let h0 = health(cluster, cfg)?;
                let res = cluster
                    .iperf(cfg.from, cfg.to, &opts)
                    .map_err(|e| Error::Mode {
                        mode: mode.to_string(),
                        msg: e.to_string(),
                    })?;
                let h1 = health(cluster, cfg)?;
                acc[mi][si].health.accumulate(&h1.since(&h0));
                acc[mi][si].runs.push(res);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let mut results = Vec::new();
    for (mi, mode) in cfg.modes.iter().enumerate() {
        for (si, &streams) in cfg.streams.iter().enumerate() {
            let a = &acc[mi][si];
            let runs: Vec<f64> = a.runs.iter().map(|r| r.gbps).collect();
            let per_gbit: Vec<f64> = a
                .runs
                .iter()
                .filter_map(IperfResult::router_core_s_per_gbit)
                .collect();
            let busy: Vec<f64> = a.runs.iter().map(|r| r.cpu_cores_busy).collect();
            results.push(BenchResult {
                mode: mode.to_string(),
                streams,
                gbps: median(&runs).unwrap_or(0.0),
                retransmits: a.runs.iter().map(|r| r.retransmits).collect(),
                runs,
                rtt_us_p50: a.ping.map(|l| l.p50_us),
                rtt_us_p99: a.ping.map(|l| l.p99_us),
                sockperf_us_p50: a.sockperf.map(|l| l.p50_us),
                sockperf_us_p99: a.sockperf.map(|l| l.p99_us),
                cpu_cores_busy: median(&busy).unwrap_or(0.0),
                router_core_s_per_gbit: median(&per_gbit),
                health: a.health.clone(),
            });
        }
    }
    Ok(BenchReport {
        results,
        host: HostInfo {
            kernel: kernel_release(),
            cpus: cpu_count(),
            underlay_offload: cluster.topology().underlay_offload,
        },
        bench: BenchMeta {
            nodes: cluster.topology().nodes,
            duration_s: cfg.duration.as_secs().max(1) as f64,
            repeat: cfg.repeat,
            from: cluster.pod(cfg.from.0, cfg.from.1).ip().to_string(),
            to: cluster.pod(cfg.to.0, cfg.to.1).ip().to_string(),
            started_unix,
        },
    })
}

/// The health counters of the sending and receiving nodes and pods.
fn health(cluster: &Cluster, cfg: &BenchConfig) -> Result<NetHealth> {
    let (f, t) = (cfg.from, cfg.to);
    let mut ns = vec![cluster.node(f.0).ns(), cluster.pod(f.0, f.1).ns()];
    if t.0 != f.0 {
        ns.push(cluster.node(t.0).ns());
    }
    ns.push(cluster.pod(t.0, t.1).ns());
    NetHealth::take(&ns, DEFAULT_TUN)
}

fn latency(
    cluster: &Cluster,
    cfg: &BenchConfig,
    use_sockperf: bool,
    mode: Mode,
    bar: &ProgressBar,
) -> Result<(Option<Latency>, Option<Latency>)> {
    let wrap = |e: Error| Error::Mode {
        mode: mode.to_string(),
        msg: e.to_string(),
    };
    // Latency too is measured alone on the machine.
    let _lock = BenchLock::acquire()?;
    let mut ping = None;
    if cfg.ping_count > 0 {
        bar.set_message(format!("{mode}: ping x{}", cfg.ping_count));
        ping = Some(
            cluster
                .ping_latency(cfg.from, cfg.to, cfg.ping_count, cfg.ping_interval)
                .map_err(wrap)?,
        );
        bar.inc(1);
    }
    let mut sp = None;
    if use_sockperf {
        bar.set_message(format!("{mode}: sockperf ping-pong"));
        sp = Some(
            cluster
                .sockperf(cfg.from, cfg.to, cfg.sockperf)
                .map_err(wrap)?,
        );
        bar.inc(1);
    }
    Ok((ping, sp))
}
