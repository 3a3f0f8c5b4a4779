//! The plugin entry point: reads `CNI_*` variables and the config on stdin,
//! validates them the way the reference `skel` does, dispatches to a
//! [`Plugin`], and prints the result (converted to the config's cniVersion)
//! or the error JSON. Validation order and messages follow libcni's skel so
//! runtimes see the same codes from our plugins and the reference ones.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::error::CniError;
use crate::spec::{self, CniResult, NetConf, Version};

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Report readiness (1.1.0).
    Status,
    /// Release resources not in `cni.dev/valid-attachments` (1.1.0).
    Gc,
}

impl Command {
    /// Parses the `CNI_COMMAND` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }
}

/// One plugin invocation: environment plus parsed config.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// `CNI_CONTAINERID` (may be empty for STATUS/GC).
    pub container_id: String,
    /// `CNI_NETNS`, if set.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (may be empty for STATUS/GC).
    pub ifname: String,
    /// `CNI_ARGS` split into pairs (leniently; see [`Invocation::check_args`]).
    pub args: Vec<(String, String)>,
    /// `CNI_ARGS` as given.
    pub args_raw: String,
    /// `CNI_PATH` entries.
    pub path: Vec<PathBuf>,
    /// The config bytes from stdin.
    pub stdin: Vec<u8>,
    /// The common config keys.
    pub net: NetConf,
}

impl Invocation {
    /// The config's cniVersion ("0.1.0" when it has none).
    pub fn cni_version(&self) -> &str {
        spec::effective_version(&self.net.cni_version)
    }

    /// Value of a `CNI_ARGS` key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Validates `CNI_ARGS` like the reference `types.LoadArgs`: every pair
    /// is `K=V`, and keys other than `known` (and `IgnoreUnknown`) are an
    /// error unless `IgnoreUnknown` is true. Errors are code 4.
    pub fn check_args(&self, known: &[&str]) -> Result<(), CniError> {
        check_cni_args(&self.args_raw, known)
    }

    /// Builds an invocation for an in-process call (delegation, tests).
    pub fn new(command: Command, stdin: Vec<u8>) -> Result<Self, CniError> {
        let net = NetConf::parse(&stdin)?;
        Ok(Self {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: Vec::new(),
            args_raw: String::new(),
            path: Vec::new(),
            stdin,
            net,
        })
    }
}

/// A CNI plugin.
pub trait Plugin {
    /// The plugin's type name (e.g. `host-local`).
    fn name(&self) -> &'static str;
    /// Spec versions the plugin accepts.
    fn supported_versions(&self) -> &'static [&'static str] {
        spec::SUPPORTED_VERSIONS
    }
    /// ADD.
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError>;
    /// DEL.
    fn del(&self, inv: &Invocation) -> Result<(), CniError>;
    /// CHECK.
    fn check(&self, inv: &Invocation) -> Result<(), CniError>;
    /// STATUS (1.1.0).
    fn status(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
    /// GC (1.1.0).
    fn gc(&self, _inv: &Invocation) -> Result<(), CniError> {
        Ok(())
    }
}

/// Splits `CNI_ARGS` into pairs without judging them.
pub fn split_cni_args(raw: &str) -> Vec<(String, String)> {
    raw.split(';')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Strict `CNI_ARGS` validation (see [`Invocation::check_args`]).
pub fn check_cni_args(raw: &str, known: &[&str]) -> Result<(), CniError> {
    if raw.is_empty() {
        return Ok(());
    }
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in raw.split(';') {
        let kv: Vec<&str> = pair.split('=').collect();
        let [k, v] = kv.as_slice() else {
            return Err(CniError::env(format!("ARGS: invalid pair {pair:?}"), ""));
        };
        if *k == "IgnoreUnknown" {
            ignore_unknown = match v.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(CniError::env(
                        format!("ARGS: error parsing value of pair {pair:?}"),
                        format!("boolean unmarshal error: invalid input {v}"),
                    ));
                }
            };
        } else if !known.contains(k) {
            unknown.push(format!("{pair:?}"));
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::env(
            format!("ARGS: unknown args [{}]", unknown.join(" ")),
            "",
        ));
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Validates a container id like the reference (`utils.ValidateContainerID`).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::UnknownContainer("missing containerID".into()));
    }
    if !valid_name(id) {
        return Err(CniError::env("invalid characters in containerID", id));
    }
    Ok(())
}

