//! Run prefixes: every resource of one run is named `<prefix>-...`, and a
//! state file `/run/netsim/<prefix>` records the owning process so that
//! `netsim clean` removes only leftovers whose creator is dead.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Where the state files live.
pub const STATE_DIR: &str = "/run/netsim";

/// Prefixes of clusters alive in this process (for the Ctrl-C handler).
static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Set once a termination signal arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Namespace creation holds this shared; the signal handler takes it
/// exclusively, so no namespace appears after its teardown pass.
static CREATE: RwLock<()> = RwLock::new(());

/// Creates a namespace of a cluster unless a termination signal arrived.
pub(crate) fn create_netns(name: &str) -> Result<Netns> {
    let _shared = CREATE.read();
    if interrupted() {
        return Err(Error::Topology("interrupted".into()));
    }
    Ok(Netns::create(name)?)
}

/// A claimed run prefix. Dropping it removes the state file and the run's
/// temporary directory (the namespaces are the cluster's job).
#[derive(Debug)]
pub struct RunPrefix {
    prefix: String,
    dir: PathBuf,
}

impl RunPrefix {
    /// Claims a fresh prefix `<tag><4 hex>` (tag: at most 2 characters, so the
    /// prefix stays ≤ 6), writes the state file and creates the run directory.
    pub fn claim(tag: &str) -> Result<Self> {
        if tag.is_empty() || tag.len() > 2 || !tag.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(Error::Topology(format!(
                "prefix tag {tag:?}: want 1-2 lowercase letters"
            )));
        }
        fs::create_dir_all(STATE_DIR).map_err(|e| Error::io(format!("mkdir {STATE_DIR}"), e))?;
        let existing = list_netns();
        let mut seed = seed();
        for _ in 0..64 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let prefix = format!("{tag}{:04x}", (seed >> 48) & 0xffff);
            if existing.iter().any(|n| owned_by(n, &prefix)) {
                continue;
            }
            let path = state_path(&prefix);
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            let mut file = match file {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
            };
            let pid = std::process::id();
            let start = process_start_time(pid).unwrap_or(0);
            writeln!(file, "{pid} {start}").map_err(|e| Error::io("write state", e))?;
            let dir = run_dir(&prefix);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
            if let Ok(mut active) = ACTIVE.lock() {
                active.push(prefix.clone());
            }
            return Ok(Self { prefix, dir });
        }
        Err(Error::Topology("no free run prefix after 64 tries".into()))
    }

    /// The prefix, e.g. `ns3f2a`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The run's temporary directory (configs, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunPrefix {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(state_path(&self.prefix));
        if let Ok(mut active) = ACTIVE.lock() {
            active.retain(|p| p != &self.prefix);
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn state_path(prefix: &str) -> PathBuf {
    Path::new(STATE_DIR).join(prefix)
}

/// The temporary directory of a run.
pub fn run_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netsim-{prefix}"))
}

/// True when namespace `name` belongs to the run `prefix`.
fn owned_by(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// Names of all network namespaces under `/run/netns`.
pub fn list_netns() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Start time (clock ticks after boot) of a process, from `/proc/<pid>/stat`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; starttime is field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded in a state file (`"<pid> <starttime>"`) still runs.
fn owner_alive(state: &str) -> bool {
    let mut it = state.split_whitespace();
    let (Some(pid), Some(start)) = (it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    process_start_time(pid).is_some_and(|s| start == 0 || s == start)
}

/// Kills every process in the run's namespaces, deletes the namespaces, the
/// run directory and the state file. Used by Ctrl-C and `netsim clean`.
pub fn remove_run(prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_netns().into_iter().filter(|n| owned_by(n, prefix)) {
        kill_netns_pids(&name);
        let ok = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            removed.push(name);
        }
    }
    let _ = fs::remove_dir_all(run_dir(prefix));
    let _ = fs::remove_file(state_path(prefix));
    removed
}

/// SIGKILLs every process whose network namespace is `name`.
pub(crate) fn kill_netns_pids(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Removes the leftovers of every run whose creating process is dead.
/// Returns the prefixes cleaned and the namespaces deleted.
pub fn clean_dead_runs() -> Result<Vec<(String, Vec<String>)>> {
    let entries = match fs::read_dir(STATE_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {STATE_DIR}"), e)),
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let prefix = entry.file_name().to_string_lossy().into_owned();
        let state = fs::read_to_string(entry.path()).unwrap_or_default();
        if owner_alive(&state) {
            continue;
        }
        let removed = remove_run(&prefix);
        cleaned.push((prefix, removed));
    }
    Ok(cleaned)
}

/// Tears down every cluster of this process; for the Ctrl-C handler.
pub fn remove_active_runs() {
    let prefixes = ACTIVE.lock().map(|a| a.clone()).unwrap_or_default();
    for p in prefixes {
        remove_run(&p);
    }
}

/// Installs a Ctrl-C / SIGTERM handler that tears down this process's
/// clusters and exits with status 130.
pub fn install_signal_cleanup() -> Result<()> {
    ctrlc::set_handler(|| {
        let _exclusive = CREATE.write();
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("netsim: interrupted, cleaning up");
        remove_active_runs();
        std::process::exit(130);
    })
    .map_err(|e| Error::io("installing signal handler", io::Error::other(e)))
}

/// Whether a termination signal arrived (the handler is then tearing down
/// and will exit with 130).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// When interrupted, waits for the signal handler to finish and exit(130),
/// so an error caused by the teardown does not decide the exit status.
pub fn exit_if_interrupted() {
    if interrupted() {
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::exit(130);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_needs_the_dash() {
        assert!(owned_by("ns12ab-n1", "ns12ab"));
        assert!(!owned_by("ns12abc-n1", "ns12ab"));
        assert!(!owned_by("ns12a-n1", "ns12ab"));
    }

    #[test]
    fn own_process_is_alive_and_garbage_is_dead() {
        let pid = std::process::id();
        let start = process_start_time(pid).expect("own stat");
        assert!(owner_alive(&format!("{pid} {start}")));
        assert!(!owner_alive(&format!("{pid} {}", start + 1)));
        assert!(!owner_alive("not a pid"));
        assert!(!owner_alive(""));
    }
}
