//! The one error type of the netsim library.

use std::io;

use crate::netns::NetnsError;

/// Everything that can go wrong while building, driving or measuring a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A namespace or command step failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The topology declaration is invalid.
    #[error("topology: {0}")]
    Topology(String),
    /// A forwarding mode could not be parsed or applied.
    #[error("mode {mode}: {msg}")]
    Mode {
        /// The mode's name.
        mode: String,
        /// What went wrong.
        msg: String,
    },
    /// weftd did not start, become ready or stop.
    #[error("weftd on {node}: {msg}")]
    Weftd {
        /// The node's namespace.
        node: String,
        /// What went wrong.
        msg: String,
    },
    /// A measurement tool failed or printed something unexpected.
    #[error("{tool}: {msg}")]
    Measure {
        /// The tool (iperf3, ping, sockperf, tcp-check).
        tool: String,
        /// What went wrong.
        msg: String,
    },
    /// Something did not finish within its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// An [`Error::Io`] with context.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`Error::Measure`].
    pub(crate) fn measure(tool: &str, msg: impl Into<String>) -> Self {
        Self::Measure {
            tool: tool.to_owned(),
            msg: msg.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
