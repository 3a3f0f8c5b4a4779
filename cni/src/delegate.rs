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

/// How to reach the delegated plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In-process for plugins this crate implements (unless
    /// `WEFT_CNI_EXEC_IPAM=1`), exec for the rest.
    Auto,
    /// Always exec the binary from `CNI_PATH`.
    Exec,
}

fn in_process(plugin_type: &str, mode: Mode) -> Option<&'static dyn Plugin> {
    if mode == Mode::Exec || std::env::var("WEFT_CNI_EXEC_IPAM").is_ok_and(|v| v == "1") {
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
    add_with(Mode::Auto, plugin_type, netconf, inv)
}

/// [`exec_add`] with an explicit [`Mode`].
pub fn add_with(
    mode: Mode,
    plugin_type: &str,
    netconf: &[u8],
    inv: &Invocation,
) -> Result<CniResult, CniError> {
    if let Some(p) = in_process(plugin_type, mode) {
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

/// DEL, CHECK, GC or STATUS through plugin `plugin_type` with an explicit [`Mode`].
pub fn run_with(
    mode: Mode,
    command: Command,
    plugin_type: &str,
    netconf: &[u8],
    inv: &Invocation,
) -> Result<(), CniError> {
    if let Some(p) = in_process(plugin_type, mode) {
        let sub = sub_invocation(command, netconf, inv)?;
        return match command {
            Command::Del => p.del(&sub),
            Command::Check => p.check(&sub),
            Command::Gc => p.gc(&sub),
            Command::Status => p.status(&sub),
            Command::Add | Command::Version => Err(CniError::internal(
                format!("run_with cannot run {}", command.as_str()),
                "",
            )),
        };
    }
    let bin = find_in_path(plugin_type, &inv.path)?;
    exec_plugin(&bin, command, netconf, inv).map(drop)
}

/// DEL through IPAM plugin `plugin_type`.
pub fn exec_del(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    run_with(Mode::Auto, Command::Del, plugin_type, netconf, inv)
}

/// CHECK through IPAM plugin `plugin_type`.
pub fn exec_check(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    run_with(Mode::Auto, Command::Check, plugin_type, netconf, inv)
}

/// GC through IPAM plugin `plugin_type` (1.1.0).
pub fn exec_gc(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    run_with(Mode::Auto, Command::Gc, plugin_type, netconf, inv)
}

/// STATUS through IPAM plugin `plugin_type` (1.1.0).
pub fn exec_status(plugin_type: &str, netconf: &[u8], inv: &Invocation) -> Result<(), CniError> {
    run_with(Mode::Auto, Command::Status, plugin_type, netconf, inv)
}
