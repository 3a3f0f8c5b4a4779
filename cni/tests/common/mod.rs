//! The CNI runtime weft-cni's tests drive plugins with is netsim's
//! ([`netsim::cni_runtime`]: libcni's exec and chaining rules, our binaries
//! or the reference ones, optionally inside a host netns). This module adds
//! what only these tests need: where our binaries are built, the reference
//! availability check, and host-local lease helpers.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used
)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use netsim::cni_runtime::{Attachment, REFERENCE_DIR, Reply, Runtime, inject, wait};

/// The directory holding our built plugin binaries.
pub fn ours_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_host-local"))
        .parent()
        .unwrap()
        .to_owned()
}

/// True when the reference plugins are installed (else tests comparing
/// against them say so and skip that part, unless CI=true).
pub fn reference_available(plugin: &str) -> bool {
    let ok = Path::new(REFERENCE_DIR).join(plugin).is_file();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but reference plugin {plugin} missing in {REFERENCE_DIR}"
        );
        eprintln!("skipping: reference {plugin} not installed in {REFERENCE_DIR}");
    }
    ok
}

/// A runtime over our built binaries.
pub fn ours() -> Runtime {
    Runtime::new(&[&ours_dir()])
}

/// A host-local config for `name` with `ipam` fields merged in.
pub fn host_local_conf(version: &str, name: &str, data_dir: &Path, ipam: Value) -> Value {
    let mut i = json!({"type": "host-local", "dataDir": data_dir});
    for (k, v) in ipam.as_object().cloned().unwrap_or_default() {
        i[k] = v;
    }
    json!({"cniVersion": version, "name": name, "type": "host-local", "ipam": i})
}

/// The lease directory's files (name -> content), excluding our index.
pub fn lease_files(data_dir: &Path, network: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let dir = data_dir.join(network);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let content = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.insert(name, content);
        }
    }
    out
}

/// The lease directory's files (name -> permission bits), excluding our index.
pub fn lease_modes(data_dir: &Path, network: &str) -> std::collections::BTreeMap<String, u32> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(data_dir.join(network)) {
        for e in rd.flatten() {
            let mode = e
                .metadata()
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0);
            out.insert(e.file_name().to_string_lossy().into_owned(), mode);
        }
    }
    out
}
