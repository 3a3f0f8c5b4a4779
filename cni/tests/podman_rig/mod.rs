//! A private podman 4.3 for the CNI tests: its own containers.conf (CNI
//! backend, one plugin directory, runc with the cgroupfs manager, file
//! events and locks, lower ulimits), its own storage (vfs) and tmp dir, a
//! busybox-static root filesystem instead of an image, and a "host" network
//! namespace the podman commands run in (`nsenter --net`), so the bridge,
//! veths, routes and nftables the plugins create live and die with it.
//! Probes of what is left in the kernel and on disk after a container.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netsim::netns::Netns;
use serde_json::Value;

use crate::bridge_common::Lab;
use crate::common::{Reply, wait};

/// Upper bound of one podman command.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(30);
/// libcni's result cache.
pub const CNI_CACHE: &str = "/var/lib/cni/results";
/// What container A's httpd serves.
pub const PAGE: &str = "served by container A through weft-cni\n";

/// The network a conflist builder fills in.
#[derive(Debug, Clone)]
pub struct Net {
    /// The conflist `name` (podman's `--network`).
    pub name: String,
    /// host-local `dataDir`.
    pub lease_dir: PathBuf,
    /// A unique short prefix for kernel object names.
    pub prefix: String,
}

/// One private podman set up for one conflist and one plugin directory.
pub struct Podman {
    pub lab: Lab,
    pub outside: Netns,
    pub net: Net,
    pub rootfs: PathBuf,
}

