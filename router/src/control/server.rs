//! The control socket: a unix stream socket, one JSON request line in,
//! one JSON response line out, then the connection closes. Every read is
//! bounded (length and time) and at most [`MAX_CLIENTS`] connections are
//! served at once; a client over the cap, a silent one, an oversized or a
//! malformed request each get a one-line error, and nothing else is
//! affected.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::schema::{Command, MAX_REQUEST, ReloadReport, Request, Response};
use super::status::StatusSource;

/// Connections served at once; more get "busy" and are closed.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long gathering an answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reload may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another process (another weftd) serves the path.
    #[error("{0}: another process is serving this control socket")]
    InUse(PathBuf),
    /// Creating the directory, binding or setting the mode failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A running control socket; [`ControlServer::stop`] closes it and removes
/// the file.
#[derive(Debug)]
pub struct ControlServer {
    task: JoinHandle<()>,
    path: PathBuf,
    ino: u64,
}

impl ControlServer {
    /// Binds `path` (mode 0660, group `gid` when given, its directory
    /// created 0755; a stale socket left by a dead weftd is replaced) and
    /// serves `source` on it. Must run inside a tokio runtime.
    pub fn start(
        path: &Path,
        gid: Option<u32>,
        source: StatusSource,
    ) -> Result<Self, ControlError> {
        let err = |source| ControlError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
        if path.exists() {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(ControlError::InUse(path.to_owned())),
                Err(_) => {
                    // Nobody listens: a dead weftd's socket.
                    std::fs::remove_file(path).map_err(err)?;
                }
            }
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
        if gid.is_some() {
            std::os::unix::fs::chown(path, None, gid).map_err(err)?;
        }
        let ino = std::fs::metadata(path).map_err(err)?.ino();
        info!(socket = %path.display(), "control socket listening");
        let task = tokio::spawn(serve(listener, source));
        Ok(Self {
            task,
            path: path.to_owned(),
            ino,
        })
    }

