//! The task that keeps one lease: sleeps until T1, renews with the granting
//! server until T2, rebinds with any server until expiry, re-acquires the
//! same address after expiry, persists every new lease, and on DEL sends
//! DHCPRELEASE and forgets it. It owns its [`Record`]; the daemon talks to
//! it through a stop signal and reads the current lease from a watch.
//!
//! The daemon's socket is opened per transaction inside the pod's
//! namespace, so no thread or socket pins the namespace between renewals;
//! when the namespace is gone the lease is forgotten (nothing can be sent).

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{ClientError, ClientSocket, now_ms};
use super::lease::{Lease, Phase};
use super::store::{Record, RecordStore};

/// Client timing, from the daemon's flags.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Acquisition deadline (`-timeout`).
    pub timeout: Duration,
    /// Longest wait between renew/rebind/re-acquire attempts (`-resendmax`).
    pub resend_max: Duration,
}

/// How a keeper stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// DEL: release and forget.
    Release,
}

/// The daemon's handle on one keeper task.
#[derive(Debug)]
pub struct Keeper {
    stop: watch::Sender<Option<Stop>>,
    lease: watch::Receiver<Option<Lease>>,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping `rec`.
    pub fn spawn(rec: Record, store: RecordStore, timing: Timing) -> Self {
        let (stop_tx, stop_rx) = watch::channel(None);
        let (lease_tx, lease_rx) = watch::channel(Some(rec.lease.clone()));
        let task = tokio::spawn(keep(rec, store, timing, stop_rx, lease_tx));
        Self {
            stop: stop_tx,
            lease: lease_rx,
            task,
        }
    }

    /// The current lease; `None` once the keeper has given it up.
    pub fn lease(&self) -> Option<Lease> {
        if self.task.is_finished() {
            return None;
        }
        self.lease.borrow().clone()
    }

    /// Releases the lease and waits (at most `limit`) for the task to end.
    pub async fn release(self, limit: Duration) {
        let _ = self.stop.send(Some(Stop::Release));
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn keep(
    mut rec: Record,
    store: RecordStore,
    timing: Timing,
    mut stop: watch::Receiver<Option<Stop>>,
    lease_tx: watch::Sender<Option<Lease>>,
) {
    let id = rec.client.client_id.clone();
    loop {
        if stop.borrow().is_some() {
            break;
        }
        let outcome = tokio::select! {
            r = step(&rec, timing) => r,
            r = stop.changed() => {
                if r.is_err() {
                    // The daemon dropped its handle (shutdown): keep the record.
                    return;
                }
                continue;
            }
        };
        match outcome {
            Ok(Some((lease, how))) => {
                tracing::info!(client = %id, address = %lease.address, expires_in_s = lease.lease_secs, %how, "lease extended");
                rec.lease = lease;
                if let Err(e) = store.save(&rec) {
                    tracing::warn!(client = %id, error = %e, "cannot persist lease");
                }
                let _ = lease_tx.send(Some(rec.lease.clone()));
            }
            Ok(None) => {}
            Err(e) if e.netns_gone() => {
                tracing::info!(client = %id, "namespace gone: forgetting lease");
                let _ = store.remove(&id);
                let _ = lease_tx.send(None);
                return;
            }
            Err(ClientError::Nak) => {
                tracing::info!(client = %id, "DHCPNAK: lease lost, re-acquiring");
                rec.lease.lease_secs = 0;
                rec.lease.t1_secs = 0;
                rec.lease.t2_secs = 0;
            }
            Err(e) => {
                tracing::info!(client = %id, error = %e, "lease not extended yet");
                tokio::select! {
                    () = tokio::time::sleep(timing.resend_max.min(Duration::from_secs(5))) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    // Released.
    match ClientSocket::open(Path::new(&rec.netns), &rec.ifname, Some(rec.lease.server)) {
        Ok(s) => match s.release(&rec.client, &rec.lease).await {
            Ok(()) => tracing::info!(client = %id, address = %rec.lease.address, "lease released"),
            Err(e) => tracing::warn!(client = %id, error = %e, "DHCPRELEASE failed"),
        },
        Err(e) => tracing::info!(client = %id, error = %e, "lease dropped without DHCPRELEASE"),
    }
    if let Err(e) = store.remove(&id) {
        tracing::warn!(client = %id, error = %e, "cannot remove lease record");
    }
    let _ = lease_tx.send(None);
}

/// One step of the lease's life at the current time: `Ok(Some)` is a new
/// lease and how it came (`renewed`, `rebound`, `reacquired`), `Ok(None)`
/// a finished wait.
async fn step(rec: &Record, timing: Timing) -> Result<Option<(Lease, &'static str)>, ClientError> {
    let now = now_ms();
    let max_ms = u64::try_from(timing.resend_max.as_millis()).unwrap_or(u64::MAX);
    let netns = Path::new(&rec.netns);
    match rec.lease.phase(now) {
        Phase::Bound { until_ms } => {
            // Make sure the namespace still exists before a long sleep.
            crate::ns::NetNs::open(netns)?;
            // At most an hour at a time: wall-clock steps are noticed.
            tokio::time::sleep(Duration::from_millis((until_ms - now).min(3_600_000))).await;
            Ok(None)
        }
        Phase::Renewing { until_ms } | Phase::Rebinding { until_ms } => {
            let rebind = matches!(rec.lease.phase(now), Phase::Rebinding { .. });
            let wait = Duration::from_millis(Lease::retry_ms(now, until_ms, max_ms));
            let sock = ClientSocket::open(netns, &rec.ifname, Some(rec.lease.server))?;
            match sock.extend(&rec.client, &rec.lease, rebind, wait).await {
                Err(ClientError::Timeout(..)) => Ok(None),
                r => r.map(|l| Some((l, if rebind { "rebound" } else { "renewed" }))),
            }
        }
        Phase::Expired => {
            let sock = ClientSocket::open(netns, &rec.ifname, None)?;
            match sock
                .acquire(&rec.client, Some(rec.lease.address), timing.timeout)
                .await
            {
                Ok(l) => Ok(Some((l, "reacquired"))),
                Err(ClientError::Timeout(..)) => {
                    tokio::time::sleep(timing.resend_max.min(Duration::from_secs(10))).await;
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
    }
}
