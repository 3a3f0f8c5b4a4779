//! Network namespace handles that remove themselves on drop, and the
//! helpers root-needing tests use to decide whether they may run.

use std::fs::File;
use std::io;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A named network namespace (`/run/netns/<name>`), deleted on drop
/// (unless the handle is an [`Netns::alias`]).
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

/// Errors from namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Spawning a helper command failed.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        source: io::Error,
    },
    /// A helper command exited non-zero.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering the namespace failed.
    #[error("entering netns {name}: {source}")]
    Enter {
        /// Namespace name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Runs a command and turns a non-zero exit into an error carrying stderr.
pub fn run_checked(cmd: &mut Command) -> Result<Output, NetnsError> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

impl Netns {
    /// Creates a namespace with this exact name and brings its loopback up.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        run_checked(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_owned(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle to a name that was never created (for unit tests that must
    /// not touch the kernel); dropping it deletes nothing that exists.
    #[cfg(test)]
    pub(crate) fn handle_for_tests(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            owned: true,
        }
    }

    /// A second handle to the same namespace that leaves it alone on drop
    /// (the original handle still deletes it): for code that keeps its
    /// own handles to namespaces a [`crate::Cluster`] owns.
    pub fn alias(&self) -> Self {
        Self {
            name: self.name.clone(),
            owned: false,
        }
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args..` in the namespace; non-zero exit is an error.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output, NetnsError> {
        run_checked(self.command(program).args(args))
    }

    /// Runs `ip args..` in the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output, NetnsError> {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Creates a veth pair: `dev` here, `peer_dev` in `peer`, both with
    /// `mtu` when given. Both ends stay down and unaddressed.
    pub fn veth_to(
        &self,
        dev: &str,
        peer: &Netns,
        peer_dev: &str,
        mtu: Option<u32>,
    ) -> Result<(), NetnsError> {
        let mtu = mtu.map(|m| m.to_string());
        let mtu_args: Vec<&str> = mtu.iter().flat_map(|m| ["mtu", m.as_str()]).collect();
        let mut args = vec!["link", "add", dev];
        args.extend(&mtu_args);
        args.extend([
            "type",
            "veth",
            "peer",
            "name",
            peer_dev,
            "netns",
            peer.name(),
        ]);
        args.extend(&mtu_args);
        self.ip(&args).map(drop)
    }

    /// Runs `f` on a fresh OS thread whose network namespace is this one,
    /// so sockets it opens live in the namespace. Returns `f`'s result.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let handle = spawn_in(&self.name, f)?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Kill anything still running inside, then delete the namespace.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|out| {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Spawns a thread that enters namespace `name` (`/run/netns/<name>`)
/// and runs `f` there (sockets it opens live in the namespace). The
/// namespace must outlive the thread.
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, NetnsError>>, NetnsError> {
    let path = format!("/run/netns/{name}");
    let name = name.to_owned();
    let file = File::open(&path).map_err(|source| NetnsError::Enter {
        name: name.clone(),
        source,
    })?;
    Ok(std::thread::spawn(move || -> Result<T, NetnsError> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            NetnsError::Enter {
                name,
                source: io::Error::from(e),
            }
        })?;
        Ok(f())
    }))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name prefix unique to this process and call, e.g. `ab12c3`,
/// so that names like `{prefix}-n1` stay within the 15-byte interface limit.
pub fn unique_prefix(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!("{tag}{:x}{n:x}", pid & 0xfffff)
}

/// True when the tests that need root and namespaces may run. Outside CI a
/// missing privilege or tool skips the test with a printed reason; with
/// `CI=true` it panics, because nothing may be skipped there.
pub fn privileged_or_skip(test: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(format!("tool `{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: needs {}", missing.join(", "));
    assert!(!ci, "CI=true and {why}: nothing may be skipped in CI");
    eprintln!("SKIPPED {why}");
    false
}
