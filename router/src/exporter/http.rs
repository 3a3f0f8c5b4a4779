//! The HTTP endpoint (`[metrics] listen`): `GET /metrics` (Prometheus
//! text), `/healthz` (200 while the process serves), `/readyz` (200 once
//! the node is ready, else 503 with the reasons). With `[subnet]` it
//! serves from the start, while the pod range is leased from etcd
//! ([`Phase::Starting`]: `/readyz` 503 with what it waits for). HTTP/1.1 by hyper, with
//! a header read timeout, a bound on each connection's life and on the
//! connections served at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::bgp;
use crate::control::status::StatusSource;

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send the request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives.
const CONNECTION_LIFE: Duration = Duration::from_secs(60);

/// What the endpoint reports on.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Before the node's config is complete (its pod range is being
    /// leased): why it is not ready yet.
    Starting(String),
    /// The running node.
    Running(Box<StatusSource>),
}

/// A running HTTP endpoint; dropped or [`MetricsServer::stop`]ped, it closes.
#[derive(Debug)]
pub struct MetricsServer {
    task: JoinHandle<()>,
    /// The bound address (useful with port 0).
    pub local: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `source`. Must run inside a tokio runtime.
    pub fn start(
        addr: SocketAddr,
        source: StatusSource,
        handle: PrometheusHandle,
    ) -> std::io::Result<Self> {
        let (_, phase) = watch::channel(Phase::Running(Box::new(source)));
        Self::start_phased(addr, phase, handle)
    }

    /// Binds `addr` and serves whatever `phase` holds at each request.
    pub fn start_phased(
        addr: SocketAddr,
        phase: watch::Receiver<Phase>,
        handle: PrometheusHandle,
    ) -> std::io::Result<Self> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std)?;
        let local = listener.local_addr()?;
        info!(%local, "metrics endpoint listening");
        let task = tokio::spawn(serve(listener, Arc::new((phase, handle))));
        Ok(Self { task, local })
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<(watch::Receiver<Phase>, PrometheusHandle)>;

async fn serve(listener: TcpListener, shared: Shared) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "metrics endpoint accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req| respond(req, Arc::clone(&shared)));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFE, conn).await;
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn respond(
    req: Request<Incoming>,
    shared: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (phase, handle) = &*shared;
    let phase = phase.borrow().clone();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            if let Phase::Running(source) = &phase
                && let Some(peers) = source.bgp_peers().await
            {
                bgp::record(&peers);
            }
            handle.run_upkeep();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let why = match &phase {
                Phase::Starting(why) => vec![why.clone()],
                Phase::Running(source) => {
                    let g = source.gather().await;
                    source.not_ready(&g)
                }
            };
            if why.is_empty() {
                reply(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {}\n", why.join("; ")),
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    })
}
