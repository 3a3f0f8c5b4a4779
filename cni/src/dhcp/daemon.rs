//! `dhcp daemon`: listens on the unix socket, acquires a lease per
//! (container, network, interface) on ADD and hands it to a [`Keeper`],
//! releases it on DEL, answers CHECK from the keeper's current lease, and
//! at start resumes every lease recorded in the state directory. SIGTERM
//! or SIGINT stop the daemon without releasing anything: the records stay
//! for the next daemon.
//!
//! ```text
//!  plugin ──unix socket──► connection task ──► slot(client id) ──► Keeper task
//!                          (one per request)   (serializes ADD/DEL    (owns Record,
//!                                               of one client id)      persists it)
//! ```

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::client::{ClientError, ClientSocket, prepare_link};
use super::config::DhcpIpam;
use super::keeper::{Keeper, Timing};
use super::lease::{ClientOptions, client_id};
use super::protocol::{MAX_LINE, Reply, Request};
use super::store::{Record, RecordStore};
use crate::error::CniError;
use crate::spec::NetConf;

/// The daemon's settings (its command-line flags).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `-socketpath`.
    pub socket_path: PathBuf,
    /// `-hostprefix`: prepended to the socket, state directory and netns paths.
    pub host_prefix: String,
    /// `-pidfile`.
    pub pid_file: Option<PathBuf>,
    /// `-statedir`.
    pub state_dir: PathBuf,
    /// `-broadcast` (replies are always asked to be broadcast; kept for compatibility).
    pub broadcast: bool,
    /// `-timeout` and `-resendmax`.
    pub timing: Timing,
}

/// How long a connection may take to send its request line.
pub const REQUEST_READ_LIMIT: Duration = Duration::from_secs(10);

type Slot = Arc<tokio::sync::Mutex<Option<Keeper>>>;

/// The daemon's shared state: one slot per client id.
#[derive(Debug)]
struct Daemon {
    slots: Mutex<HashMap<String, Slot>>,
    store: RecordStore,
    config: DaemonConfig,
}

impl Daemon {
    fn slot(&self, id: &str) -> Slot {
        let mut m = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(id.to_owned()).or_default().clone()
    }

    fn netns(&self, p: &str) -> String {
        format!("{}{p}", self.config.host_prefix)
    }

    async fn handle(&self, req: Request) -> Reply {
        let r = match req.command.as_str() {
            "ADD" => self.add(&req).await.map(Some),
            "DEL" => self.del(&req).await.map(|()| None),
            "CHECK" => self.check(&req).await.map(|()| None),
            "GC" => self.gc(&req).await.map(|()| None),
            other => Err(CniError::internal(format!("unknown command {other:?}"), "")),
        };
        match r {
            Ok(result) => Reply {
                result,
                error: None,
            },
            Err(e) => Reply::failed(&e),
        }
    }

    fn id(req: &Request) -> Result<(String, NetConf), CniError> {
        let net = NetConf::parse(req.config.as_bytes())?;
        Ok((client_id(&req.container_id, &net.name, &req.ifname), net))
    }

    async fn add(&self, req: &Request) -> Result<crate::spec::CniResult, CniError> {
        let (id, _) = Self::id(req)?;
        let ipam = DhcpIpam::parse(req.config.as_bytes())?;
        let args = crate::skel::split_cni_args(&req.args);
        let (provide, request) = ipam.options(&args)?;
        let slot = self.slot(&id);
        let mut held = slot.lock().await;
        if let Some(lease) = held.as_ref().and_then(Keeper::lease) {
            return Ok(lease.result());
        }
        let netns = self.netns(&req.netns);
        let fail = |e: ClientError| match e {
            ClientError::Timeout(..) => CniError::try_later(format!("{id}: {e}"), ""),
            _ => CniError::internal(format!("{id}: {e}"), ""),
        };
        let mac = prepare_link(Path::new(&netns), &req.ifname)
            .await
            .map_err(fail)?;
        let client = ClientOptions {
            client_id: id.clone(),
            mac,
            provide,
            request,
        };
        tracing::info!(client = %id, "acquiring lease");
        let sock = ClientSocket::open(Path::new(&netns), &req.ifname, None).map_err(fail)?;
        let lease = sock
            .acquire(&client, None, self.config.timing.timeout)
            .await
            .map_err(fail)?;
        tracing::info!(client = %id, address = %lease.address, lease_s = lease.lease_secs, "lease acquired");
        let result = lease.result();
        let rec = Record {
            netns,
            ifname: req.ifname.clone(),
            client,
            lease,
        };
        if let Err(e) = self.store.save(&rec) {
            // Give the address back rather than hold a lease nobody could resume.
            let _ = sock.release(&rec.client, &rec.lease).await;
            return Err(CniError::io("persisting DHCP lease", e));
        }
        *held = Some(Keeper::spawn(rec, self.store.clone(), self.config.timing));
        Ok(result)
    }

    async fn del(&self, req: &Request) -> Result<(), CniError> {
        let (id, _) = Self::id(req)?;
        let slot = self.slot(&id);
        let mut held = slot.lock().await;
        if let Some(k) = held.take() {
            k.release(self.config.timing.timeout).await;
        }
        drop(held);
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        Ok(())
    }

