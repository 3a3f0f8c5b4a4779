//! wireguard-go beside weftd for the wireguard tests and benchmarks: a
//! node running Debian's wireguard-go in the foreground under the test's
//! pid, with a private /run (its control socket path is global) through
//! its own mount namespace, configured with `wg` through `nsenter`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netsim::process::ChildGuard;

use super::{Cluster, Node, Weftd, own_routes, pod_cidr, underlay};

/// wireguard-go in a node's namespace with a private /run.
pub struct WgGo {
    child: ChildGuard,
    pid: u32,
    log: PathBuf,
}

impl WgGo {
    pub fn start(node: &Node, dir: &Path) -> Self {
        let log = dir.join(format!("wggo-{}.log", node.n));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", node.ns.name(), "unshare", "-m"])
            .args(["--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && exec wireguard-go -f wg0");
        let child = ChildGuard::spawn(cmd, "wireguard-go", Some(&log)).unwrap();
        let pid = child.pid().unwrap();
        let w = Self { child, pid, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.wg(&["show", "wg0"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "wireguard-go did not start: {}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    /// `wg args..` inside wireguard-go's mount and network namespaces.
    pub fn wg(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "wg"])
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        // SIGTERM lets wireguard-go remove wg0; SIGKILL after 5 s.
        let _ = self.child.terminate(Duration::from_secs(5));
    }
}

pub fn sh(cmd: &str, input: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A `wg genkey` key in a 0600 file; returns (path, public key).
pub fn genkey(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = sh("wg genkey", "");
    let path = dir.join(name);
    fs::write(&path, format!("{key}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    (path, sh("wg pubkey", &key))
}

/// weftd's config for node `n` with one wireguard peer, node `peer`.
pub fn weftd_config(c: &Cluster, n: u8, key_file: &Path, peer: u8, peer_pub: &str) -> String {
    let cfg = c.config(
        n,
        "wireguard",
        &format!(
            "wireguard_private_key_file = {:?}",
            key_file.display().to_string()
        ),
    );
    // Only `peer` (a third node, when there is one, floods).
    let keep = cfg.split("\n[[static_routes]]").next().unwrap().to_owned();
    format!(
        "{keep}\n[[static_routes]]\npod_cidr = \"{}\"\nvia = \"{}\"\nwireguard_public_key = \"{peer_pub}\"\n",
        pod_cidr(peer),
        underlay(peer)
    )
}

/// Starts weftd (`bin`, default the built one) on node `n` and waits for
/// its route to node `peer`'s pods.
pub fn start_weftd(c: &mut Cluster, n: u8, config: &str, peer: u8, bin: Option<&str>) {
    let mut w = c.spawn_weftd(n, config);
    if let Some(bin) = bin {
        drop(w);
        let cfg = c.dir.join(format!("n{n}.toml"));
        let log = c.dir.join(format!("n{n}.log"));
        let mut cmd = c.node(n).ns.command(bin);
        cmd.arg("--config").arg(&cfg);
        w = Weftd::spawn(cmd, log);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = w.try_wait() {
            panic!("weftd exited early ({st}); log:\n{}", w.log_text());
        }
        if own_routes(&c.node(n).ns).contains(&pod_cidr(peer)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route; log:\n{}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.nodes[usize::from(n - 1)].weftd = Some(w);
}

/// wireguard-go on node `n` with node `peer` (weftd or wireguard-go) as
/// its peer.
pub fn start_wggo(c: &Cluster, n: u8, key: &Path, peer: u8, peer_pub: &str) -> WgGo {
    let node = c.node(n);
    let wg = WgGo::start(node, &c.dir);
    wg.wg(&[
        "set",
        "wg0",
        "listen-port",
        "51820",
        "private-key",
        &key.display().to_string(),
        "peer",
        peer_pub,
        "endpoint",
        &format!("{}:51820", underlay(peer)),
        "allowed-ips",
        &pod_cidr(peer),
    ])
    .unwrap();
    node.ns
        .ip(&["link", "set", "wg0", "mtu", "1420", "up"])
        .unwrap();
    node.ns
        .ip(&["route", "add", &pod_cidr(peer), "dev", "wg0"])
        .unwrap();
    wg
}
