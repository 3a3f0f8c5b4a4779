//! Delegation to an IPAM plugin, the way the reference `ipam.ExecAdd`,
//! `ExecDel` and `ExecCheck` do it: find `<type>` in `CNI_PATH`, run it with
//! the caller's `CNI_*` environment (command replaced) and the same config
//! on stdin, and read its result or error JSON.
//!
//! `host-local` is run in-process by default (same code, same on-disk
//! store, no fork/exec); set `WEFT_CNI_EXEC_IPAM=1` to always exec.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::error::CniError;
use crate::skel::{Command, Invocation, Plugin};
use crate::spec::{CniResult, NetConf};

/// Finds plugin `name` in the `CNI_PATH` directories.
pub fn find_in_path(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::config(
            format!("invalid plugin type {name:?}"),
            "",
        ));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
            CniError::internal(
                format!(
                    "failed to find plugin {name:?} in path [{}]",
                    dirs.join(" ")
                ),
                "",
            )
        })
}

fn in_process(plugin_type: &str) -> Option<&'static dyn Plugin> {
    if std::env::var("WEFT_CNI_EXEC_IPAM").is_ok_and(|v| v == "1") {
        return None;
    }
    match plugin_type {
        "host-local" => Some(&crate::plugin::host_local::HostLocal),
        _ => None,
    }
}

fn sub_invocation(
    command: Command,
    netconf: &[u8],
    inv: &Invocation,
) -> Result<Invocation, CniError> {
    Ok(Invocation {
        command,
        net: NetConf::parse(netconf)?,
        stdin: netconf.to_vec(),
        ..inv.clone()
    })
}

/// Runs `binary` with `command` and returns its stdout on success.
pub fn exec_plugin(
    binary: &Path,
    command: Command,
    netconf: &[u8],
    inv: &Invocation,
) -> Result<Vec<u8>, CniError> {
    let path = std::env::join_paths(&inv.path)
        .map_err(|e| CniError::env("bad CNI_PATH", e.to_string()))?;
    let mut cmd = std::process::Command::new(binary);
    cmd.env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &inv.container_id)
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_ARGS", &inv.args_raw)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &inv.netns {
        Some(ns) => cmd.env("CNI_NETNS", ns),
        None => cmd.env_remove("CNI_NETNS"),
    };
    let what = format!("exec {}", binary.display());
    let mut child = cmd.spawn().map_err(|e| CniError::io(what.clone(), e))?;
    if let Some(mut si) = child.stdin.take() {
        si.write_all(netconf)
            .map_err(|e| CniError::io(what.clone(), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(what.clone(), e))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let reply: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    Err(reply
        .as_ref()
        .and_then(CniError::from_reply)
        .unwrap_or_else(|| {
            CniError::internal(
                format!(
                    "netplugin failed: {:?}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }))
}

/// ADD through IPAM plugin `plugin_type` with config `netconf`.
pub fn exec_add(
    plugin_type: &str,
    netconf: &[u8],
    inv: &Invocation,
) -> Result<CniResult, CniError> {
    if let Some(p) = in_process(plugin_type) {
        return p.add(&sub_invocation(Command::Add, netconf, inv)?);
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    let out = exec_plugin(&bin, Command::Add, netconf, inv)?;
    let v: Value = serde_json::from_slice(&out)
        .map_err(|e| CniError::decode(format!("decoding {plugin_type} result: {e}"), ""))?;
    let version = v
        .get("cniVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            NetConf::parse(netconf)
                .map(|n| n.cni_version)
                .unwrap_or_default()
        });
    CniResult::from_json(&v, &version)
}

/// DEL through IPAM plugin `plugin_type`.
pub fn exec_del(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    if let Some(p) = in_process(plugin_type) {
        return p.del(&sub_invocation(Command::Del, netconf, inv)?);
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    exec_plugin(&bin, Command::Del, netconf, inv).map(drop)
}

/// CHECK through IPAM plugin `plugin_type`.
pub fn exec_check(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    if let Some(p) = in_process(plugin_type) {
        return p.check(&sub_invocation(Command::Check, netconf, inv)?);
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    exec_plugin(&bin, Command::Check, netconf, inv).map(drop)
}

/// GC through IPAM plugin `plugin_type` (1.1.0).
pub fn exec_gc(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    if let Some(p) = in_process(plugin_type) {
        return p.gc(&sub_invocation(Command::Gc, netconf, inv)?);
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    exec_plugin(&bin, Command::Gc, netconf, inv).map(drop)
}

/// STATUS through IPAM plugin `plugin_type` (1.1.0).
pub fn exec_status(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    if let Some(p) = in_process(plugin_type) {
        return p.status(&sub_invocation(Command::Status, netconf, inv)?);
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    exec_plugin(&bin, Command::Status, netconf, inv).map(drop)
}
