//! The WireGuard sessions: one `boringtun` noise `Tunn` per peer behind
//! its own lock, the peer's current endpoint (roaming: the source of its
//! last authenticated message), and the one rate limiter that answers
//! handshakes with cookie replies under load. [`Tunnels::receive`] is the
//! whole receive decision for one datagram, without sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::PublicKey as DalekPublic;

use super::key_file::PrivateKey;
use super::peers::{Message, PeerIndex, PeerSpec};
use crate::dataplane::counters::Reason;

/// Handshakes per second the node answers before it asks for cookies
/// (boringtun's device uses the same figure).
pub(crate) const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// One peer's session state.
pub(crate) struct Tunnel {
    tunn: Mutex<Tunn>,
    /// Endpoint as `ip << 16 | port`.
    endpoint: AtomicU64,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

fn pack(a: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

fn unpack(v: u64) -> SocketAddrV4 {
    #[allow(clippy::cast_possible_truncation)] // the fields were packed from these widths
    SocketAddrV4::new(Ipv4Addr::from((v >> 16) as u32), v as u16)
}

impl Tunnel {
    /// Where the peer is now.
    pub(crate) fn endpoint(&self) -> SocketAddrV4 {
        unpack(self.endpoint.load(Ordering::Relaxed))
    }

    /// The session, locked.
    pub(crate) fn lock(&self) -> Option<MutexGuard<'_, Tunn>> {
        self.tunn.lock().ok()
    }

    fn roam(&self, to: SocketAddrV4) {
        let v = pack(to);
        if self.endpoint.load(Ordering::Relaxed) != v {
            self.endpoint.store(v, Ordering::Relaxed);
        }
    }
}

/// What one received datagram amounts to; lengths are of `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// A decrypted inner packet `out[..len]` from WireGuard peer `peer`.
    Packet {
        /// WireGuard peer.
        peer: usize,
        /// Inner length.
        len: usize,
    },
    /// Send `out[..len]` to `to` (handshake response, keepalive, cookie).
    /// With `peer`: then send what the peer queued ([`Tunnels::queued`]).
    Reply {
        /// Destination.
        to: SocketAddrV4,
        /// Message length.
        len: usize,
        /// The peer whose session answered (None: a cookie reply).
        peer: Option<usize>,
    },
    /// Nothing to do (a keepalive, a cookie the session took).
    Nothing,
    /// Dropped: why, and the peer when one was identified.
    Drop(Reason, Option<usize>),
}

/// All peers' sessions.
pub(crate) struct Tunnels {
    pub(crate) index: PeerIndex,
    peers: Vec<Tunnel>,
    key: PrivateKey,
    public: DalekPublic,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("public", &self.key.public)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl Tunnels {
    /// Sessions for `specs` (none established yet).
    pub(crate) fn new(key: PrivateKey, specs: &[PeerSpec], keepalive_s: Option<u16>) -> Self {
        let public = DalekPublic::from(key.public.0);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        let peers = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Tunnel {
                // A per-peer limiter of the session's own: the shared one
                // above screens every handshake before the peer is known.
                tunn: Mutex::new(Tunn::new(
                    key.secret(),
                    DalekPublic::from(s.public.0),
                    None,
                    keepalive_s,
                    u32::try_from(i).unwrap_or(u32::MAX) & 0x00ff_ffff,
                    None,
                )),
                endpoint: AtomicU64::new(pack(s.endpoint)),
            })
            .collect();
        Self {
            index: PeerIndex::new(specs),
            peers,
            key,
            public,
            limiter,
        }
    }

    /// Peer `i`'s session.
    pub(crate) fn peer(&self, i: usize) -> Option<&Tunnel> {
        self.peers.get(i)
    }

    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Once a second: lets handshakes through again.
    pub(crate) fn reset_rate_limit(&self) {
        self.limiter.reset_count();
    }

    /// The receive decision for one datagram from `src`; `out` must hold
    /// the datagram's length (and at least 148 bytes).
    pub(crate) fn receive(&self, src: SocketAddrV4, dgram: &[u8], out: &mut [u8]) -> Received {
        let Some(msg) = Message::classify(dgram) else {
            return Received::Drop(Reason::WG_INVALID, None);
        };
        let from = Some(IpAddr::V4(*src.ip()));
        let peer = match msg.peer() {
            Some(p) => p,
            None => match self.limiter.verify_packet(from, dgram, out) {
                Err(TunnResult::WriteToNetwork(c)) => {
                    let len = c.len();
                    return Received::Reply {
                        to: src,
                        len,
                        peer: None,
                    };
                }
                Ok(Packet::HandshakeInit(p)) => {
                    match parse_handshake_anon(&self.key.secret(), &self.public, &p)
                        .ok()
                        .and_then(|h| self.index.by_key(&h.peer_static_public))
                    {
                        Some(i) => i,
                        None => return Received::Drop(Reason::WG_INVALID, None),
                    }
                }
                _ => return Received::Drop(Reason::WG_INVALID, None),
            },
        };
        let Some(t) = self.peers.get(peer) else {
            return Received::Drop(Reason::WG_INVALID, None);
        };
        let Some(mut tunn) = t.lock() else {
            return Received::Drop(Reason::WG_INVALID, Some(peer));
        };
        let authenticated = !matches!(msg, Message::CookieReply { .. });
        let res = match tunn.decapsulate(from, dgram, out) {
            TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                Received::Packet { peer, len: p.len() }
            }
            TunnResult::WriteToNetwork(m) => Received::Reply {
                to: src,
                len: m.len(),
                peer: Some(peer),
            },
            TunnResult::Done => Received::Nothing,
            TunnResult::Err(WireGuardError::DuplicateCounter) => {
                return Received::Drop(Reason::WG_REPLAY, Some(peer));
            }
            TunnResult::Err(_) => return Received::Drop(Reason::WG_INVALID, Some(peer)),
        };
        // A cookie reply under load is an answer, not proof of the peer.
        if authenticated && !matches!(res, Received::Reply { peer: None, .. }) {
            t.roam(src);
        }
        res
    }

    /// Encrypts `pkt` for peer `peer` into `out` (at least `pkt.len() +
    /// 32` and 148 bytes): the datagram's length, or None when the packet
    /// waits for a handshake already sent (or the peer is unknown).
    pub(crate) fn encapsulate(&self, peer: usize, pkt: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peers.get(peer)?.lock()?;
        match tunn.encapsulate(pkt, out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }

    /// Runs peer `peer`'s timers (rekey, keepalive, handshake retry,
    /// expiry): a message to send to its endpoint in `out[..len]`, if any.
    pub(crate) fn tick(&self, peer: usize, out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peers.get(peer)?.lock()?;
        match tunn.update_timers(out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }

    /// After a [`Received::Reply`] with a peer: the next packet that peer
    /// queued while it had no session, in `out[..len]`.
    pub(crate) fn queued(&self, peer: usize, out: &mut [u8]) -> Option<usize> {
        let mut tunn = self.peers.get(peer)?.lock()?;
        match tunn.decapsulate(None, &[], out) {
            TunnResult::WriteToNetwork(m) => Some(m.len()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
