//! Attaching pods the way kubelet and containerd do: exec weft's CNI
//! plugins with the conflist weftd wrote for the node. `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS=/run/netns/<pod>`, `CNI_IFNAME`,
//! `CNI_PATH` in the environment, each plugin's config on stdin with the
//! list's `name` and `cniVersion`; ADD runs the chain in order with
//! `prevResult`, CHECK and DEL pass the cached result, DEL in reverse. The
//! plugins run through [`crate::cni_runtime`], the one CNI runtime here.
//!
//! One deliberate difference from a runtime: host-local's `dataDir` is set
//! to `<node files>/ipam` in the config handed to the plugin, so leases stay
//! in the run directory instead of the host's `/var/lib/cni/networks`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::attach::{AttachRequest, PodAttach};
use crate::cni_runtime::{Attachment as RuntimeAttachment, Runtime, build_config};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// The conflist file weftd writes under its `[cni] conf_dir`.
pub const CONFLIST: &str = "net.d/10-weft.conflist";
/// How long one plugin exec may take.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The plugins a weft node's conflist chains.
pub const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "ptp"];

/// One attachment, as a runtime identifies it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// Pod namespace name (`CNI_NETNS=/run/netns/<name>`).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

fn cni_err(msg: String) -> Error {
    Error::Topology(format!("CNI: {msg}"))
}

/// Execs one plugin inside `node` through [`crate::cni_runtime`] and
/// parses its stdout.
fn exec(node: &Netns, dir: &Path, cmd: &str, att: &Attachment, conf: &Value) -> Result<Value> {
    let ty = conf["type"]
        .as_str()
        .ok_or_else(|| cni_err("plugin without type".into()))?;
    let rt = Runtime::new(&[dir])
        .in_netns(node.name())
        .with_timeout(PLUGIN_TIMEOUT);
    let reply = rt.exec(cmd, Some(&att.to_runtime()), conf);
    if !reply.ok() {
        return Err(cni_err(format!(
            "{ty} {cmd} for {} failed (exit {}): {}{}",
            att.container_id,
            reply.exit_code,
            reply.stdout.trim(),
            reply.stderr.trim()
        )));
    }
    if reply.stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&reply.stdout).map_err(|e| cni_err(format!("{ty} {cmd} result: {e}")))
}

impl Attachment {
    /// The runtime's view: `CNI_NETNS=/run/netns/<netns>`.
    pub fn to_runtime(&self) -> RuntimeAttachment {
        RuntimeAttachment::new(&self.container_id, &self.ifname)
            .with_netns(Some(&format!("/run/netns/{}", self.netns)))
    }
}

/// Per-attachment inputs beyond the environment: host-local's `dataDir`
/// and the `runtimeConfig` capabilities (e.g. `portMappings`), which go
/// only to plugins declaring them in `capabilities`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    /// host-local's `dataDir`.
    pub data_dir: Option<&'a Path>,
    /// `runtimeConfig` keys offered to capable plugins.
    pub runtime: Option<&'a Value>,
}

/// The config plugin `i` of `list` gets: the list's `name` and
/// `cniVersion`, `prev` as `prevResult`, `ipam.dataDir` for host-local
/// and the `runtimeConfig` keys it declares in `capabilities`.
pub fn plugin_conf(list: &Value, i: usize, prev: &Value, extra: Extra<'_>) -> Value {
    let data_dir = extra.data_dir;
    let caps = extra
        .runtime
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let prev = (!prev.is_null()).then_some(prev);
    let mut c = build_config(&list["plugins"][i], Some(list), prev, &caps);
    if let Some(d) = data_dir
        && c["ipam"]["type"] == "host-local"
    {
        c["ipam"]["dataDir"] = Value::String(d.display().to_string());
    }
    c
}

fn plugin_count(list: &Value) -> usize {
    list["plugins"].as_array().map_or(0, Vec::len)
}

/// ADD: every plugin in order, each with the previous result; returns the
/// final result.
pub fn add(
    node: &Netns,
    dir: &Path,
    list: &Value,
    att: &Attachment,
    extra: Extra<'_>,
) -> Result<Value> {
    let mut prev = Value::Null;
    for i in 0..plugin_count(list) {
        prev = exec(node, dir, "ADD", att, &plugin_conf(list, i, &prev, extra))?;
    }
    Ok(prev)
}

/// CHECK: every plugin in order with the cached result.
pub fn check(
    node: &Netns,
    dir: &Path,
    list: &Value,
    att: &Attachment,
    result: &Value,
    extra: Extra<'_>,
) -> Result<()> {
    for i in 0..plugin_count(list) {
        exec(
            node,
            dir,
            "CHECK",
            att,
            &plugin_conf(list, i, result, extra),
        )?;
    }
    Ok(())
}

/// DEL: every plugin in reverse order with the cached result (which may be
/// null: DEL must work without one).
pub fn del(
    node: &Netns,
    dir: &Path,
    list: &Value,
    att: &Attachment,
    result: &Value,
    extra: Extra<'_>,
) -> Result<()> {
    for i in (0..plugin_count(list)).rev() {
        exec(node, dir, "DEL", att, &plugin_conf(list, i, result, extra))?;
    }
    Ok(())
}

/// The first IPv4 address of a result (`10.244.1.2/24` → `10.244.1.2`).
pub fn first_ipv4(result: &Value) -> Option<Ipv4Addr> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        ip["address"]
            .as_str()?
            .split('/')
            .next()?
            .parse::<Ipv4Addr>()
            .ok()
    })
}