    /// GC (1.1): releases every lease of the request's network whose
    /// (container id, ifname) is not in `cni.dev/valid-attachments`.
    async fn gc(&self, req: &Request) -> Result<(), CniError> {
        let net = NetConf::parse(req.config.as_bytes())?;
        let valid = valid_attachments(req.config.as_bytes())?;
        let ids: Vec<String> = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let mut parts = id.splitn(3, '/');
            let (Some(cid), Some(network), Some(ifname)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let keep = valid
                .iter()
                .any(|(c, i)| c == cid && (i.is_empty() || i == ifname));
            if network != net.name || keep {
                continue;
            }
            tracing::info!(client = %id, "GC: attachment no longer valid");
            let slot = self.slot(&id);
            let mut held = slot.lock().await;
            if let Some(k) = held.take() {
                k.release(self.config.timing.timeout).await;
            }
        }
        Ok(())
    }

    async fn check(&self, req: &Request) -> Result<(), CniError> {
        let (id, _) = Self::id(req)?;
        let slot = self.slot(&id);
        let held = slot.lock().await;
        match held.as_ref().and_then(Keeper::lease) {
            Some(l) if l.expiry_ms() > super::client::now_ms() => Ok(()),
            Some(_) => Err(CniError::internal(format!("{id}: lease expired"), "")),
            None => Err(CniError::internal(format!("{id}: no DHCP lease held"), "")),
        }
    }
}

/// `(containerID, ifname)` pairs of `cni.dev/valid-attachments` (ifname may be empty).
fn valid_attachments(config: &[u8]) -> Result<Vec<(String, String)>, CniError> {
    #[derive(serde::Deserialize)]
    struct Attachment {
        #[serde(rename = "containerID")]
        container_id: String,
        #[serde(default)]
        ifname: String,
    }
    #[derive(serde::Deserialize)]
    struct Gc {
        #[serde(default, rename = "cni.dev/valid-attachments")]
        valid: Vec<Attachment>,
    }
    let gc: Gc = serde_json::from_slice(config)
        .map_err(|e| CniError::config(format!("cni.dev/valid-attachments: {e}"), ""))?;
    Ok(gc
        .valid
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect())
}

async fn serve(d: Arc<Daemon>, conn: UnixStream) {
    let (rd, mut wr) = conn.into_split();
    let mut line = Vec::new();
    let mut rd = tokio::io::BufReader::new(rd).take(MAX_LINE);
    let read = tokio::time::timeout(REQUEST_READ_LIMIT, rd.read_until(b'\n', &mut line)).await;
    let reply = match read {
        Ok(Ok(_)) if line.last() == Some(&b'\n') => {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => d.handle(req).await,
                Err(e) => Reply::failed(&CniError::decode(format!("bad request: {e}"), "")),
            }
        }
        _ => return,
    };
    if let Ok(mut body) = serde_json::to_vec(&reply) {
        body.push(b'\n');
        let _ = wr.write_all(&body).await;
    }
}

/// Binds the socket: a stale socket file (no daemon answers) is replaced,
/// a live one is an error.
fn listen(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("a daemon already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: DaemonConfig) -> std::io::Result<()> {
    let prefix = |p: &Path| PathBuf::from(format!("{}{}", config.host_prefix, p.display()));
    let socket = prefix(&config.socket_path);
    let store = RecordStore::open(&prefix(&config.state_dir))?;
    if let Some(pid) = &config.pid_file {
        if !pid.is_absolute() {
            return Err(std::io::Error::other(format!(
                "Error writing pidfile {}: path not absolute",
                pid.display()
            )));
        }
        std::fs::write(pid, std::process::id().to_string())?;
    }
    let listener = listen(&socket)?;
    let d = Arc::new(Daemon {
        slots: Mutex::new(HashMap::new()),
        store: store.clone(),
        config: config.clone(),
    });
    let (records, bad) = store.load();
    for p in bad {
        tracing::warn!(path = %p.display(), "ignoring unreadable lease record");
    }
    for rec in records {
        tracing::info!(client = %rec.client.client_id, address = %rec.lease.address, "resuming lease");
        let slot = d.slot(&rec.client.client_id);
        *slot.lock().await = Some(Keeper::spawn(rec, store.clone(), config.timing));
    }
    tracing::info!(socket = %socket.display(), "dhcp daemon listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            c = listener.accept() => match c {
                Ok((conn, _)) => { tokio::spawn(serve(d.clone(), conn)); }
                Err(e) => tracing::warn!(error = %e, "accept"),
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(pid) = &config.pid_file {
        let _ = std::fs::remove_file(pid);
    }
    Ok(())
}

/// The plugin side: one request, one reply over `socket`. Failing to reach
/// the daemon is code 11 (try again later).
pub fn call(socket: &Path, req: &Request, limit: Duration) -> Result<Reply, CniError> {
    let dial = |e: std::io::Error| {
        CniError::try_later(
            format!("error dialing DHCP daemon: {e}"),
            socket.display().to_string(),
        )
    };
    let mut conn = std::os::unix::net::UnixStream::connect(socket).map_err(dial)?;
    conn.set_read_timeout(Some(limit)).map_err(dial)?;
    conn.set_write_timeout(Some(limit)).map_err(dial)?;
    super::protocol::write_line(&mut conn, req)
        .map_err(|e| CniError::io("error calling DHCP daemon", e))?;
    super::protocol::read_line(&mut BufReader::new(&conn))
        .map_err(|e| CniError::io("error reading DHCP daemon reply", e))
}
