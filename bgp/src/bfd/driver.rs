//! The tokio driver around [`BfdSession`]: single-hop BFD (RFC 5881) on
//! UDP 3784.
//!
//! - One receiving socket per family, bound to port 3784, with
//!   `IP_MINTTL` / `IPV6_MINHOPCOUNT` 255: the kernel drops anything that
//!   crossed a router (§5).
//! - Each session sends from its own socket, source port in 49152–65535
//!   (§4), TTL / hop limit 255.
//! - A received packet goes to the session named by Your Discriminator, or
//!   when that is 0 to the session of its source address; a packet whose
//!   source is not the session's peer is dropped.
//! - One task owns every session; [`BfdHandle`] adds and removes sessions
//!   and the state changes come out on a channel as [`BfdEvent`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::bfd::{BfdConfig, BfdSession, BfdState, ControlPacket, Diag, Input, Output};
use crate::driver::minttl;

/// The single-hop BFD control port (RFC 5881 §4).
pub const BFD_PORT: u16 = 3784;
/// The lowest source port a session sends from (RFC 5881 §4).
const SRC_PORT_MIN: u16 = 49152;

/// Timers shared by every session of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    /// Desired Min TX and Required Min RX once Up.
    pub interval: Duration,
    /// Detect Mult.
    pub multiplier: u8,
}

/// A session changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    /// The peer.
    pub peer: IpAddr,
    /// The state before.
    pub from: BfdState,
    /// The state now.
    pub to: BfdState,
    /// Our diagnostic.
    pub diag: Diag,
    /// The peer said AdminDown: planned maintenance, not a failure.
    pub peer_admin_down: bool,
}

impl BfdEvent {
    /// The session was Up and is now down for a reason other than the
    /// peer's AdminDown: the path failed.
    pub fn is_failure(&self) -> bool {
        self.from == BfdState::Up && self.to == BfdState::Down && !self.peer_admin_down
    }
}

#[derive(Debug)]
enum Cmd {
    Add(IpAddr),
    Remove(IpAddr),
}

/// Adds and removes sessions. Dropping every handle stops the driver.
#[derive(Debug, Clone)]
pub struct BfdHandle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl BfdHandle {
    /// Starts a session with `peer` (nothing happens if it exists).
    pub fn add(&self, peer: IpAddr) {
        let _ = self.tx.send(Cmd::Add(peer.to_canonical()));
    }

    /// Ends the session with `peer`, telling it AdminDown first.
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.tx.send(Cmd::Remove(peer.to_canonical()));
    }
}

/// Binds the receiving sockets on port `port` (3784 outside tests) and
/// starts the driver task. The IPv4 socket must bind; the IPv6 one is
/// skipped with a warning when the host has no IPv6.
pub fn spawn(
    timers: BfdTimers,
    port: u16,
) -> io::Result<(BfdHandle, mpsc::UnboundedReceiver<BfdEvent>)> {
    let rx4 = rx_socket(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
    let rx6 = match rx_socket(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "BFD: no IPv6 socket");
            None
        }
    };
    let (tx, cmds) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let task = Driver {
        timers,
        port,
        rx4,
        rx6,
        sessions: HashMap::new(),
        by_disc: HashMap::new(),
        events: ev_tx,
        rng: seed | 1,
    };
    tokio::spawn(task.run(cmds).instrument(info_span!("bfd")));
    Ok((BfdHandle { tx }, ev_rx))
}

