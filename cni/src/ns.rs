//! Entering a container's network namespace: work runs on a short-lived
//! dedicated thread that joined the namespace, so the calling thread (and the
//! process) never changes namespace. Netlink sockets opened there stay bound
//! to that namespace after the thread ends.

use std::fs::File;
use std::path::Path;

/// Namespace errors.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// The netns path could not be opened.
    #[error("failed to open netns {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// setns(2) failed.
    #[error("failed to enter netns: {0}")]
    Enter(nix::Error),
    /// The worker thread panicked.
    #[error("netns worker thread panicked")]
    Panicked,
}

impl NsError {
    /// True when the namespace does not exist (anymore).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
}

impl NetNs {
    /// Opens the namespace at `path` (e.g. `/run/netns/x` or `/proc/<pid>/ns/net`).
    pub fn open(path: &Path) -> Result<Self, NsError> {
        File::open(path)
            .map(|file| Self { file })
            .map_err(|source| NsError::Open {
                path: path.display().to_string(),
                source,
            })
    }

    /// The namespace file (for `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Moves the calling thread into this namespace for good. For plugins
    /// whose whole work happens in the container's namespace (loopback,
    /// tuning): no worker thread to start. Call it before opening sockets
    /// or starting a runtime; files are unaffected (another namespace kind).
    pub fn enter(&self) -> Result<(), NsError> {
        nix::sched::setns(&self.file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(NsError::Enter)
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&self.file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(NsError::Enter)?;
                Ok(f())
            })
            .join()
            .map_err(|_| NsError::Panicked)?
        })
    }
}

/// Writes a sysctl under `/proc/sys` in the calling thread's namespace
/// (`key` like `net/ipv4/ip_forward`).
pub fn write_sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
}

/// Reads a sysctl under `/proc/sys`.
pub fn read_sysctl(key: &str) -> std::io::Result<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(key)).map(|s| s.trim().to_string())
}
