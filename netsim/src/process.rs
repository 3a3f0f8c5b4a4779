//! Child processes with deadlines, and CPU accounting from `/proc`.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// A spawned child that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout/stderr to `log` (or discarded when `None`).
    pub fn spawn(mut cmd: Command, what: &str, log: Option<&Path>) -> Result<Self> {
        cmd.stdin(Stdio::null());
        if let Some(path) = log {
            let f = File::create(path)
                .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            let f2 = f.try_clone().map_err(|e| Error::io("dup log", e))?;
            cmd.stdout(f).stderr(f2);
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawn {what}"), e))?;
        Ok(Self {
            child: Some(child),
            what: what.to_owned(),
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs. Returns the exit
    /// status and whether the child stopped within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some((st, true));
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some((st, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok().map(|st| (st, false))
    }

    /// SIGKILLs the child and reaps it (a crash, for failure drills).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// What this child is (for messages).
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Output of a command run with a deadline.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it after `timeout`. Output goes through
/// temporary files in `dir`, so a chatty child can never block on a pipe.
pub fn run_with_timeout(
    cmd: Command,
    what: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<Finished> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = dir.join(format!("{what}-{n}.out"));
    let err_path = dir.join(format!("{what}-{n}.err"));
    let mut cmd = cmd;
    let out = File::create(&out_path).map_err(|e| Error::io("create output file", e))?;
    let err = File::create(&err_path).map_err(|e| Error::io("create output file", e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawn {what}"), e))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| Error::io("wait", e))? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(&out_path);
            let _ = fs::remove_file(&err_path);
            return Err(Error::Timeout(format!("{what} after {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        if let Ok(mut f) = File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        let _ = fs::remove_file(p);
        s
    };
    Ok(Finished {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}

/// Clock ticks per second for `/proc` times.
fn ticks_per_second() -> f64 {
    // SAFETY-free: sysconf through nix.
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// user + system CPU seconds a process has used so far.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    // After ")": state(3) ... utime is field 14, stime 15 → indices 11, 12 here.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second())
}

/// A snapshot of the machine-wide CPU counters of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSnapshot {
    busy: u64,
    total: u64,
}

impl CpuSnapshot {
    /// Reads `/proc/stat` now.
    pub fn take() -> Option<Self> {
        Self::parse(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu` line.
    pub fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 5 {
            return None;
        }
        // user nice system idle iowait irq softirq steal (guest is inside user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v[3] + v[4];
        Some(Self {
            busy: total - idle,
            total,
        })
    }

    /// Average number of busy cores between `self` (earlier) and `later`.
    pub fn cores_busy_until(&self, later: &Self, cpus: usize) -> f64 {
        let dt = later.total.saturating_sub(self.total);
        if dt == 0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / dt as f64 * cpus as f64
    }
}

/// Number of online CPUs.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_cores() {
        let a = CpuSnapshot::parse("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = CpuSnapshot::parse("cpu  200 0 200 1000 0 0 0 0 0 0\n").unwrap();
        // 200 busy of 400 ticks on 2 cpus = 1 core.
        assert!((a.cores_busy_until(&b, 2) - 1.0).abs() < 1e-9);
        assert!(CpuSnapshot::parse("intr 1 2 3").is_none());
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let t = process_cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
    }

    #[test]
    fn timeout_kills_a_sleeper() {
        let dir = std::env::temp_dir();
        let mut c = Command::new("sleep");
        c.arg("5");
        let t0 = Instant::now();
        let r = run_with_timeout(c, "sleep", &dir, Duration::from_millis(200));
        assert!(matches!(r, Err(Error::Timeout(_))));
        assert!(t0.elapsed() < Duration::from_secs(2));
        let mut c = Command::new("echo");
        c.arg("hi");
        let r = run_with_timeout(c, "echo", &dir, Duration::from_secs(5)).unwrap();
        assert_eq!(r.stdout.trim(), "hi");
    }
}
