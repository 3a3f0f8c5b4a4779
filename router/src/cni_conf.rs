//! The node's CNI configuration, the flannel way: once the pod range and
//! the MTU are known weftd writes `[cni] conf_dir/conf_file` (a conflist
//! for weft's `bridge` or `ptp` + `host-local` + `portmap`) and
//! `[cni] subnet_env` (flannel's `FLANNEL_*` keys). Rendering is pure;
//! [`write_if_changed`] is the file edge (temp file, fsync, rename, only
//! when the content differs). [`NodeFiles::write`] does both and logs a
//! failure instead of returning it: routing goes on without the files.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::cidr::Cidr;
use crate::config::{Attach, Config, DataplaneConfig};

/// The CNI spec version the conflist declares.
pub const CNI_VERSION: &str = "1.0.0";

/// The MTU pods get: the configured TUN MTU, else the underlay MTU minus
/// the mode's encapsulation overhead (the underlay MTU for host-gw).
pub fn pod_mtu(dp: &DataplaneConfig, underlay_mtu: u32) -> u32 {
    dp.mtu
        .unwrap_or_else(|| underlay_mtu.saturating_sub(dp.mode.overhead()))
}

/// The (pod range, cluster range) pairs of a config, IPv4 first.
fn ranges(cfg: &Config) -> Vec<(Cidr, Cidr)> {
    let mut v = vec![(cfg.pod_cidr, cfg.cluster_cidr)];
    if let (Some(p), Some(c)) = (cfg.pod_cidr_v6, cfg.cluster_cidr_v6) {
        v.push((p, c));
    }
    v.sort_by_key(|(p, _)| !p.is_ipv4());
    v
}

/// The conflist weftd writes (pretty JSON, trailing newline).
pub fn render_conflist(cfg: &Config, mtu: u32) -> String {
    let ranges = ranges(cfg);
    let ipam = json!({
        "type": "host-local",
        "ranges": ranges
            .iter()
            .map(|(p, _)| json!([{ "subnet": p.to_string() }]))
            .collect::<Vec<_>>(),
        "routes": ranges
            .iter()
            .map(|(p, _)| json!({ "dst": if p.is_ipv4() { "0.0.0.0/0" } else { "::/0" } }))
            .collect::<Vec<_>>(),
    });
    // weftd masquerades (ip_masq); the plugin's own ipMasq stays off so
    // pod-to-pod traffic across nodes keeps the pod address.
    let main = match cfg.cni.attach {
        Attach::Bridge => json!({
            "type": "bridge",
            "bridge": cfg.cni.bridge,
            "isGateway": true,
            "hairpinMode": true,
            "ipMasq": false,
            "mtu": mtu,
            "ipam": ipam,
        }),
        Attach::Ptp => json!({
            "type": "ptp",
            "ipMasq": false,
            "mtu": mtu,
            "ipam": ipam,
        }),
    };
    let list = json!({
        "cniVersion": CNI_VERSION,
        "name": cfg.cni.network_name,
        "plugins": [
            main,
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_else(|_| Value::Null.to_string());
    s.push('\n');
    s
}

/// The first address of a range with its prefix length (`10.244.1.1/24`),
/// as flannel writes `FLANNEL_SUBNET`.
fn first_host(c: Cidr) -> String {
    let first = match c.network().addr() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(1).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(1).into()),
    };
    format!("{first}/{}", c.prefix_len())
}

/// flannel's `subnet.env` for this node (same keys and order as flanneld).
pub fn render_subnet_env(cfg: &Config, mtu: u32) -> String {
    let mut s = String::new();
    for (pod, cluster) in ranges(cfg) {
        let v6 = if pod.is_ipv4() { "" } else { "IPV6_" };
        s += &format!("FLANNEL_{v6}NETWORK={cluster}\n");
        s += &format!("FLANNEL_{v6}SUBNET={}\n", first_host(pod));
    }
    s += &format!("FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={}\n", cfg.ip_masq);
    s
}

/// Writes `content` to `path` unless it already holds exactly that:
/// parent directories created (0755), a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory. Returns whether the
/// file changed.
pub fn write_if_changed(path: &Path, content: &str, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A leading dot keeps runtimes that list the directory away from it.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|()| true)
}

/// The network config files in a directory listing that a runtime would
/// pick before `ours`: libcni loads `*.conf`, `*.conflist` and `*.json`
/// in name order and kubelet/containerd use the first.
pub fn shadowing<'a>(names: impl IntoIterator<Item = &'a str>, ours: &str) -> Vec<String> {
    let mut v: Vec<String> = names
        .into_iter()
        .filter(|n| {
            !n.starts_with('.')
                && *n < ours
                && [".conf", ".conflist", ".json"]
                    .iter()
                    .any(|ext| n.ends_with(ext))
        })
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The files weftd writes for the node's runtime and their state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFiles {
    /// The conflist path, when written.
    pub conflist: Option<PathBuf>,
    /// The subnet.env path, when written.
    pub subnet_env: Option<PathBuf>,
    /// Why a file could not be written (empty when all went well).
    pub errors: Vec<String>,
    /// Other network configs in `conf_dir` that runtimes load before ours.
    pub shadowed_by: Vec<String>,
}

impl NodeFiles {
    /// Writes (or leaves unchanged) the conflist and subnet.env for a node
    /// whose pods get `mtu`. Failures are logged and recorded, not returned:
    /// routing continues without the files.
    pub fn write(cfg: &Config, mtu: u32) -> Self {
        let mut out = Self::default();
        let mut one = |path: PathBuf, content: String, what: &str| -> Option<PathBuf> {
            match write_if_changed(&path, &content, 0o644) {
                Ok(changed) => {
                    info!(path = %path.display(), changed, mtu, "{what} written");
                    Some(path)
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "{what} not written; routing continues");
                    out.errors.push(format!("{}: {e}", path.display()));
                    None
                }
            }
        };
        let subnet = (!cfg.cni.subnet_env.as_os_str().is_empty()).then(|| {
            one(
                cfg.cni.subnet_env.clone(),
                render_subnet_env(cfg, mtu),
                "subnet.env",
            )
        });
        let conflist = cfg.cni.write_conflist.then(|| {
            one(
                cfg.cni.conf_dir.join(&cfg.cni.conf_file),
                render_conflist(cfg, mtu),
                "CNI conflist",
            )
        });
        out.subnet_env = subnet.flatten();
        out.conflist = conflist.flatten();
        if out.conflist.is_some()
            && let Ok(dir) = std::fs::read_dir(&cfg.cni.conf_dir)
        {
            let names: Vec<String> = dir
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            let before = shadowing(names.iter().map(String::as_str), &cfg.cni.conf_file);
            if !before.is_empty() {
                warn!(
                    dir = %cfg.cni.conf_dir.display(), files = ?before,
                    "runtimes pick the first network config by name: {} comes before {}",
                    before[0], cfg.cni.conf_file
                );
                out.shadowed_by = before;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
