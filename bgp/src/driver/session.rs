//! The peer task: owns one [`Session`], its connections and timers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use super::{PeerCmd, PeerEvent, Task, md5, minttl};
use crate::fsm::{ConnId, Input, Output, Session, State};
use crate::rib::PeerKey;
use crate::wire::{self, DecodeError, Message, SessionCaps, Update};

/// Decoded prefixes a session queues before handing them to the speaker.
const PENDING_PREFIXES: usize = 1024;

/// Connection-level events from child tasks.
#[derive(Debug)]
enum ConnEvent {
    Frames(ConnId, Bytes),
    Malformed(ConnId, DecodeError),
    Closed(ConnId),
    Connected(u64, TcpStream),
    ConnectFailed(u64),
}

struct ConnIo {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    writer_task: tokio::task::JoinHandle<()>,
    _reader: Task,
    local: SocketAddr,
}

/// Everything the peer task needs besides the session.
pub(crate) struct PeerParams {
    pub(crate) key: PeerKey,
    pub(crate) addr: SocketAddr,
    pub(crate) password: Option<String>,
    pub(crate) local: Option<IpAddr>,
    pub(crate) connect_timeout: Duration,
    /// GTSM: TTL 255 out, nothing below 255 in.
    pub(crate) ttl_security: bool,
}

/// Spawns the peer task; it runs until [`PeerCmd::Stop`] or until the
/// command channel closes.
pub(crate) fn spawn(
    params: PeerParams,
    session: Session,
    cmds: mpsc::Receiver<PeerCmd>,
    events: mpsc::Sender<PeerEvent>,
) -> tokio::task::JoinHandle<()> {
    let span = info_span!("peer", addr = %params.addr);
    tokio::spawn(
        async move {
            let (ctx, crx) = mpsc::channel(64);
            let mut peer = Peer {
                params,
                session,
                conns: HashMap::new(),
                next_conn: 1,
                connect: None,
                attempt: 0,
                ctx,
                events,
                state: State::Idle,
                pending: Vec::new(),
                pending_prefixes: 0,
                closing: Vec::new(),
            };
            peer.run(cmds, crx).await;
        }
        .instrument(span),
    )
}

