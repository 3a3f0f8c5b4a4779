//! The `weft` meta-plugin, in flannel's role (a drop-in for flannel's CNI
//! plugin: install it as `flannel` too). It reads the node's subnet file
//! ([`subnet`]), renders a delegate config ([`conf`]: bridge + host-local
//! by default), keeps that config under `dataDir` by container id, and runs
//! the delegate plugin from `CNI_PATH`. DEL replays the kept config, so it
//! works after the node's subnet changed, then removes it.
//!
//! Beyond flannel: a failed delegate ADD is rolled back (delegate DEL, kept
//! config removed); CHECK replays the kept config to the delegate; STATUS
//! reports a missing or incomplete subnet file (code 50); GC hands the
//! valid attachments to the delegate and drops kept configs of this
//! network's containers that are no longer valid.

pub mod conf;
pub mod subnet;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::delegate::{self, Mode};
use crate::error::CniError;
use crate::skel::{Command, Invocation, Plugin};
use crate::spec::{CniResult, NetConf};
use conf::WeftConf;
use subnet::SubnetEnv;

/// The weft meta-plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Weft;

fn load_env(path: &str, unavailable: bool) -> Result<SubnetEnv, CniError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let msg = format!("{path} does not exist (node agent not ready?)");
            return Err(if unavailable {
                CniError::not_available(msg, "")
            } else {
                CniError::try_later(msg, "")
            });
        }
        Err(e) => return Err(CniError::io(format!("reading {path}"), e)),
    };
    SubnetEnv::parse(&text, path).map_err(|m| {
        if unavailable {
            CniError::not_available(m, "")
        } else {
            CniError::internal(m, "")
        }
    })
}

fn kept_path(conf: &WeftConf, cid: &str) -> Result<PathBuf, CniError> {
    crate::skel::validate_container_id(cid)?;
    Ok(Path::new(&conf.data_dir()).join(cid))
}

fn delegate_type(body: &[u8]) -> Result<String, CniError> {
    let n = NetConf::parse(body)?;
    if n.plugin_type.is_empty() {
        return Err(CniError::config("kept delegate config has no type", ""));
    }
    Ok(n.plugin_type)
}

/// `prevResult` (and any other `extra` keys) added to a kept config.
fn with_keys(body: &[u8], extra: &[(&str, Option<&Value>)]) -> Result<Vec<u8>, CniError> {
    let mut v: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| CniError::decode(format!("kept delegate config: {e}"), ""))?;
    for (k, val) in extra {
        if let Some(val) = val {
            v.insert((*k).to_string(), (*val).clone());
        }
    }
    serde_json::to_vec(&v).map_err(|e| CniError::internal(e.to_string(), ""))
}

/// Errors that replaying the same config can never get past (version,
/// unsupported field, decode, invalid config).
fn never_accepted(e: &CniError) -> bool {
    matches!(e.code(), 1 | 2 | 6 | 7)
}

impl Plugin for Weft {
    fn name(&self) -> &'static str {
        "weft"
    }

    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        let conf = WeftConf::parse(&inv.stdin)?;
        let env = load_env(&conf.subnet_file(), false)?;
        let d = conf.delegate(&env)?;
        let t = d
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("bridge")
            .to_string();
        let body = serde_json::to_vec(&d).map_err(|e| CniError::internal(e.to_string(), ""))?;
        let path = kept_path(&conf, &inv.container_id)?;
        crate::plugin::private_file::write_private(&path, &body, "delegate config")?;
        match delegate::add_with(Mode::Auto, &t, &body, inv) {
            Ok(r) => Ok(r),
            Err(e) => {
                // Keep the config only when a later DEL could still use it.
                match delegate::run_with(Mode::Auto, Command::Del, &t, &body, inv) {
                    Err(d) if !never_accepted(&d) => {}
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Err(e)
            }
        }
    }

    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = WeftConf::parse(&inv.stdin)?;
        let path = kept_path(&conf, &inv.container_id)?;
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CniError::io(format!("reading {}", path.display()), e)),
        };
        let Ok(t) = delegate_type(&body) else {
            // Nothing can be replayed from it; as flannel, DEL succeeds.
            let _ = std::fs::remove_file(&path);
            return Ok(());
        };
        delegate::run_with(Mode::Auto, Command::Del, &t, &body, inv)?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    }

    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = WeftConf::parse(&inv.stdin)?;
        let path = kept_path(&conf, &inv.container_id)?;
        let body = std::fs::read(&path).map_err(|e| {
            CniError::internal(
                format!(
                    "no delegate config kept for container {} ({}): {e}",
                    inv.container_id,
                    path.display()
                ),
                "",
            )
        })?;
        let t = delegate_type(&body)?;
        let body = with_keys(&body, &[("prevResult", inv.net.prev_result.as_ref())])?;
        delegate::run_with(Mode::Auto, Command::Check, &t, &body, inv)
    }

    fn status(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = WeftConf::parse(&inv.stdin)?;
        let env = load_env(&conf.subnet_file(), true)?;
        let d = conf.delegate(&env)?;
        let t = d.get("type").and_then(Value::as_str).unwrap_or("bridge");
        let body = serde_json::to_vec(&d).map_err(|e| CniError::internal(e.to_string(), ""))?;
        delegate::run_with(Mode::Auto, Command::Status, t, &body, inv)
    }

    fn gc(&self, inv: &Invocation) -> Result<(), CniError> {
        let conf = WeftConf::parse(&inv.stdin)?;
        let raw: Value =
            serde_json::from_slice(&inv.stdin).map_err(|e| CniError::decode(e.to_string(), ""))?;
        let valid = raw.get("cni.dev/valid-attachments");
        let valid_ids: Vec<&str> = valid
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.get("containerID").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(env) = load_env(&conf.subnet_file(), true) {
            let d = conf.delegate(&env)?;
            let t = d.get("type").and_then(Value::as_str).unwrap_or("bridge");
            let body = serde_json::to_vec(&d).map_err(|e| CniError::internal(e.to_string(), ""))?;
            let body = with_keys(&body, &[("cni.dev/valid-attachments", valid)])?;
            delegate::run_with(Mode::Auto, Command::Gc, t, &body, inv)?;
        }
        let Ok(rd) = std::fs::read_dir(conf.data_dir()) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let cid = e.file_name().to_string_lossy().into_owned();
            if valid_ids.contains(&cid.as_str()) {
                continue;
            }
            let ours = std::fs::read(e.path())
                .ok()
                .and_then(|b| NetConf::parse(&b).ok())
                .is_some_and(|n| n.name == inv.net.name);
            if ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}
