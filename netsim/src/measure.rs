//! Measurements between two pods: iperf3 throughput, ping RTT, sockperf
//! ping-pong latency, and CPU use while they run.

use std::fs::OpenOptions;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, PodId};
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::{ChildGuard, CpuSnapshot, cpu_count, run_with_timeout};

/// The lock file every throughput run on this machine holds (so two
/// benchmarks never overlap).
pub const BENCH_LOCK: &str = "/tmp/weft-bench.lock";

const IPERF_PORT: u16 = 5201;
const SOCKPERF_PORT: u16 = 11111;

/// Holds the exclusive machine-wide benchmark lock until dropped (or
/// nothing, when an ancestor such as `flock /tmp/weft-bench.lock netsim …`
/// already holds it for us).
#[derive(Debug)]
pub struct BenchLock(#[allow(dead_code)] Option<Flock<std::fs::File>>);

/// The `/proc/locks` key `MAJ:MIN:INODE` of a file.
fn lock_key(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    format!("{major:02x}:{minor:02x}:{}", meta.ino())
}

/// Pids holding a FLOCK with key `key` in `/proc/locks` text (waiters, `->`, excluded).
pub fn flock_holders(locks: &str, key: &str) -> Vec<u32> {
    locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&key))
                .then(|| f.get(4)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// This process and its ancestors, nearest first.
fn ancestry() -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = std::process::id();
    while pid > 1 && out.len() < 64 {
        out.push(pid);
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
                rest.split_whitespace().nth(1)?.parse().ok()
            })
        else {
            break;
        };
        pid = ppid;
    }
    out
}

/// Milliseconds this process spent waiting for [`BENCH_LOCK`].
static LOCK_WAIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Total time this process has waited for other benchmarks' lock.
pub fn bench_lock_wait() -> Duration {
    Duration::from_millis(LOCK_WAIT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

impl BenchLock {
    /// Blocks until the lock on [`BENCH_LOCK`] is ours, unless this process
    /// or an ancestor already holds it.
    pub fn acquire() -> Result<Self> {
        if let Ok(meta) = std::fs::metadata(BENCH_LOCK) {
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            let holders = flock_holders(&locks, &lock_key(&meta));
            if ancestry().iter().skip(1).any(|p| holders.contains(p)) {
                return Ok(Self(None));
            }
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(BENCH_LOCK)
            .map_err(|e| Error::io(format!("open {BENCH_LOCK}"), e))?;
        let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(Self(Some(l))),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => f,
            Err((_, e)) => return Err(Error::io(format!("flock {BENCH_LOCK}"), e.into())),
        };
        eprintln!("netsim: waiting for {BENCH_LOCK} (another benchmark is running)");
        let t0 = Instant::now();
        let r = Flock::lock(f, FlockArg::LockExclusive);
        let waited = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        LOCK_WAIT_MS.fetch_add(waited, std::sync::atomic::Ordering::Relaxed);
        r.map(|l| Self(Some(l)))
            .map_err(|(_, e)| Error::io(format!("flock {BENCH_LOCK}"), e.into()))
    }
}

/// Options of one iperf3 run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IperfOptions {
    /// Parallel streams (`-P`).
    pub streams: u32,
    /// Run time (whole seconds, at least 1).
    pub duration: Duration,
}

impl Default for IperfOptions {
    fn default() -> Self {
        Self {
            streams: 1,
            duration: Duration::from_secs(1),
        }
    }
}

/// Result of one iperf3 run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IperfResult {
    /// Receiver-side throughput in Gbit/s.
    pub gbps: f64,
    /// TCP retransmits seen by the sender.
    pub retransmits: u64,
    /// Average busy cores of the machine during the run.
    pub cpu_cores_busy: f64,
    /// CPU seconds the cluster's weftd processes used during the run.
    pub router_cpu_s: Option<f64>,
    /// Wall time of the client run in seconds.
    pub seconds: f64,
}

impl IperfResult {
    /// weftd core-seconds per Gbit carried (weft modes only).
    pub fn router_core_s_per_gbit(&self) -> Option<f64> {
        let gbit = self.gbps * self.seconds;
        self.router_cpu_s.filter(|_| gbit > 0.0).map(|s| s / gbit)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Number of samples.
    pub samples: usize,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Throughput and retransmits from iperf3's `-J` output.
pub fn parse_iperf_json(text: &str) -> Result<(f64, u64)> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::measure("iperf3", format!("bad JSON: {e}")))?;
    if let Some(err) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(Error::measure("iperf3", err.to_owned()));
    }
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| Error::measure("iperf3", "no end.sum_received.bits_per_second"))?;
    let retr = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok((bps / 1e9, retr))
}

