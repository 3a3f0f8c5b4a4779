//! The `[cni]` table: where weftd writes the node's CNI network
//! configuration (`10-weft.conflist`) and flannel's `subnet.env`, and which
//! attachment the conflist asks for.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// How the conflist attaches pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// `bridge` (`cni0`, the gateway on the bridge) + `host-local` + `portmap`.
    Bridge,
    /// `ptp` (a veth pair per pod, routed) + `host-local` + `portmap`.
    Ptp,
}

/// `[cni]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Write the conflist (false: only `subnet_env`).
    pub write_conflist: bool,
    /// Directory the runtime reads network configs from.
    pub conf_dir: PathBuf,
    /// The conflist's file name in `conf_dir`.
    pub conf_file: String,
    /// The CNI network name (`name` in the conflist).
    pub network_name: String,
    /// Pod attachment style.
    pub attach: Attach,
    /// Bridge name for `attach = "bridge"`.
    pub bridge: String,
    /// flannel-compatible subnet file; empty string: not written.
    pub subnet_env: PathBuf,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            write_conflist: true,
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            conf_file: "10-weft.conflist".into(),
            network_name: "weft".into(),
            attach: Attach::Bridge,
            bridge: "cni0".into(),
            subnet_env: PathBuf::from("/run/weft/subnet.env"),
        }
    }
}

/// Whether `s` is a valid interface name (1-15 bytes, no '/', ':', '%' or
/// whitespace, not `.` or `..`).
pub(super) fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && !s.contains(['/', ':', '%'])
        && !s.chars().any(char::is_whitespace)
        && s != "."
        && s != ".."
}

impl CniConfig {
    /// Every problem in `[cni]`, with field paths.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: &str, msg: String| {
            errs.push(ConfigError {
                path: format!("cni.{path}"),
                msg,
            });
        };
        if !self.conf_dir.is_absolute() {
            err(
                "conf_dir",
                format!("{} is not an absolute path", self.conf_dir.display()),
            );
        }
        let f = &self.conf_file;
        if f.is_empty() || f.contains('/') || f.starts_with('.') || !f.ends_with(".conflist") {
            err(
                "conf_file",
                format!("{f:?} is not a file name ending in .conflist"),
            );
        }
        // libcni's rule for network names.
        let n = &self.network_name;
        let name_ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            err(
                "network_name",
                format!("{n:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
            );
        }
        if !valid_ifname(&self.bridge) {
            err(
                "bridge",
                format!("{:?} is not a valid interface name", self.bridge),
            );
        }
        let env = &self.subnet_env;
        if !env.as_os_str().is_empty() && (!env.is_absolute() || env.file_name().is_none()) {
            err(
                "subnet_env",
                format!("{} is not an absolute file path", env.display()),
            );
        }
        errs
    }
}