impl Podman {
    /// Writes the private configuration, the conflist and the root
    /// filesystem, creates the host and outside namespaces.
    pub fn new(tag: &str, plugin_dir: &Path, conflist: &dyn Fn(&Net) -> Value) -> Self {
        let lab = Lab::new(tag);
        let outside = lab.outside();
        let dir = lab.dir.path().to_path_buf();
        let net = Net {
            name: format!("{}net", lab.prefix),
            lease_dir: dir.join("leases"),
            prefix: lab.prefix.clone(),
        };
        for d in ["net.d", "root", "runroot", "tmp", "leases"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(
            dir.join("containers.conf"),
            containers_conf(&dir, plugin_dir, &net.name),
        )
        .unwrap();
        std::fs::write(dir.join("storage.conf"), storage_conf(&dir)).unwrap();
        std::fs::write(
            dir.join("net.d").join(format!("{}.conflist", net.name)),
            conflist(&net).to_string(),
        )
        .unwrap();
        let rootfs = dir.join("rootfs");
        busybox_rootfs(&rootfs);
        Self {
            lab,
            outside,
            net,
            rootfs,
        }
    }

    /// The private directory (config, storage, leases, rootfs).
    pub fn dir(&self) -> &Path {
        self.lab.dir.path()
    }

    /// `podman args..` inside the host namespace with the private config,
    /// bounded by [`PODMAN_TIMEOUT`].
    pub fn podman(&self, args: &[&str]) -> Reply {
        let dir = self.dir();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.lab.host.name()))
            .arg("podman")
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .args(args)
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait(cmd.spawn().unwrap(), PODMAN_TIMEOUT)
    }

    /// Like [`Self::podman`] but panics with podman's output on failure.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let r = self.podman(args);
        assert!(
            r.ok(),
            "podman {args:?} failed (exit {}): {} {}",
            r.exit_code,
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// `podman inspect` of one container.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.podman_ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Veth interfaces in the host namespace (the uplink to outside excluded).
    pub fn veths(&self) -> Vec<String> {
        let out = self
            .lab
            .host
            .ip(&["-j", "link", "show", "type", "veth"])
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| *n != "out0")
            .map(str::to_owned)
            .collect()
    }

    /// host-local lease files (address -> content) of the network.
    pub fn leases(&self) -> Vec<(IpAddr, String)> {
        let Ok(rd) = std::fs::read_dir(self.net.lease_dir.join(&self.net.name)) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let ip = e.file_name().to_str()?.parse().ok()?;
                Some((ip, std::fs::read_to_string(e.path()).unwrap_or_default()))
            })
            .collect()
    }

    /// libcni's cached results of this network (`/var/lib/cni/results`,
    /// where podman 4.3's libcni keeps them whatever the configuration).
    pub fn cached_results(&self) -> Vec<String> {
        let head = format!("{}-", self.net.name);
        let Ok(rd) = std::fs::read_dir(CNI_CACHE) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(&head))
            .collect()
    }

    /// `nft -j list ruleset` of the host namespace.
    pub fn ruleset(&self) -> Ruleset {
        let out = self
            .lab
            .host
            .run("nft", &["-j", "list", "ruleset"])
            .unwrap();
        Ruleset(serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Pids of processes still working for this podman: any whose command
    /// line names the private directory (conmon, `podman container cleanup`).
    pub fn processes(&self) -> Vec<u32> {
        let needle = self.dir().to_string_lossy().into_owned();
        let me = std::process::id();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me && running(*pid))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Podman {
    /// Removes every container of this podman and stops, by pid, whatever
    /// still names the private directory; the namespaces go after.
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let left = wait_until(Duration::from_secs(10), || self.processes().is_empty());
        if !left {
            for pid in self.processes() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// The nftables rule set of a namespace, as `nft -j` prints it.
#[derive(Debug, Clone)]
pub struct Ruleset(pub Value);

impl Ruleset {
    fn objects(&self, kind: &str) -> Vec<&Value> {
        self.0["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get(kind))
            .collect()
    }

    /// `(family, table)` of every table.
    pub fn tables(&self) -> Vec<(String, String)> {
        self.objects("table")
            .into_iter()
            .map(|t| (str_of(&t["family"]), str_of(&t["name"])))
            .collect()
    }

    /// `family table chain` of every chain.
    pub fn chains(&self) -> Vec<String> {
        self.objects("chain")
            .into_iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    str_of(&c["family"]),
                    str_of(&c["table"]),
                    str_of(&c["name"])
                )
            })
            .collect()
    }

    /// Elements of every set and map in tables named `table`.
    pub fn elements(&self, table: &str) -> usize {
        ["set", "map"]
            .into_iter()
            .flat_map(|k| self.objects(k))
            .filter(|s| s["table"] == table)
            .map(|s| s["elem"].as_array().map_or(0, Vec::len))
            .sum()
    }

    /// True when some string anywhere in the rule set equals `ip`.
    pub fn mentions(&self, ip: &str) -> bool {
        fn walk(v: &Value, ip: &str) -> bool {
            match v {
                Value::String(s) => s == ip,
                Value::Array(a) => a.iter().any(|x| walk(x, ip)),
                Value::Object(o) => o.values().any(|x| walk(x, ip)),
                _ => false,
            }
        }
        walk(&self.0, ip)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// True while process `pid` exists and has not exited (a zombie waiting
/// for its parent to reap it counts as exited).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the command name's closing parenthesis.
        let state = s.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|r| r.starts_with('Z') || r.starts_with('X'))
    })
}

/// Polls `ok` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ok() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// containers.conf: only what makes podman private and runnable here.
fn containers_conf(dir: &Path, plugin_dir: &Path, network: &str) -> String {
    let d = dir.display();
    format!(
        r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{d}/net.d"
default_network = "{network}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/tmp"
"#,
        plugins = plugin_dir.display(),
    )
}

/// storage.conf: vfs (no overlay or fuse needed), private roots.
fn storage_conf(dir: &Path) -> String {
    let d = dir.display();
    format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n")
}

/// The applets the containers use, as symlinks to /bin/busybox.
const APPLETS: &[&str] = &["sh", "httpd", "wget", "ip", "timeout", "cat"];

/// A root filesystem of busybox-static: /bin/busybox, applet symlinks and
/// the page A serves in /www.
fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy(busybox_path(), bin.join("busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
    }
    std::fs::write(root.join("www").join("index.html"), PAGE).unwrap();
}

/// The busybox binary on `PATH`.
fn busybox_path() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// True when the installed busybox runs alone in a chroot (busybox-static;
/// Debian's dynamic `busybox` package would need libc in the rootfs).
pub fn busybox_is_static() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    if std::fs::copy(busybox_path(), bin.join("busybox")).is_err() {
        return false;
    }
    Command::new("chroot")
        .arg(dir.path())
        .args(["/bin/busybox", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
