//! The listening sockets: MD5 keys per peer, accepted connections routed to
//! the peer task that owns the remote address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::{PeerCmd, md5, minttl};
use crate::error::Error;

/// Binds `addr` and installs the MD5 keys of `keys` (peer address, key).
/// With `gtsm` the listening socket sends with TTL 255 and gets the TTL
/// floor of 255 before `listen()`, so a SYN from farther away never
/// completes a handshake.
pub(crate) fn bind(
    addr: SocketAddr,
    keys: &[(IpAddr, String)],
    gtsm: bool,
) -> Result<TcpListener, Error> {
    let err = |source| Error::Listen { addr, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err)?;
    }
    for (peer, key) in keys {
        if peer.is_ipv6() && !addr.is_ipv6() {
            continue;
        }
        md5::set_md5(&sock, addr.is_ipv6(), *peer, key.as_bytes()).map_err(|source| {
            Error::Md5 {
                peer: *peer,
                source,
            }
        })?;
    }
    if gtsm {
        minttl::set_gtsm(&sock, addr.is_ipv6()).map_err(err)?;
    }
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(128).map_err(err)?;
    TcpListener::from_std(sock.into()).map_err(err)
}

/// Which peer task takes a connection from an address; the speaker
/// publishes a new map when peers are added or removed.
pub(crate) type PeerRoutes = watch::Receiver<HashMap<IpAddr, mpsc::Sender<PeerCmd>>>;

/// Accepts forever, handing each connection to its peer's task; connections
/// from unknown addresses are closed at once.
pub(crate) async fn run(listener: TcpListener, peers: PeerRoutes) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                // The guard must not live across the send.
                let tx = peers.borrow().get(&from.ip().to_canonical()).cloned();
                match tx {
                    Some(tx) => {
                        let _ = tx.send(PeerCmd::Incoming(stream)).await;
                    }
                    None => debug!(%from, "connection from an unknown address refused"),
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
