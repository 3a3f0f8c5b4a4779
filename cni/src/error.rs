//! `CniError`: every failure a plugin can report, and the one place where
//! each maps to a CNI spec error code and the error JSON printed on stdout.

use serde_json::{Value, json};

/// Well-known CNI error codes (spec "Error" section).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (transient, e.g. lock contention).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Plugin not available: cannot service ADD (STATUS; also pool exhaustion).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Limited connectivity (STATUS).
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// No connectivity (STATUS).
    pub const NO_CONNECTIVITY: u32 = 52;
    /// Internal error (what the reference plugins report for untyped errors).
    pub const INTERNAL: u32 = 999;
}

/// A CNI plugin failure. `msg` is the short message, `details` the longer
/// context (may be empty); both end up in the error JSON.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The config's cniVersion is not supported, or the command needs a newer one.
    #[error("{msg}")]
    IncompatibleVersion {
        /// Short message.
        msg: String,
        /// Details (e.g. the supported versions).
        details: String,
    },
    /// A config field this plugin does not support.
    #[error("unsupported field: {0}")]
    UnsupportedField(String),
    /// Container unknown (e.g. missing container id).
    #[error("{0}")]
    UnknownContainer(String),
    /// Bad or missing `CNI_*` environment variables.
    #[error("{msg}")]
    InvalidEnv {
        /// Short message.
        msg: String,
        /// Details (e.g. the offending value).
        details: String,
    },
    /// An I/O operation failed.
    #[error("{msg}: {source}")]
    Io {
        /// What was being done.
        msg: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// stdin (or a delegated plugin's output) could not be decoded.
    #[error("{msg}")]
    Decode {
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
    /// The network configuration is invalid.
    #[error("{msg}")]
    InvalidConfig {
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
    /// A transient failure (lock contention, timeout): the runtime may retry.
    #[error("{msg}")]
    TryAgainLater {
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
    /// The plugin cannot service ADD (STATUS), e.g. an exhausted address pool.
    #[error("{msg}")]
    NotAvailable {
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
    /// A plugin-specific error (code >= 100) or an error passed through
    /// unchanged from a delegated plugin.
    #[error("{msg}")]
    Plugin {
        /// The error code.
        code: u32,
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
    /// Anything else (code 999, like the reference's untyped errors).
    #[error("{msg}")]
    Internal {
        /// Short message.
        msg: String,
        /// Details.
        details: String,
    },
}

impl CniError {
    /// Bad environment (code 4).
    pub fn env(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::InvalidEnv {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Undecodable input (code 6).
    pub fn decode(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::Decode {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Invalid config (code 7).
    pub fn config(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::InvalidConfig {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Try again later (code 11).
    pub fn try_later(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::TryAgainLater {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Not available (code 50).
    pub fn not_available(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::NotAvailable {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Internal error (code 999).
    pub fn internal(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::Internal {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// I/O failure (code 5) while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            msg: what.into(),
            source,
        }
    }

    /// Incompatible version (code 1).
    pub fn version(msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self::IncompatibleVersion {
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The CNI spec error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Self::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            Self::UnsupportedField(_) => code::UNSUPPORTED_FIELD,
            Self::UnknownContainer(_) => code::UNKNOWN_CONTAINER,
            Self::InvalidEnv { .. } => code::INVALID_ENV,
            Self::Io { .. } => code::IO,
            Self::Decode { .. } => code::DECODE,
            Self::InvalidConfig { .. } => code::INVALID_CONFIG,
            Self::TryAgainLater { .. } => code::TRY_AGAIN_LATER,
            Self::NotAvailable { .. } => code::NOT_AVAILABLE,
            Self::Plugin { code, .. } => *code,
            Self::Internal { .. } => code::INTERNAL,
        }
    }

    /// The `details` text (empty when there is none).
    pub fn details(&self) -> String {
        match self {
            Self::IncompatibleVersion { details, .. }
            | Self::InvalidEnv { details, .. }
            | Self::Decode { details, .. }
            | Self::InvalidConfig { details, .. }
            | Self::TryAgainLater { details, .. }
            | Self::NotAvailable { details, .. }
            | Self::Plugin { details, .. }
            | Self::Internal { details, .. } => details.clone(),
            Self::UnsupportedField(_) | Self::UnknownContainer(_) => String::new(),
            Self::Io { source, .. } => source.to_string(),
        }
    }

    /// The error JSON a plugin prints on stdout:
    /// `{"cniVersion", "code", "msg", "details"}` (`details` omitted when empty,
    /// `cniVersion` omitted when unknown).
    pub fn into_reply(&self, cni_version: Option<&str>) -> Value {
        let mut v = json!({ "code": self.code(), "msg": self.to_string() });
        let details = self.details();
        if !details.is_empty() {
            v["details"] = Value::String(details);
        }
        if let Some(ver) = cni_version.filter(|s| !s.is_empty()) {
            v["cniVersion"] = Value::String(ver.to_owned());
        }
        v
    }

    /// Rebuilds an error from a plugin's error JSON (delegation, tests).
    pub fn from_reply(v: &Value) -> Option<Self> {
        let code = u32::try_from(v.get("code")?.as_u64()?).ok()?;
        let msg = v
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let details = v
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Some(Self::Plugin { code, msg, details })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reply_shape() {
        let e = CniError::env("required env variables [CNI_PATH] missing", "");
        assert_eq!(e.code(), 4);
        let r = e.into_reply(Some("1.0.0"));
        assert_eq!(r["code"], 4);
        assert_eq!(r["cniVersion"], "1.0.0");
        assert!(r.get("details").is_none());
        let e = CniError::config("bad", "field x");
        assert_eq!(e.into_reply(None)["details"], "field x");
        assert_eq!(CniError::try_later("lock", "").code(), 11);
        assert_eq!(CniError::not_available("full", "").code(), 50);
        let back = CniError::from_reply(&e.into_reply(None)).unwrap();
        assert_eq!(back.code(), 7);
        assert_eq!(back.to_string(), "bad");
    }
}