/// Validates an interface name like the reference (`utils.ValidateInterfaceName`).
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::env("interface name is empty", ""));
    }
    if name.len() > 15 {
        return Err(CniError::env(
            "interface name is too long",
            "interface name should be less than 16 characters",
        ));
    }
    if name == "." || name == ".." {
        return Err(CniError::env("interface name is . or ..", ""));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(CniError::env(
            "interface name contains / or : or whitespace characters",
            "",
        ));
    }
    Ok(())
}

/// Validates a network name like the reference (`utils.ValidateNetworkName`).
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::config("missing network name", ""));
    }
    if !valid_name(name) {
        return Err(CniError::config(
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// What [`dispatch`] produced: the text for stdout and stderr, and the exit code.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Printed on stdout.
    pub stdout: String,
    /// Printed on stderr.
    pub stderr: String,
    /// Process exit code.
    pub exit_code: i32,
}

/// Pretty-prints like the reference (4-space indent).
pub fn to_pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_else(|_| v.to_string())
}

fn required(cmd: &str, var: &str) -> bool {
    match var {
        "CNI_COMMAND" => true,
        "CNI_CONTAINERID" | "CNI_IFNAME" => matches!(cmd, "ADD" | "CHECK" | "DEL"),
        "CNI_NETNS" => matches!(cmd, "ADD" | "CHECK"),
        // libcni always sets it; GC/STATUS do not strictly need it.
        "CNI_PATH" => matches!(cmd, "ADD" | "CHECK" | "DEL"),
        _ => false,
    }
}

/// Parses the environment and stdin into an [`Invocation`] with every
/// check the reference skel makes before calling the plugin. `Ok(None)`
/// means VERSION or "no command" (handled by [`dispatch`]).
fn invocation(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Invocation, (CniError, Option<String>)> {
    let get = |k: &str| env(k).unwrap_or_default();
    let cmd = get("CNI_COMMAND");
    let vars = [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ];
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| get(v).is_empty() && required(&cmd, v))
        .collect();
    if !missing.is_empty() {
        let msg = format!("required env variables [{}] missing", missing.join(","));
        return Err((CniError::env(msg, ""), None));
    }
    let mut data = Vec::new();
    stdin
        .read_to_end(&mut data)
        .map_err(|e| (CniError::io("error reading from stdin", e), None))?;

    // validateConfig: decodable, named, name well-formed.
    let net = NetConf::parse(&data).map_err(|e| (e, None))?;
    let ver = Some(net.cni_version.clone());
    validate_network_name(&net.name).map_err(|e| (e, ver.clone()))?;
    let command = Command::parse(&cmd);
    if matches!(command, Some(Command::Add | Command::Del | Command::Check)) {
        validate_container_id(&get("CNI_CONTAINERID")).map_err(|e| (e, ver.clone()))?;
        validate_ifname(&get("CNI_IFNAME")).map_err(|e| (e, ver.clone()))?;
    }
    let Some(command) = command else {
        return Err((
            CniError::env(format!("unknown CNI_COMMAND: {cmd}"), ""),
            ver,
        ));
    };

    let config_version = spec::effective_version(&net.cni_version).to_owned();
    let parsed = Version::parse(&config_version).map_err(|e| (e, ver.clone()))?;
    let needs = |min: Version, what: &str| -> Result<(), (CniError, Option<String>)> {
        if parsed < min {
            return Err((
                CniError::version(format!("config version does not allow {what}"), ""),
                ver.clone(),
            ));
        }
        Ok(())
    };
    match command {
        Command::Check => needs(Version(0, 4, 0), "CHECK")?,
        Command::Status => needs(Version(1, 1, 0), "STATUS")?,
        Command::Gc => needs(Version(1, 1, 0), "GC")?,
        _ => {}
    }
    let supported = plugin.supported_versions();
    if !spec::is_supported(&config_version, supported) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        return Err((
            CniError::version(
                "incompatible CNI versions",
                format!(
                    "config is {config_version:?}, plugin supports [{}]",
                    list.join(" ")
                ),
            ),
            ver,
        ));
    }

    let args_raw = get("CNI_ARGS");
    let netns = Some(get("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(Invocation {
        command,
        container_id: get("CNI_CONTAINERID"),
        netns,
        ifname: get("CNI_IFNAME"),
        args: split_cni_args(&args_raw),
        args_raw,
        path: get("CNI_PATH")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        stdin: data,
        net,
    })
}

