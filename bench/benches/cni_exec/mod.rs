//! Shared by the CNI benches: exec a plugin the way a runtime does, time
//! it, and read its max RSS with wait4(2); medians.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const REFERENCE: &str = "/usr/lib/cni";

pub fn ours_dir() -> PathBuf {
    // target/release/deps/cni_chain-xxx -> target/release
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// What one plugin run measured.
pub struct Run {
    /// Wall time from spawn to exit.
    pub took: Duration,
    /// The result on stdout (JSON null when empty).
    pub out: Value,
    /// Max RSS (KiB) of its process tree (wait4's rusage: the plugin plus
    /// any children it waited for, e.g. the reference's iptables).
    pub maxrss: i64,
    /// User + system CPU time.
    pub cpu: Duration,
}

/// Runs one plugin like a runtime does; returns its wall time, its result
/// and the max RSS (KiB) of its process tree.
pub fn exec(
    dir: &Path,
    plugin: &str,
    cmd: &str,
    cid: &str,
    netns: &str,
    conf: &Value,
    strace: Option<&Path>,
) -> (Duration, Value, i64) {
    let r = exec_if(dir, plugin, cmd, cid, "eth0", netns, conf, strace);
    (r.took, r.out, r.maxrss)
}

/// [`exec`] on interface `ifname`, with the CPU time too; panics when the
/// plugin fails.
#[allow(clippy::zombie_processes, clippy::too_many_arguments)] // reaped by `wait4` below
pub fn exec_if(
    dir: &Path,
    plugin: &str,
    cmd: &str,
    cid: &str,
    ifname: &str,
    netns: &str,
    conf: &Value,
    strace: Option<&Path>,
) -> Run {
    let bin = dir.join(plugin);
    let mut c = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-e", "trace=execve", "-o"])
                .arg(out)
                .arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    c.env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    force_fork(&mut c);
    let start = Instant::now();
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let (status, maxrss, cpu) = wait4(child.id());
    let took = start.elapsed();
    let out: Value = serde_json::from_slice(&stdout).unwrap_or(Value::Null);
    assert!(
        status == 0,
        "{} {plugin} {cmd} failed (wait status {status}): {} {}",
        dir.display(),
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    Run {
        took,
        out,
        maxrss,
        cpu,
    }
}

/// Runs this bench binary again as its runner (`WEFT_BENCH_RUNNER=1`)
/// on `host` and `pods`, with `dir`'s plugins and `data` as the plugins'
/// data directory; returns the JSON line the runner prints.
pub fn run_runner(
    dir: &Path,
    host: &netsim::netns::Netns,
    pods: &[netsim::netns::Netns],
    data: &Path,
) -> Value {
    let names: Vec<&str> = pods.iter().map(netsim::netns::Netns::name).collect();
    let out = Command::new(std::env::current_exe().unwrap())
        .env("WEFT_BENCH_RUNNER", "1")
        .env("WEFT_BENCH_PLUGINS", dir)
        .env("WEFT_BENCH_HOST", host.name())
        .env("WEFT_BENCH_PODS", names.join(","))
        .env("WEFT_BENCH_DATA", data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap()
}

/// Makes std spawn with fork(2)+exec instead of vfork/posix_spawn. With
/// vfork the child borrows our address space until exec, and Linux folds that
/// mm's high-water mark into the child's ru_maxrss: every plugin would report
/// at least this (bigger) process's peak. A forked child only carries our
/// anonymous pages, well below any plugin's own peak.
#[allow(unsafe_code)]
pub fn force_fork(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook does nothing (async-signal-safe); it only makes std
    // take the fork path.
    unsafe {
        c.pre_exec(|| Ok(()));
    }
}

/// Reaps `pid` with wait4(2): (wait status, ru_maxrss in KiB, user+system
/// CPU time of the process and the children it waited for).
#[allow(unsafe_code)]
pub fn wait4(pid: u32) -> (i32, i64, Duration) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    (status, ru.ru_maxrss, tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// The exec floor: medians of `n` fork + exec + wait4 of `/bin/true`,
/// spawned the way [`exec`] spawns a plugin: (wall ms, CPU ms). Everything
/// a plugin costs above it is its own.
#[allow(clippy::zombie_processes)] // reaped by `wait4`
pub fn exec_floor(n: usize) -> (f64, f64) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut c = Command::new("/bin/true");
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        force_fork(&mut c);
        let start = Instant::now();
        let child = c.spawn().unwrap();
        let (_, _, t) = wait4(child.id());
        wall.push(start.elapsed().as_secs_f64() * 1e3);
        cpu.push(t.as_secs_f64() * 1e3);
    }
    (median(&mut wall), median(&mut cpu))
}

/// Max RSS per "plugin COMMAND" over a run.
pub type Rss = std::collections::BTreeMap<String, i64>;

pub fn note_rss(rss: &mut Rss, plugin: &str, cmd: &str, kb: i64) {
    let e = rss.entry(format!("{plugin} {cmd}")).or_insert(0);
    *e = (*e).max(kb);
}
