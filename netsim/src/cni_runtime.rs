//! A CNI runtime that execs plugin binaries the way libcni does:
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH` in the environment (the rest of the environment inherited),
//! the plugin's config on stdin, the plugin found by `type` in `CNI_PATH`.
//!
//! Conflists are chained like libcni's `buildOneConfig`: each plugin's
//! config gets the list's `name` and `cniVersion`, `runtimeConfig` for the
//! capabilities it declares, and `prevResult`. ADD runs in order (the caller
//! caches the last result), DEL in reverse with the cached result, CHECK in
//! order with it, GC with `cni.dev/valid-attachments`. The same runtime runs
//! weft's binaries or the reference ones, optionally inside a "host"
//! network namespace (`ip netns exec`). [`crate::cni`] attaches cluster
//! pods through it; weft-cni's tests drive plugins with it directly.
//!
//! A plugin that cannot be started is a [`Reply`] with exit code -1 and the
//! reason on stderr, so callers handle every failure in one place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Where distributions install the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// One container attachment as the runtime sees it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` (None: unset, e.g. DEL after the netns is gone).
    pub netns: Option<String>,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `ips`, `ipRanges`, ...), passed
    /// as `runtimeConfig` to plugins that declare them.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    /// Container `container_id`, interface `ifname`, `CNI_NETNS` set to a
    /// path that does not exist (set a real one with [`Self::with_netns`]).
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            netns: Some("/var/run/netns/none".to_owned()),
            args: Vec::new(),
            capability_args: Map::new(),
        }
    }

    /// Sets (or with None unsets) `CNI_NETNS`.
    #[must_use]
    pub fn with_netns(mut self, ns: Option<&str>) -> Self {
        self.netns = ns.map(str::to_owned);
        self
    }

    /// Adds one `CNI_ARGS` pair.
    #[must_use]
    pub fn with_arg(mut self, k: &str, v: &str) -> Self {
        self.args.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Adds one capability argument.
    #[must_use]
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
    /// Exit code (-1: killed by a signal, timed out, or never started).
    pub exit_code: i32,
    /// Everything the plugin wrote on stdout.
    pub stdout: String,
    /// Everything the plugin wrote on stderr (or why it did not start).
    pub stderr: String,
    /// stdout parsed as JSON (Null when empty or not JSON).
    pub json: Value,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Reply {
    /// True when the plugin exited 0.
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

    /// The error message (empty when there is none).
    pub fn msg(&self) -> &str {
        self.json.get("msg").and_then(Value::as_str).unwrap_or("")
    }

    /// The result JSON; panics with the full output unless the call
    /// succeeded (for tests).
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

    fn not_started(why: String, start: Instant) -> Self {
        Self {
            exit_code: -1,
            stdout: String::new(),
            stderr: why,
            json: Value::Null,
            elapsed: start.elapsed(),
        }
    }
}

/// The runtime: where plugins are, where they run, how long they may take.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `CNI_PATH` directories (searched in order for `type`).
    pub cni_path: Vec<PathBuf>,
    /// Run plugins inside this network namespace (`ip netns exec`).
    pub host_netns: Option<String>,
    /// Extra environment for the plugin processes.
    pub env: Vec<(String, String)>,
    /// Per-exec timeout; the plugin is killed after it.
    pub timeout: Duration,
}