struct Peer {
    params: PeerParams,
    session: Session,
    conns: HashMap<ConnId, ConnIo>,
    next_conn: u64,
    connect: Option<Task>,
    attempt: u64,
    ctx: mpsc::Sender<ConnEvent>,
    events: mpsc::Sender<PeerEvent>,
    state: State,
    pending: Vec<Update>,
    /// Prefixes in `pending`.
    pending_prefixes: usize,
    /// Writers of closed connections still flushing (a final NOTIFICATION).
    closing: Vec<tokio::task::JoinHandle<()>>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Peer {
    async fn run(&mut self, mut cmds: mpsc::Receiver<PeerCmd>, mut crx: mpsc::Receiver<ConnEvent>) {
        self.input(Input::Start).await;
        loop {
            let deadline = self.session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(PeerCmd::Incoming(stream)) => {
                        if self.params.ttl_security {
                            // The listener has the floor too when every peer
                            // on it uses GTSM; otherwise this is the guard.
                            if let Err(e) = minttl::set_gtsm(&stream, self.params.addr.is_ipv6()) {
                                warn!(error = %e, "GTSM on an accepted connection failed");
                                continue;
                            }
                        }
                        let conn = self.add_conn(stream);
                        self.input(Input::Connected { conn, outgoing: false }).await;
                    }
                    Some(PeerCmd::Send(msgs)) => {
                        if let Some(io) = self.session.established_conn().and_then(|c| self.conns.get(&c)) {
                            for m in msgs {
                                let _ = io.writer.send(m);
                            }
                        }
                    }
                    Some(PeerCmd::BfdDown) => {
                        warn!("BFD down: resetting the session");
                        self.input(Input::Stop).await;
                        self.input(Input::Start).await;
                    }
                    Some(PeerCmd::Stop { graceful }) => {
                        self.stop(graceful).await;
                        return;
                    }
                    None => {
                        self.stop(false).await;
                        return;
                    }
                },
                Some(ev) = crx.recv() => self.conn_event(ev).await,
                () = sleep_until(deadline) => self.input(Input::Tick).await,
            }
        }
    }

    async fn stop(&mut self, graceful: bool) {
        if graceful {
            // Close TCP without a NOTIFICATION: GR helpers keep our routes.
            self.conns.clear();
        } else {
            self.input(Input::Stop).await;
        }
        // Let the writers flush what was queued (the Cease) before exiting.
        let mut writers: Vec<_> = self.conns.drain().map(|(_, io)| io.writer_task).collect();
        writers.append(&mut self.closing);
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
        }
    }

    fn add_conn(&mut self, stream: TcpStream) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        let reader = Task(tokio::spawn(reader(conn, rd, self.ctx.clone())));
        let writer_task = tokio::spawn(writer(conn, wr, wrx, self.ctx.clone()));
        self.conns.insert(
            conn,
            ConnIo {
                writer: wtx,
                writer_task,
                _reader: reader,
                local,
            },
        );
        conn
    }

    async fn conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Frames(conn, chunk) => {
                let mut rest = &chunk[..];
                while let Ok(Some(n)) = wire::frame_len(rest) {
                    let caps = self
                        .session
                        .negotiated()
                        .map(|n| n.caps)
                        .unwrap_or_default();
                    let input = match wire::decode(&rest[..n], &caps) {
                        Ok(msg) => Input::Received { conn, msg },
                        Err(error) => Input::Malformed { conn, error },
                    };
                    rest = &rest[n..];
                    self.input(input).await;
                    if !self.conns.contains_key(&conn) {
                        break;
                    }
                }
                self.flush_updates().await;
            }
            ConnEvent::Malformed(conn, error) => self.input(Input::Malformed { conn, error }).await,
            ConnEvent::Closed(conn) => self.input(Input::Closed { conn }).await,
            ConnEvent::Connected(attempt, stream) => {
                if attempt == self.attempt && self.connect.take().is_some() {
                    let conn = self.add_conn(stream);
                    self.input(Input::Connected {
                        conn,
                        outgoing: true,
                    })
                    .await;
                }
            }
            ConnEvent::ConnectFailed(attempt) => {
                if attempt == self.attempt && self.connect.take().is_some() {
                    self.input(Input::ConnectFailed).await;
                }
            }
        }
    }

    async fn input(&mut self, input: Input) {
        let outs = self.session.handle(now(), input);
        for o in outs {
            self.output(o).await;
        }
        let st = self.session.state();
        if st != self.state {
            self.state = st;
            debug!(state = ?st, "state");
            self.emit(PeerEvent::State(self.params.key, st)).await;
        }
    }

    async fn emit(&mut self, ev: PeerEvent) {
        self.flush_updates().await;
        self.send_event(ev).await;
    }

    async fn flush_updates(&mut self) {
        if !self.pending.is_empty() {
            self.pending_prefixes = 0;
            let batch = std::mem::take(&mut self.pending);
            self.send_event(PeerEvent::Updates(self.params.key, batch))
                .await;
        }
    }

    /// Hands an event to the speaker, waiting while its queue is full (the
    /// consumer of the routes is slow). Meanwhile this peer is not read, so
    /// the session is kept alive from here: KEEPALIVEs go out when due and
    /// our hold timers wait for the unread messages.
    async fn send_event(&mut self, ev: PeerEvent) {
        let events = self.events.clone();
        let send = events.send(ev);
        tokio::pin!(send);
        loop {
            let due = self.session.keepalive_deadline().map(Instant::from_std);
            tokio::select! {
                _ = &mut send => return,
                () = sleep_until(due) => {
                    for o in self.session.backpressured(now()) {
                        if let Output::Send { conn, msg } = o {
                            self.send_msg(conn, &msg);
                        }
                    }
                }
            }
        }
    }

    /// Encodes `msg` for the session's capabilities and queues it on `conn`.
    fn send_msg(&self, conn: ConnId, msg: &Message) {
        if let Some(io) = self.conns.get(&conn) {
            let caps: SessionCaps = self
                .session
                .negotiated()
                .map(|n| n.caps)
                .unwrap_or_default();
            let mut buf = Vec::new();
            wire::encode(msg, &caps, &mut buf);
            if let Message::Notification(n) = msg {
                warn!(code = n.code, subcode = n.subcode, "sending NOTIFICATION");
            }
            let _ = io.writer.send(buf);
        }
    }

    async fn output(&mut self, o: Output) {
        let key = self.params.key;
        match o {
            Output::Connect => self.connect(),
            Output::CancelConnect => self.connect = None,
            Output::Send { conn, msg } => self.send_msg(conn, &msg),
            Output::Close { conn } => {
                // Dropping the writer's sender lets it flush, then shut down.
                if let Some(io) = self.conns.remove(&conn) {
                    drop(io.writer);
                    self.closing.retain(|h| !h.is_finished());
                    // A peer that stops reading cannot pin the socket: the
                    // flush gets a few seconds, then the writer is aborted.
                    let abort = io.writer_task.abort_handle();
                    let h = io.writer_task;
                    self.closing.push(tokio::spawn(async move {
                        if tokio::time::timeout(Duration::from_secs(5), h)
                            .await
                            .is_err()
                        {
                            abort.abort();
                        }
                    }));
                }
            }
            Output::Established { conn, negotiated } => {
                let local = self
                    .conns
                    .get(&conn)
                    .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.local.ip().to_canonical());
                self.emit(PeerEvent::Established {
                    key,
                    negotiated,
                    local,
                })
                .await;
            }
            Output::Update(u) => {
                self.pending_prefixes += u.nlri.len()
                    + u.withdrawn.len()
                    + u.mp_reach.as_ref().map_or(0, |r| r.nlri.len())
                    + u.mp_unreach.as_ref().map_or(0, |r| r.withdrawn.len());
                self.pending.push(u);
                // Hand over in small pieces: decoded prefixes are several
                // times their wire size, and a full table must not pile up
                // decoded while the consumer is busy installing.
                if self.pending_prefixes >= PENDING_PREFIXES {
                    self.flush_updates().await;
                }
            }
            Output::RouteRefresh(f) => self.emit(PeerEvent::RouteRefresh(key, f)).await,
            Output::Down { reason, graceful } => {
                self.emit(PeerEvent::Down {
                    key,
                    reason,
                    graceful,
                })
                .await;
            }
            Output::FlushStale(f) => self.emit(PeerEvent::FlushStale(key, f)).await,
            Output::EndOfRib(f) => self.emit(PeerEvent::EndOfRib(key, f)).await,
        }
    }

    fn connect(&mut self) {
        self.attempt += 1;
        let attempt = self.attempt;
        let addr = self.params.addr;
        let password = self.params.password.clone();
        let local = self.params.local;
        let gtsm = self.params.ttl_security;
        let timeout = self.params.connect_timeout;
        let tx = self.ctx.clone();
        self.connect = Some(Task(tokio::spawn(async move {
            let ev = match tokio::time::timeout(
                timeout,
                connect(addr, local, password.as_deref(), gtsm),
            )
            .await
            {
                Ok(Ok(s)) => ConnEvent::Connected(attempt, s),
                Ok(Err(e)) => {
                    debug!(error = %e, "connect failed");
                    ConnEvent::ConnectFailed(attempt)
                }
                Err(_) => ConnEvent::ConnectFailed(attempt),
            };
            let _ = tx.send(ev).await;
        })));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn connect(
    addr: SocketAddr,
    local: Option<IpAddr>,
    password: Option<&str>,
    gtsm: bool,
) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(l) = local {
        sock.bind(SocketAddr::new(l, 0))?;
    }
    if let Some(p) = password {
        md5::set_md5(&sock, addr.is_ipv6(), addr.ip(), p.as_bytes())?;
    }
    if gtsm {
        minttl::set_gtsm(&sock, addr.is_ipv6())?;
    }
    sock.connect(addr).await
}

async fn reader(conn: ConnId, mut rd: OwnedReadHalf, tx: mpsc::Sender<ConnEvent>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(ConnEvent::Closed(conn)).await;
                return;
            }
            Ok(_) => {}
        }
        let mut end = 0;
        let err = loop {
            match wire::frame_len(&buf[end..]) {
                Ok(Some(n)) => end += n,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if end > 0 {
            let chunk = buf.split_to(end).freeze();
            if tx.send(ConnEvent::Frames(conn, chunk)).await.is_err() {
                return;
            }
        }
        if let Some(e) = err {
            let _ = tx.send(ConnEvent::Malformed(conn, e)).await;
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
}

async fn writer(
    conn: ConnId,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::Sender<ConnEvent>,
) {
    while let Some(mut buf) = rx.recv().await {
        // Coalesce what is queued into one write.
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() {
            let _ = tx.send(ConnEvent::Closed(conn)).await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}
