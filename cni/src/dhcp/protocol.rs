//! The plugin–daemon protocol: one request and one reply per connection on
//! the daemon's unix stream socket, each a single line of JSON (at most
//! [`MAX_LINE`] bytes).
//!
//! Request: `{"command": "ADD"|"DEL"|"CHECK"|"GC", "containerId", "netns",
//! "ifname", "args", "config"}` where `config` is the network config text
//! the plugin got on stdin and `netns` an absolute path. Reply:
//! `{"result": <result in the 1.1.0 shape>}` for ADD, `{}` for DEL, CHECK
//! and GC (whose config carries `cni.dev/valid-attachments`), or
//! `{"error": {"code", "msg", "details"}}` with a CNI error code.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::CniError;
use crate::spec::CniResult;

/// Longest line either side reads.
pub const MAX_LINE: u64 = 1 << 20;

/// A request from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// `ADD`, `DEL`, `CHECK` or `GC`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` made absolute (empty when unset).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    #[serde(default)]
    pub args: String,
    /// The network config from stdin.
    pub config: String,
}

/// An error in a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyError {
    /// CNI error code.
    pub code: u32,
    /// Message.
    pub msg: String,
    /// Details.
    #[serde(default)]
    pub details: String,
}

/// The daemon's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The ADD result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CniResult>,
    /// The failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

impl Reply {
    /// A failure reply.
    pub fn failed(e: &CniError) -> Self {
        Self {
            result: None,
            error: Some(ReplyError {
                code: e.code(),
                msg: e.to_string(),
                details: e.details(),
            }),
        }
    }

    /// Back to a `Result` on the plugin side.
    pub fn into_result(self) -> Result<Option<CniResult>, CniError> {
        match self.error {
            Some(e) => Err(CniError::Plugin {
                code: e.code,
                msg: e.msg,
                details: e.details,
            }),
            None => Ok(self.result),
        }
    }
}

/// Writes `v` as one line.
pub fn write_line<T: Serialize>(w: &mut impl Write, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one line (bounded) and decodes it.
pub fn read_line<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> std::io::Result<T> {
    let mut line = Vec::new();
    r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a full line",
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let req = Request {
            command: "ADD".into(),
            container_id: "c".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: String::new(),
            config: "{}".into(),
        };
        let mut buf = Vec::new();
        write_line(&mut buf, &req).unwrap();
        let back: Request = read_line(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);
        let e = Reply::failed(&CniError::try_later("busy", "x"));
        assert_eq!(e.into_result().unwrap_err().code(), 11);
        assert!(read_line::<Reply>(&mut &b"{}"[..]).is_err());
        assert!(read_line::<Reply>(&mut &b"nope\n"[..]).is_err());
    }
}
