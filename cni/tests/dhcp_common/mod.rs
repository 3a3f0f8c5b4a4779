//! Fixtures of the dhcp tests: a "host" namespace with a bridge and a real
//! DHCP server (dnsmasq, own pid/lease/log files in a temp dir, killed by
//! pid), pods plugged into the bridge, and dhcp daemons (ours or the
//! reference) started and stopped by pid.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netsim::netns::{Netns, unique_prefix};
use serde_json::{Value, json};

/// Polls `f` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One dnsmasq lease line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLease {
    pub expiry: u64,
    pub mac: String,
    pub ip: String,
    pub client_id: String,
}

/// dnsmasq's encoding of a client id (type byte 0 + text), as in its lease file.
pub fn client_id_hex(text: &str) -> String {
    std::iter::once(0u8)
        .chain(text.bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A host namespace with bridge `br0` at `<net>.1/24` and dnsmasq serving
/// `<net>.100`–`<net>.150` on it.
pub struct DhcpLab {
    pub prefix: String,
    pub host: Netns,
    pub dir: tempfile::TempDir,
    pub net: String,
    dnsmasq: Option<Child>,
    pods: usize,
}

impl DhcpLab {
    /// `t1`/`t2`: seconds sent as options 58/59 (dnsmasq's minimum lease is 2 min).
    pub fn new(tag: &str, net: &str, t1_t2: Option<(u32, u32)>) -> Self {
        let prefix = unique_prefix(tag);
        let host = Netns::create(&format!("{prefix}-h")).unwrap();
        host.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
        host.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "br0"])
            .unwrap();
        host.ip(&["link", "set", "br0", "up"]).unwrap();
        let mut lab = Self {
            prefix,
            host,
            dir: tempfile::tempdir().unwrap(),
            net: net.to_owned(),
            dnsmasq: None,
            pods: 0,
        };
        lab.start_dnsmasq(t1_t2);
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_dnsmasq(&mut self, t1_t2: Option<(u32, u32)>) {
        let d = |n: &str| self.path(n).display().to_string();
        let mut cmd = self.host.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--no-ping",
            "--log-dhcp",
            "-u",
            "root",
        ])
        .arg(format!(
            "--dhcp-range={0}.100,{0}.150,255.255.255.0,2m",
            self.net
        ))
        .arg(format!("--dhcp-option=option:router,{}.1", self.net))
        .arg(format!("--dhcp-leasefile={}", d("leases")))
        .arg(format!("--pid-file={}", d("dnsmasq.pid")))
        .arg(format!("--log-facility={}", d("dnsmasq.log")));
        if let Some((t1, t2)) = t1_t2 {
            cmd.arg(format!("--dhcp-option=option:T1,{t1}s"))
                .arg(format!("--dhcp-option=option:T2,{t2}s"));
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self.dnsmasq = Some(cmd.spawn().unwrap());
        let log = self.path("dnsmasq.log");
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
                .is_ok_and(|s| s.contains("DHCP, IP range"))),
            "dnsmasq did not start"
        );
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the server.
    pub fn pause_server(&self, paused: bool) {
        let pid = self.dnsmasq.as_ref().unwrap().id().to_string();
        let sig = if paused { "-STOP" } else { "-CONT" };
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// dnsmasq's leases. dnsmasq rewrites the file in place (truncate,
    /// then write), so a read is trusted only when the next one, 50 ms
    /// later, agrees.
    pub fn leases(&self) -> Vec<ServerLease> {
        let mut last = self.leases_once();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.leases_once();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    fn leases_once(&self) -> Vec<ServerLease> {
        std::fs::read_to_string(self.path("leases"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(ServerLease {
                    expiry: f.first()?.parse().ok()?,
                    mac: (*f.get(1)?).to_owned(),
                    ip: (*f.get(2)?).to_owned(),
                    client_id: (*f.get(4)?).to_owned(),
                })
            })
            .collect()
    }

    pub fn lease_of(&self, client_id: &str) -> Option<ServerLease> {
        let hex = client_id_hex(client_id);
        self.leases().into_iter().find(|l| l.client_id == hex)
    }

    /// Lines of dnsmasq's log containing `what`.
    pub fn log_count(&self, what: &str) -> usize {
        std::fs::read_to_string(self.path("dnsmasq.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .count()
    }

    /// A pod namespace (no interface yet).
    pub fn pod(&mut self) -> Netns {
        self.pods += 1;
        Netns::create(&format!("{}-p{}", self.prefix, self.pods)).unwrap()
    }

    /// A pod whose `eth0` is a veth already plugged into `br0` (down, no address).
    pub fn plugged_pod(&mut self) -> Netns {
        let pod = self.pod();
        let hv = format!("{}v{}", self.prefix, self.pods);
        self.host
            .ip(&[
                "link",
                "add",
                &hv,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name(),
            ])
            .unwrap();
        self.host
            .ip(&["link", "set", &hv, "master", "br0", "up"])
            .unwrap();
        pod
    }

    pub fn host_name(&self) -> String {
        self.host.name().to_owned()
    }

    /// True when `ip` is in the server's range.
    pub fn in_range(&self, ip: &str) -> bool {
        ip.strip_prefix(&format!("{}.", self.net))
            .and_then(|h| h.parse::<u8>().ok())
            .is_some_and(|h| (100..=150).contains(&h))
    }
}

impl Drop for DhcpLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running dhcp daemon (ours or the reference), stopped by pid on drop.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `binary daemon -socketpath <dir>/<name>.sock <extra>` with
    /// stderr to `<dir>/<name>.log`, and waits for the socket.
    pub fn start(binary: &Path, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(binary)
            .arg("daemon")
            .arg("-socketpath")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let d = Self {
            child: Some(child),
            socket,
            log,
        };
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(&d.socket).is_ok()
            }),
            "daemon {name} did not listen"
        );
        d
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded).
    pub fn terminate(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let stopped = wait_until(Duration::from_secs(5), || {
                c.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An IPAM-only dhcp config.
pub fn ipam_conf(version: &str, net: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": net,
        "type": "dhcp",
        "ipam": {"type": "dhcp", "daemonSocketPath": socket}
    })
}

/// A bridge config on `br0` with dhcp IPAM.
pub fn bridge_conf(version: &str, net: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": net,
        "type": "bridge",
        "bridge": "br0",
        "ipam": {"type": "dhcp", "daemonSocketPath": socket}
    })
}