/// Runs one invocation with the given environment and stdin; returns what
/// to print and the exit code. [`run`] is this plus the real process.
pub fn dispatch(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Outcome {
    let cmd = env("CNI_COMMAND").unwrap_or_default();
    if cmd.is_empty() {
        // Like the reference: no command prints "about" on stderr, exit 0.
        return Outcome {
            stderr: format!(
                "CNI {} plugin weft {}\nCNI protocol versions supported: {}\n",
                plugin.name(),
                env!("CARGO_PKG_VERSION"),
                plugin.supported_versions().join(", ")
            ),
            ..Outcome::default()
        };
    }
    if cmd == "VERSION" {
        return Outcome {
            stdout: format!("{}\n", spec::version_info(plugin.supported_versions())),
            ..Outcome::default()
        };
    }
    let fail = |e: CniError, ver: Option<String>| Outcome {
        stdout: format!("{}\n", to_pretty(&e.into_reply(ver.as_deref()))),
        stderr: String::new(),
        exit_code: 1,
    };
    let inv = match invocation(plugin, env, stdin) {
        Ok(inv) => inv,
        Err((e, ver)) => return fail(e, ver),
    };
    let ver = Some(inv.cni_version().to_owned());
    let res = match inv.command {
        Command::Add => plugin.add(&inv).and_then(|r| r.to_json(inv.cni_version())),
        Command::Del => plugin.del(&inv).map(|()| Value::Null),
        Command::Check => plugin.check(&inv).map(|()| Value::Null),
        Command::Status => plugin.status(&inv).map(|()| Value::Null),
        Command::Gc => plugin.gc(&inv).map(|()| Value::Null),
        Command::Version => Ok(spec::version_info(plugin.supported_versions())),
    };
    match res {
        Ok(Value::Null) => Outcome::default(),
        Ok(v) => Outcome {
            stdout: format!("{}\n", to_pretty(&v)),
            ..Outcome::default()
        },
        Err(e) => fail(e, ver),
    }
}

/// The `main` of a plugin binary: dispatches with the process environment
/// and stdin, prints, exits. A panic becomes an error JSON (code 999), never
/// a backtrace.
pub fn run(plugin: &(dyn Plugin + std::panic::RefUnwindSafe)) -> ! {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}: internal error: {info}", env!("CARGO_PKG_NAME"));
    }));
    let out = std::panic::catch_unwind(|| {
        let env = |k: &str| std::env::var(k).ok();
        dispatch(plugin, &env, &mut std::io::stdin().lock())
    })
    .unwrap_or_else(|_| Outcome {
        stdout: to_pretty(&CniError::internal("plugin panicked", "see stderr").into_reply(None)),
        stderr: String::new(),
        exit_code: 1,
    });
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.stdout.as_bytes());
    let _ = so.flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    std::process::exit(out.exit_code)
}

#[cfg(test)]
mod tests;
