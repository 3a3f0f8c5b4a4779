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

    /// Every problem in `[control]`, with field paths.
    pub fn validate(&self) -> Vec<ConfigError> {
        match &self.socket {
            Some(p)
                if !p.as_os_str().is_empty() && (!p.is_absolute() || p.file_name().is_none()) =>
            {
                vec![ConfigError {
                    path: "control.socket".into(),
                    msg: format!("{} is not an absolute file path", p.display()),
                }]
            }
            _ => Vec::new(),
        }
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
        };
        assert_eq!(c.endpoint(), Some((PathBuf::from("/tmp/x.sock"), true)));
        assert!(c.validate().is_empty());
        let c = ControlConfig {
            socket: Some("".into()),
        };
        assert_eq!(c.endpoint(), None);
        let c = ControlConfig {
            socket: Some("rel.sock".into()),
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
}
