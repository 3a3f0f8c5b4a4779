//! Connectivity checks: the pod-to-pod ping matrix and a TCP transfer whose
//! bytes are verified end to end.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Pod, PodId};
use crate::error::{Error, Result};

/// Outcome of one ping.
#[derive(Debug, Clone, PartialEq)]
pub struct PingPair {
    /// Source pod.
    pub from: PodId,
    /// Destination pod.
    pub to: PodId,
    /// Source address.
    pub from_ip: Ipv4Addr,
    /// Destination address.
    pub to_ip: Ipv4Addr,
    /// Round-trip time when a reply came back.
    pub rtt_ms: Option<f64>,
}

/// Every pod pinging every other pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PingReport {
    /// One entry per ordered pair.
    pub pairs: Vec<PingPair>,
}

impl PingReport {
    /// True when every pair got a reply (and there was at least one pair).
    pub fn all_ok(&self) -> bool {
        !self.pairs.is_empty() && self.pairs.iter().all(|p| p.rtt_ms.is_some())
    }

    /// The pairs that got no reply.
    pub fn failures(&self) -> Vec<&PingPair> {
        self.pairs.iter().filter(|p| p.rtt_ms.is_none()).collect()
    }
}

impl fmt::Display for PingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok = self.pairs.len() - self.failures().len();
        writeln!(f, "ping matrix: {ok}/{} pairs ok", self.pairs.len())?;
        for p in self.failures() {
            writeln!(f, "  FAIL {} -> {}", p.from_ip, p.to_ip)?;
        }
        Ok(())
    }
}

/// Parses the average RTT from ping's summary line.
fn parse_ping_avg(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.contains("min/avg/max"))?;
    let nums = line.split('=').nth(1)?;
    nums.trim().split('/').nth(1)?.parse().ok()
}

/// Result of [`Cluster::tcp_transfer_check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransferCheck {
    /// Bytes received (equal to bytes sent).
    pub bytes: u64,
    /// FNV-1a hash of the stream, equal on both ends.
    pub hash: u64,
    /// Wall time of the transfer.
    pub elapsed: Duration,
}

/// FNV-1a over a stream, chunk by chunk.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64), so corruption shows.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Pings in flight at once in [`Cluster::ping_matrix`].
pub const PING_WORKERS: usize = 16;

/// One ping from namespace `ns`: a reply within 2 s counts (probes every 0.2 s).
fn ping_once(ns: &str, to_ip: Ipv4Addr, from: PodId, to: PodId, from_ip: Ipv4Addr) -> PingPair {
    let rtt = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", "2",
        ])
        .arg(to_ip.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_ping_avg(&String::from_utf8_lossy(&o.stdout)));
    PingPair {
        from,
        to,
        from_ip,
        to_ip,
        rtt_ms: rtt,
    }
}

fn receive(listener: &TcpListener, deadline: Instant) -> std::io::Result<(u64, u64)> {
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no connection",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; 256 * 1024];
    let (mut n, mut h) = (0u64, Fnv::new());
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "transfer too slow",
            ));
        }
        let r = stream.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, h.0))
}

fn send(to: SocketAddr, bytes: u64, deadline: Instant) -> std::io::Result<(u64, u64)> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut left, mut h, mut state) = (bytes, Fnv::new(), 0x9e37_79b9_7f4a_7c15_u64 ^ bytes);
    while left > 0 {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "transfer too slow",
            ));
        }
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        fill(&mut buf[..n], &mut state);
        stream.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    // Wait for the receiver to close: it has read everything by then.
    let mut rest = [0u8; 16];
    while stream.read(&mut rest)? > 0 {}
    Ok((bytes, h.0))
}

impl Cluster {
    /// Every pod pings every other pod (up to [`PING_WORKERS`] pings at once).
    pub fn ping_matrix(&self) -> Result<PingReport> {
        let all: Vec<PodId> = self.all_pods().map(Pod::id).collect();
        self.ping_matrix_of(&all)
    }

