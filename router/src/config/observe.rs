//! The operator-facing endpoints: `[control]` (the unix socket the `weft`
//! CLI talks to) and `[metrics]` (Prometheus `/metrics`, `/healthz`,
//! `/readyz` over HTTP).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The control socket's path when `[control] socket` is not set.
pub const DEFAULT_SOCKET: &str = "/run/weft/weftd.sock";
/// The metrics address when `[metrics] listen` is not set.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9420";

/// `[control]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The unix socket's path (absolute); `""`: no control socket. Unset:
    /// [`DEFAULT_SOCKET`], where a failure to bind is a warning instead of
    /// an error.
    pub socket: Option<PathBuf>,
    /// The group (name or numeric id) that owns the socket, so that its
    /// members can run `weft` without root; unset: weftd's own group.
    pub group: Option<String>,
}

impl ControlConfig {
    /// The socket to serve and whether it was set explicitly; `None`: off.
    pub fn endpoint(&self) -> Option<(PathBuf, bool)> {
        match &self.socket {
            None => Some((PathBuf::from(DEFAULT_SOCKET), false)),
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some((p.clone(), true)),
        }
    }

    /// The numeric id of `group`, looked up in this machine's group
    /// database; `Ok(None)` when unset.
    pub fn gid(&self) -> Result<Option<u32>, ConfigError> {
        let Some(g) = self.group.as_deref() else {
            return Ok(None);
        };
        if let Ok(id) = g.parse::<u32>() {
            return Ok(Some(id));
        }
        let err = |msg: String| ConfigError {
            path: "control.group".into(),
            msg,
        };
        match nix::unistd::Group::from_name(g) {
            Ok(Some(grp)) => Ok(Some(grp.gid.as_raw())),
            Ok(None) => Err(err(format!("no group named {g:?} on this machine"))),
            Err(e) => Err(err(format!("looking up group {g:?}: {e}"))),
        }
    }

    /// Every problem in `[control]`, with field paths.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if let Some(p) = &self.socket
            && !p.as_os_str().is_empty()
            && (!p.is_absolute() || p.file_name().is_none())
        {
            out.push(ConfigError {
                path: "control.socket".into(),
                msg: format!("{} is not an absolute file path", p.display()),
            });
        }
        if let Err(e) = self.gid() {
            out.push(e);
        }
        out
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `address:port` of the HTTP endpoint; `""`: off. Unset:
    /// [`DEFAULT_METRICS`], where a failure to bind is a warning instead of
    /// an error.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to listen on and whether it was set explicitly;
    /// `None`: off (or invalid, which `validate` reports).
    pub fn endpoint(&self) -> Option<(SocketAddr, bool)> {
        match self.listen.as_deref() {
            None => DEFAULT_METRICS.parse().ok().map(|a| (a, false)),
            Some("") => None,
            Some(s) => s.parse().ok().map(|a| (a, true)),
        }
    }

    /// Every problem in `[metrics]`, with field paths.
    pub fn validate(&self) -> Vec<ConfigError> {
        match self.listen.as_deref() {
            Some(s) if !s.is_empty() && s.parse::<SocketAddr>().is_err() => vec![ConfigError {
                path: "metrics.listen".into(),
                msg: format!("{s:?} is not an address:port"),
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_explicit_and_off() {
        let c = ControlConfig::default();
        assert_eq!(c.endpoint(), Some((PathBuf::from(DEFAULT_SOCKET), false)));
        let c = ControlConfig {
            socket: Some("/tmp/x.sock".into()),
            group: None,
        };
        assert_eq!(c.endpoint(), Some((PathBuf::from("/tmp/x.sock"), true)));
        assert!(c.validate().is_empty());
        let c = ControlConfig {
            socket: Some("".into()),
            group: None,
        };
        assert_eq!(c.endpoint(), None);
        let c = ControlConfig {
            socket: Some("rel.sock".into()),
            group: None,
        };
        assert_eq!(c.validate()[0].path, "control.socket");

        let m = MetricsConfig::default();
        assert_eq!(
            m.endpoint(),
            Some((
                DEFAULT_METRICS.parse().unwrap_or_else(|_| unreachable!()),
                false
            ))
        );
        let m = MetricsConfig {
            listen: Some(String::new()),
        };
        assert_eq!(m.endpoint(), None);
        let m = MetricsConfig {
            listen: Some("localhost".into()),
        };
        assert_eq!(m.validate()[0].path, "metrics.listen");
    }

    #[test]
    fn group_by_id_or_name() {
        let with = |g: &str| ControlConfig {
            socket: None,
            group: Some(g.into()),
        };
        assert_eq!(with("1234").gid(), Ok(Some(1234)));
        // Every Linux group database has root's group.
        assert_eq!(with("root").gid(), Ok(Some(0)));
        assert_eq!(ControlConfig::default().gid(), Ok(None));
        let e = with("no-such-group-here").validate();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "control.group");
        assert!(e[0].msg.contains("no group named"), "{}", e[0].msg);
    }
}