    /// Stops serving and removes the socket file (if it is still ours).
    pub fn stop(self) {
        self.task.abort();
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn serve(listener: UnixListener, source: StatusSource) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let refusals = Arc::new(Semaphore::new(4 * MAX_CLIENTS));
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let source = source.clone();
                tokio::spawn(async move {
                    serve_one(&mut stream, &source).await;
                    drop(permit);
                });
            }
            Err(_) => {
                debug!("control socket busy");
                // Telling a client it is over the cap takes a short task;
                // those are capped too (beyond, the connection just closes).
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tokio::spawn(async move {
                        let busy = Response::error(format!(
                            "busy: {MAX_CLIENTS} control clients are connected, try again"
                        ));
                        refuse(&mut stream, &busy).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// What a client sent, or why it is no request.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Line(Vec<u8>),
    TooLong,
    Silent,
    Failed(String),
}

/// Reads one line of at most [`MAX_REQUEST`] bytes within
/// [`REQUEST_TIMEOUT`] (end of stream also ends it).
async fn read_request(stream: &mut UnixStream) -> Read {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let read = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return Read::Line(std::mem::take(&mut buf)),
                Ok(n) => {
                    let got = chunk.get(..n).unwrap_or_default();
                    if let Some(i) = got.iter().position(|b| *b == b'\n') {
                        buf.extend_from_slice(got.get(..i).unwrap_or_default());
                        return if buf.len() < MAX_REQUEST {
                            Read::Line(std::mem::take(&mut buf))
                        } else {
                            Read::TooLong
                        };
                    }
                    buf.extend_from_slice(got);
                    if buf.len() >= MAX_REQUEST {
                        return Read::TooLong;
                    }
                }
                Err(e) => return Read::Failed(e.to_string()),
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .unwrap_or(Read::Silent)
}

/// Parses a request line: JSON (`{"command":"status"}`) or, for `socat`
/// users, the bare command word.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line)
        .map_err(|_| "malformed request: not UTF-8".to_owned())?
        .trim();
    if text.is_empty() {
        return Err("empty request: send one line such as {\"command\":\"status\"}".to_owned());
    }
    if !text.starts_with('{') {
        let quoted = serde_json::Value::String(text.to_owned());
        return serde_json::from_value::<Command>(quoted)
            .map(|command| Request { command })
            .map_err(|_| {
                format!("unknown command {text:?}: expected status, peers, routes or reload")
            });
    }
    serde_json::from_str(text).map_err(|e| {
        format!("malformed request: {e}; expected one line such as {{\"command\":\"status\"}}")
    })
}

async fn serve_one(stream: &mut UnixStream, source: &StatusSource) {
    let read = read_request(stream).await;
    let too_long = read == Read::TooLong;
    let response = match read {
        Read::Line(line) => match parse_request(&line) {
            Ok(req) => answer(req.command, source).await,
            Err(e) => Response::error(e),
        },
        Read::TooLong => Response::error(format!(
            "request too long: at most {MAX_REQUEST} bytes in one line"
        )),
        Read::Silent => Response::error(format!(
            "no request line within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        Read::Failed(e) => {
            debug!(error = %e, "control client read");
            return;
        }
    };
    if too_long {
        refuse(stream, &response).await;
    } else {
        write_response(stream, &response).await;
    }
}

/// Answers a client whose request was not read (too long, or over the
/// cap), then discards a bounded amount of what it sent: closing with
/// unread bytes would reset the connection before it reads the answer.
async fn refuse(stream: &mut UnixStream, r: &Response) {
    write_response(stream, r).await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left = DRAIN_LIMIT;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Most bytes of an oversized request discarded before closing.
const DRAIN_LIMIT: usize = 1 << 20;

async fn answer(command: Command, source: &StatusSource) -> Response {
    if command == Command::Reload {
        let Some(hook) = source.reload_hook() else {
            return Response::error("reload not available in this weftd");
        };
        return match tokio::time::timeout(RELOAD_TIMEOUT, crate::reload::request(hook)).await {
            Ok(Ok(applied)) => to_response(&ReloadReport {
                summary: applied.to_string(),
                applied,
            }),
            Ok(Err(errors)) => Response::error(format!("reload failed: {}", errors.join("; "))),
            Err(_) => Response::error("reload did not finish in time"),
        };
    }
    let Ok(g) = tokio::time::timeout(ANSWER_TIMEOUT, source.gather()).await else {
        return Response::error("weftd did not answer in time");
    };
    match command {
        Command::Status => to_response(&source.node_status(&g)),
        Command::Peers => to_response(&source.node_status(&g).peers),
        Command::Routes => to_response(&source.routes(&g)),
        Command::Reload => Response::error("unreachable"),
    }
}

fn to_response(v: &impl serde::Serialize) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => Response::ok(v),
        Err(e) => Response::error(format!("encoding the answer: {e}")),
    }
}

async fn write_response(stream: &mut UnixStream, r: &Response) {
    let mut line = serde_json::to_vec(r).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    let write = async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    };
    if let Ok(Err(e)) | Err(e) = tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(io::Error::from)
    {
        debug!(error = %e, "control client write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_json_or_a_bare_word() {
        assert_eq!(
            parse_request(b"{\"command\":\"status\"}"),
            Ok(Request {
                command: Command::Status
            })
        );
        assert_eq!(
            parse_request(b"routes\r"),
            Ok(Request {
                command: Command::Routes
            })
        );
        let e = parse_request(b"{\"command\":\"explode\"}").unwrap_err();
        assert!(e.starts_with("malformed request"), "{e}");
        let e = parse_request(b"{\"command\":").unwrap_err();
        assert!(e.starts_with("malformed request"), "{e}");
        let e = parse_request(b"hello").unwrap_err();
        assert!(e.contains("unknown command \"hello\""), "{e}");
        assert!(parse_request(b"\xff").unwrap_err().contains("UTF-8"));
        assert!(
            parse_request(b"  ")
                .unwrap_err()
                .starts_with("empty request")
        );
    }
}