/// Per-packet RTTs (µs) from ping's `time=... ms` lines.
pub fn parse_ping_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect()
}

/// p50/p99 (µs) from sockperf's `percentile 50.000 = x` lines.
pub fn parse_sockperf(out: &str) -> Option<Latency> {
    let find = |p: &str| {
        out.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))?
            .rsplit('=')
            .next()?
            .trim()
            .parse::<f64>()
            .ok()
    };
    let samples = out
        .lines()
        .find(|l| l.contains("observations"))
        .and_then(|l| l.split("Total ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(Latency {
        p50_us: find("50.000")?,
        p99_us: find("99.000")?,
        samples,
    })
}

/// Waits until something listens on `port` (`tcp` or `udp`) in `ns`.
fn wait_listening(ns: &Netns, proto: &str, port: u16, timeout: Duration) -> Result<()> {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ns
            .run("ss", &[flag, &filter])
            .is_ok_and(|o| !o.stdout.is_empty())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::Timeout(format!(
        "{proto} port {port} in {} not listening",
        ns.name()
    )))
}

impl Cluster {
    /// TCP throughput pod `from` → pod `to` with iperf3, holding the
    /// machine-wide bench lock for the run.
    pub fn iperf(&self, from: PodId, to: PodId, opts: &IperfOptions) -> Result<IperfResult> {
        let (src, dst) = (self.pod(from.0, from.1), self.pod(to.0, to.1));
        let secs = opts.duration.as_secs().max(1);
        let ip = dst.ip().to_string();
        let _lock = BenchLock::acquire()?;
        let mut server_cmd = dst.ns().command("iperf3");
        server_cmd.args(["-s", "-1", "-B", &ip, "-p", &IPERF_PORT.to_string()]);
        let log = self.run_dir().join("iperf3-server.log");
        let mut server = ChildGuard::spawn(server_cmd, "iperf3 -s", Some(&log))?;
        wait_listening(dst.ns(), "tcp", IPERF_PORT, Duration::from_secs(5))?;
        let mut client = src.ns().command("iperf3");
        client.args([
            "-c",
            &ip,
            "-p",
            &IPERF_PORT.to_string(),
            "-t",
            &secs.to_string(),
            "-P",
            &opts.streams.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ]);
        let cpu0 = CpuSnapshot::take();
        let r0 = self.router_cpu_seconds();
        let t0 = Instant::now();
        let out = run_with_timeout(
            client,
            "iperf3",
            self.run_dir(),
            Duration::from_secs(secs + 15),
        )?;
        let wall = t0.elapsed().as_secs_f64();
        let r1 = self.router_cpu_seconds();
        let cpu1 = CpuSnapshot::take();
        let _ = server.terminate(Duration::from_secs(1));
        let (gbps, retransmits) = parse_iperf_json(&out.stdout).map_err(|e| {
            Error::measure(
                "iperf3",
                format!("{e} (exit {}, stderr: {})", out.status, out.stderr.trim()),
            )
        })?;
        let cpu_cores_busy = match (cpu0, cpu1) {
            (Some(a), Some(b)) => a.cores_busy_until(&b, cpu_count()),
            _ => 0.0,
        };
        let router_cpu_s = match (r0, r1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Ok(IperfResult {
            gbps,
            retransmits,
            cpu_cores_busy,
            router_cpu_s,
            // iperf3 runs `secs` of traffic; the wall time adds connection setup.
            seconds: (secs as f64).min(wall),
        })
    }

    /// ICMP RTT percentiles: `count` pings every `interval`.
    pub fn ping_latency(
        &self,
        from: PodId,
        to: PodId,
        count: u32,
        interval: Duration,
    ) -> Result<Latency> {
        let (src, dst) = (self.pod(from.0, from.1), self.pod(to.0, to.1));
        let mut cmd = src.ns().command("ping");
        cmd.args([
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            "-W",
            "1",
            &dst.ip().to_string(),
        ]);
        let budget = interval * count + Duration::from_secs(5);
        let out = run_with_timeout(cmd, "ping", self.run_dir(), budget)?;
        let mut t = parse_ping_times(&out.stdout);
        t.sort_by(f64::total_cmp);
        let (Some(p50_us), Some(p99_us)) = (percentile(&t, 50.0), percentile(&t, 99.0)) else {
            return Err(Error::measure(
                "ping",
                format!("no replies from {}", dst.ip()),
            ));
        };
        Ok(Latency {
            p50_us,
            p99_us,
            samples: t.len(),
        })
    }

    /// sockperf UDP ping-pong one-way latency percentiles for `duration`.
    pub fn sockperf(&self, from: PodId, to: PodId, duration: Duration) -> Result<Latency> {
        let (src, dst) = (self.pod(from.0, from.1), self.pod(to.0, to.1));
        let ip = dst.ip().to_string();
        let port = SOCKPERF_PORT.to_string();
        let mut server_cmd = dst.ns().command("sockperf");
        server_cmd.args(["sr", "-i", &ip, "-p", &port]);
        let mut server = ChildGuard::spawn(server_cmd, "sockperf sr", None)?;
        wait_listening(dst.ns(), "udp", SOCKPERF_PORT, Duration::from_secs(5))?;
        let secs = duration.as_secs().max(1);
        let mut cmd = src.ns().command("sockperf");
        cmd.args(["pp", "-i", &ip, "-p", &port, "-t", &secs.to_string()]);
        let out = run_with_timeout(
            cmd,
            "sockperf",
            self.run_dir(),
            Duration::from_secs(secs + 10),
        );
        let _ = server.terminate(Duration::from_secs(1));
        let out = out?;
        parse_sockperf(&out.stdout)
            .or_else(|| parse_sockperf(&out.stderr))
            .ok_or_else(|| {
                Error::measure(
                    "sockperf",
                    format!("no percentiles in output (exit {})", out.status),
                )
            })
    }
}

/// Whether a tool is on `PATH`.
pub fn have_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn iperf_json() {
        let j = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":9.5e9,"retransmits":7},
                   "sum_received":{"bits_per_second":9.4e9}}}"#;
        let (g, r) = parse_iperf_json(j).unwrap();
        assert!((g - 9.4).abs() < 1e-9);
        assert_eq!(r, 7);
        let e =
            parse_iperf_json(r#"{"start":{},"end":{},"error":"unable to connect"}"#).unwrap_err();
        assert!(e.to_string().contains("unable to connect"));
        assert!(parse_iperf_json("garbage").is_err());
    }

    #[test]
    fn ping_lines() {
        let out = "64 bytes from 10.244.2.2: icmp_seq=1 ttl=62 time=0.051 ms\n64 bytes from 10.244.2.2: icmp_seq=2 ttl=62 time=1.20 ms\n";
        assert_eq!(parse_ping_times(out), vec![51.0, 1200.0]);
    }

    #[test]
    fn sockperf_output() {
        let out = "sockperf: Total 146041 observations; each percentile contains 1460.41 observations\n\
                   sockperf: ---> percentile 99.000 =    2.095\n\
                   sockperf: ---> percentile 50.000 =    1.821\n";
        let l = parse_sockperf(out).unwrap();
        assert_eq!((l.p50_us, l.p99_us, l.samples), (1.821, 2.095, 146_041));
        assert!(parse_sockperf("nothing").is_none());
    }

    #[test]
    fn proc_locks_holders() {
        let locks = "1: FLOCK  ADVISORY  WRITE 31260 fe:00:10011560 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 999 fe:00:10011560 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 77 fe:00:10011560 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 42 fe:00:5 0 EOF\n";
        assert_eq!(flock_holders(locks, "fe:00:10011560"), vec![31260]);
        assert!(ancestry().first() == Some(&std::process::id()));
    }

    #[test]
    fn router_cost_per_gbit() {
        let r = IperfResult {
            gbps: 2.0,
            retransmits: 0,
            cpu_cores_busy: 1.0,
            router_cpu_s: Some(1.0),
            seconds: 5.0,
        };
        assert_eq!(r.router_core_s_per_gbit(), Some(0.1));
        let k = IperfResult {
            router_cpu_s: None,
            ..r
        };
        assert_eq!(k.router_core_s_per_gbit(), None);
    }
}