/// The host-side interface of a result (the one without a sandbox).
pub fn host_interface(result: &Value) -> Option<String> {
    result["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i.get("sandbox").is_none_or(Value::is_null) && i["name"] != "cni0")
        .and_then(|i| i["name"].as_str().map(str::to_owned))
}

/// The directory of weft's plugin binaries next to `weftd`, or the reason
/// it is unusable.
pub fn plugin_dir_next_to(weftd: &Path) -> std::result::Result<PathBuf, String> {
    let dir = weftd.parent().map(Path::to_path_buf).unwrap_or_default();
    let missing: Vec<&str> = PLUGINS
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!(
            "weft's CNI plugins {missing:?} are not built in {} (cargo build -p weft-cni --bins)",
            dir.display()
        ))
    }
}

/// Reads the conflist weftd wrote into `files_dir`.
pub fn read_conflist(files_dir: &Path) -> Result<Value> {
    let path = files_dir.join(CONFLIST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| cni_err(format!("{}: {e}", path.display())))
}

/// [`PodAttach`] through weft's CNI plugins and the node's conflist. Keeps
/// each pod's ADD result, as a runtime caches it, for CHECK and DEL.
#[derive(Debug)]
pub struct CniAttach {
    plugins: PathBuf,
    results: Mutex<HashMap<String, Value>>,
}

impl CniAttach {
    /// Plugins from `plugins` (a `CNI_PATH` directory).
    pub fn new(plugins: impl Into<PathBuf>) -> Self {
        Self {
            plugins: plugins.into(),
            results: Mutex::new(HashMap::new()),
        }
    }

    /// The plugin directory.
    pub fn plugins(&self) -> &Path {
        &self.plugins
    }

    fn att(req: &AttachRequest<'_>) -> Attachment {
        Attachment {
            container_id: req.container_id.clone(),
            netns: req.pod.name().to_owned(),
            ifname: req.ifname.to_owned(),
        }
    }

    /// Runs CHECK or DEL (`op`) of the node's chain with the pod's cached
    /// ADD result.
    fn with_cached(
        &self,
        req: &AttachRequest<'_>,
        op: fn(&Netns, &Path, &Value, &Attachment, &Value, Extra<'_>) -> Result<()>,
    ) -> Result<()> {
        let list = read_conflist(req.files_dir)?;
        let data = ipam_dir(req.files_dir);
        let extra = Extra {
            data_dir: Some(&data),
            runtime: None,
        };
        let result = self.cached(&req.container_id);
        op(
            req.node,
            &self.plugins,
            &list,
            &Self::att(req),
            &result,
            extra,
        )
    }

    fn cached(&self, id: &str) -> Value {
        self.results
            .lock()
            .map(|m| m.get(id).cloned().unwrap_or(Value::Null))
            .unwrap_or(Value::Null)
    }
}

/// Where host-local keeps a node's leases.
pub fn ipam_dir(files_dir: &Path) -> PathBuf {
    files_dir.join("ipam")
}

impl PodAttach for CniAttach {
    fn attach(&self, req: &AttachRequest<'_>) -> Result<crate::attach::Attached> {
        let list = read_conflist(req.files_dir)?;
        let data = ipam_dir(req.files_dir);
        let extra = Extra {
            data_dir: Some(&data),
            runtime: None,
        };
        let result = add(req.node, &self.plugins, &list, &Self::att(req), extra)?;
        let ip = first_ipv4(&result)
            .ok_or_else(|| cni_err(format!("ADD result without an IPv4 address: {result}")))?;
        let host_veth = host_interface(&result).unwrap_or_default();
        if let Ok(mut m) = self.results.lock() {
            m.insert(req.container_id.clone(), result);
        }
        Ok(crate::attach::Attached { ip, host_veth })
    }

    fn check(&self, req: &AttachRequest<'_>) -> Result<()> {
        self.with_cached(req, check)
    }

    fn detach(&self, req: &AttachRequest<'_>) -> Result<()> {
        self.with_cached(req, del)?;
        if let Ok(mut m) = self.results.lock() {
            m.remove(&req.container_id);
        }
        Ok(())
    }

    fn needs_node_config(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugin_conf_chains_and_keeps_leases_local() {
        let list = json!({
            "cniVersion": "1.0.0", "name": "weft",
            "plugins": [
                {"type": "bridge", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        let rt = json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {}});
        let extra = Extra {
            data_dir: Some(Path::new("/r/ipam")),
            runtime: Some(&rt),
        };
        let c = plugin_conf(&list, 0, &Value::Null, extra);
        assert!(c.get("runtimeConfig").is_none());
        assert_eq!(c["name"], "weft");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert!(c.get("prevResult").is_none());
        assert_eq!(c["ipam"]["dataDir"], "/r/ipam");
        let prev = json!({"ips": [{"address": "10.244.1.2/24"}]});
        let c = plugin_conf(&list, 1, &prev, extra);
        assert_eq!(c["prevResult"], prev);
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert!(c.get("ipam").is_none());
        assert_eq!(first_ipv4(&prev), Some(Ipv4Addr::new(10, 244, 1, 2)));
    }

    #[test]
    fn host_interface_is_the_one_without_sandbox() {
        let r = json!({"interfaces": [
            {"name": "cni0", "mac": "x"},
            {"name": "veth1234", "mac": "y"},
            {"name": "eth0", "mac": "z", "sandbox": "/run/netns/p"}
        ]});
        assert_eq!(host_interface(&r).as_deref(), Some("veth1234"));
        assert_eq!(first_ipv4(&json!({})), None);
    }
}