    /// Every pod of `ids` pings every other pod of `ids`.
    pub fn ping_matrix_of(&self, ids: &[PodId]) -> Result<PingReport> {
        let pods: Vec<(PodId, Ipv4Addr, &str)> = ids
            .iter()
            .map(|&(i, j)| self.pod(i, j))
            .map(|p| (p.id(), p.ip(), p.ns().name()))
            .collect();
        let jobs: Vec<_> = pods
            .iter()
            .flat_map(|a| pods.iter().filter(move |b| b.0 != a.0).map(move |b| (a, b)))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut pairs: Vec<PingPair> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..PING_WORKERS.min(jobs.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(((from, from_ip, ns), (to, to_ip, _))) = jobs.get(i) else {
                                break;
                            };
                            out.push((i, ping_once(ns, *to_ip, *from, *to, *from_ip)));
                        }
                        out
                    })
                })
                .collect();
            let mut all: Vec<(usize, PingPair)> = workers
                .into_iter()
                .filter_map(|w| w.join().ok())
                .flatten()
                .collect();
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, p)| p).collect()
        });
        if pairs.len() != jobs.len() {
            return Err(Error::measure("ping", "a ping worker panicked"));
        }
        pairs.shrink_to_fit();
        Ok(PingReport { pairs })
    }

    /// Sends `bytes` pseudo-random bytes over TCP from pod `from` to pod
    /// `to` and checks that count and hash match on both ends.
    pub fn tcp_transfer_check(&self, from: PodId, to: PodId, bytes: u64) -> Result<TransferCheck> {
        let (src, dst) = (self.pod(from.0, from.1), self.pod(to.0, to.1));
        let dst_ip = dst.ip();
        // 10 s plus 1 s per 10 MB: generous for a working path, bounded for a broken one.
        let deadline = Instant::now() + Duration::from_secs(10 + bytes / 10_000_000);
        let (port_tx, port_rx) = mpsc::channel();
        let t0 = Instant::now();
        let (recv, sent) = std::thread::scope(|s| {
            let server = s.spawn(|| {
                dst.ns().run_in(move || {
                    let listener = TcpListener::bind((dst_ip, 0))?;
                    let _ = port_tx.send(listener.local_addr()?.port());
                    receive(&listener, deadline)
                })
            });
            let port = port_rx.recv_timeout(Duration::from_secs(5));
            let client = port.map(|port| {
                src.ns()
                    .run_in(move || send(SocketAddr::from((dst_ip, port)), bytes, deadline))
            });
            (server.join(), client)
        });
        let err = |m: String| Error::measure("tcp-check", m);
        let recv = recv
            .map_err(|_| err("receiver panicked".into()))??
            .map_err(|e| err(format!("receiver: {e}")))?;
        let sent = sent
            .map_err(|_| err("receiver never listened".into()))??
            .map_err(|e| err(format!("sender: {e}")))?;
        if recv != sent {
            return Err(err(format!(
                "mismatch: sent {} bytes hash {:016x}, received {} bytes hash {:016x}",
                sent.0, sent.1, recv.0, recv.1
            )));
        }
        Ok(TransferCheck {
            bytes: recv.0,
            hash: recv.1,
            elapsed: t0.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_parses() {
        let out = "--- 10.0.0.1 ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = 0.041/0.052/0.060/0.000 ms\n";
        assert_eq!(parse_ping_avg(out), Some(0.052));
        assert_eq!(parse_ping_avg("1 packets transmitted, 0 received"), None);
    }

    #[test]
    fn transfer_hashes_differ_on_corruption() {
        let mut a = vec![0u8; 1000];
        let mut st = 7;
        fill(&mut a, &mut st);
        let mut h1 = Fnv::new();
        h1.update(&a);
        a[500] ^= 1;
        let mut h2 = Fnv::new();
        h2.update(&a);
        assert_ne!(h1.0, h2.0);
    }

    #[test]
    fn loopback_transfer_matches() {
        let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let srv = std::thread::spawn(move || receive(&l, deadline).unwrap());
        let sent = send(addr, 1_000_003, deadline).unwrap();
        assert_eq!(srv.join().unwrap(), sent);
        assert_eq!(sent.0, 1_000_003);
    }
}
