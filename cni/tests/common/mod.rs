//! A test-side CNI runtime that execs plugin binaries exactly like libcni:
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH` in the environment (inherited environment kept), the plugin's
//! config on stdin, the plugin found by `type` in `CNI_PATH`. Conflists are
//! chained like libcni: each plugin's config gets the list's `name` and
//! `cniVersion`, `runtimeConfig` for the capabilities it declares, and
//! `prevResult`; ADD runs in order (the last result is cached), DEL in
//! reverse with the cached result, CHECK in order with the cached result,
//! GC with `cni.dev/valid-attachments`. The same runtime runs our binaries
//! or the reference ones (`/usr/lib/cni`), optionally inside a "host"
//! network namespace through `ip netns exec`.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Where the reference plugins live.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

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

/// One container attachment as the runtime sees it.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// `CNI_NETNS` (None: unset, e.g. DEL after the netns is gone).
    pub netns: Option<String>,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `ips`, `ipRanges`, ...).
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            netns: Some("/var/run/netns/none".to_owned()),
            args: Vec::new(),
            capability_args: Map::new(),
        }
    }

    pub fn with_netns(mut self, ns: Option<&str>) -> Self {
        self.netns = ns.map(str::to_owned);
        self
    }

    pub fn with_arg(mut self, k: &str, v: &str) -> Self {
        self.args.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn with_cap(mut self, k: &str, v: Value) -> Self {
        self.capability_args.insert(k.to_owned(), v);
        self
    }

    fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// What one plugin exec produced.
#[derive(Debug, Clone)]
pub struct Reply {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as JSON (Null when empty or not JSON).
    pub json: Value,
    pub elapsed: Duration,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }

    /// The error code (None on success or when the output is not an error JSON).
    pub fn code(&self) -> Option<u64> {
        if self.ok() {
            None
        } else {
            self.json.get("code").and_then(Value::as_u64)
        }
    }

    pub fn msg(&self) -> &str {
        self.json.get("msg").and_then(Value::as_str).unwrap_or("")
    }

    /// Panics with the full output unless the call succeeded.
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(
            self.ok(),
            "{what} failed (exit {}): stdout={} stderr={}",
            self.exit_code,
            self.stdout,
            self.stderr
        );
        self.json
    }
}

/// The runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `CNI_PATH` directories (searched in order for `type`).
    pub cni_path: Vec<PathBuf>,
    /// Run plugins inside this network namespace (`ip netns exec`).
    pub host_netns: Option<String>,
    /// Extra environment for the plugin processes.
    pub env: Vec<(String, String)>,
    /// Per-exec timeout.
    pub timeout: Duration,
}

impl Runtime {
    pub fn new(dirs: &[&Path]) -> Self {
        Self {
            cni_path: dirs.iter().map(|d| d.to_path_buf()).collect(),
            host_netns: None,
            env: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Our binaries.
    pub fn ours() -> Self {
        Self::new(&[&ours_dir()])
    }

    /// The reference binaries.
    pub fn reference() -> Self {
        Self::new(&[Path::new(REFERENCE_DIR)])
    }

    pub fn in_netns(mut self, ns: &str) -> Self {
        self.host_netns = Some(ns.to_owned());
        self
    }

    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Finds `plugin` in `CNI_PATH` like libcni's `FindInPath`.
    pub fn find(&self, plugin: &str) -> PathBuf {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {plugin} not found in {:?}", self.cni_path))
    }

    fn command(&self, command: &str, att: Option<&Attachment>, plugin: &str) -> Command {
        let bin = self.find(plugin);
        let mut cmd = match &self.host_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let path = std::env::join_paths(&self.cni_path).unwrap();
        cmd.env("CNI_COMMAND", command).env("CNI_PATH", path);
        cmd.env_remove("CNI_CONTAINERID")
            .env_remove("CNI_NETNS")
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_ARGS");
        if let Some(att) = att {
            cmd.env("CNI_CONTAINERID", &att.container_id)
                .env("CNI_IFNAME", &att.ifname);
            if let Some(ns) = &att.netns {
                cmd.env("CNI_NETNS", ns);
            }
            let args = att.args_string();
            if !args.is_empty() {
                cmd.env("CNI_ARGS", args);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts a plugin without waiting (concurrency tests).
    pub fn spawn(&self, command: &str, att: Option<&Attachment>, conf: &Value) -> Child {
        let plugin = conf["type"].as_str().expect("config has a type").to_owned();
        let mut child = self.command(command, att, &plugin).spawn().unwrap();
        let mut si = child.stdin.take().unwrap();
        // A plugin refusing its environment exits before reading stdin (as
        // the reference's skel does): the write then meets a closed pipe.
        let _ = si.write_all(conf.to_string().as_bytes());
        drop(si);
        child
    }

    /// Runs one plugin with raw stdin bytes and explicit environment
    /// overrides (None removes a variable): for bad-input tests.
    pub fn exec_raw(&self, plugin: &str, env: &[(&str, Option<&str>)], stdin: &[u8]) -> Reply {
        let mut cmd = self.command("ADD", None, plugin);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(stdin);
        drop(si);
        finish(child, start, self.timeout)
    }

    /// ADD of `plugin` for container `cid`, interface `ifname` in `netns`
    /// with raw stdin bytes (malformed-config tests).
    pub fn add_raw(
        &self,
        plugin: &str,
        cid: &str,
        ifname: &str,
        netns: &str,
        stdin: &[u8],
    ) -> Reply {
        let env = [
            ("CNI_CONTAINERID", Some(cid)),
            ("CNI_IFNAME", Some(ifname)),
            ("CNI_NETNS", Some(netns)),
        ];
        self.exec_raw(plugin, &env, stdin)
    }

    /// Runs one plugin: `command` with `conf` on stdin.
    pub fn exec(&self, command: &str, att: Option<&Attachment>, conf: &Value) -> Reply {
        let start = Instant::now();
        let child = self.spawn(command, att, conf);
        finish(child, start, self.timeout)
    }

    /// ADD/DEL/CHECK/STATUS/GC of a single-plugin config (libcni's
    /// `*Network` functions): capabilities and cached result handled as for lists.
    pub fn add(&self, conf: &Value, att: &Attachment) -> Reply {
        self.exec("ADD", Some(att), &inject(conf, None, None, att))
    }

    pub fn del(&self, conf: &Value, att: &Attachment, cached: Option<&Value>) -> Reply {
        self.exec("DEL", Some(att), &inject(conf, None, cached, att))
    }

    pub fn check(&self, conf: &Value, att: &Attachment, cached: Option<&Value>) -> Reply {
        self.exec("CHECK", Some(att), &inject(conf, None, cached, att))
    }

    /// ADD of a conflist: in order, each plugin gets the previous result.
    /// Returns the last result, or the first failure.
    pub fn add_list(&self, list: &Value, att: &Attachment) -> Result<Value, Reply> {
        let mut prev: Option<Value> = None;
        for p in plugins(list) {
            let conf = inject(&p, Some(list), prev.as_ref(), att);
            let r = self.exec("ADD", Some(att), &conf);
            if !r.ok() {
                return Err(r);
            }
            prev = Some(r.json);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL of a conflist: in reverse, each plugin gets the cached result
    /// (for cniVersion >= 0.4.0). Stops at the first failure like libcni.
    pub fn del_list(
        &self,
        list: &Value,
        att: &Attachment,
        cached: Option<&Value>,
    ) -> Result<(), Reply> {
        let cached = cached.filter(|_| version_at_least(list, "0.4.0"));
        for p in plugins(list).iter().rev() {
            let conf = inject(p, Some(list), cached, att);
            let r = self.exec("DEL", Some(att), &conf);
            if !r.ok() {
                return Err(r);
            }
        }
        Ok(())
    }

    /// CHECK of a conflist: in order, each plugin gets the cached result.
    pub fn check_list(&self, list: &Value, att: &Attachment, cached: &Value) -> Result<(), Reply> {
        for p in plugins(list) {
            let conf = inject(&p, Some(list), Some(cached), att);
            let r = self.exec("CHECK", Some(att), &conf);
            if !r.ok() {
                return Err(r);
            }
        }
        Ok(())
    }

    /// GC of a conflist with the attachments that are still valid.
    pub fn gc_list(&self, list: &Value, valid: &[Attachment]) -> Result<(), Reply> {
        let v: Vec<Value> = valid
            .iter()
            .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
            .collect();
        for p in plugins(list) {
            let mut conf = inject(&p, Some(list), None, &Attachment::new("", ""));
            conf["cni.dev/valid-attachments"] = Value::Array(v.clone());
            let r = self.exec("GC", None, &conf);
            if !r.ok() {
                return Err(r);
            }
        }
        Ok(())
    }

    /// STATUS of a conflist.
    pub fn status_list(&self, list: &Value) -> Result<(), Reply> {
        for p in plugins(list) {
            let conf = inject(&p, Some(list), None, &Attachment::new("", ""));
            let r = self.exec("STATUS", None, &conf);
            if !r.ok() {
                return Err(r);
            }
        }
        Ok(())
    }
}

fn finish(mut child: Child, start: Instant, timeout: Duration) -> Reply {
    // Bounded wait: poll, kill on timeout.
    loop {
        match child.try_wait().unwrap() {
            Some(_) => break,
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                break;
            }
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        exit_code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Waits for a spawned child (bounded) and collects its reply.
pub fn wait(child: Child, timeout: Duration) -> Reply {
    finish(child, Instant::now(), timeout)
}

fn plugins(list: &Value) -> Vec<Value> {
    list["plugins"].as_array().cloned().unwrap_or_default()
}

fn version_at_least(list: &Value, v: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').filter_map(|x| x.parse().ok()).collect() };
    parse(list["cniVersion"].as_str().unwrap_or("0.1.0")) >= parse(v)
}

/// libcni's `buildOneConfig`: name/cniVersion from the list, runtimeConfig
/// for declared capabilities, prevResult.
pub fn inject(
    plugin: &Value,
    list: Option<&Value>,
    prev: Option<&Value>,
    att: &Attachment,
) -> Value {
    let mut conf = plugin.clone();
    if let Some(list) = list {
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
    }
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    let mut rc = Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            if on.as_bool() == Some(true)
                && let Some(v) = att.capability_args.get(cap)
            {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    conf
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
