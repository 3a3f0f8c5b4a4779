//! Errors of the speaker's public API.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// What can go wrong starting or talking to a speaker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid BGP configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    /// Binding the listening socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// Setting a TCP MD5 key failed.
    #[error("setting TCP MD5 key for {peer}: {source}")]
    Md5 {
        /// Peer.
        peer: std::net::IpAddr,
        /// OS error.
        source: io::Error,
    },
    /// Binding the BFD sockets failed.
    #[error("starting BFD: {0}")]
    Bfd(io::Error),
    /// A peer with this address is configured already.
    #[error("peer {0} is configured already")]
    PeerExists(std::net::IpAddr),
    /// No peer with this address is configured.
    #[error("no peer {0} is configured")]
    NoSuchPeer(std::net::IpAddr),
    /// The peer wants something only a restart of the speaker can set up.
    #[error("peer {peer}: {what} needs a restart of the speaker")]
    NeedsRestart {
        /// Peer.
        peer: std::net::IpAddr,
        /// What.
        what: &'static str,
    },
    /// The speaker task is gone.
    #[error("the BGP speaker has shut down")]
    Closed,
}
