//! The `[log]` table: weftd's log format and level. `RUST_LOG`, when set,
//! overrides `level` (an operator debugging one run should not have to
//! edit the file); `format` always comes from the file.

use serde::Deserialize;
use toml::{Table, Value};

use super::ConfigError;

/// How log lines are written (to stderr, i.e. the journal under systemd).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Level or `tracing` filter directives (`info`, `weft_router=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// Problems with field paths (`log.level`).
    pub fn validate(&self) -> Vec<ConfigError> {
        match tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            Ok(_) if !self.level.trim().is_empty() => Vec::new(),
            Ok(_) => vec![ConfigError {
                path: "log.level".into(),
                msg: "must not be empty".into(),
            }],
            Err(e) => vec![ConfigError {
                path: "log.level".into(),
                msg: format!("{:?}: {e}", self.level),
            }],
        }
    }

    /// The `[log]` table of a document alone, for setting up logging
    /// before the rest is validated; the defaults when it is missing or
    /// unreadable (the full parse reports that).
    pub fn of_document(text: &str) -> Self {
        toml::from_str::<Table>(text)
            .ok()
            .and_then(|t| t.get("log").cloned())
            .and_then(|v: Value| Self::deserialize(v).ok())
            .filter(|l| l.validate().is_empty())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_and_format_are_checked_and_read_alone() {
        let l = LogConfig::of_document("x = 1\n[log]\nformat = \"json\"\nlevel = \"debug\"\n");
        assert_eq!(l.format, LogFormat::Json);
        assert_eq!(l.level, "debug");
        let bad = LogConfig {
            level: "weft_router=loud".into(),
            ..LogConfig::default()
        };
        assert_eq!(bad.validate()[0].path, "log.level");
        assert_eq!(
            LogConfig::of_document("[log]\nformat = \"xml\"\n"),
            LogConfig::default()
        );
    }
}
