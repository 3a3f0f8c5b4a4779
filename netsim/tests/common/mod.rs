//! Shared pieces of the scenario tests: the real binaries, a CNI + BGP
//! cluster, TCP probes between arbitrary namespaces.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod churn;
pub mod scenario;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use netsim::netns::Netns;
use netsim::{Cluster, Routing, Topology};

/// Tools the scenarios need on the host.
pub const TOOLS: &[&str] = &["ip", "ping", "ethtool", "bird", "birdc", "nft"];

/// `target/<profile>/weftd`, next to `target/<profile>/deps/<this test>`.
pub fn weftd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("weftd")
}

/// weft's CNI plugins next to weftd; panics with the reason when missing
/// (`cargo test --workspace` builds them).
pub fn plugins() -> PathBuf {
    netsim::cni::plugin_dir_next_to(&weftd()).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster of `nodes` nodes with `pods` pods each, attached through the
/// CNI chain, routes over `routing`, namespaces tagged `hc`.
pub fn cluster(nodes: usize, pods: usize, routing: Routing) -> Cluster {
    cluster_attached(nodes, pods, routing, None)
}

/// [`cluster`] with weftd's conflist attaching pods by `attach` (`ptp`).
pub fn cluster_attached(
    nodes: usize,
    pods: usize,
    routing: Routing,
    attach: Option<&str>,
) -> Cluster {
    cluster_tagged("hc", nodes, pods, routing, attach)
}

/// [`cluster_attached`] with namespaces tagged `tag`.
pub fn cluster_tagged(
    tag: &str,
    nodes: usize,
    pods: usize,
    routing: Routing,
    attach: Option<&str>,
) -> Cluster {
    let w = weftd();
    assert!(
        w.exists(),
        "{} missing: cargo build -p weft-router",
        w.display()
    );
    let mut b = Topology::builder()
        .nodes(nodes)
        .pods_per_node(pods)
        .prefix_tag(tag)
        .weftd(&w)
        .cni(plugins())
        .routing(routing);
    if let Some(a) = attach {
        b = b.cni_attach(a);
    }
    b.build().unwrap()
}

/// Every weftd's log tail, for failure messages.
pub fn logs(c: &Cluster) -> String {
    c.weftds()
        .map(netsim::weftd::WeftdProcess::log_tail)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// A TCP server in `server` on `bind` that answers one connection with
/// the peer address it saw; a client in `client` connects to `target`.
/// Returns the peer address the server saw, or the error.
pub fn tcp_probe(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> Result<SocketAddr, String> {
    let (tx, rx) = mpsc::channel();
    let (seen, got) = std::thread::scope(|sc| {
        let srv = sc.spawn(|| {
            server.run_in(move || -> std::io::Result<SocketAddr> {
                let l = TcpListener::bind(bind)?;
                l.set_nonblocking(true)?;
                let _ = tx.send(());
                let end = std::time::Instant::now() + Duration::from_secs(8);
                loop {
                    match l.accept() {
                        Ok((mut s, peer)) => {
                            s.set_nonblocking(false)?;
                            s.write_all(peer.to_string().as_bytes())?;
                            return Ok(peer);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if std::time::Instant::now() > end {
                                return Err(std::io::Error::other("no connection in 8 s"));
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
        });
        let got = match rx.recv_timeout(Duration::from_secs(5)) {
            Err(_) => Err("server did not listen".to_owned()),
            Ok(()) => client
                .run_in(move || -> std::io::Result<String> {
                    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("client → {target}: {e}"))),
        };
        let seen = srv
            .join()
            .map_err(|_| "server panicked".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .and_then(|r| r.map_err(|e| format!("server on {bind}: {e}")));
        (seen, got)
    });
    let seen = seen?;
    let got = got?;
    if got != seen.to_string() {
        return Err(format!("client read {got:?}, server saw {seen}"));
    }
    Ok(seen)
}
