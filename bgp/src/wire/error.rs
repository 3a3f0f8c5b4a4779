//! Decode errors and their NOTIFICATION codes, all in one place (RFC 4271 §6,
//! RFC 7606, RFC 7313).

use serde::{Deserialize, Serialize};

use super::Notification;

/// The RFC 7606 outcome of decoding an UPDATE that did not reset the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Nothing was wrong.
    #[default]
    Clean,
    /// A malformed attribute was dropped; the routes stand without it.
    AttributeDiscard,
    /// The attributes are unusable: every announced prefix is withdrawn.
    TreatAsWithdraw,
}

/// A message that must reset the session, with the NOTIFICATION to send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DecodeError {
    /// Fewer bytes than the header or the header's length field need. Not an
    /// error of the peer yet: read more.
    #[error("incomplete message")]
    Incomplete,
    /// Marker not all ones (1/1).
    #[error("connection not synchronized")]
    BadMarker,
    /// Length field out of bounds for the message type (1/2).
    #[error("bad message length {0}")]
    BadLength(u16),
    /// Unknown message type (1/3).
    #[error("bad message type {0}")]
    BadType(u8),
    /// OPEN version other than 4 (2/1).
    #[error("unsupported BGP version {0}")]
    BadVersion(u8),
    /// OPEN with a BGP identifier of 0 (2/3).
    #[error("bad BGP identifier")]
    BadIdentifier,
    /// OPEN optional parameter that is not a capability (2/4).
    #[error("unsupported optional parameter {0}")]
    UnsupportedParam(u8),
    /// OPEN optional parameters or a capability that overrun (2/0).
    #[error("malformed OPEN optional parameters")]
    MalformedOpen,
    /// UPDATE length fields that do not fit or a duplicated MP attribute (3/1).
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// An unknown well-known attribute (3/2), with the attribute bytes.
    #[error("unrecognized well-known attribute {code}")]
    UnrecognizedWellKnown {
        /// Type code.
        code: u8,
        /// The whole attribute (flags, type, length, value).
        attr: Vec<u8>,
    },
    /// NLRI that cannot be parsed (3/10).
    #[error("invalid network field")]
    InvalidNetwork,
    /// ROUTE-REFRESH of the wrong length (7/1, RFC 7313).
    #[error("bad ROUTE-REFRESH length {0}")]
    BadRouteRefreshLength(u16),
}

impl DecodeError {
    /// The NOTIFICATION to send before closing. `None` for `Incomplete`.
    pub fn notification(&self) -> Option<Notification> {
        let (code, subcode, data) = match self {
            Self::Incomplete => return None,
            Self::BadMarker => (1, 1, Vec::new()),
            Self::BadLength(l) => (1, 2, l.to_be_bytes().to_vec()),
            Self::BadType(t) => (1, 3, vec![*t]),
            Self::BadVersion(_) => (2, 1, 4u16.to_be_bytes().to_vec()),
            Self::BadIdentifier => (2, 3, Vec::new()),
            Self::UnsupportedParam(_) => (2, 4, Vec::new()),
            Self::MalformedOpen => (2, 0, Vec::new()),
            Self::MalformedAttributeList => (3, 1, Vec::new()),
            Self::UnrecognizedWellKnown { attr, .. } => (3, 2, attr.clone()),
            Self::InvalidNetwork => (3, 10, Vec::new()),
            Self::BadRouteRefreshLength(_) => (7, 1, Vec::new()),
        };
        Some(Notification {
            code,
            subcode,
            data,
        })
    }
}