fn rx_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    minttl::set_min_ttl(&sock, addr.is_ipv6(), 255)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// A socket for sending to `peer`: TTL 255, a free source port in
/// 49152–65535 starting from a random one.
fn tx_socket(peer: IpAddr, start: u16) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let sock = Socket::new(
        if v6 { Domain::IPV6 } else { Domain::IPV4 },
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if v6 {
        sock.set_only_v6(true)?;
        sock.set_unicast_hops_v6(255)?;
    } else {
        sock.set_ttl_v4(255)?;
    }
    sock.set_nonblocking(true)?;
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let span = u32::from(u16::MAX - SRC_PORT_MIN) + 1;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..span {
        let port = SRC_PORT_MIN + ((u32::from(start) + i) % span) as u16;
        match sock.bind(&SocketAddr::new(any, port).into()) {
            Ok(()) => return UdpSocket::from_std(sock.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

struct Entry {
    session: BfdSession,
    sock: UdpSocket,
    local_disc: u32,
}

struct Driver {
    timers: BfdTimers,
    port: u16,
    rx4: UdpSocket,
    rx6: Option<UdpSocket>,
    sessions: HashMap<IpAddr, Entry>,
    by_disc: HashMap<u32, IpAddr>,
    events: mpsc::UnboundedSender<BfdEvent>,
    rng: u64,
}

async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut b4 = [0u8; 128];
        let mut b6 = [0u8; 128];
        loop {
            let deadline = self
                .sessions
                .values()
                .filter_map(|e| e.session.poll_timeout())
                .min()
                .map(Instant::from_std);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Add(peer)) => self.add(peer),
                    Some(Cmd::Remove(peer)) => self.remove(peer),
                    None => {
                        let peers: Vec<_> = self.sessions.keys().copied().collect();
                        for p in peers {
                            self.remove(p);
                        }
                        return;
                    }
                },
                r = self.rx4.recv_from(&mut b4) => match r {
                    Ok((n, from)) => self.received(&b4[..n], from),
                    Err(e) => debug!(error = %e, "BFD receive failed"),
                },
                r = recv(self.rx6.as_ref(), &mut b6) => match r {
                    Ok((n, from)) => self.received(&b6[..n], from),
                    Err(e) => debug!(error = %e, "BFD receive failed"),
                },
                () = sleep_until(deadline) => self.tick(),
            }
        }
    }

    fn add(&mut self, peer: IpAddr) {
        if self.sessions.contains_key(&peer) {
            return;
        }
        let mut local_disc = 0;
        while local_disc == 0 || self.by_disc.contains_key(&local_disc) {
            local_disc = self.next_rand() as u32;
        }
        let start = self.next_rand() as u16;
        let sock = match tx_socket(peer, start) {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, error = %e, "BFD: no socket for the session");
                return;
            }
        };
        let seed = self.next_rand();
        let session = BfdSession::new(
            BfdConfig {
                desired_min_tx: self.timers.interval,
                required_min_rx: self.timers.interval,
                detect_mult: self.timers.multiplier,
                local_disc,
                seed,
            },
            Instant::now().into_std(),
        );
        info!(%peer, local_disc, "BFD session added");
        self.by_disc.insert(local_disc, peer);
        self.sessions.insert(
            peer,
            Entry {
                session,
                sock,
                local_disc,
            },
        );
    }

    fn remove(&mut self, peer: IpAddr) {
        let Some(mut e) = self.sessions.remove(&peer) else {
            return;
        };
        self.by_disc.remove(&e.local_disc);
        let out = e
            .session
            .handle(Instant::now().into_std(), Input::AdminDown);
        for o in out {
            if let Output::Send(p) = o {
                send(&e.sock, SocketAddr::new(peer, self.port), &p);
            }
        }
        info!(%peer, "BFD session removed");
    }

    fn received(&mut self, buf: &[u8], from: SocketAddr) {
        let src = from.ip().to_canonical();
        let p = match ControlPacket::decode(buf) {
            Ok(p) => p,
            Err(e) => {
                debug!(%src, error = %e, "BFD packet discarded");
                return;
            }
        };
        let peer = if p.your_disc != 0 {
            match self.by_disc.get(&p.your_disc) {
                Some(peer) => *peer,
                None => {
                    debug!(%src, disc = p.your_disc, "BFD packet for an unknown discriminator");
                    return;
                }
            }
        } else {
            src
        };
        if peer != src {
            debug!(%src, %peer, "BFD packet from the wrong source");
            return;
        }
        let Some(e) = self.sessions.get_mut(&peer) else {
            debug!(%src, "BFD packet from an unknown peer");
            return;
        };
        let out = e
            .session
            .handle(Instant::now().into_std(), Input::Received(p));
        self.outputs(peer, out);
    }

    fn tick(&mut self) {
        let now = Instant::now().into_std();
        let due: Vec<IpAddr> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if let Some(e) = self.sessions.get_mut(&peer) {
                let out = e.session.handle(now, Input::Tick);
                self.outputs(peer, out);
            }
        }
    }

    fn outputs(&mut self, peer: IpAddr, out: Vec<Output>) {
        let Some(e) = self.sessions.get(&peer) else {
            return;
        };
        for o in out {
            match o {
                Output::Send(p) => send(&e.sock, SocketAddr::new(peer, self.port), &p),
                Output::StateChange {
                    from,
                    to,
                    diag,
                    peer_admin_down,
                } => {
                    info!(%peer, %from, %to, ?diag, peer_admin_down, "BFD state change");
                    let _ = self.events.send(BfdEvent {
                        peer,
                        from,
                        to,
                        diag,
                        peer_admin_down,
                    });
                }
            }
        }
    }
}

fn send(sock: &UdpSocket, to: SocketAddr, p: &ControlPacket) {
    if let Err(e) = sock.try_send_to(&p.encode(), to) {
        debug!(%to, error = %e, "BFD send failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(from: BfdState, to: BfdState, peer_admin_down: bool) -> BfdEvent {
        BfdEvent {
            peer: Ipv4Addr::LOCALHOST.into(),
            from,
            to,
            diag: Diag::None,
            peer_admin_down,
        }
    }

    #[test]
    fn only_up_to_down_without_peer_admin_down_is_a_failure() {
        assert!(ev(BfdState::Up, BfdState::Down, false).is_failure());
        assert!(!ev(BfdState::Up, BfdState::Down, true).is_failure());
        assert!(!ev(BfdState::Init, BfdState::Down, false).is_failure());
        assert!(!ev(BfdState::Down, BfdState::Up, false).is_failure());
        assert!(!ev(BfdState::Up, BfdState::AdminDown, false).is_failure());
    }

    #[tokio::test]
    async fn tx_sockets_use_the_rfc_5881_port_range() {
        let s = tx_socket(Ipv4Addr::LOCALHOST.into(), 65535).unwrap();
        let port = s.local_addr().unwrap().port();
        assert!(port >= SRC_PORT_MIN, "{port}");
        let s2 = tx_socket(Ipv4Addr::LOCALHOST.into(), 65535).unwrap();
        assert_ne!(s2.local_addr().unwrap().port(), port);
    }
}
