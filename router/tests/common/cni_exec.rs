//! A minimal CNI runtime for root tests: runs a conflist's plugins the way
//! libcni does (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_PATH` in the environment, each plugin's config on
//! stdin with the list's `name` and `cniVersion`, ADD in order with
//! `prevResult` chained, DEL in reverse with the last result), inside a
//! node namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use netsim::netns::Netns;
use serde_json::Value;

/// The directory holding weft's CNI plugin binaries (`bridge`, `ptp`,
/// `host-local`, `portmap`), next to the built weftd; `None` (with the
/// reason printed) when they are not built. With CI=true their absence
/// fails the test.
pub fn plugin_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_weftd")).parent()?.to_owned();
    let missing: Vec<&str> = ["bridge", "ptp", "host-local", "portmap"]
        .into_iter()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let msg = format!(
        "weft's CNI plugins {missing:?} are not built in {} (cargo build -p weft-cni --bins)",
        dir.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {msg}"
    );
    eprintln!("skipping: {msg}");
    None
}

/// One attachment: container id, pod namespace, interface name.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// Name of the pod's network namespace (`/run/netns/<name>`).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

fn exec(
    node: &Netns,
    dir: &Path,
    cmd: &str,
    att: &Attachment,
    conf: &Value,
) -> Result<Value, String> {
    let ty = conf["type"].as_str().ok_or("plugin without type")?;
    let mut child = node
        .command(dir.join(ty).to_str().ok_or("path")?)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", format!("/run/netns/{}", att.netns))
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec {ty}: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(conf.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{ty} {cmd} timed out"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{ty} {cmd} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{ty} {cmd} result: {e}"))
}

/// The config plugin `i` of `list` gets, with `prev` as `prevResult`.
fn plugin_conf(list: &Value, i: usize, prev: &Value) -> Value {
    let mut c = list["plugins"][i].clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    if !prev.is_null() {
        c["prevResult"] = prev.clone();
    }
    c
}

/// ADD: every plugin in order; returns the final result.
pub fn add(node: &Netns, dir: &Path, list: &Value, att: &Attachment) -> Result<Value, String> {
    let mut prev = Value::Null;
    let n = list["plugins"].as_array().map_or(0, Vec::len);
    for i in 0..n {
        prev = exec(node, dir, "ADD", att, &plugin_conf(list, i, &prev))?;
    }
    Ok(prev)
}

/// DEL: every plugin in reverse order with the cached result.
pub fn del(
    node: &Netns,
    dir: &Path,
    list: &Value,
    att: &Attachment,
    result: &Value,
) -> Result<(), String> {
    let n = list["plugins"].as_array().map_or(0, Vec::len);
    for i in (0..n).rev() {
        exec(node, dir, "DEL", att, &plugin_conf(list, i, result))?;
    }
    Ok(())
}

/// The first address of a result (`10.244.1.2/24` → `10.244.1.2`).
pub fn first_ip(result: &Value) -> Option<String> {
    let a = result["ips"][0]["address"].as_str()?;
    Some(a.split('/').next()?.to_owned())
}
