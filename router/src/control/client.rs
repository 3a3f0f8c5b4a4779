//! The `weft` CLI's side of the control socket: connect, send one request
//! line, read one response line (blocking; the CLI needs no runtime).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::schema::{Command, Request, Response};

/// The longest answer the CLI reads (a full table of routes fits).
const MAX_RESPONSE: u64 = 256 << 20;

/// Why a query failed; the message is the CLI's one error line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No weftd at the socket, or no access to it.
    #[error("cannot reach weftd at {path}: {source} (is weftd running? see --socket)")]
    Connect {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection broke or timed out.
    #[error("talking to weftd at {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The answer was not a response line.
    #[error("weftd at {path} sent an unreadable answer: {msg}")]
    Garbled {
        /// The socket path.
        path: String,
        /// What was wrong.
        msg: String,
    },
    /// weftd answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// Sends `command` to the weftd at `socket` and returns its result.
pub fn query(
    socket: &Path,
    command: Command,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(&Request { command }).map_err(|e| io(e.into()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = Vec::new();
    BufReader::new(stream.take(MAX_RESPONSE))
        .read_until(b'\n', &mut answer)
        .map_err(io)?;
    let r: Response = serde_json::from_slice(&answer).map_err(|e| ClientError::Garbled {
        path: path.clone(),
        msg: if answer.is_empty() {
            "connection closed without an answer".to_owned()
        } else {
            e.to_string()
        },
    })?;
    match (r.ok, r.result, r.error) {
        (true, Some(v), _) => Ok(v),
        (_, _, Some(e)) => Err(ClientError::Refused(e)),
        _ => Err(ClientError::Garbled {
            path,
            msg: "neither a result nor an error".to_owned(),
        }),
    }
}
