//! systemd's notify protocol (`Type=notify`): one datagram per state
//! change to the unix socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`). `READY=1` once routes are programmed and
//! the CNI config is written, `STOPPING=1` when a stop begins, `WATCHDOG=1`
//! every half `WatchdogSec` when the service manager asks for it
//! (`WATCHDOG_USEC`, for this pid when `WATCHDOG_PID` is set). Without
//! `NOTIFY_SOCKET` every send is a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The service manager's notification socket, if any.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

/// Parses a `NOTIFY_SOCKET` value into a socket address.
pub fn notify_addr(value: &str) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET {value:?} is neither a path nor @abstract"),
        ))
    }
}

/// The watchdog ping interval: half of `WATCHDOG_USEC`, when set, positive,
/// and meant for `my_pid` (`WATCHDOG_PID` unset or equal).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid
        && p.trim().parse::<u32>().ok() != Some(my_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

impl Notifier {
    /// The notifier of this process's environment (none without
    /// `NOTIFY_SOCKET`; an unusable value is reported and ignored).
    pub fn from_env() -> Self {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|v| {
            let sock = UnixDatagram::unbound();
            match notify_addr(&v).and_then(|a| sock.map(|s| (s, a))) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "NOTIFY_SOCKET unusable");
                    None
                }
            }
        });
        Self { target }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one state message (`KEY=VALUE` lines); `Ok(false)` without a
    /// socket.
    pub fn send(&self, state: &str) -> io::Result<bool> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(state.as_bytes(), addr).map(|_| true),
            None => Ok(false),
        }
    }

    /// Sends a message and logs (instead of returning) a failure.
    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// A new `STATUS=` line.
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={status}\n"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1\nSTATUS=stopping\n");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(notify_addr("/run/systemd/notify").is_ok());
        assert!(notify_addr("@/org/freedesktop/systemd1/notify/1").is_ok());
        assert!(notify_addr("relative").is_err());
    }

    #[test]
    fn watchdog_interval_is_half_and_pid_checked() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_interval(Some("10000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("10000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn sends_to_a_bound_socket() {
        let dir = std::env::temp_dir().join(format!("weft-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                notify_addr(path.to_str().unwrap()).unwrap(),
            )),
        };
        n.ready("up");
        let mut buf = [0u8; 128];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up\n");
        assert!(!Notifier { target: None }.send("X=1").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
