//! Shared fixtures of the bridge/portmap black-box tests: a "host" namespace
//! the plugins run in, pod namespaces, an "outside" namespace wired to the
//! host, conflists, and bounded TCP probes.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netsim::netns::{Netns, unique_prefix};
use serde_json::{Value, json};

/// Host side address of the outside link, and the outside namespace's.
pub const HOST_OUT4: &str = "192.168.77.1";
pub const OUTSIDE4: &str = "192.168.77.2";

pub struct Lab {
    pub prefix: String,
    pub host: Netns,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        let prefix = unique_prefix(tag);
        let host = Netns::create(&format!("{prefix}-h")).unwrap();
        Self {
            prefix,
            host,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn host_name(&self) -> String {
        self.host.name().to_string()
    }

    pub fn pod(&self, n: usize) -> Netns {
        Netns::create(&format!("{}-p{n}", self.prefix)).unwrap()
    }

    /// An "outside" namespace linked to the host: host 192.168.77.1/24, outside .2,
    /// with no route back to the pod networks (so replies need masquerade).
    pub fn outside(&self) -> Netns {
        let o = Netns::create(&format!("{}-o", self.prefix)).unwrap();
        self.host
            .ip(&[
                "link",
                "add",
                "out0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                o.name(),
            ])
            .unwrap();
        self.host
            .ip(&["addr", "add", &format!("{HOST_OUT4}/24"), "dev", "out0"])
            .unwrap();
        self.host
            .ip(&["addr", "add", "fd77::1/64", "dev", "out0", "nodad"])
            .unwrap();
        self.host.ip(&["link", "set", "out0", "up"]).unwrap();
        o.ip(&["addr", "add", &format!("{OUTSIDE4}/24"), "dev", "eth0"])
            .unwrap();
        o.ip(&["addr", "add", "fd77::2/64", "dev", "eth0", "nodad"])
            .unwrap();
        o.ip(&["link", "set", "eth0", "up"]).unwrap();
        o
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Lease files (addresses) of network `net`.
    pub fn leases(&self, net: &str) -> Vec<String> {
        let d = self.dir.path().join(net);
        let Ok(rd) = std::fs::read_dir(&d) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect();
        v.sort();
        v
    }

    pub fn sh(&self, cmd: &str) -> String {
        let o = self.host.command("sh").args(["-c", cmd]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    pub fn nft(&self) -> String {
        self.sh("nft list ruleset")
    }

    pub fn veths(&self) -> Vec<String> {
        self.sh("ip -o link show type veth")
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with("veth"))
            .collect()
    }
}

/// A netns path for CNI_NETNS.
pub fn netns_path(ns: &Netns) -> String {
    format!("/run/netns/{}", ns.name())
}

/// The standard chain: bridge (gateway, ipMasq) + host-local v4/v6 + portmap.
pub fn chain(
    version: &str,
    net: &str,
    bridge: &str,
    dir: &Path,
    v4: &str,
    v6: &str,
    extra_bridge: Value,
) -> Value {
    let mut br = json!({
        "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": dir,
                 "ranges": [[{"subnet": v4}], [{"subnet": v6}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    });
    if let (Some(b), Some(x)) = (br.as_object_mut(), extra_bridge.as_object()) {
        for (k, v) in x {
            b.insert(k.clone(), v.clone());
        }
    }
    json!({"cniVersion": version, "name": net, "plugins": [
        br,
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]})
}

/// Runs `f` on a new thread inside namespace `name` (not waiting).
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// A TCP server inside `ns` on `addr` answering each of up to `n` connections
/// with the peer address it saw; stops after `n` or 20 s.
pub fn tcp_server(ns: &str, addr: &str, n: usize) -> JoinHandle<Vec<SocketAddr>> {
    let addr: SocketAddr = addr.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = spawn_in(ns, move || {
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        let start = Instant::now();
        let mut seen = Vec::new();
        while seen.len() < n && start.elapsed() < Duration::from_secs(20) {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    let _ = s.write_all(peer.to_string().as_bytes());
                    seen.push(peer);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        seen
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    h
}

/// Connects from inside `ns` to `target` and returns what the server said
/// (its view of our address), or the error.
pub fn tcp_probe(ns: &str, target: &str) -> Result<String, String> {
    let target: SocketAddr = target.parse().unwrap();
    spawn_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    })
    .join()
    .unwrap()
}

/// One ping (bounded) from `ns` to `dst`.
pub fn ping(ns: &Netns, dst: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "2", dst])
        .output()
        .unwrap()
        .status
        .success()
}

/// The address (without prefix) of the first result IP of a family.
pub fn result_ip(r: &Value, v6: bool) -> String {
    r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .find(|a| a.contains(':') == v6)
        .unwrap()
}