impl Runtime {
    /// Plugins from `dirs`, run in the caller's namespace, 30 s per exec.
    pub fn new(dirs: &[&Path]) -> Self {
        Self {
            cni_path: dirs.iter().map(|d| d.to_path_buf()).collect(),
            host_netns: None,
            env: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The reference binaries ([`REFERENCE_DIR`]).
    pub fn reference() -> Self {
        Self::new(&[Path::new(REFERENCE_DIR)])
    }

    /// Runs plugins inside the network namespace `ns`.
    #[must_use]
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.host_netns = Some(ns.to_owned());
        self
    }

    /// Adds one environment variable for the plugin processes.
    #[must_use]
    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Sets the per-exec timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Finds `plugin` in `CNI_PATH` like libcni's `FindInPath`.
    pub fn find(&self, plugin: &str) -> Option<PathBuf> {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
    }

    fn command(
        &self,
        command: &str,
        att: Option<&Attachment>,
        plugin: &str,
    ) -> std::io::Result<Command> {
        let bin = self.find(plugin).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("plugin {plugin} not found in {:?}", self.cni_path),
            )
        })?;
        let mut cmd = match &self.host_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let path = std::env::join_paths(&self.cni_path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
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
        Ok(cmd)
    }

    fn start(mut cmd: Command, stdin: &[u8]) -> std::io::Result<Child> {
        let mut child = cmd.spawn()?;
        if let Some(mut si) = child.stdin.take() {
            // A plugin refusing its environment exits before reading stdin
            // (as the reference's skel does): the write then meets a closed pipe.
            let _ = si.write_all(stdin);
        }
        Ok(child)
    }

    /// Starts a plugin without waiting (collect it with [`wait`]).
    pub fn spawn(
        &self,
        command: &str,
        att: Option<&Attachment>,
        conf: &Value,
    ) -> std::io::Result<Child> {
        let plugin = conf["type"].as_str().unwrap_or_default();
        Self::start(
            self.command(command, att, plugin)?,
            conf.to_string().as_bytes(),
        )
    }

    /// Runs one plugin with raw stdin bytes and explicit environment
    /// overrides (None removes a variable): for bad-input tests.
    pub fn exec_raw(&self, plugin: &str, env: &[(&str, Option<&str>)], stdin: &[u8]) -> Reply {
        let start = Instant::now();
        let child = self.command("ADD", None, plugin).and_then(|mut cmd| {
            for (k, v) in env {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            Self::start(cmd, stdin)
        });
        match child {
            Ok(child) => finish(child, start, self.timeout),
            Err(e) => Reply::not_started(format!("exec {plugin}: {e}"), start),
        }
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
        match self.spawn(command, att, conf) {
            Ok(child) => finish(child, start, self.timeout),
            Err(e) => Reply::not_started(format!("exec {}: {e}", conf["type"]), start),
        }
    }

    /// ADD of a single-plugin config (libcni's `AddNetwork`).
    pub fn add(&self, conf: &Value, att: &Attachment) -> Reply {
        self.exec("ADD", Some(att), &inject(conf, None, None, att))
    }

    /// DEL of a single-plugin config with the cached result.
    pub fn del(&self, conf: &Value, att: &Attachment, cached: Option<&Value>) -> Reply {
        self.exec("DEL", Some(att), &inject(conf, None, cached, att))
    }

    /// CHECK of a single-plugin config with the cached result.
    pub fn check(&self, conf: &Value, att: &Attachment, cached: Option<&Value>) -> Reply {
        self.exec("CHECK", Some(att), &inject(conf, None, cached, att))
    }

    /// ADD of a conflist: in order, each plugin gets the previous result.
    /// Returns the last result, or the first failure.
    pub fn add_list(&self, list: &Value, att: &Attachment) -> Result<Value, Reply> {
        let mut prev: Option<Value> = None;
        for p in plugins(list) {
            let conf = inject(p, Some(list), prev.as_ref(), att);
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
            let conf = inject(p, Some(list), Some(cached), att);
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
            let mut conf = inject(p, Some(list), None, &Attachment::new("", ""));
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
            let conf = inject(p, Some(list), None, &Attachment::new("", ""));
            let r = self.exec("STATUS", None, &conf);
            if !r.ok() {
                return Err(r);
            }
        }
        Ok(())
    }
}

fn finish(mut child: Child, start: Instant, timeout: Duration) -> Reply {
    // Bounded wait: poll finely (callers compare plugin latencies), kill on
    // timeout.
    loop {
        match child.try_wait() {
            Ok(None) if start.elapsed() <= timeout => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(None) => {
                let _ = child.kill();
                break;
            }
            Ok(Some(_)) | Err(_) => break,
        }
    }
    let out = match child.wait_with_output() {
        Ok(out) => out,
        Err(e) => return Reply::not_started(format!("wait: {e}"), start),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        exit_code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Waits (at most `timeout`) for a child from [`Runtime::spawn`] and
/// collects its reply.
pub fn wait(child: Child, timeout: Duration) -> Reply {
    finish(child, Instant::now(), timeout)
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"].as_array().map_or(&[], Vec::as_slice)
}

fn version_at_least(list: &Value, v: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').filter_map(|x| x.parse().ok()).collect() };
    parse(list["cniVersion"].as_str().unwrap_or("0.1.0")) >= parse(v)
}

/// libcni's `buildOneConfig`: `name` and `cniVersion` from the list,
/// `prev` as `prevResult`, and `runtimeConfig` holding the entries of
/// `capability_args` the plugin declares `true` in `capabilities`.
pub fn build_config(
    plugin: &Value,
    list: Option<&Value>,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
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
                && let Some(v) = capability_args.get(cap)
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

/// [`build_config`] with the attachment's capability arguments.
pub fn inject(
    plugin: &Value,
    list: Option<&Value>,
    prev: Option<&Value>,
    att: &Attachment,
) -> Value {
    build_config(plugin, list, prev, &att.capability_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_config_chains_like_libcni() {
        let list = json!({
            "cniVersion": "1.0.0", "name": "n",
            "plugins": [{"type": "portmap", "capabilities": {"portMappings": true, "ips": false}}]
        });
        let att = Attachment::new("c", "eth0")
            .with_cap("portMappings", json!([{"hostPort": 80}]))
            .with_cap("ips", json!(["10.0.0.2"]))
            .with_cap("bandwidth", json!({}));
        let prev = json!({"cniVersion": "1.0.0"});
        let c = inject(&plugins(&list)[0], Some(&list), Some(&prev), &att);
        assert_eq!(c["name"], "n");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["prevResult"], prev);
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        assert!(version_at_least(&list, "0.4.0"));
        assert!(!version_at_least(&json!({"cniVersion": "0.3.1"}), "0.4.0"));
    }

    #[test]
    fn missing_plugin_is_a_reply_not_a_panic() {
        let rt = Runtime::new(&[Path::new("/nonexistent")]);
        let r = rt.exec("ADD", None, &json!({"type": "nothing"}));
        assert_eq!(r.exit_code, -1);
        assert!(r.stderr.contains("not found"), "{}", r.stderr);
        assert_eq!(
            Attachment::new("c", "e")
                .with_arg("A", "1")
                .with_arg("B", "2")
                .args_string(),
            "A=1;B=2"
        );
    }
}
